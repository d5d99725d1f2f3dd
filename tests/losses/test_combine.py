"""GroundingLoss (g2l/losses/combine.py): each term's raw value, its weight from ``weight_dict`` in one
place, and the weighted value that enters the total, before and after the only-IoU epoch; and
L_bce's target built by the term from the plain IoU (g2l/losses/bce.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2l.config import load_config
from g2l.losses.bce import scaled_iou
from g2l.losses.combine import build_loss
from tests.reference.mmn import scale_iou
from tests.reference.losses_ablation_2026_12 import estimator_stand_in, reference_batch

# lambda_c = 0.1, w_ssi = 5e-4, scaled by 0.01 after epoch 2.
G2L = ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4", "loss.ssi_num_players=3", "loss.ssi_num_samples=64",
       "loss.contrast_weight=0.1", "loss.only_iou_epoch=2", "loss.only_iou_scale=0.01"]
NAMES = ["bce", "video_contrast", "sentence_contrast", "ssi"]
BY_HAND = {  # epoch -> weights, worked out by hand
    1: {"bce": 1.0, "video_contrast": 0.1, "sentence_contrast": 0.1, "ssi": 5e-4},
    2: {"bce": 1.0, "video_contrast": 0.1, "sentence_contrast": 0.1, "ssi": 5e-4},  # only_iou_epoch is inclusive
    3: {"bce": 1.0, "video_contrast": 0.1 * 0.01, "sentence_contrast": 0.1 * 0.01, "ssi": 5e-4 * 0.01},
}


@pytest.fixture(scope="module")
def terms_by_epoch():
    torch.set_num_threads(1)
    loss_fn = build_loss(load_config(None, G2L), kernels="numba")
    output, batch, start_idx, end_idx = reference_batch()
    with estimator_stand_in():
        return loss_fn, {epoch: loss_fn(output, batch, start_idx, end_idx, epoch=epoch, step=5) for epoch in BY_HAND}


@pytest.mark.parametrize("epoch", sorted(BY_HAND))
def test_each_term_is_its_weight_times_its_raw_value(terms_by_epoch, epoch):
    loss_fn, by_epoch = terms_by_epoch
    terms = by_epoch[epoch]
    assert loss_fn.weight_dict(epoch) == pytest.approx(BY_HAND[epoch], rel=1e-12)
    assert list(terms) == [*NAMES, "total", "stat_gcl_positives_iou_below_0.5", *(f"raw_{n}" for n in NAMES)]
    for name in NAMES:
        weight = BY_HAND[epoch][name]
        assert float(terms[name]) == pytest.approx(weight * float(terms[f"raw_{name}"]), rel=1e-6), name
        w, raw = loss_fn.weight_dict(epoch)[name], terms[f"raw_{name}"]  # exactly that product, in one place
        assert torch.equal(terms[name], raw if w == 1.0 else w * raw), name
        # the raw value does not depend on the epoch: only its weight does
        assert torch.equal(terms[f"raw_{name}"], by_epoch[1][f"raw_{name}"]), name
    assert torch.equal(terms["bce"], terms["raw_bce"])  # weight 1: the same value
    # the total is the sum of the weighted terms, in order, and of nothing else
    assert torch.equal(terms["total"], terms["bce"] + terms["video_contrast"] + terms["sentence_contrast"] + terms["ssi"])


def test_after_the_only_iou_epoch_the_weighted_contrast_drops_100x_and_the_raw_one_does_not(terms_by_epoch):
    _, by_epoch = terms_by_epoch
    for name in ("video_contrast", "sentence_contrast", "ssi"):
        assert float(by_epoch[3][name]) == pytest.approx(0.01 * float(by_epoch[2][name]), rel=1e-6)
        assert float(by_epoch[3][f"raw_{name}"]) == float(by_epoch[2][f"raw_{name}"]) > 0


def test_the_raw_bce_term_is_the_bce_of_the_scaled_iou_computed_by_hand(terms_by_epoch):
    _, by_epoch = terms_by_epoch
    output, batch, start_idx, end_idx = reference_batch()
    iou = batch.iou_maps[:, start_idx, end_idx]  # (q C)
    target = ((iou - 0.5) / 0.5).clamp(0, 1)  # t_min 0.5, t_max 1
    p = torch.sigmoid(10 * output.iou_cos)
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert float(by_epoch[1]["raw_bce"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(by_epoch[1]["raw_bce"]) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(10 * output.iou_cos, target)), rel=1e-6)


@pytest.mark.parametrize("bounds", [(0.5, 1.0), (0.3, 0.7), (0.1, 0.9)])
def test_the_target_is_the_one_the_collate_function_built(bounds):
    # Bit for bit the numpy scaling the batch carried before (g2l.ops.spans.scale_iou), on IoUs that
    # include the bounds, 0, 1 and values a rounding step away from them.
    rng = np.random.default_rng(0)
    special = np.array([0, 1, *bounds, *np.nextafter(np.float32(bounds), np.float32(2))], np.float32)
    iou = np.concatenate([rng.random(20000, dtype=np.float32), special])
    np.testing.assert_array_equal(scaled_iou(torch.from_numpy(iou), *bounds).numpy(), scale_iou(iou, *bounds))
