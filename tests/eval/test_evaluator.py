"""Evaluation's precision: a checkpoint is scored in fp32 whatever train.precision it was trained
with and whatever the CPU (G2L_CPU_BF16 forced either way), and eval.batch_size moves its scores
by float32 rounding only; bf16 only on request."""

import numpy as np
import pytest

from g2l.config import load_config
from g2l.eval.evaluator import evaluate_checkpoint
from g2l.models.checkpoint import save_checkpoint
from g2l.models.grounding import build_model
from g2l.ops.spans import ranked_candidates
from tests.fixtures import tiny_overrides, write_tiny_benchmark

TOLERANCE = 1e-5  # absolute, on scores in [0, 1]: the README's bound across CPUs and batches in fp32


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_text_encoder_dir):
    """An untrained tiny model, saved with train.precision auto (the default) and bf16."""
    import torch

    folder = write_tiny_benchmark(tmp_path_factory.mktemp("tiny_bench"), num_train=2, num_test=6)
    out = tmp_path_factory.mktemp("eval_ckpt")
    paths = {}
    for precision in ("auto", "bf16"):
        cfg = load_config(None, tiny_overrides(folder, tiny_text_encoder_dir, out, **{"train.precision": precision}))
        torch.manual_seed(0)
        paths[precision] = out / f"{precision}.pt"
        save_checkpoint(paths[precision], model=build_model(cfg), cfg=cfg)
    return paths


def assert_same_answers(first, second):
    """Two evaluations' predictions, query by query: scores within the tolerance, and the same top
    moment wherever it leads its runner-up by more than that (else float32 rounding may swap them)."""
    compared = 0
    for a, b in zip(first, second, strict=True):
        assert (a.video, a.query) == (b.video, b.query)
        assert np.abs(a.candidates[:, 2] - b.candidates[:, 2]).max() <= TOLERANCE
        if a.candidates[0, 2] - a.candidates[1, 2] > TOLERANCE:
            np.testing.assert_array_equal(a.candidates[0, :2], b.candidates[0, :2])
            compared += 1
    assert compared >= len(first) // 2


def _evaluate(path, tmp_path, name, **kwargs):
    return evaluate_checkpoint(str(path), predictions_out=str(tmp_path / f"{name}.jsonl"), device="cpu",
                               dump_maps=True, **kwargs)


@pytest.mark.parametrize("trained_in", ["auto", "bf16"])
def test_evaluation_is_fp32_on_any_cpu_and_with_any_batch_size(checkpoints, tmp_path, monkeypatch, trained_in):
    runs = {}
    for forced in ("0", "1"):  # as on a CPU without and with bf16 dot products
        monkeypatch.setenv("G2L_CPU_BF16", forced)
        runs[forced] = _evaluate(checkpoints[trained_in], tmp_path, forced)
    first, second = runs["0"], runs["1"]
    assert first.metrics == second.metrics
    for a, b in zip(first.predictions, second.predictions, strict=True):
        np.testing.assert_array_equal(a.candidates, b.candidates)  # fp32 both times: to the last bit
    # eval.batch_size 1 against the config's 4: the text encoder and the map meet other kernel
    # shapes, so the scores may move by float32 rounding, never more than the tolerance.
    single = _evaluate(checkpoints[trained_in], tmp_path, "single", overrides=["eval.batch_size=1"])
    assert_same_answers(first.predictions, single.predictions)
    for a, b in zip(first.predictions, single.predictions):
        assert np.abs(a.score_map - b.score_map).max() <= TOLERANCE


def test_evaluation_in_bf16_on_request(checkpoints, tmp_path):
    fp32 = _evaluate(checkpoints["auto"], tmp_path, "fp32")
    bf16 = _evaluate(checkpoints["auto"], tmp_path, "bf16", precision="bf16")
    difference = max(np.abs(a.score_map - b.score_map).max() for a, b in zip(fp32.predictions, bf16.predictions))
    assert TOLERANCE < difference < 0.05  # bf16 ran: scores within bf16's rounding, not fp32's
    for run in (fp32, bf16):  # bf16 scores tie often: the order of equal scores is checked too
        assert_ranked_as_their_maps(run, load_config(None, []).eval.nms_thresh)


def assert_ranked_as_their_maps(run, nms_thresh):
    """The evaluator ranks each query's valid cells (``rank_moments``); it used to scatter them into
    the score map and rank the map's non-zero cells: the same candidates, to the bit."""
    for p in run.predictions:
        spans, scores = ranked_candidates(p.score_map, p.duration, nms_thresh, len(p.candidates))
        np.testing.assert_array_equal(p.candidates, np.concatenate([spans, scores[:, None]], axis=1))


def test_a_cell_scored_zero_is_still_a_candidate(checkpoints, tmp_path, monkeypatch):
    """A valid cell whose score is exactly 0 is ranked like any other (through the score map, whose
    0 means "not a cell", a query whose cells all score 0 had no candidate at all)."""
    import torch

    import g2l.eval.evaluator as evaluator

    monkeypatch.setattr(evaluator, "score_cells", lambda contrast_cos, iou_cos, gamma: torch.zeros_like(contrast_cos))
    run = _evaluate(checkpoints["auto"], tmp_path, "zero")
    for p in run.predictions:
        assert len(p.candidates) >= 2 and np.all(p.candidates[:, 2] == 0)
        # All tie at 0, so the first is the first cell in row-major order, (0, 0): the first of 8 clips.
        np.testing.assert_array_equal(p.candidates[0, :2], [0, np.float32(p.duration) / np.float32(8)])


@pytest.mark.parametrize("forced", ["0", "1"])
def test_training_trains_in_what_auto_picks_and_evaluates_in_fp32(tmp_path, tiny_text_encoder_dir, monkeypatch,
                                                                   capsys, forced):
    """One epoch with train.precision auto on a CPU forced without and with bf16: the forward pass
    of training follows auto, the epoch's evaluation is fp32, the predictions g2l-eval writes
    (within float32 rounding: the reloaded checkpoint runs g2l's own BERT, training transformers')."""
    from g2l.eval.predictions import read_predictions
    from g2l.train import train

    monkeypatch.setenv("G2L_CPU_BF16", forced)
    folder = write_tiny_benchmark(tmp_path / "bench", num_train=4, num_test=3)
    cfg = load_config(None, tiny_overrides(folder, tiny_text_encoder_dir, tmp_path / "runs",
                                           **{"train.epochs": 1, "log.run_name": "r"}))
    result = train(cfg)
    assert f"precision auto: forward pass in {'bf16' if forced == '1' else 'fp32'} on cpu" in capsys.readouterr().err
    logged = read_predictions(result.run_dir / "predictions" / "test_epoch001.jsonl")
    evaluated = _evaluate(result.run_dir / "checkpoints" / "last.pt", tmp_path, "eval", precision="fp32")
    assert_same_answers(logged, evaluated.predictions)
