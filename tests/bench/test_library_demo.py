"""The cross-video rankings that bench/library_demo.py compares (issue 27), by hand on a library of
two videos: video 0 holds moments 0 and 1, video 1 holds moment 2; one query, a bank of two sentences."""

import math

import numpy as np
import pytest

from bench.library_demo import calibrated_finals


def test_calibrated_rankings_by_hand():
    score = np.array([[0.5, 0.25, 0.45]])  # (q k)
    contrast = np.array([[0.1, 0.3, 0.2]])
    bank_score = np.array([[0.2, 0.1, 0.3], [0.4, 0.3, 0.1]])  # (B k): best per video [0.2, 0.3], [0.4, 0.1]
    bank_contrast = np.array([[0.0, 0.5, 0.2], [0.2, 0.1, 0.4]])  # best per video [0.5, 0.2], [0.2, 0.4]
    starts, video = np.array([0, 2]), np.array([0, 0, 1])
    own = np.array([[0.0, 1.0]])  # the query's own video is video 1
    finals = {name: row[0] for name, row in calibrated_finals(score, contrast, bank_score, bank_contrast, starts,
                                                              video, own).items()}
    log2 = math.log(2)
    expected = {
        "raw score (the index's ranking)": [0.5, 0.25, 0.45],
        # video 0: mu 0.3, sd 0.1; video 1: mu 0.2, sd 0.1 (population std over the bank)
        "Z-norm: (score - mu_v) / sd_v over the bank": [2.0, -0.5, 2.5],
        "QB-Norm inverted softmax per moment of the score": [5 - math.log(math.exp(2) + math.exp(4)),
                                                              2.5 - math.log(math.exp(1) + math.exp(3)),
                                                              4.5 - math.log(math.exp(3) + math.exp(1))],
        "QB-Norm inverted softmax per moment of the contrast cos": [1 - math.log(1 + math.exp(2)),
                                                                    3 - math.log(math.exp(5) + math.exp(1)),
                                                                    2 - math.log(math.exp(2) + math.exp(4))],
        # the video's best score 0.5 and 0.45 against the bank's best [0.2, 0.4] and [0.3, 0.1]; within: 0, -log 2, 0
        "inverted softmax of the video's best score + within": [5 - math.log(math.exp(2) + math.exp(4)),
                                                                5 - math.log(math.exp(2) + math.exp(4)) - log2,
                                                                4.5 - math.log(math.exp(3) + math.exp(1))],
        # the video's best contrast 0.3 and 0.2; bank: mean 0.35 sd 0.15, mean 0.3 sd 0.1
        "two-stage: bank z of video's best contrast + 3 within": [-1 / 3, -1 / 3 - 3 * log2, -1.0],
        # the contrast of each video's best-scored moment: 0.1 and 0.2, standardised: -1, 1
        "two-stage, no bank: contrast at video's best, std + 3 within": [-1.0, -1 - 3 * log2, 1.0],
        "oracle: own video first, then its own ranking": [0.0, -log2, 1000.0],
    }
    assert sorted(finals) == sorted(expected)
    for name, values in expected.items():
        assert finals[name] == pytest.approx(values, rel=1e-6, abs=1e-6), name
    # The Z-norm puts video 1's moment first where the raw score put video 0's; each video keeps its order.
    assert np.argmax(finals["Z-norm: (score - mu_v) / sd_v over the bank"]) == 2
    assert np.argmax(score[0]) == 0
