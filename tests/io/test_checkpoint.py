"""What last.pt holds and how small it is (g2l/io/checkpoint.py, g2l/models/checkpoint.py): AdamW's moments are stored
without the rows that are zero in both (the word embeddings that no training token reached), and
put back exactly, so that training resumed from the file continues as if it had never stopped."""

import io

import pytest
import torch

from g2l.config import Config
from g2l.engine import resume
from g2l.engine.optim import build_optimizer
from g2l.io import checkpoint as ckpt_file
from g2l.models import checkpoint as ckpt

VOCABULARY, WIDTH = 1000, 8
TOKENS = torch.tensor([[3, 7, 9], [9, 3, 3]])  # the only rows of the embedding that receive a gradient


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, WIDTH)
        self.head = torch.nn.Linear(WIDTH, 1)

    def forward(self, tokens):
        return self.head(self.embedding(tokens)).mean()


def adamw(model):
    return build_optimizer(model, lr=1e-2, text_lr_scale=0.1, weight_decay=1e-2, betas=(0.9, 0.999))


def train(model, optimizer, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        model(TOKENS).backward()
        optimizer.step()


def trained():
    torch.manual_seed(0)
    model = Tiny()
    optimizer = adamw(model)
    train(model, optimizer, 3)
    return model, optimizer


def test_the_untouched_rows_are_left_out_and_put_back_exactly():
    model, optimizer = trained()
    original = optimizer.state_dict()
    packed = ckpt_file.pack_zero_rows(original)
    embedding = packed["state"][0]
    for key in ("exp_avg", "exp_avg_sq"):
        assert embedding[key]["packed"] == ckpt_file.ZERO_ROWS and embedding[key]["rows"].tolist() == [3, 7, 9]
        assert embedding[key]["values"].shape == (3, WIDTH)
    assert isinstance(packed["state"][1]["exp_avg"], torch.Tensor)  # the head: every row used, kept whole
    params = list(model.parameters())
    unpacked = ckpt_file.unpack_zero_rows(packed, params)
    for index, entry in original["state"].items():
        for key, value in entry.items():
            assert torch.equal(unpacked["state"][index][key], value), (index, key)

    def size(state):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.tell()

    saved = size(original) - size(packed)  # two moments of 997 float32 rows of WIDTH, less the indices
    assert saved == pytest.approx(2 * (VOCABULARY - 3) * WIDTH * 4, rel=0.05)


def test_training_resumed_from_a_packed_last_pt_continues_exactly(tmp_path):
    model, optimizer = trained()
    path = ckpt.save_checkpoint(tmp_path / "last.pt", model=model, cfg=Config(), optimizer=optimizer, epoch=1,
                                global_step=3, include_text_backbone=False)
    payload = torch.load(path, map_location="cpu", weights_only=True)  # (load_checkpoint wants a grounding model)
    resume.check_resumable(payload, str(path))
    resumed = Tiny()
    resumed.load_state_dict(payload["model"])
    resumed_optimizer = adamw(resumed)
    resume.load_training_state(resumed_optimizer, payload, str(path))
    train(model, optimizer, 4)
    train(resumed, resumed_optimizer, 4)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("break_it", [
    lambda e: e.update(shape=[VOCABULARY + 1, WIDTH]),  # not its parameter's shape
    lambda e: e.update(rows=torch.tensor([3, 7, VOCABULARY])),  # a row past the end
    lambda e: e.update(rows=torch.tensor([-1, 7, 9])),
    lambda e: e.update(values=e["values"][:2]),  # fewer rows of values than indices
    lambda e: e.update(packed="something else"),
])
def test_a_packed_moment_that_does_not_fit_is_a_checkpoint_error(break_it):
    model, optimizer = trained()
    packed = ckpt_file.pack_zero_rows(optimizer.state_dict())
    break_it(packed["state"][0]["exp_avg"])
    fresh = adamw(Tiny())
    with pytest.raises(ckpt_file.CheckpointError, match="optimizer or random-number state does not fit this model"):
        resume.load_training_state(fresh, {"optimizer": packed, "rng": None}, "last.pt")
