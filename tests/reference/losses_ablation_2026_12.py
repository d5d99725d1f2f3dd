"""The loss terms of g2l's own code at git tag ``ablation-2026-12`` (commit a0f6492, before the decided
variants were retired and GroundingLoss became a set of named terms), as a fixture: this script writes
tests/losses/data/reference_losses.json, the terms of the kept loss variants on a fixed random batch,
which tests/losses/test_reference_losses.py compares today's code with. Run it as a script with the
tagged code first on the path (it imports only ``g2l`` and torch):

    git worktree add /tmp/old-loss ablation-2026-12
    PYTHONPATH=/tmp/old-loss python tests/reference/losses_ablation_2026_12.py   # run from the repository root

``reference_batch`` builds the inputs from a seeded generator and uses only the GroundingOutput and
Batch dataclasses, which are the same before and after, so that tests/losses/test_reference_losses.py
rebuilds the identical batch and compares the current code's terms with these numbers.

L_SSI's Monte Carlo estimator of the interactions is replaced on both sides by the same
deterministic stand-in (``estimator_stand_in``): the estimator changed after the tag (strata over
how many sentences, not which; tests/ops/test_shapley.py checks it against exact enumeration), and
what this compares is the loss around it: players, targets, confidence, alignment and weights.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parents[1] / "losses" / "data" / "reference_losses.json"  # the fixture, beside its test

# Each kept variant, as config overrides in the old code's keys.
VARIANTS = {
    "mmn": [],
    "mmn_three_positives": ["loss.num_positives=3"],
    "g2l": ["loss.sentence_contrast=gcl", "loss.gcl_num_positives=1", "loss.ssi_weight=5e-4"],
    "paper": ["loss.sentence_contrast=gcl", "loss.gcl_num_positives=5", "loss.ssi_weight=5e-4"],
    "authors": ["loss.sentence_contrast=gcl", "loss.gcl_form=authors", "loss.gcl_num_positives=5"],
}
COMMON = ["loss.ssi_num_samples=64", "loss.ssi_num_players=3", "train.seed=3"]
EPOCHS = (1, 9)  # before and after only_iou_epoch (7): the late scale 0.01
STEP = 5


def reference_batch(seed: int = 0, num_videos: int = 3, t: int = 6, d: int = 8):
    """(GroundingOutput, Batch, cell_start_idx, cell_end_idx): every cell [i, j] with i <= j of a
    t x t map is valid; videos 0, 1 and 2 hold 2, 1 and 3 sentences."""
    from g2l.data.dataset import Batch
    from g2l.models.grounding import GroundingOutput

    g = torch.Generator().manual_seed(seed)
    sentence_video = torch.tensor([0, 0, 1, 2, 2, 2])
    q = len(sentence_video)
    start_idx, end_idx = torch.triu_indices(t, t)  # (2 C): the valid cells, row-major
    num_cells = start_idx.shape[0]

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=g), dim=-1)

    cell_contrast, cell_iou = unit(num_videos, num_cells, d), unit(num_videos, num_cells, d)
    sentence_contrast, sentence_iou = unit(q, d), unit(q, d)
    own = cell_contrast[sentence_video]  # (q C d)
    contrast_cos = torch.einsum("qd,qcd->qc", sentence_contrast, own)
    iou_cos = torch.einsum("qd,qcd->qc", sentence_iou, cell_iou[sentence_video])
    output = GroundingOutput(cell_contrast=cell_contrast, cell_iou=cell_iou, sentence_contrast=sentence_contrast,
                             sentence_iou=sentence_iou, contrast_cos=contrast_cos, iou_cos=iou_cos)
    # Ground-truth windows in units of the map (duration t); one window per sentence.
    a = torch.rand(q, 2, generator=g) * t
    windows = torch.stack([a.min(dim=1).values, a.max(dim=1).values.clamp(min=a.min(dim=1).values + 0.5)], dim=1)
    windows = windows.clamp(max=float(t))
    starts = torch.arange(t, dtype=torch.float32)[:, None].expand(t, t)
    ends = (torch.arange(t, dtype=torch.float32) + 1)[None, :].expand(t, t)
    inter = (torch.minimum(ends[None], windows[:, 1, None, None]) - torch.maximum(starts[None], windows[:, 0, None, None]))
    hull = (torch.maximum(ends[None], windows[:, 1, None, None]) - torch.minimum(starts[None], windows[:, 0, None, None]))
    iou_maps = (inter.clamp(min=0) / hull).float()  # (q t t)
    iou_maps = iou_maps * (ends >= starts + 1)  # the cells below the diagonal are not moments
    # The code at the tag read L_bce's target from the batch; today's term builds it from iou_maps.
    targets = {"targets": ((iou_maps - 0.5) / 0.5).clamp(0, 1)} if "targets" in Batch.__dataclass_fields__ else {}
    batch = Batch(
        video_ids=[f"v{i}" for i in range(num_videos)], durations_s=torch.full((num_videos,), float(t)),
        features=torch.zeros(num_videos, 1, 1), sentences=[f"s{j}" for j in range(q)], sentence_video=sentence_video,
        sentence_mask=torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool), windows_s=windows,
        gt_windows=[w[None].numpy() for w in windows], iou_maps=iou_maps, **targets,
    )
    return output, batch, start_idx, end_idx


def stand_in_interactions(sims, num_samples, seed=0, tau=0.1, return_stderr=False, return_mean_stderr=False, **_):
    """A deterministic stand-in for ``pairwise_interaction_batch`` (same arguments and returns):
    I = sim minus its row mean, standard error 0.05 |sim| + 0.001, as numpy for numpy input; the
    row means' standard errors those of independent errors, sqrt(mean_i se^2 / m), with which the
    reliability of today's code is the tag's (it read no row-mean error)."""
    import numpy as np

    means, errors, mean_errors = [], [], []
    for sim in sims:
        values = sim.detach().double().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim, np.float64)
        mean, err = values - values.mean(axis=1, keepdims=True), 0.05 * np.abs(values) + 0.001
        mean_err = np.sqrt((err**2).mean(axis=1) / max(values.shape[1], 1))
        if isinstance(sim, torch.Tensor):
            mean, err, mean_err = (torch.from_numpy(a).float().to(sim.device) for a in (mean, err, mean_err))
        means.append(mean)
        errors.append(err)
        mean_errors.append(mean_err)
    if return_mean_stderr:
        return means, errors, mean_errors
    return (means, errors) if return_stderr else means


@contextmanager
def estimator_stand_in():
    """L_SSI's interaction estimator replaced by ``stand_in_interactions`` while the block runs."""
    import g2l.losses.ssi as ssi

    if hasattr(ssi, "interaction_estimator"):  # today: the estimator is looked up per call (loss.kernels)
        name, stand_in = "interaction_estimator", lambda kernels: stand_in_interactions
    else:  # the code at the tag imported it by name
        name, stand_in = "pairwise_interaction_batch", stand_in_interactions
    saved = getattr(ssi, name)
    setattr(ssi, name, stand_in)
    try:
        yield
    finally:
        setattr(ssi, name, saved)


