import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from g2l.eval.metrics import grounding_metrics
from g2l.eval.predictions import Prediction, read_predictions, rescore_predictions, write_predictions
from g2l.ops.spans import pooling_mask, ranked_candidates
from tests.reference import mmn as ref

REPO = Path(__file__).resolve().parents[2]


def test_hand_computed_recall_and_miou_with_exact_ties():
    # Query 1: rank-1 [0, 4] against gt [0, 8]: IoU exactly 0.5 -> hit at 0.5, miss at 0.7.
    # Query 2: rank-1 [10, 12] misses gt [0, 3]; rank-2 [0, 3] hits at every threshold.
    # Query 3: no candidate at all: misses, IoU 0.
    candidates = [np.array([[0, 4], [20, 30]], np.float32), np.array([[10, 12], [0, 3]], np.float32), np.zeros((0, 2))]
    gts = [np.array([0, 8.0]), np.array([0, 3.0]), np.array([1, 2.0])]
    m = grounding_metrics(candidates, gts, recall_at=(1, 5), iou_thresholds=(0.3, 0.5, 0.7))
    assert m["R1@0.3"] == pytest.approx(1 / 3) and m["R1@0.5"] == pytest.approx(1 / 3) and m["R1@0.7"] == 0
    assert m["R5@0.5"] == pytest.approx(2 / 3) and m["R5@0.7"] == pytest.approx(1 / 3)
    assert m["mIoU"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert m["num_queries"] == 3


def test_float32_tie_at_irregular_duration():
    # Duration 33.67 s on a 16-clip grid: cell (0, 7) is [0, float32(8 * 33.67) / 16]. A ground truth
    # that is exactly twice that end, in float32, gives IoU exactly 0.5 in float32: a hit.
    end = np.float32(np.float32(8) * np.float32(33.67)) / np.float32(16)
    gt = np.array([0.0, float(end) * 2], dtype=np.float32)
    m = grounding_metrics([np.array([[0.0, end]], np.float32)], [gt], (1,), (0.5,))
    assert m["R1@0.5"] == 1.0


def test_multiple_ground_truth_windows_take_the_best():
    m = grounding_metrics([np.array([[10, 20]], np.float32)], [np.array([[0, 5], [10, 19]])], (1,), (0.7,))
    assert m["R1@0.7"] == 1.0 and m["mIoU"] == pytest.approx(0.9)


@pytest.mark.parametrize("num_clips,counts,nms_thresh", [(16, [15], 0.5), (64, [15, 8, 8], 0.5), (128, [15, 8, 8, 8], 0.4)])
def test_random_score_maps_match_independent_reference(num_clips, counts, nms_thresh):
    rng = np.random.default_rng(7 + num_clips)
    mask = pooling_mask(num_clips, counts)
    maps, durations, gts, cands = [], [], [], []
    for q in range(40):
        duration = float(np.round(rng.uniform(10, 150), 2))
        scores = rng.random((num_clips, num_clips)).astype(np.float32)
        if q % 3 == 0:
            scores = (np.round(scores * 3) + 1).astype(np.float32) / 4  # exact score ties
        score_map = np.where(mask, scores, 0).astype(np.float32)
        if q % 4 == 0:  # a ground truth on the grid: exact IoU ties with cells
            i = rng.integers(0, num_clips // 2)
            gt = [i * duration / num_clips, (i + num_clips // 4) * duration / num_clips]
        else:
            gt = sorted(rng.uniform(0, duration, 2).tolist())
        maps.append(score_map), durations.append(duration), gts.append(gt)
        cands.append(ranked_candidates(score_map, duration, nms_thresh, max_keep=5)[0])
    ours = grounding_metrics(cands, [np.array(g) for g in gts], (1, 5), (0.1, 0.3, 0.5, 0.7))
    expected = ref.evaluate(maps, durations, gts, nms_thresh, (1, 5), (0.1, 0.3, 0.5, 0.7))
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def _predictions(num=12, with_maps=True, seed=0):
    rng = np.random.default_rng(seed)
    mask = pooling_mask(16, [15])
    out = []
    for q in range(num):
        duration = float(np.round(rng.uniform(10, 40), 2))
        score_map = np.where(mask, rng.random((16, 16)) + 0.01, 0).astype(np.float32)
        spans, scores = ranked_candidates(score_map, duration, 0.5, max_keep=10)
        gt = np.sort(rng.uniform(0, duration, 2)).astype(np.float32)
        cands = np.concatenate([spans, scores[:, None]], axis=1)
        out.append(Prediction(f"v{q}", f"query {q}", duration, gt, cands, score_map if with_maps else None))
    return out


def test_predictions_round_trip_reproduces_metrics(tmp_path):
    preds = _predictions()
    path = tmp_path / "p.jsonl"
    assert write_predictions(path, preds) == len(preds)
    back = read_predictions(path)
    for a, b in zip(preds, back):
        np.testing.assert_array_equal(a.candidates, b.candidates)
        np.testing.assert_array_equal(a.score_map, b.score_map)
    from_maps = rescore_predictions(back, 0.5)
    for p in back:
        p.score_map = None
    from_candidates = rescore_predictions(back, 0.5)
    assert from_maps == from_candidates


def run_eval(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "eval.py"), *args], capture_output=True, text=True, cwd=REPO)


def test_eval_tool_end_to_end(tmp_path):
    preds = _predictions(num=20, seed=5)
    path = tmp_path / "p.jsonl"
    write_predictions(path, preds)
    out = tmp_path / "m.json"
    result = run_eval("--predictions", str(path), "--json", str(out), "--iou-thresholds", "0.3,0.5,0.7")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    expected = ref.evaluate([p.score_map for p in preds], [p.duration for p in preds], [p.gt.tolist() for p in preds], 0.5)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6)
    assert metrics["num_queries"] == 20
    assert "R@1" in result.stdout and "IoU=0.5" in result.stdout
    # A different NMS threshold changes how map-derived candidates are ranked at R@5.
    result = run_eval("--predictions", str(path), "--nms", "0.1", "--json", str(out))
    assert result.returncode == 0
    expected = ref.evaluate([p.score_map for p in preds], [p.duration for p in preds], [p.gt.tolist() for p in preds], 0.1)
    assert json.loads(out.read_text())["R5@0.5"] == pytest.approx(expected["R5@0.5"])


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"video": "a", "query": "q", "duration": 10, "gt": [0, 1], "candidates": [[0, 1, 0.5]]}\nnot json\n', "line 2"),
        ('{"video": "a", "query": "q", "duration": 10, "candidates": []}\n', "gt"),
        ('{"video": "a", "query": "q", "duration": -1, "gt": [0, 1], "candidates": []}\n', "duration"),
        ("", "no predictions"),
    ],
)
def test_eval_tool_bad_files(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = run_eval("--predictions", str(path))
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_tool_missing_file(tmp_path):
    result = run_eval("--predictions", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "does not exist" in result.stderr
