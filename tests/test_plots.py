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
        colour_bars = [c for a in fig.axes for c in [a, *a.child_axes] if c.get_ylabel() == "score"]
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


QUERIES = {  # a short query, one of about 60 characters, one of about 150
    "short": "a white square gets smaller.",
    "medium": "the yellow triangle slowly turns green while the red circle moves.",
    "long": "a person walks into the kitchen, opens the refrigerator, takes out a bottle of milk and pours it into "
            "a glass of coffee, then sits down at the table near the window.",
}


def laid_out(query: str, explained: bool, truth: bool, width_in: float | None):
    score_map = results()[0].score_map
    moments = results()[0].moments
    rows = [QueryResult(query, moments, score_map), QueryResult("the yellow triangle turns green.", moments[:2], score_map)]
    words = [WordValue(w, 0.1 * (-1) ** i, 0.02) for i, w in enumerate(query.split())]
    why = Explanation(query, moments[0], words, 0.5, 0.3, False, 32, "runner_up",
                      "each word's share of the top moment's lead over its runner-up (its score minus that of the best "
                      "moment NMS keeps beside it): they sum to +0.200 with the whole query minus +0.000 with no words")
    return grounding_figure("demo.mp4", DURATION_S, rows, [why, None] if explained else None,
                            [(2.6, 12.3), None] if truth else None, width_in=width_in)


@pytest.mark.parametrize("width_in", [None, 12.0])  # the CLI's default widths, the app's
@pytest.mark.parametrize("explained, truth", [(False, True), (True, True)])  # (no truth: a subset of these)
@pytest.mark.parametrize("length", sorted(QUERIES))
def test_nothing_overlaps_nothing_is_cut_and_the_map_sits_beside_the_timeline(length, explained, truth, width_in):
    """On the drawn figure: each panel (its title, labels, ticks, legend and colour bar included)
    lies inside the figure and overlaps no other panel; the query's title overlaps neither the
    ground truth's legend nor the next panel; the gap from the timeline to the score map's
    labels is small (the map's column is no wider than a square map needs)."""
    import matplotlib.pyplot as plt

    fig = laid_out(QUERIES[length], explained, truth, width_in)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        page = fig.bbox
        panels = [a for a in fig.axes if a.get_visible() and a.axison]  # a map's box holds its colour bar's
        boxes = [a.get_tightbbox(renderer) for a in panels]
        for axis, box in zip(panels, boxes):
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
                (axis.get_title(loc="left") or axis.get_title() or axis.get_ylabel(), box.bounds, page.bounds)
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes[i].overlaps(boxes[j]), (panels[i].get_title(loc="left") or panels[i].get_ylabel(),
                                                         panels[j].get_title(loc="left") or panels[j].get_ylabel())
        timeline, score_map = fig.axes[0], fig.axes[1]
        title = timeline.title if timeline.title.get_text() else timeline._left_title
        title_box = title.get_window_extent(renderer)
        assert title_box.x1 <= timeline.get_window_extent(renderer).x1 + 1  # wrapped to its own panel
        legend = timeline.get_legend()
        assert (legend is not None) == truth
        if truth:
            assert not title_box.overlaps(legend.get_window_extent(renderer))
            assert legend.get_window_extent(renderer).y1 < timeline.get_window_extent(renderer).y0  # under the axis
        gap_in = (score_map.get_tightbbox(renderer).x0 - timeline.get_tightbbox(renderer).x1) / fig.dpi
        assert 0 < gap_in < 0.5
        assert all(t.get_text() for t in [timeline._left_title, fig.axes[2]._left_title][:2 if explained else 1])
    finally:
        plt.close(fig)


def test_a_long_title_wraps_to_its_panel_and_ends_in_an_ellipsis_past_two_lines():
    import matplotlib.pyplot as plt

    fig = laid_out(QUERIES["long"] + " " + QUERIES["long"], explained=False, truth=True, width_in=12.0)
    try:
        lines = fig.axes[0].get_title(loc="left").split("\n")
        assert len(lines) == 2 and lines[1].endswith(" …")
        assert lines[0].startswith("a person walks into the kitchen,")
        words = " ".join(lines).removesuffix(" …").split()
        assert words == (QUERIES["long"] + " " + QUERIES["long"]).split()[:len(words)][:-1] + [words[-1]]
    finally:
        plt.close(fig)
    fig = laid_out(QUERIES["medium"], explained=False, truth=True, width_in=None)
    try:
        assert fig.axes[0].get_title(loc="left") == QUERIES["medium"]  # fits on one line: as written
    finally:
        plt.close(fig)


def test_a_word_wider_than_the_panel_is_cut_with_a_hyphen_and_stays_inside():
    import matplotlib.pyplot as plt

    fig = laid_out("see " + "x" * 300, explained=True, truth=True, width_in=12.0)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for axis in (fig.axes[0], fig.axes[2]):  # the timeline's title, the word panel's
            title = axis._left_title
            lines = title.get_text().split("\n")
            assert lines[0] == "see" or axis is fig.axes[2]
            assert title.get_window_extent(renderer).x1 <= axis.get_window_extent(renderer).x1 + 1
        assert fig.axes[0]._left_title.get_text().split("\n")[1].endswith(" …")
    finally:
        plt.close(fig)
