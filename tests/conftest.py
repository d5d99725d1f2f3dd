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
