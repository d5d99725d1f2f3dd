"""The grounding picture (g2l/plots.py) on results made by hand: axes in seconds, a labelled colour
bar, the ground truth drawn where it is, every moment's label inside its panel, and the word
panel saying what the values are relative to."""

import numpy as np
import pytest

from g2l.explain import Explanation, WordValue
from g2l.inference import Moment, QueryResult
from g2l.plots import grounding_figure, plot_grounding

DURATION_S = 40.0


def results():
    score_map = np.triu(np.arange(1, 17)[None, :] * np.ones((16, 1))).astype(np.float32) / 16  # (t t), 0 off the mask
    moments = [Moment(36.0, 40.0, 0.9), Moment(0.0, 40.0, 0.8), Moment(0.0, 4.0, 0.5), Moment(10.0, 38.0, 0.4)]
    return [QueryResult("a white square gets smaller.", moments, score_map),
            QueryResult("the yellow triangle turns green.", moments[:2], score_map)]


def explanation():
    return Explanation("a white square gets smaller.", Moment(36.0, 40.0, 0.9),
                       [WordValue(w, v) for w, v in zip("a white square gets smaller.".split(), [0.1, -0.2, 0.3, 0, 0])],
                       0.5, 0.3, True, 32, "runner_up", "each word's share of the lead over the runner-up")


def test_the_axes_are_in_seconds_and_the_colour_bar_is_labelled():
    import matplotlib.pyplot as plt

    fig = grounding_figure("demo.mp4", DURATION_S, results())
    try:
        timeline, heat = fig.axes[0], fig.axes[1]
        assert timeline.get_xlabel() == "time (s)" and timeline.get_xlim() == (0, DURATION_S)
        assert (heat.get_xlabel(), heat.get_ylabel()) == ("end (s)", "start (s)")
        # Cell [i, j] is the moment from i * 2.5 s to (j + 1) * 2.5 s: cells are centred there.
        left, right, bottom, top = heat.images[0].get_extent()
        assert (left + 2.5 / 2, top + 2.5 / 2) == pytest.approx((2.5, 0.0))  # cell [0, 0]: 0 s to 2.5 s
        assert (right - 2.5 / 2, bottom - 2.5 / 2) == pytest.approx((40.0, 37.5))  # cell [15, 15]
        colour_bars = [a for a in fig.axes if a.get_ylabel() == "score"]
        assert len(colour_bars) == 2
    finally:
        plt.close(fig)


def test_the_ground_truth_is_drawn_on_the_timeline_and_the_map_only_when_given():
    import matplotlib.pyplot as plt

    fig = grounding_figure("demo.mp4", DURATION_S, results(), ground_truths=[(2.6, 12.3), None])
    try:
        def truths(axis):
            return [a for a in axis.get_children() if a.get_gid() == "ground-truth"]

        span, = truths(fig.axes[0])
        bbox = span.get_bbox()  # x in data coordinates (seconds)
        assert (bbox.x0, bbox.x1) == pytest.approx((2.6, 12.3))
        marker, = truths(fig.axes[1])
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (12.3, 2.6)  # (end, start)
        second_row = [a for a in fig.axes if a.get_title(loc="left").startswith("the yellow")]
        assert second_row and not truths(second_row[0])
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="1 ground truths for 2 queries"):
        grounding_figure("demo.mp4", DURATION_S, results(), ground_truths=[(1.0, 2.0)])


def test_every_label_stays_inside_its_panel():
    import matplotlib.pyplot as plt

    fig = grounding_figure("demo.mp4", DURATION_S, results(), [explanation(), None], ground_truths=[(2.6, 12.3), None])
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        timeline = fig.axes[0]
        box = timeline.get_window_extent(renderer)
        labels = [t for t in timeline.texts if " s (" in t.get_text()]
        assert len(labels) == 4  # one at the right end, one across the video, one at the start, one wide
        for text in labels:
            extent = text.get_window_extent(renderer)
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()
        words = fig.axes[2]
        assert "relative" not in words.get_title(loc="left") and "runner-up" in words.get_title(loc="left")
    finally:
        plt.close(fig)


def test_plot_grounding_writes_a_png_of_the_asked_size(tmp_path):
    from PIL import Image

    path = tmp_path / "plot.png"
    plot_grounding(str(path), "demo.mp4", DURATION_S, results(), [explanation(), None], dpi=50, width_in=10)
    with Image.open(path) as image:
        assert image.width == 500
