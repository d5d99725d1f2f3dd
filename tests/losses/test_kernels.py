"""The kernels (g2l/losses/kernels.py; ``kernels=``, else the environment variable G2L_KERNELS): the
G2L losses computed with the torch kernels equal those with the Numba kernels (the geodesic part
exactly, the Shapley part within its Monte Carlo standard errors), ``auto`` resolves as documented,
the variable picks them when no ``kernels=`` is given, and the torch path reads the device's values
on the host only where the result needs it (counted here on the CPU; on CUDA with torch's sync
debug mode)."""

import contextlib
import math
import warnings

import numpy as np
import pytest
import torch

from g2l.config import load_config
from g2l.losses.combine import build_loss
from g2l.losses.kernels import CPU_CHOICE, KernelsError, interaction_estimator, resolve_kernels
from g2l.losses.ssi import moment_games
from g2l.ops.geodesic import geodesic_closeness_batch
from tests.reference.losses_ablation_2026_12 import reference_batch
from bench.host_reads import HostReads

G2L = ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4", "loss.ssi_num_players=3", "loss.ssi_num_samples=256"]


def smooth_batch(seed: int = 0, t: int = 16, d: int = 32):
    """test_reference_losses' batch with map-like cell features: the mean over [start, end] of a
    random walk of clip features, so that much of a map lies within the geodesic cut-off (and,
    unlike max-pooled untrained features, no two cells tie)."""
    output, batch, start_idx, end_idx = reference_batch(seed=seed, t=t, d=d)
    g = torch.Generator().manual_seed(seed + 100)
    clips = torch.randn(1, 1, d, generator=g) + 0.15 * torch.randn(3, t, d, generator=g).cumsum(dim=1)  # (b t d)
    prefix = torch.cat([torch.zeros(3, 1, d), clips.cumsum(dim=1)], dim=1)  # (b t+1 d)
    cells = (prefix[:, end_idx + 1] - prefix[:, start_idx]) / (end_idx - start_idx + 1)[None, :, None]  # (b C d)
    output.cell_contrast = torch.nn.functional.normalize(cells, dim=-1)
    output.contrast_cos = torch.einsum("qd,qcd->qc", output.sentence_contrast, output.cell_contrast[batch.sentence_video])
    return output, batch, start_idx, end_idx


def g2l_terms(kernels: str, extra=(), *, t: int = 16, d: int = 32, seed: int = 0, step: int = 5, reads=None):
    """The named terms of the G2L loss on a fixed random batch (unit features: no tied similarities);
    ``reads``: a HostReads to count the loss's reads in."""
    torch.set_num_threads(1)
    output, batch, start_idx, end_idx = smooth_batch(seed, t, d)
    loss_fn = build_loss(load_config(None, G2L + [*extra]), kernels=kernels)
    with reads or contextlib.nullcontext():
        terms = loss_fn(output, batch, start_idx, end_idx, epoch=1, step=step)
    inputs = loss_fn.inputs(output, batch, start_idx, end_idx, step)
    return {k: float(v) for k, v in terms.items()}, inputs


def test_the_geodesic_part_is_the_same_with_either_kernels():
    numba, numba_inputs = g2l_terms("numba")
    torch_terms, torch_inputs = g2l_terms("torch")
    # On a CPU the Numba path computes kNN rows lazily with its own dot products: where two neighbours'
    # similarities are within a few ulps it may keep the other one (g2l/ops/geodesic.py), which moves a
    # few closeness values by a path's worth of rounding. On the same (dense) graph the two are bit-equal.
    assert torch.equal(numba_inputs.closeness > 0, torch_inputs.closeness > 0)
    torch.testing.assert_close(numba_inputs.closeness, torch_inputs.closeness, rtol=0, atol=1e-4)
    output, batch, start_idx, end_idx = smooth_batch()
    sources = [torch_inputs.positives[batch.sentence_video == v, 0] for v in range(3)]
    dense = geodesic_closeness_batch(output.cell_contrast, sources, knn="dense", kernels="numba")
    assert torch.equal(dense, torch_inputs.closeness)
    assert (numba_inputs.closeness > 0).sum() > 3 * numba_inputs.closeness.shape[0]  # and not only the sources
    for name in ("bce", "video_contrast", "sentence_contrast", "stat_gcl_positives_iou_below_0.5"):
        assert torch_terms[name] == pytest.approx(numba[name], rel=1e-6, abs=1e-9), name


def test_the_shapley_interactions_agree_within_their_standard_errors():
    # Both estimators are unbiased for the same index with independent draws, so for every (sentence,
    # moment) pair z = (I_torch - I_numba) / sqrt(se_torch^2 + se_numba^2) is about N(0, 1): no |z|
    # beyond 5 (chance ~6e-7 per pair) and a mean z^2 near 1.
    output, batch, start_idx, end_idx = smooth_batch()
    closeness = torch.rand(6, start_idx.shape[0], generator=torch.Generator().manual_seed(1))
    games = [g.detach() for g in moment_games(output.contrast_cos, batch.sentence_video, closeness, 3, batch.num_videos)]
    z = []
    for seed in range(4):  # z within a sentence are correlated (shared draws): several seeds for the mean
        got_n, se_n = interaction_estimator("numba")([g.numpy() for g in games], 512, seed=seed, tau=0.1,
                                                     return_stderr=True)
        got_t, se_t = interaction_estimator("torch")(games, 512, seed=seed + 10, tau=0.1, return_stderr=True)
        for a, sa, b, sb in zip(got_n, se_n, got_t, se_t):
            scale = np.sqrt(np.asarray(sa, np.float64) ** 2 + sb.double().numpy() ** 2)
            diff = np.asarray(a, np.float64) - b.double().numpy()
            exact = scale == 0  # a pair whose strata are all enumerated: both exact
            assert np.abs(diff[exact]).max(initial=0) < 1e-6
            z.append(diff[~exact] / scale[~exact])
    z = np.concatenate(z)
    assert z.size >= 200
    assert np.abs(z).max() < 5 and 0.5 < np.mean(z**2) < 2, (np.abs(z).max(), np.mean(z**2))


