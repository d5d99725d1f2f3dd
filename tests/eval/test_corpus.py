"""Corpus metrics (g2l/eval/corpus.py) against a slow brute-force reference and hand-made cases; the
match decision (g2l/eval/match.py) by hand; ``g2l-eval --corpus --fit-match`` end to end."""

import json
import math

import numpy as np
import pytest
import torch

from g2l.eval.corpus import SplitEmbeddings, corpus_metrics
from g2l.eval.match import auroc, fit_threshold, precision_recall
from g2l.ops.spans import pooling_mask, ranked_candidates


def _embeddings(cells_c, cells_u, sent_c, sent_u, query_video, gts, durations, num_clips, pooling_counts, queries=None):
    start_idx, end_idx = np.nonzero(pooling_mask(num_clips, pooling_counts))
    normal = lambda x: torch.nn.functional.normalize(torch.as_tensor(np.asarray(x, np.float32)), dim=-1)  # noqa: E731
    return SplitEmbeddings(
        video_ids=[f"v{i}" for i in range(len(durations))], durations_s=np.asarray(durations, np.float32),
        cells_contrast=normal(cells_c), cells_iou=normal(cells_u), cell_start_idx=start_idx, cell_end_idx=end_idx,
        num_clips=num_clips, queries=queries or [f"q{i}" for i in range(len(query_video))], sentence_contrast=normal(sent_c),
        sentence_iou=normal(sent_u), query_video=np.asarray(query_video), gt_windows=[np.asarray(g, np.float32) for g in gts],
    )


def random_embeddings(seed, num_videos=7, num_queries=15, num_clips=8, dim=6):
    rng = np.random.default_rng(seed)
    pooling = [3, 2]
    cells = int(pooling_mask(num_clips, pooling).sum())
    durations = rng.uniform(10, 40, num_videos)
    query_video = rng.integers(0, num_videos, num_queries)
    gts = []
    for v in query_video:
        a, b = sorted(rng.uniform(0, durations[v], 2))
        gts.append([a, b])
    return _embeddings(rng.normal(size=(num_videos, cells, dim)), rng.normal(size=(num_videos, cells, dim)),
                       rng.normal(size=(num_queries, dim)), rng.normal(size=(num_queries, dim)), query_video, gts,
                       durations, num_clips, pooling, [f"Query {i % 9}" for i in range(num_queries)]), pooling


def iou(a, b):
    a, b = np.float32(a), np.float32(b)
    inter = max(np.float32(0), min(a[1], b[1]) - max(a[0], b[0]))
    return np.float32(inter / (max(a[1], b[1]) - min(a[0], b[0])))


def brute_force(e, pooling, gamma, nms, recall_at, thresholds, video_recall_at):
    """Every query against every video, one by one: score maps in float64 numpy, each video's map
    ranked with NMS as the evaluator ranks it, all lists merged and sorted by (score, video, rank)."""
    mask = pooling_mask(e.num_clips, pooling)
    t = e.num_clips
    hits = {(k, m): 0 for k in recall_at for m in thresholds}
    present, absent = [], []
    video_hits = {k: 0 for k in video_recall_at}
    for q in range(len(e.queries)):
        merged, bests = [], []
        for v in range(len(e.video_ids)):
            c = e.cells_contrast[v].numpy().astype(np.float64) @ e.sentence_contrast[q].numpy()
            u = e.cells_iou[v].numpy().astype(np.float64) @ e.sentence_iou[q].numpy()
            cell_scores = np.maximum(0.5 * c + 0.5, 0) ** gamma / (1 + np.exp(-10 * u))
            score_map = np.zeros((t, t), np.float32)
            score_map[e.cell_start_idx, e.cell_end_idx] = cell_scores
            spans, scores = ranked_candidates(score_map, float(e.durations_s[v]), nms, None, mask)
            bests.append(scores[0])
            merged += [(-float(s), v, r, span) for r, (span, s) in enumerate(zip(spans, scores))]
        merged.sort(key=lambda item: item[:3])
        own = int(e.query_video[q])
        same = {int(e.query_video[r]) for r in range(len(e.queries)) if e.queries[r].lower() == e.queries[q].lower()}
        present.append(max(bests))
        absent.append(max([b for v, b in enumerate(bests) if v not in same], default=-np.inf))
        video_order = sorted(range(len(bests)), key=lambda v: (-bests[v], v))
        for k in video_recall_at:
            video_hits[k] += own in video_order[:k]
        for k in recall_at:
            for m in thresholds:
                hits[k, m] += any(v == own and iou(span, e.gt_windows[q]) >= np.float32(m)
                                  for _, v, _, span in merged[:k])
    n = len(e.queries)
    out = {f"corpus_R{k}@{m:g}": hits[k, m] / n for k in recall_at for m in thresholds}
    out.update({f"video_R{k}": video_hits[k] / n for k in video_recall_at})
    return out, np.asarray(present), np.asarray(absent)


