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
