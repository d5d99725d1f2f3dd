import numpy as np
import pytest

from g2l.data.records import Annotation
from g2l.eval.baselines import best_fixed_moment, prior_only_metrics, random_ranking_metrics


def ann(duration, start, end):
    return Annotation("v", duration, "s", ((start, end),))


def test_best_fixed_moment_recovers_a_common_window():
    # Most training moments are the first 30% of the video, whatever its length.
    train = [ann(d, 0, 0.3 * d) for d in (10, 20, 40, 80)] + [ann(10, 6, 10)]
    assert best_fixed_moment(train, grid=10) == pytest.approx((0.0, 0.3))


def test_prior_only_metrics_by_hand():
    train = [ann(d, 0, 0.5 * d) for d in (10, 30)]
    # The fixed moment is [0, 0.5 D]. Test: [0, 5] of 10 s (IoU 1), [0, 10] of 20 s (IoU 0.5 exactly),
    # [15, 20] of 20 s (IoU 0).
    test = [ann(10, 0, 5), ann(20, 0, 10 * 2), ann(20, 15, 20)]
    m = prior_only_metrics(train, test, recall_at=(1,), iou_thresholds=(0.5, 0.7))
    assert m["moment"] == [0.0, 0.5]
    assert m["R1@0.5"] == pytest.approx(2 / 3) and m["R1@0.7"] == pytest.approx(1 / 3)
    assert m["mIoU"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_random_ranking_is_seeded_and_ordered():
    rng = np.random.default_rng(0)
    test = []
    for _ in range(60):
        d = float(rng.uniform(10, 60))
        s, e = sorted(rng.uniform(0, d, 2))
        test.append(ann(d, s, e))
    a = random_ranking_metrics(test, num_clips=16, pooling_counts=[15], nms_thresh=0.5, repeats=2, seed=3)
    b = random_ranking_metrics(test, num_clips=16, pooling_counts=[15], nms_thresh=0.5, repeats=2, seed=3)
    assert a == b and a["num_queries"] == 60
    assert a["R5@0.5"] >= a["R1@0.5"] and a["R1@0.3"] >= a["R1@0.5"] >= a["R1@0.7"]
    assert 0 < a["R5@0.3"] <= 1
