import numpy as np
import pytest
import torch

from g2l.ops.spans import (
    best_first,
    cell_candidates,
    cell_spans,
    cells_to_spans,
    iou_map,
    nms,
    pairwise_iou,
    pooling_diagonals,
    pooling_mask,
    rank_candidates,
    rank_moments,
    ranked_candidates,
    span_iou,
    window_cell_spans,
)
from tests.reference import mmn as ref
from tests.reference.mmn import scale_iou

CONFIGS = [(16, [15]), (64, [15, 8, 8]), (128, [15, 8, 8, 8])]


def band_rule_mask(num_clips):
    """docs/method.md section 1: valid iff i % s == 0 and (j + 1) % s == 0, s by the band of d = j - i."""
    mask = np.zeros((num_clips, num_clips), dtype=bool)
    for i in range(num_clips):
        for j in range(i, num_clips):
            d = j - i
            s = 1 if d < 16 else 2 if d < 32 else 4 if d < 64 else 8
            mask[i, j] = i % s == 0 and (j + 1) % s == 0
    return mask


@pytest.mark.parametrize("num_clips,counts,expected", [(16, [15], 136), (64, [15, 8, 8], 1104), (128, [15, 8, 8, 8], 2548)])
def test_mask_counts_and_band_rule(num_clips, counts, expected):
    mask = pooling_mask(num_clips, counts)
    assert mask.sum() == expected
    np.testing.assert_array_equal(mask, band_rule_mask(num_clips))
    assert not np.tril(mask, -1).any()


def test_mask_is_derived_from_counts_not_n():
    # Fewer pooling levels than the map needs: long offsets stay invalid.
    mask = pooling_mask(16, [4])
    assert mask.sum() == 16 + 15 + 14 + 13 + 12
    assert not mask[0, 5] and mask[0, 4]
    # Every pooling level fills cells with a constant offset.
    for start_idx, end_idx in pooling_diagonals(64, [15, 8, 8]):
        assert len(set((end_idx - start_idx).tolist())) == 1


def test_cell_spans_match_published_float32_arithmetic():
    rng = np.random.default_rng(0)
    for _ in range(200):
        duration = float(np.round(rng.uniform(1, 300), 2))
        num_clips = int(rng.choice([16, 64, 128]))
        grids = torch.nonzero(torch.ones(num_clips, num_clips))
        grids[:, 1] += 1
        expected = (grids * duration / num_clips).numpy()
        spans = cell_spans(num_clips, duration).reshape(-1, 2)
        np.testing.assert_array_equal(spans, expected)


def test_cell_spans_hand_values():
    spans = cells_to_spans(np.array([0, 3]), np.array([3, 15]), 16.0, 16)
    np.testing.assert_array_equal(spans, np.array([[0, 4], [3, 16]], dtype=np.float32))
    assert spans.dtype == np.float32


