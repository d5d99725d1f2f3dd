"""The cropped map encoder computes what the full one computes (docs/method.md section 2): the same
outputs, batch-norm statistics (batch and running) and gradients, on the three public settings'
map shapes with small widths, in float64 so that the only differences are summation order."""

import copy

import pytest
import torch

from g2l.models.moment_map import MapEncoder, SparseMaxPool
from tests.reference.moment_map_full import FullMapEncoder

PUBLIC_MAPS = {  # setting -> (N, pooling counts, kernel k, layers L)
    "charades": (16, [15], 5, 8),
    "activitynet": (64, [15, 8, 8], 9, 4),
    "tacos": (128, [15, 8, 8, 8], 5, 8),
}


def _pair(name: str, hidden: int = 5, **kwargs):
    """The map encoder (cropped) and an independent copy computed on the whole grid (the reference)."""
    num_clips, counts, kernel, layers = PUBLIC_MAPS[name]
    pool = SparseMaxPool(num_clips=num_clips, pooling_counts=counts)
    torch.manual_seed(0)
    cropped = MapEncoder(hidden_dim=hidden, joint_dim=3, kernel_size=kernel, num_layers=layers, mask2d=pool.mask2d,
                         **kwargs).double()
    for norm in cropped.norms:  # away from the identity, so that a wrong statistic shows
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.3, 0.3)
        norm.running_mean.uniform_(-0.2, 0.2)
    full = FullMapEncoder(copy.deepcopy(cropped))
    return pool, full, cropped


@pytest.mark.parametrize("name", list(PUBLIC_MAPS))
def test_cropped_map_equals_full_map_in_training(name):
    pool, full, cropped = _pair(name)
    torch.manual_seed(1)
    clips = torch.randn(3, 5, pool.num_clips, dtype=torch.float64)
    for _ in range(2):  # two steps: the second sees running statistics updated by the first
        grads = []
        outputs = []
        for encoder in (full, cropped):
            encoder.zero_grad()
            leaf = clips.clone().requires_grad_()
            contrast, iou = encoder(pool(leaf))
            weights = torch.linspace(-1, 1, contrast.numel(), dtype=torch.float64).reshape(contrast.shape)
            ((contrast * weights).sum() + (iou ** 2).sum()).backward()
            outputs.append((contrast, iou))
            grads.append([leaf.grad] + [p.grad for p in encoder.parameters()])
        for a, b in zip(*outputs):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        for norm_full, norm_cropped in zip(full.encoder.norms, cropped.norms):
            torch.testing.assert_close(norm_full.running_mean, norm_cropped.running_mean, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(norm_full.running_var, norm_cropped.running_var, rtol=1e-12, atol=1e-12)
            assert int(norm_full.num_batches_tracked) == int(norm_cropped.num_batches_tracked)


@pytest.mark.parametrize("name", list(PUBLIC_MAPS))
def test_cropped_map_equals_full_map_in_evaluation_and_float32(name):
    pool, full, cropped = _pair(name)
    full, cropped = full.float().eval(), cropped.float().eval()
    map2d = pool(torch.randn(2, 5, pool.num_clips))
    with torch.no_grad():
        for a, b in zip(full(map2d), cropped(map2d)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("momentum", [None, 0.3])
def test_cropped_map_follows_batch_norm_momentum(momentum):
    pool, full, cropped = _pair("charades")
    for encoder in (full.encoder, cropped):
        for norm in encoder.norms:
            norm.momentum = momentum
    map2d = pool(torch.randn(2, 5, pool.num_clips, dtype=torch.float64))
    for _ in range(2):
        full(map2d), cropped(map2d)
    for norm_full, norm_cropped in zip(full.encoder.norms, cropped.norms):
        torch.testing.assert_close(norm_full.running_var, norm_cropped.running_var, rtol=1e-12, atol=1e-12)


def test_cropped_map_computes_fewer_cells():
    for name in PUBLIC_MAPS:
        _, full, cropped = _pair(name)
        cells_full = sum(g * g for g in full.encoder.grid_sizes)
        cells_cropped = sum(rect.area for strips in cropped.strips for rect in strips)
        assert cells_cropped < 0.8 * cells_full, name


def test_a_map_computation_to_choose_is_refused():
    """One computation: asking for another (the former ``compute=``) is an error, never ignored."""
    with pytest.raises(TypeError, match="compute"):
        MapEncoder(hidden_dim=2, joint_dim=2, kernel_size=3, num_layers=2, mask2d=torch.ones(4, 4), compute="banded")