@pytest.mark.parametrize("seed, recall_at, video_recall_at, chunk", [
    (0, (1, 5, 10, 100), (1, 10), 1 << 24),
    (1, (1, 2, 3), (1, 2), 50),  # top-3 of 7 videos: the pruning to the best videos matters; chunks of 1 query
    (2, (1, 4), (1, 3, 7), 700),
])
def test_corpus_metrics_equal_a_brute_force_reference(seed, recall_at, video_recall_at, chunk):
    e, pooling = random_embeddings(seed)
    thresholds = (0.1, 0.3, 0.5)
    result = corpus_metrics(e, gamma=2.0, nms_thresh=0.5, recall_at=recall_at, iou_thresholds=thresholds,
                            video_recall_at=video_recall_at, chunk_scores=chunk)
    got = result.metrics
    want, present, absent = brute_force(e, pooling, 2.0, 0.5, recall_at, thresholds, video_recall_at)
    assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-12)
    # "absent" leaves out the own video and every other one annotated with the same sentence
    assert result.present == pytest.approx(present, rel=1e-5) and result.absent == pytest.approx(absent, rel=1e-5)
    assert (absent < present).any() and (present >= absent).all()
    assert any(0 < v < 1 for v in want.values())  # the case discriminates
    assert got["num_queries"] == 15 and got["num_videos"] == 7


def two_videos(second_cell_contrast):
    """Two 10 s videos of 2 clips (cells [0,5], [0,10], [5,10]); the query (e1) belongs to video 1,
    whose cell [5,10] is e1 (its ground truth); video 0's cell [0,5] has contrast ``second_cell_contrast``."""
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    cells_c = [[second_cell_contrast, e2, e2], [e2, e2, e1]]
    cells_u = [[e1, e2, e2], [e2, e2, e1]]
    return _embeddings(cells_c, cells_u, [e1], [e1], [1], [[5.0, 10.0]], [10.0, 10.0], 2, [1])


def test_a_tie_between_videos_goes_to_the_lower_index():
    result = corpus_metrics(two_videos([1.0, 0.0]), gamma=1.0, nms_thresh=0.5, recall_at=(1, 2),
                            iou_thresholds=(0.5,), video_recall_at=(1, 2), single_recall_at=(1,), single_iou_thresholds=(0.5,))
    m = result.metrics
    assert (m["video_R1"], m["video_R2"], m["corpus_R1@0.5"], m["corpus_R2@0.5"], m["R1@0.5"]) == (0, 1, 0, 1, 1)
    best = 1 / (1 + math.exp(-10))  # c = u = 1
    assert result.present[0] == pytest.approx(best) and result.absent[0] == pytest.approx(best)


def test_the_own_video_first_when_it_scores_higher():
    result = corpus_metrics(two_videos([0.6, 0.8]), gamma=1.0, nms_thresh=0.5, recall_at=(1,), iou_thresholds=(0.5, 0.7),
                            video_recall_at=(1,), single_recall_at=(1,), single_iou_thresholds=(0.5,))
    m = result.metrics
    assert (m["video_R1"], m["corpus_R1@0.5"], m["corpus_R1@0.7"]) == (1, 1, 1)
    assert result.absent[0] == pytest.approx(0.8 / (1 + math.exp(-10)))  # (0.5 * 0.6 + 0.5) * sigmoid(10)


def test_match_threshold_maximises_f1_by_hand():
    fit = fit_threshold([0.9, 0.8, 0.4], [0.5, 0.3, 0.2], "val")
    # F1 at 0.9, 0.8, 0.5, 0.4, 0.3, 0.2: 2/4, 4/5, 4/6, 6/7, 6/8, 6/9
    assert fit.threshold == 0.4 and fit.f1 == pytest.approx(6 / 7)
    assert (fit.precision, fit.recall, fit.auroc) == pytest.approx((0.75, 1.0, 8 / 9))
    assert precision_recall([0.9, 0.8, 0.4], [0.5, 0.3, 0.2], 0.85) == (1.0, 1 / 3)
    assert fit_threshold([0.5], [0.5]).threshold == 0.5  # a tie takes both: F1 2/3 beats nothing