def loss_terms(loss_fn, epoch: int) -> dict:
    """Every named value of one call, plus the gradient norm of the total per feature tensor. The raw
    terms (``raw_*``, which the code at the tag did not return) are left out: tests/losses/test_combine.py
    checks them against the weighted ones."""
    output, batch, start_idx, end_idx = reference_batch()
    for name in ("cell_contrast", "cell_iou", "sentence_contrast", "sentence_iou"):
        getattr(output, name).requires_grad_(True)
    output.contrast_cos = torch.einsum("qd,qcd->qc", output.sentence_contrast, output.cell_contrast[batch.sentence_video])
    output.iou_cos = torch.einsum("qd,qcd->qc", output.sentence_iou, output.cell_iou[batch.sentence_video])
    terms = loss_fn(output, batch, start_idx, end_idx, epoch=epoch, step=STEP)
    terms["total"].backward()
    values = {name: float(value.detach()) for name, value in terms.items() if not name.startswith("raw_")}
    for name in ("cell_contrast", "cell_iou", "sentence_contrast", "sentence_iou"):
        values[f"grad_norm/{name}"] = float(getattr(output, name).grad.norm())
    return values


def main() -> int:
    from g2l.config import load_config
    from g2l.losses.combine import build_loss

    torch.set_num_threads(1)
    reference = {}
    for name, overrides in VARIANTS.items():
        cfg = load_config(None, overrides + COMMON)
        with estimator_stand_in():
            reference[name] = {"overrides": overrides + COMMON,
                               "epochs": {str(epoch): loss_terms(build_loss(cfg), epoch) for epoch in EPOCHS}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"tag": "ablation-2026-12", "step": STEP, "variants": reference}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
