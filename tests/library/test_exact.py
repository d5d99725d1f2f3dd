"""``ExactSearch.top`` (the bounded exact search) equals a plain full scoring computed here: the same
moments in the same order and the same score bits, over random indexes with ties, NMS, per-video
limits, several shards, crafted non-finite rows, float32 storage and any ``gamma``."""

import numpy as np
import pytest
import torch

import g2l.library.exact as exact
from g2l.library.exact import Block, ExactSearch
from g2l.models.grounding import score_cells


def plain_scores(blocks, s_c, s_u, gamma):
    """Every moment scored: both products over every shard, ``score_cells`` over all of them."""
    c = torch.cat([torch.from_numpy(b.cells_c) @ torch.from_numpy(s_c.astype(np.float16)) if b.cells_c.dtype == np.float16
                   else torch.from_numpy(b.cells_c @ s_c.astype(np.float32)) for b in blocks]).float()
    u = torch.cat([torch.from_numpy(b.cells_u) @ torch.from_numpy(s_u.astype(np.float16)) if b.cells_u.dtype == np.float16
                   else torch.from_numpy(b.cells_u @ s_u.astype(np.float32)) for b in blocks]).float()
    scores = score_cells(c, u, gamma).numpy()
    return np.where(np.isfinite(scores), scores, -np.inf).astype(np.float32)


def plain_rank(scores, spans, video, top_k, per_video, nms_thresh):
    """Best first (ties in stored order), greedy NMS within each video, at most ``per_video`` a video."""
    kept, kept_of = [], {}
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        mine = kept_of.setdefault(int(video[i]), [])
        if per_video is not None and len(mine) >= per_video:
            continue
        overlaps = False
        for j in mine:
            inter = np.float32(min(spans[i, 1], spans[j, 1])) - np.float32(max(spans[i, 0], spans[j, 0]))
            hull = np.float32(max(spans[i, 1], spans[j, 1])) - np.float32(min(spans[i, 0], spans[j, 0]))
            overlaps |= bool(hull > 0 and np.float32(max(inter, 0)) / hull > np.float32(nms_thresh))
        if not overlaps:
            mine.append(i)
            kept.append(i)
            if len(kept) == top_k:
                break
    return kept