def test_auroc_equals_the_pairwise_count_with_ties_at_one_half():
    rng = np.random.default_rng(3)
    positive, negative = rng.integers(0, 6, 40), rng.integers(0, 6, 30)
    pairs = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    assert auroc(positive, negative) == pytest.approx(pairs / (40 * 30))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_text_encoder_dir):
    from tests.fixtures import tiny_checkpoint_with_text, write_tiny_benchmark

    folder = write_tiny_benchmark(tmp_path_factory.mktemp("corpus"))
    return folder, tiny_checkpoint_with_text(folder, tiny_text_encoder_dir)


def test_eval_corpus_fits_a_match_that_travels_with_the_model(tiny, tmp_path):
    from g2l.cli import eval_main, export_main
    from g2l.inference import result_json
    from g2l.inference import Grounder

    folder, checkpoint = tiny
    out, metrics_json, single_json = tmp_path / "with-match.pt", tmp_path / "corpus.json", tmp_path / "single.json"
    assert eval_main(["--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(tmp_path / "p.jsonl"),
                      "--json", str(single_json)]) == 0
    assert eval_main(["--checkpoint", str(checkpoint), "--corpus", "--fit-match", str(out), "--device", "cpu",
                      "--json", str(metrics_json)]) == 0
    corpus, single = json.loads(metrics_json.read_text()), json.loads(single_json.read_text())
    # The corpus pass sees each query's own video as the evaluator does: the same single-video metrics.
    assert {k: corpus[k] for k in ("R1@0.5", "R5@0.5", "R1@0.7", "mIoU")} == pytest.approx(
        {k: single[k] for k in ("R1@0.5", "R5@0.5", "R1@0.7", "mIoU")}, abs=1e-9)
    assert corpus["num_videos"] == 8 and corpus["num_queries"] == 16
    assert corpus["corpus_R100@0.5"] >= corpus["corpus_R10@0.5"] >= corpus["corpus_R1@0.5"]
    assert corpus["corpus_R1@0.5"] <= corpus["R1@0.5"] and 0 <= corpus["match_auroc"] <= 1

    from g2l.eval.match import MIN_AUROC

    grounder = Grounder.from_checkpoint(out, device="cpu")
    assert grounder.match["threshold"] == corpus["match_threshold"]
    assert grounder.match["auroc"] == pytest.approx(corpus["match_auroc"])  # fitted on this split
    deciding = grounder.match["auroc"] >= MIN_AUROC  # a random tiny model: usually not
    assert grounder.match_threshold == (corpus["match_threshold"] if deciding else None)
    assert grounder.match["fitted_on"].startswith("test split")
    assert Grounder.from_checkpoint(checkpoint, device="cpu").match_threshold is None
    exported = tmp_path / "exported"
    assert export_main([str(out), str(exported)]) == 0
    assert Grounder.from_pretrained(exported, device="cpu").match == grounder.match

    rows = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    fitted = grounder.match
    for fit_auroc, decided in ((MIN_AUROC, True), (MIN_AUROC - 0.01, False)):
        grounder.match = {**fitted, "auroc": fit_auroc}
        result = grounder.ground(grounder.encode_features(rows, 30.0), ["a person opens the door."])[0]
        want = (result.moments[0].score >= fitted["threshold"]) if decided else None
        assert result_json(result).get("match") == want and result.match == want  # no key: no decision

    assert eval_main(["--checkpoint", str(checkpoint), "--fit-match", str(out), "--device", "cpu"]) == 2  # exists


@pytest.mark.parametrize("match", [[0.5], {"threshold": "0.5"}, {"threshold": float("nan")},
                                   {"threshold": 0.5, "note": [1, 2]}])
def test_a_malformed_match_entry_is_refused(tiny, tmp_path, match):
    from g2l.io.checkpoint import CheckpointError, save_payload
    from g2l.models.checkpoint import load_checkpoint

    _, checkpoint = tiny
    path = save_payload(tmp_path / "bad.pt", {**load_checkpoint(checkpoint), "match": match})
    with pytest.raises(CheckpointError, match="malformed match"):
        load_checkpoint(path)
