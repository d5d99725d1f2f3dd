"""QVHighlights metrics (g2l/eval/qvhighlights.py) against a port of Moment-DETR's standalone
evaluation script (tests/reference/moment_detr_eval.py): random splits with several windows per
query, tied scores, windows on the 2-second grid (exact IoU ties at the thresholds), mismatched
saliency lengths, and hand-made cases whose values are worked out below."""

import copy
import json

import numpy as np
import pytest

from g2l.eval import qvhighlights as qvh
from tests.reference import moment_detr_eval as ref

SALIENCY_TIE_DECIMALS = 1  # rounding the random scores makes many ties


def random_split(seed: int, num_queries: int = 30) -> tuple[list[dict], list[dict]]:
    """(ground truth lines, submission lines) in QVHighlights' layouts."""
    rng = np.random.default_rng(seed)
    gt, submission = [], []
    for qid in range(num_queries):
        duration = int(rng.choice([150, 150, 126, 40, 16]))
        num_clips = duration // 2
        count = int(rng.integers(1, 5))
        bounds = np.sort(rng.choice(num_clips + 1, size=min(count + 1, num_clips + 1), replace=False))
        windows = [[2 * int(a), 2 * int(b)] for a, b in zip(bounds[:-1], bounds[1:]) if rng.random() < 0.7]
        windows = windows or [[2 * int(bounds[0]), 2 * int(bounds[1])]]  # adjacent windows share an end
        if rng.random() < 0.2:  # an overlapping window now and then
            a = int(rng.integers(0, num_clips - 1))
            windows.append([2 * a, 2 * int(rng.integers(a + 1, num_clips + 1))])
        clip_ids = sorted({c for s, e in windows for c in range(s // 2, e // 2)})
        saliency = rng.integers(0, 5, size=(len(clip_ids), 3)).tolist()
        gt.append({"qid": qid, "query": f"query {qid}", "duration": duration, "vid": f"v{qid}",
                   "relevant_windows": windows, "relevant_clip_ids": clip_ids, "saliency_scores": saliency})
        preds = []
        for _ in range(int(rng.integers(1, 15))):
            if rng.random() < 0.5:  # near a true window, on the grid: IoUs like 0.5 and 0.75 exactly
                s, e = windows[int(rng.integers(len(windows)))]
                s, e = s + 2 * int(rng.integers(-2, 3)), e + 2 * int(rng.integers(-2, 3))
                s, e = min(s, e), max(s, e) + (2 if s == e else 0)
            else:
                s, e = sorted(rng.uniform(0, duration, size=2).tolist())
            preds.append([float(s), float(e), float(np.round(rng.random(), 1))])
        length = num_clips + int(rng.choice([0, 0, 0, -3, 4]))  # sometimes short or long: cut or zero-padded
        scores = np.round(rng.normal(size=max(length, 1)), SALIENCY_TIE_DECIMALS).tolist()
        submission.append({"qid": qid, "query": f"query {qid}", "vid": f"v{qid}", "pred_relevant_windows": preds,
                           "pred_saliency_scores": scores})
    return gt, submission


def truths_of(gt: list[dict]) -> list[qvh.QueryTruth]:
    return [qvh.QueryTruth(d["qid"], d["vid"], d["query"], float(d["duration"]),
                           np.asarray(d["relevant_windows"], dtype=np.float64),
                           qvh._saliency(d["relevant_clip_ids"], d["saliency_scores"], d["duration"], "test"))
            for d in gt]


def entries_of(submission: list[dict]) -> list[qvh.SubmissionEntry]:
    return [qvh.SubmissionEntry(d["qid"], d["query"], d["vid"],
                                np.asarray(d["pred_relevant_windows"], dtype=np.float64).reshape(-1, 3),
                                np.asarray(d["pred_saliency_scores"], dtype=np.float64)) for d in submission]


def percent(metrics: dict) -> dict:
    """g2l's fractions as the script prints them."""
    return {k: float(f"{100 * v:.2f}") for k, v in metrics.items() if k.startswith(("MR-", "HL-"))}


def script_brief(gt, submission) -> dict:
    return dict(ref.eval_submission(copy.deepcopy(submission), copy.deepcopy(gt))["brief"])


@pytest.mark.parametrize("seed", range(12))
def test_brief_metrics_equal_the_script(seed):
    gt, submission = random_split(seed)
    ours = qvh.qvhighlights_metrics(entries_of(submission), truths_of(gt))
    assert percent(ours) == script_brief(gt, submission)
    assert ours["qvhighlights_queries"] == len(gt)


@pytest.mark.parametrize("seed", range(100, 108))
def test_per_query_values_equal_the_script_unrounded(seed):
    gt, submission = random_split(seed, num_queries=25)
    ours = qvh.moment_average_precision([np.asarray(d["pred_relevant_windows"]) for d in submission],
                                        [np.asarray(d["relevant_windows"]) for d in gt])
    for q, (g, d) in enumerate(zip(gt, submission)):
        truth = [{"video-id": 0, "t-start": s, "t-end": e} for s, e in g["relevant_windows"]]
        preds = [{"video-id": 0, "t-start": s, "t-end": e, "score": c} for s, e, c in d["pred_relevant_windows"][:10]]
        expected = ref.compute_average_precision_detection(truth, preds, qvh.IOU_THRESHOLDS)
        np.testing.assert_allclose(ours[q], expected, rtol=0, atol=1e-12)
    truths = truths_of(gt)
    for level in qvh.SALIENCY_LEVELS.values():
        for q, (truth, d) in enumerate(zip(truths, submission)):
            scores = qvh._fit(d["pred_saliency_scores"], len(truth.saliency))[None]
            ours_ap = qvh.highlight_average_precision(scores, (truth.saliency >= level)[None].astype(float))[0]
            for a in range(3):
                _, _, expected = ref.compute_ap_from_tuple(
                    (q, a, (truth.saliency[:, a] >= level).astype(float), np.array(d["pred_saliency_scores"])))
                assert ours_ap[a] == pytest.approx(expected, abs=1e-12)


def one_query(windows, preds, saliency_scores=None):
    gt = [{"qid": 1, "query": "q", "duration": 150, "vid": "v", "relevant_windows": windows,
           "relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]}]
    sub = [{"qid": 1, "query": "q", "vid": "v", "pred_relevant_windows": preds,
            "pred_saliency_scores": saliency_scores or [1.0]}]
    return gt, sub


@pytest.mark.parametrize("windows, preds, ap_at_half", [
    # A window matched twice: the second copy is a false positive. tp, fp, tp over 2 windows:
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    ([[0, 10], [20, 30]], [[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]], 5 / 6),
    # Tied scores keep the listed order: a miss, then the hit -> precision 1/2 at recall 1: AP 1/2 ...
    ([[0, 10]], [[50, 60, 0.5], [0, 10, 0.5]], 0.5),
    # ... and listed the other way round, AP 1.
    ([[0, 10]], [[0, 10, 0.5], [50, 60, 0.5]], 1.0),
    # Only the first 10 listed windows count, whatever their scores: the perfect 11th is dropped.
    ([[0, 10]], [[100, 110, 0.1]] * 10 + [[0, 10, 1.0]], 0.0),
    # Two adjacent windows, each at IoU exactly 0.5 with [0, 4]: it takes one of them (the script's
    # argsort order decides which); [0, 2] then hits window [0, 2] only if it is still free.
    ([[0, 2], [2, 4]], [[0, 4, 0.9], [0, 2, 0.8], [2, 4, 0.7]], None),
])
def test_hand_made_cases(windows, preds, ap_at_half):
    gt, sub = one_query(windows, preds)
    ap = qvh.moment_average_precision([np.asarray(preds)], [np.asarray(windows)])[0]
    if ap_at_half is not None:
        assert ap[0] == pytest.approx(ap_at_half, abs=1e-12)
    ours = percent(qvh.qvhighlights_metrics(entries_of(sub), truths_of(gt)))
    script_ap, script_r1 = ref.compute_mr_ap(copy.deepcopy(sub), gt), ref.compute_mr_r1(sub, gt)  # the full range
    assert [ours["MR-full-mAP"], ours["MR-full-mAP@0.5"], ours["MR-full-mAP@0.75"]] == [
        script_ap["average"], script_ap["0.5"], script_ap["0.75"]]
    assert [ours["MR-full-R1@0.5"], ours["MR-full-R1@0.7"]] == [script_r1["0.5"], script_r1["0.7"]]


def test_r1_takes_the_first_listed_window_not_the_best_scored():
    windows = np.array([[0.0, 10], [20, 40]])
    hits = qvh.moment_recall_at_one([np.array([[20, 34, 0.1], [0, 10, 0.9]])], [windows], (0.5, 0.7))
    assert hits.tolist() == [[True, True]]  # [20, 34] against its best window [20, 40]: IoU 0.7 exactly


def test_a_query_without_windows_scores_like_a_window_that_misses():
    # The script stops on an empty window list (IndexError in its R1); g2l scores AP 0 and an R1
    # miss, which is what the script gives a window that overlaps nothing.
    gt, submission = random_split(7, num_queries=10)
    empty = copy.deepcopy(submission)
    empty[3]["pred_relevant_windows"] = []
    missing = copy.deepcopy(submission)
    missing[3]["pred_relevant_windows"] = [[-10.0, -5.0, 0.0]]
    assert percent(qvh.qvhighlights_metrics(entries_of(empty), truths_of(gt))) == script_brief(gt, missing)


def test_highlight_hand_made():
    # Clips 0..3; annotator 0 rates clips 1 and 2 "Very Good". Scores [0.1, 0.9, 0.9, 0.5]: the tie
    # at the top recalls both positives at once (precision 2/2), one threshold counted -> AP 1;
    # the argmax (first of the tie, clip 1) is positive -> HIT@1 1.
    truth = np.zeros((4, 3))
    truth[1:3, 0] = 4
    ap = qvh.highlight_average_precision(np.array([[0.1, 0.9, 0.9, 0.5]]), (truth >= 4)[None].astype(float))
    assert ap.tolist() == [[1.0, 0.0, 0.0]]  # annotators 1 and 2 rate nothing positive: AP 0
    # Scores [0.9, 0.1, 0.5, 0.0]: positives at ranks 2 and 3, precisions 1/2 and 2/3; interpolated
    # (the best precision at that recall or more) both are 2/3, averaged: 2/3.
    ap = qvh.highlight_average_precision(np.array([[0.9, 0.1, 0.5, 0.0]]), (truth >= 4)[None].astype(float))
    assert ap[0, 0] == pytest.approx(2 / 3)
    m = qvh.highlight_metrics([np.array([0.9, 0.1, 0.5, 0.0])], [truth])
    assert m["HL-min-VeryGood-Hit1"] == 0 and m["HL-min-VeryGood-mAP"] == pytest.approx(2 / 9)


def test_highlight_curve_is_the_mean_of_the_covering_moments():
    # 8 s, a 4-cell map: cell (i, j) spans [2i, 2j + 2]; clip midpoints 1, 3, 5, 7 s. Valid cells
    # (non-zero) (0, 0) = 0.2, (1, 2) = 0.9, (0, 3) = 0.5: clip 0 is covered by (0, 0) and (0, 3),
    # clips 1 and 2 by (1, 2) and (0, 3), clip 3 by (0, 3) alone.
    score_map = np.zeros((4, 4), np.float32)
    score_map[0, 0], score_map[1, 2], score_map[0, 3] = 0.2, 0.9, 0.5
    np.testing.assert_allclose(qvh.highlight_curve(score_map, 8.0), [0.35, 0.7, 0.7, 0.5], rtol=1e-6)
    # With a mask, a valid cell scoring 0 counts: clip 3 is also covered by (3, 3) = 0 -> 0.25.
    mask = score_map != 0
    mask[3, 3] = True
    np.testing.assert_allclose(qvh.highlight_curve(score_map, 8.0, mask=mask), [0.35, 0.7, 0.7, 0.25], rtol=1e-6)
    # 7 s holds 3 whole clips (the script's int(duration / 2)); a clip no valid cell covers gets 0.
    only = np.zeros((4, 4), np.float32)
    only[3, 3] = 0.7
    assert qvh.highlight_curve(only, 7.0).shape == (3,)
    np.testing.assert_allclose(qvh.highlight_curve(only, 8.0), [0, 0, 0, 0.7], rtol=1e-6)


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda g, s: g[0].pop("relevant_windows"), "test split"),
    (lambda g, s: s.append(dict(s[0])), "not used on an earlier line"),
    (lambda g, s: s[0].__setitem__("pred_relevant_windows", [[5, 1, 0.3]]), "ends before it starts"),
    (lambda g, s: s[0].__setitem__("pred_saliency_scores", ["high"]), "pred_saliency_scores"),
    (lambda g, s: s.pop(), "lacks 1 of the annotation file's"),
    (lambda g, s: s[0].__setitem__("qid", 999), "not in the annotation file"),
    (lambda g, s: g[0].__setitem__("relevant_clip_ids", [500]), "relevant_clip_ids"),
])
def test_bad_files_are_one_sentence(tmp_path, mutate, message):
    gt, submission = random_split(1, num_queries=3)
    mutate(gt, submission)
    with pytest.raises(qvh.QVHighlightsError, match=message):
        entries = qvh.read_submission(write_lines(tmp_path / "sub.jsonl", submission))
        qvh.qvhighlights_metrics(entries, qvh.read_ground_truth(write_lines(tmp_path / "gt.jsonl", gt)))


def test_the_released_test_split_is_refused(shared_data):
    with pytest.raises(qvh.QVHighlightsError, match="test split"):
        qvh.read_ground_truth(shared_data / "annotations/qvhighlights/highlight_test_release.jsonl")


def test_g2l_eval_scores_a_submission_file(tmp_path, capsys):
    from g2l.cli import eval_main

    gt, submission = random_split(3)
    gt_path, sub_path = write_lines(tmp_path / "gt.jsonl", gt), write_lines(tmp_path / "sub.jsonl", submission)
    assert eval_main(["--predictions", str(sub_path), "--annotations", str(gt_path), "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert percent(metrics) == script_brief(gt, submission)
    assert "R1@0.5" in metrics and f"mAP {100 * metrics['MR-full-mAP']:.2f}" in printed and "HIT@1" in printed
    assert eval_main(["--predictions", str(sub_path)]) == 2  # a submission needs its annotations
    assert "pass --annotations" in capsys.readouterr().err


def test_g2l_eval_checkpoint_on_a_qvhighlights_split(tmp_path, tiny_text_encoder_dir, capsys):
    # The tiny benchmark's test split rewritten in QVHighlights' layout (with saliency), scored by
    # g2l-eval --checkpoint: the metrics it prints and saves equal the script's on the submission
    # file it writes, whose curves come from the maps (which the predictions file then leaves out).
    from g2l.cli import eval_main
    from tests.fixtures import tiny_checkpoint_with_text, write_tiny_benchmark

    folder = write_tiny_benchmark(tmp_path / "bench")
    checkpoint = tiny_checkpoint_with_text(folder, tiny_text_encoder_dir)
    rng = np.random.default_rng(0)
    gt = []
    for vid, entry in json.loads((folder / "test.json").read_text()).items():
        for (s, e), sentence in zip(entry["timestamps"], entry["sentences"]):
            clips = list(range(int(s // 2), min(int(-(-e // 2)), int(entry["duration"] / 2))))
            gt.append({"qid": 100 + len(gt), "query": sentence, "duration": entry["duration"], "vid": vid,
                       "relevant_windows": [[s, e]], "relevant_clip_ids": clips,
                       "saliency_scores": rng.integers(0, 5, size=(len(clips), 3)).tolist()})
    gt_path = write_lines(tmp_path / "qvh_test.jsonl", gt)
    out = tmp_path / "preds.jsonl"
    assert eval_main(["--checkpoint", str(checkpoint), "--out", str(out), "--json", str(tmp_path / "m.json"),
                      "--device", "cpu", "data.annotation_format=qvhighlights", f"data.test_annotations={gt_path}"]) == 0
    captured = capsys.readouterr()
    submission_path = tmp_path / "preds_qvhighlights.jsonl"
    assert f"QVHighlights submission written to {submission_path}" in captured.err
    submission = [json.loads(line) for line in submission_path.read_text().splitlines()]
    assert {d["qid"] for d in submission} == {d["qid"] for d in gt}
    for d in submission:
        truth = next(g for g in gt if g["qid"] == d["qid"])
        assert len(d["pred_saliency_scores"]) == int(truth["duration"] / 2)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert percent(metrics) == script_brief(gt, submission)
    assert metrics["qvhighlights_queries"] == metrics["qvhighlights_split_queries"] == len(gt)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("saliency" in p and "score_map" not in p for p in lines)
    # Re-scoring the g2l predictions file against the annotations gives the same QVHighlights numbers.
    assert eval_main(["--predictions", str(out), "--annotations", str(gt_path), "--json", str(tmp_path / "r.json")]) == 0
    rescored = json.loads((tmp_path / "r.json").read_text())
    assert {k: v for k, v in rescored.items() if k.startswith(("MR-", "HL-"))} == \
        {k: v for k, v in metrics.items() if k.startswith(("MR-", "HL-"))}


@pytest.mark.parametrize("saliency, message", [(["x"], "list of numbers"), ([[1.0]], "list of numbers"),
                                               (3.0, "list of numbers")])
def test_a_predictions_file_with_bad_saliency_is_one_sentence(tmp_path, saliency, message):
    from g2l.eval.predictions import PredictionsError, read_predictions

    line = {"video": "v", "query": "q", "duration": 8.0, "gt": [0, 2], "candidates": [[0, 2, 0.5]], "saliency": saliency}
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(PredictionsError, match=message):
        read_predictions(tmp_path / "p.jsonl")


def test_which_configs_read_qvhighlights(tmp_path, shared_data):
    from g2l.config import DataConfig

    val = shared_data / "annotations/qvhighlights/highlight_val_release.jsonl"
    assert qvh.qvhighlights_annotations(DataConfig(annotation_format="qvhighlights", val_annotations=str(val)), "val") == val
    assert qvh.qvhighlights_annotations(DataConfig(annotation_format="", val_annotations=str(val),
                                                   train_annotations=str(tmp_path / "gone.jsonl")), "val") == val
    assert qvh.qvhighlights_annotations(DataConfig(annotation_format="jsonl", val_annotations=str(val)), "val") is None
    assert not qvh.reads_qvhighlights(DataConfig(annotation_format="", train_annotations=str(tmp_path / "gone.jsonl")))
