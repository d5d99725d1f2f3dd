import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# Tools run as subprocesses import the checkout under test, not whichever g2l is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_report_header(config):
    """Which precision ``auto`` (training's default) resolves to on this CPU: the suite passes
    either way; run it as on the other kind of CPU with G2L_CPU_BF16=1 or G2L_CPU_BF16=0."""
    from g2l.engine.precision import CPU_BF16_VARIABLE, PrecisionError, cpu_runs_bf16_fast

    try:
        fast = cpu_runs_bf16_fast()
    except PrecisionError as error:
        raise pytest.UsageError(str(error)) from None
    forced = os.environ.get(CPU_BF16_VARIABLE, "").strip()
    how = f"forced by {CPU_BF16_VARIABLE}={forced}" if forced else f"this CPU's flags; force with {CPU_BF16_VARIABLE}=0|1"
    return f"train.precision auto on the CPU: {'bf16' if fast else 'fp32'} ({how}); grounding and evaluation: fp32"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark annotation files; missing, the tests that read them skip, or fail under CI."""
    if not SHARED_DATA.is_dir():
        from tests.fixtures import missing_prerequisite

        missing_prerequisite(f"../shared/data not found beside the repository ({SHARED_DATA}); the tests on the "
                             "real annotation files need it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from tests.text_utils import make_tokenizer

    return make_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_text_encoder_dir(tmp_path_factory):
    from tests.text_utils import make_text_encoder_dir

    return make_text_encoder_dir(tmp_path_factory.mktemp("tiny_bert"))