def test_iou_hand_values():
    assert span_iou(np.array([0.0, 4.0]), np.array([0.0, 8.0])) == np.float32(0.5)
    assert span_iou(np.array([2.0, 6.0]), np.array([4.0, 8.0])) == np.float32(2 / 6)
    # Disjoint spans: 0, not negative.
    assert span_iou(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    # Contained: inner over outer.
    assert span_iou(np.array([1.0, 2.0]), np.array([0.0, 4.0])) == np.float32(0.25)


def test_iou_matches_published_on_random_spans():
    rng = np.random.default_rng(1)
    spans = np.sort(rng.uniform(0, 30, size=(500, 2)), axis=1).astype(np.float32)
    gt = np.sort(rng.uniform(0, 30, size=2)).astype(np.float32)
    expected = ref.iou(torch.from_numpy(spans), torch.from_numpy(gt)).numpy()
    np.testing.assert_array_equal(span_iou(spans, gt), expected)
    np.testing.assert_array_equal(pairwise_iou(spans, gt[None])[:, 0], expected)


def test_iou_map_and_scaling():
    ious = iou_map((0.0, 8.0), 16.0, 16)
    assert ious[0, 7] == 1.0 and ious[0, 3] == np.float32(0.5) and ious[8, 15] == 0.0
    target = scale_iou(ious, 0.5, 1.0)
    assert target[0, 7] == 1.0 and target[0, 3] == 0.0 and target[0, 5] == pytest.approx((6 / 8 - 0.5) / 0.5)
    assert target.min() >= 0 and target.max() <= 1
    target_tacos = scale_iou(ious, 0.3, 0.7)
    assert target_tacos[0, 3] == pytest.approx(0.5)


def best_cell(window_s: tuple[float, float], duration_s: float, mask: np.ndarray) -> tuple[int, int]:
    """The valid cell with the highest IoU to ``window_s`` (first in row-major order on ties)."""
    ious = np.where(mask, iou_map(window_s, duration_s, mask.shape[0]), np.float32(-1))
    flat = int(np.argmax(ious))
    return divmod(flat, mask.shape[0])


def rank_cells(score_map: np.ndarray, duration_s: float, mask: np.ndarray | None = None):
    """Score map ``(t t)`` -> ``(spans (k, 2), scores (k,))`` of the valid cells, best first (no NMS)."""
    spans, scores = cell_candidates(score_map, duration_s, mask)
    order = best_first(scores)
    return spans[order], scores[order]


def test_best_cell_respects_mask():
    mask = pooling_mask(64, [15, 8, 8])
    # [0, 19] of a 64 s video is exactly cell (0, 18), whose offset 18 is even and so not a
    # proposal. Valid neighbours: (0, 17) = [0, 18] with IoU 18/19, (0, 19) = [0, 20] with 19/20.
    assert not mask[0, 18]
    assert best_cell((0.0, 19.0), 64.0, mask) == (0, 19)
    assert best_cell((0.0, 18.0), 64.0, mask) == (0, 17)


def test_nms_hand_ties():
    # Ranked spans: [0, 8] then [0, 4] (IoU 0.5 exactly), then [0, 7] (IoU 7/8 with the first).
    spans = np.array([[0, 8], [0, 4], [0, 7], [10, 12]], dtype=np.float32)
    np.testing.assert_array_equal(nms(spans, 0.5), [0, 1, 3])  # 0.5 is not > 0.5: kept
    np.testing.assert_array_equal(nms(spans, 0.49), [0, 3])
    np.testing.assert_array_equal(nms(spans, 0.5, max_keep=2), [0, 1])
    assert nms(np.zeros((0, 2), np.float32), 0.5).size == 0


@pytest.mark.parametrize("seed", range(6))
def test_numpy_nms_equals_the_numba_loop(seed):
    """Short keep lists run in numpy, long ones in numba: the same kept indices on random spans,
    coarse (many exact ties and IoUs on the threshold) and fine, at every keep limit."""
    from g2l.ops.nms_kernel import greedy_nms
    from g2l.ops.spans import _greedy_nms_numpy

    rng = np.random.default_rng(seed)
    grid = 8 if seed % 2 else 1000
    starts = rng.integers(0, grid, 300)
    spans = np.stack([starts, starts + rng.integers(0, grid // 2 + 1, 300)], 1).astype(np.float32) / np.float32(grid / 30)
    for thresh in (0.3, 0.5, 0.7):
        for keep in (1, 5, 64, 300):
            want = greedy_nms(spans, np.float32(thresh), keep)
            np.testing.assert_array_equal(_greedy_nms_numpy(spans, np.float32(thresh), keep), want)
            np.testing.assert_array_equal(nms(spans, thresh, keep), want)


def test_nms_threshold_compared_in_float32():
    # IoU exactly float32(0.4): the published code compares float32 IoU > float32(0.4): not suppressed.
    spans = np.array([[0, 5], [0, 2]], dtype=np.float32)
    assert span_iou(spans[0], spans[1]) == np.float32(0.4)
    np.testing.assert_array_equal(nms(spans, 0.4), [0, 1])


@pytest.mark.parametrize("num_clips,counts", CONFIGS)
def test_ranked_candidates_match_published_nms(num_clips, counts):
    rng = np.random.default_rng(num_clips)
    mask = pooling_mask(num_clips, counts)
    for trial in range(6):
        duration = float(np.round(rng.uniform(5, 200), 2))
        scores = rng.random((num_clips, num_clips)).astype(np.float32)
        if trial % 2:  # coarse scores: many exact ties
            scores = np.round(scores * 4) / 4 + np.float32(0.25)
        score_map = np.where(mask, scores, 0).astype(np.float32)
        moments, sc = ref.score2d_to_moments_scores(torch.from_numpy(score_map), num_clips, duration)
        expected = ref.nms(moments, sc, 0.5).numpy()
        spans, _ = ranked_candidates(score_map, duration, 0.5)
        np.testing.assert_array_equal(spans, expected)
        # Truncated NMS equals full NMS truncated.
        spans10, _ = ranked_candidates(score_map, duration, 0.5, max_keep=10)
        np.testing.assert_array_equal(spans10, expected[:10])


def test_rank_cells_mask_and_nonzero_agree():
    mask = pooling_mask(16, [15])
    rng = np.random.default_rng(3)
    score_map = np.where(mask, rng.random((16, 16)) + 0.1, 0).astype(np.float32)
    a, sa = rank_cells(score_map, 30.0)
    b, sb = rank_cells(score_map, 30.0, mask)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert np.all(np.diff(sa) <= 0)


def test_rank_candidates_is_a_stable_sort_then_nms():
    spans = np.array([[0, 10], [0, 9], [20, 30], [1, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.5, 0.9], np.float32)
    # Best first with ties in the given order: 1, 3, 0, 2. Against 1, candidate 3 has IoU 0.8 and 0 has 0.9.
    np.testing.assert_array_equal(rank_candidates(spans, scores, 0.95), [1, 3, 0, 2])
    np.testing.assert_array_equal(rank_candidates(spans, scores, 0.85), [1, 3, 2])
    np.testing.assert_array_equal(rank_candidates(spans, scores, 0.5), [1, 2])
    np.testing.assert_array_equal(rank_candidates(spans, scores, 0.95, max_keep=2), [1, 3])


def test_rank_moments_by_hand():
    """The ranked moments are ``rank_candidates``' indices with their spans and scores; a cell scored
    exactly 0 is a candidate (a map's non-zero gather would drop it)."""
    spans = np.array([[0, 10], [0, 9], [20, 30], [1, 10], [40, 50]], np.float32)
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.0], np.float32)
    moments = rank_moments(scores, spans, 0.85)
    np.testing.assert_array_equal(moments.index, [1, 3, 2, 4])
    np.testing.assert_array_equal(moments.spans, [[0, 9], [1, 10], [20, 30], [40, 50]])
    np.testing.assert_array_equal(moments.scores, np.array([0.9, 0.9, 0.5, 0.0], np.float32))
    assert moments.spans.dtype == moments.scores.dtype == np.float32
    np.testing.assert_array_equal(rank_moments(scores, spans, 0.85, max_keep=2).index, [1, 3])
    assert rank_moments(scores[:0], spans[:0], 0.5).index.size == 0


def test_window_cell_spans_by_hand():
    # Cells (0, 0), (0, 1), (1, 1) of a 2-clip map over the windows [0, 10] and [5, 15] (start 5, length 10).
    start_idx, end_idx = np.array([0, 0, 1]), np.array([0, 1, 1])
    spans = window_cell_spans(start_idx, end_idx, 2, [(0.0, 10.0), (5.0, 10.0)])
    np.testing.assert_array_equal(spans, [[0, 5], [0, 10], [5, 10], [5, 10], [5, 15], [10, 15]])
    assert spans.dtype == np.float32
    np.testing.assert_array_equal(window_cell_spans(start_idx, end_idx, 2, [(0.0, 7.3)]),
                                  cells_to_spans(start_idx, end_idx, 7.3, 2))  # one window from 0: the cells' spans


@pytest.mark.parametrize("num_clips,counts", CONFIGS[:2])
def test_ranking_the_cells_equals_ranking_their_map(num_clips, counts):
    """The evaluator ranks a query's valid cells (``rank_moments``); it used to scatter them into a
    map and rank the map's non-zero cells (``ranked_candidates``): the same moments, to the bit,
    whenever no valid cell scores exactly 0, ties included (the cells are in the map's row-major order)."""
    rng = np.random.default_rng(num_clips)
    mask = pooling_mask(num_clips, counts)
    start_idx, end_idx = np.nonzero(mask)
    for trial in range(4):
        duration = float(np.round(rng.uniform(5, 200), 2))
        cell_scores = rng.random(len(start_idx)).astype(np.float32) + np.float32(0.01)
        if trial % 2:  # coarse scores: many exact ties
            cell_scores = np.round(cell_scores * 4) / 4 + np.float32(0.25)
        score_map = np.zeros((num_clips, num_clips), np.float32)
        score_map[start_idx, end_idx] = cell_scores
        moments = rank_moments(cell_scores, cells_to_spans(start_idx, end_idx, duration, num_clips), 0.5, 10)
        spans, scores = ranked_candidates(score_map, duration, 0.5, 10)
        np.testing.assert_array_equal(moments.spans, spans)
        np.testing.assert_array_equal(moments.scores, scores)