def test_the_ssi_term_agrees_within_the_spread_of_its_monte_carlo_draws():
    # The loss is a smooth function of the estimates; its draw-to-draw spread (Numba, 6 steps' seeds)
    # is the scale its two estimators may differ by. Both estimators move around one value.
    numba = [g2l_terms("numba", step=s)[0]["ssi"] for s in range(6)]
    other = [g2l_terms("torch", step=s)[0]["ssi"] for s in range(6)]
    spread = float(np.std(numba + other))
    assert spread > 0
    assert abs(np.mean(numba) - np.mean(other)) < 3 * spread, (numba, other)


def test_the_torch_path_reads_the_device_once():
    # Counted as a GPU would see it (host reads and blocking host-to-device copies), after a warm-up
    # in which the geodesic relaxation learns its rounds.
    torch.set_num_threads(1)
    output, batch, start_idx, end_idx = smooth_batch()
    for extra, kind in ((["loss.ssi_weight=0"], "__bool__"), ([], "tolist")):
        loss_fn = build_loss(load_config(None, G2L + [*extra]), kernels="torch")
        loss_fn(output, batch, start_idx, end_idx, epoch=1, step=4)  # warm-up
        reads = HostReads()
        with reads:
            loss_fn(output, batch, start_idx, end_idx, epoch=1, step=5)
        # L_GCL alone: the closeness's settled flag; with L_SSI: its games' sizes, read with that flag
        # (and the finite check); the Shapley plan goes in one non-blocking copy, not a sync.
        assert reads.syncs() == 1 and reads.calls[kind] == 1, reads.where
        assert reads.calls["h2d_async"] == 2 * (kind == "tolist"), reads.calls  # the plan: floats, integers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.set_sync_debug_mode)")
def test_syncs_of_the_torch_path_on_cuda():
    output, batch, start_idx, end_idx = smooth_batch()
    output = type(output)(**{k: v.cuda() for k, v in vars(output).items()})
    batch = batch.to("cuda")
    loss_fn = build_loss(load_config(None, G2L), kernels="torch")
    loss_fn(output, batch, start_idx.cuda(), end_idx.cuda(), epoch=1)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loss_fn(output, batch, start_idx.cuda(), end_idx.cuda(), epoch=1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]  # the games' sizes and the closeness's flag


def test_auto_resolves_to_torch_on_cuda_and_to_the_measured_choice_on_a_cpu(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_kernels("auto", cuda, "geodesic") == resolve_kernels("auto", cuda, "shapley") == "torch"
    assert resolve_kernels("auto", cpu, "geodesic") == CPU_CHOICE["geodesic"]
    assert resolve_kernels("auto", cpu, "shapley") == CPU_CHOICE["shapley"]
    assert resolve_kernels("numba", cuda, "geodesic") == "numba"
    assert resolve_kernels("torch", cpu, "shapley") == "torch"
    monkeypatch.setenv("G2L_KERNELS", "cuda")
    with pytest.raises(KernelsError, match=r"G2L_KERNELS='cuda' is not a kernel choice; set it to one of auto, numba, torch"):
        build_loss(load_config(None, G2L))


@pytest.mark.parametrize("variable", [None, "", "numba", "torch"])
def test_the_loss_takes_its_kernels_from_the_argument_else_from_g2l_kernels(monkeypatch, variable):
    if variable is None:
        monkeypatch.delenv("G2L_KERNELS", raising=False)
    else:
        monkeypatch.setenv("G2L_KERNELS", variable)
    loss_fn = build_loss(load_config(None, G2L))
    assert loss_fn.kernels == loss_fn.terms["ssi"].kernels == (variable or "auto")  # unset or empty: auto
    for explicit in ("numba", "torch", "auto"):  # an explicit kernels= wins over the variable
        loss_fn = build_loss(load_config(None, G2L), kernels=explicit)
        assert loss_fn.kernels == loss_fn.terms["ssi"].kernels == explicit
    with pytest.raises(KernelsError, match=r"kernels='cuda' is not a kernel choice; pass one of auto, numba, torch"):
        build_loss(load_config(None, G2L), kernels="cuda")


def test_a_tiny_g2l_training_runs_with_the_torch_kernels(tmp_path, tiny_text_encoder_dir, monkeypatch):
    import json

    from g2l.train import train
    from tests.fixtures import tiny_overrides, write_tiny_benchmark

    monkeypatch.setenv("G2L_KERNELS", "torch")
    folder = write_tiny_benchmark(tmp_path / "bench")
    overrides = tiny_overrides(folder, tiny_text_encoder_dir, tmp_path / "runs", **{
        "loss.sentence_contrast": "gcl", "loss.ssi_weight": 0.05, "loss.ssi_num_samples": 64, "train.epochs": 1})
    result = train(load_config(None, overrides))
    (record,) = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(record["train_epoch/total"]) and record["train_epoch/ssi"] > 0
    assert record["train_epoch/sentence_contrast"] > 0