def random_library(rng, *, dtype=np.float16, related=True, ties=False, crafted=False):
    videos = int(rng.integers(1, 40))
    counts = rng.integers(1, 25, videos)
    dim = int(rng.choice([4, 8, 33]))
    cells_c = rng.standard_normal((counts.sum(), dim))
    cells_u = (cells_c + rng.standard_normal(cells_c.shape)) if related else rng.standard_normal(cells_c.shape)
    if ties:  # few distinct rows: many equal scores
        cells_c, cells_u = np.round(cells_c), np.round(cells_u)
    cells_c /= np.maximum(np.linalg.norm(cells_c, axis=-1, keepdims=True), 1e-6)
    cells_u /= np.maximum(np.linalg.norm(cells_u, axis=-1, keepdims=True), 1e-6)
    if crafted:
        cells_u[rng.integers(0, len(cells_u), 3)] = np.nan
        cells_c[rng.integers(0, len(cells_c), 2)] = rng.choice([np.nan, np.inf, 300.0])
    starts = rng.integers(0, 8, len(cells_c)).astype(np.float32)
    spans = np.stack([starts, starts + rng.integers(1, 6, len(starts))], axis=-1).astype(np.float32)
    video = np.repeat(np.arange(videos), counts)
    cuts = sorted(set(rng.integers(0, len(video), int(rng.integers(0, 4))).tolist()) | {0, len(video)})
    with np.errstate(over="ignore"):
        return [Block(cells_c[a:b].astype(dtype), cells_u[a:b].astype(dtype), spans[a:b], video[a:b])
                for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("first, pruned", [(1, 1.0), (3, 0.2), (128, 0.2)])
@pytest.mark.parametrize("kind", ["related", "unrelated", "ties", "crafted", "float32"])
def test_top_equals_full_scoring(monkeypatch, kind, first, pruned):
    """``first`` 1 and ``pruned`` 1.0: the bounded rounds alone, grown until the rule stops them."""
    monkeypatch.setattr(exact, "FIRST", first)
    monkeypatch.setattr(exact, "PRUNED_AT_MOST", pruned)
    rng = np.random.default_rng(["related", "unrelated", "ties", "crafted", "float32"].index(kind) + 7 * first)
    for trial in range(25):
        blocks = random_library(rng, dtype=np.float32 if kind == "float32" else np.float16,
                                related=kind != "unrelated", ties=kind == "ties", crafted=kind == "crafted")
        gamma = float(rng.choice([0.5, 0.5, 0.0, 1.0, 2.0]))
        search = ExactSearch(blocks, gamma=gamma)
        search.top(np.ones(blocks[0].cells_c.shape[1], np.float32), np.ones(blocks[0].cells_c.shape[1], np.float32),
                   top_k=1, per_video=None, nms_thresh=0.5)  # the first query scores every moment
        for query in range(3):
            s_c, s_u = rng.standard_normal((2, blocks[0].cells_c.shape[1])).astype(np.float32)
            if kind == "ties":
                s_c, s_u = np.round(s_c), np.round(s_u)
            s_c /= max(np.linalg.norm(s_c), 1e-6)
            s_u /= max(np.linalg.norm(s_u), 1e-6)
            top_k = int(rng.choice([1, 3, 10, 1000]))
            per_video = [None, 1, 2][query]
            nms = float(rng.choice([0.3, 0.5, 1.0]))
            scores = plain_scores(blocks, s_c, s_u, gamma)
            expected = plain_rank(scores, search.spans_s, search.video, top_k, per_video, nms)
            kept, got = search.top(s_c, s_u, top_k=top_k, per_video=per_video, nms_thresh=nms)
            assert kept == expected, (trial, query)
            assert got.tobytes() == scores[expected].tobytes(), (trial, query)
            assert search.scores(s_c, s_u).tobytes() == scores.tobytes()
            assert search.rank(scores, top_k=top_k, per_video=per_video, nms_thresh=nms) == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_float16_rows_score_alike_in_any_selection(threads):
    """What ``top`` relies on: a float16 product gives a row the same bits whichever rows are
    multiplied with it; the score of a moment differs only in the scalar tails (``top`` scores
    the final moments on full-length arrays for that reason)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads)
        cells = (rng.standard_normal((5003, 128)) / 11).astype(np.float16)
        sentence = torch.from_numpy(rng.standard_normal(128).astype(np.float16))
        full = (torch.from_numpy(cells) @ sentence).float().numpy()
        for size in (1, 2, 7, 31, 32, 33, 100, 4000):
            rows = np.sort(rng.choice(len(cells), size, replace=False))
            part = (torch.from_numpy(np.ascontiguousarray(cells[rows])) @ sentence).float().numpy()
            assert part.tobytes() == full[rows].tobytes(), size
    finally:
        torch.set_num_threads(previous)


def test_top_by_hand():
    """Three videos, 2-d features: the IoU cosine orders the bound; NMS drops a better-bounded one."""
    spans = np.array([[0, 10], [1, 10], [20, 30], [0, 10], [0, 4]], np.float32)
    cells_c = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [1, 0]], np.float16)
    cells_u = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [-1, 0]], np.float16)
    search = ExactSearch([Block(cells_c, cells_u, spans, np.array([0, 0, 0, 1, 2]))], gamma=0.5)
    kept, scores = search.top(np.array([1, 0], np.float32), np.array([1, 0], np.float32), top_k=3, per_video=None,
                              nms_thresh=0.5)
    # moment 1 (IoU 0.9 with moment 0) is suppressed; then moment 2 (c 0: sqrt(1/2) * sigmoid(6)), moment 3
    assert kept == [0, 2, 3]
    assert scores == pytest.approx([1 / (1 + np.exp(-10)), np.sqrt(0.5) / (1 + np.exp(-6)), 0.5], rel=1e-3)
    assert search.top(np.array([1, 0], np.float32), np.array([1, 0], np.float32), top_k=2, per_video=1,
                      nms_thresh=0.5)[0] == [0, 3]
    empty = ExactSearch([], gamma=0.5).top(np.ones(2, np.float32), np.ones(2, np.float32), top_k=3, per_video=None,
                                           nms_thresh=0.5)
    assert empty[0] == [] and len(empty[1]) == 0


def test_top_scores_carry_the_full_arrays_rounding(monkeypatch):
    """Long libraries, few moments scored: a moment's score from a short array (its scalar tail)
    can differ from the vectorised one in the last bit; ``top`` returns the full array's."""
    monkeypatch.setattr(exact, "FIRST", 1)
    monkeypatch.setattr(exact, "PRUNED_AT_MOST", 1.0)
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(300, 2000))
        # contrast cosines near 1 (a tight bound: few moments scored), IoU cosines below -0.12 (where the
        # vectorised and the scalar sigmoid differ)
        theta = np.stack([rng.uniform(-0.05, 0.05, n), rng.uniform(1.7, 3.1, n)])
        cells_c = np.stack([np.cos(theta[0]), np.sin(theta[0])], -1).astype(np.float16)
        cells_u = np.stack([np.cos(theta[1]), np.sin(theta[1])], -1).astype(np.float16)
        spans = np.tile(np.array([[0, 1]], np.float32), (n, 1))
        block = Block(cells_c, cells_u, spans, np.arange(n))  # one moment a video: no NMS
        search = ExactSearch([block], gamma=float(rng.choice([0.5, 0.7])))
        search._queried = True  # the bound from the first query on
        s_c, s_u = np.array([1, 0], np.float32), np.array([1, 0], np.float32)
        scores = plain_scores([block], s_c, s_u, search.gamma)
        expected = plain_rank(scores, spans, block.video, 10, None, 0.5)
        kept, got = search.top(s_c, s_u, top_k=10, per_video=None, nms_thresh=0.5)
        assert kept == expected and got.tobytes() == scores[expected].tobytes(), trial
