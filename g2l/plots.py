"""The grounding picture: per query, a timeline of its ranked moments (and, when given, its ground
truth), its 2D score map with both axes in seconds, and (when explained) a bar per word of the
query, its Shapley value for the top moment (``g2l.explain``), titled with what the values are
relative to.

``g2l-ground --plot`` writes it as a PNG and ``g2l-app`` shows it; matplotlib is imported only
when a picture is drawn.
"""

from __future__ import annotations

import textwrap

GT_COLOR = "tab:red"
LABEL_ROOM = 0.22  # the fraction of the timeline a moment's label needs beside its bar


def grounding_figure(video_name: str, duration_s: float, results, explanations=None, ground_truths=None, *,
                     width_in: float | None = None):
    """A matplotlib figure (Agg): one row per query of ``results`` (``QueryResult``s); a third
    column of word bars when ``explanations`` (one ``Explanation`` or None per query) is given.
    ``ground_truths``: one ``(start_s, end_s)`` or None per query, drawn on the timeline and the
    score map. ``width_in``: the figure's width in inches (default 15 with word bars, 11 without)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(results)
    explained = explanations is not None and any(e is not None for e in explanations)
    truths = list(ground_truths) if ground_truths is not None else [None] * rows
    if len(truths) != rows:
        raise ValueError(f"{len(truths)} ground truths for {rows} queries")
    ratios = [3, 1.4, 2] if explained else [3, 1.4]
    width = width_in or (15 if explained else 11)
    fig, axes = plt.subplots(rows, len(ratios), figsize=(width, 2.6 * rows + 0.5),
                             gridspec_kw={"width_ratios": ratios}, squeeze=False)
    for r, result in enumerate(results):
        _timeline(axes[r][0], result, duration_s, truths[r])
        _score_map(fig, axes[r][1], result.score_map, duration_s, truths[r])
        if explained:
            _word_bars(axes[r][2], explanations[r])
    fig.suptitle(f"{video_name} ({duration_s:.1f} s)", fontsize=10)
    fig.tight_layout()
    return fig


def _timeline(axis, result, duration_s: float, truth) -> None:
    """The ranked moments as bars (colour: score relative to the best), each labelled inside the panel."""
    import matplotlib.pyplot as plt

    top = max((m.score for m in result.moments), default=1.0) or 1.0
    for rank, m in enumerate(result.moments):
        axis.barh(rank, m.end_s - m.start_s, left=m.start_s, color=plt.cm.viridis(m.score / top), edgecolor="black")
        label = f"{m.start_s:.1f}-{m.end_s:.1f} s ({m.score:.2f})"
        if duration_s - m.end_s >= LABEL_ROOM * duration_s:  # room on the right of the bar
            axis.text(m.end_s, rank, " " + label, va="center", ha="left", fontsize=7)
        elif m.start_s >= LABEL_ROOM * duration_s:  # room on the left
            axis.text(m.start_s, rank, label + " ", va="center", ha="right", fontsize=7)
        else:  # a bar across most of the video: the label on it
            axis.text((m.start_s + m.end_s) / 2, rank, label, va="center", ha="center", fontsize=7, color="white",
                      fontweight="bold")
    if truth is not None:
        axis.axvspan(truth[0], truth[1], color=GT_COLOR, alpha=0.15, zorder=0, gid="ground-truth",
                     label=f"ground truth {truth[0]:.1f}-{truth[1]:.1f} s")
        axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, borderaxespad=0.1)
    axis.set_xlim(0, duration_s)
    axis.set_ylim(max(len(result.moments), 1) - 0.5, -0.5)
    axis.set_yticks(range(len(result.moments)), [f"#{k + 1}" for k in range(len(result.moments))])
    axis.set_title(textwrap.shorten(result.query, 60 if truth is not None else 90), fontsize=9, loc="left")
    axis.set_xlabel("time (s)", fontsize=8)
    axis.tick_params(labelsize=7)


def _score_map(fig, axis, score_map, duration_s: float, truth) -> None:
    """The ``(t t)`` map, row = start, column = end, each cell centred on its start and end in
    seconds (a cell [i, j] is the moment from clip i's start to clip j's end)."""
    import numpy as np

    axis.set_title("score map", fontsize=8)
    if score_map is None:
        axis.axis("off")
        return
    clip_s = duration_s / score_map.shape[0]
    shown = np.ma.masked_where(score_map == 0, score_map)
    # Column j ends at (j + 1) clip_s; row i starts at i clip_s.
    extent = (0.5 * clip_s, (score_map.shape[1] + 0.5) * clip_s, (score_map.shape[0] - 0.5) * clip_s, -0.5 * clip_s)
    image = axis.imshow(shown, cmap="viridis", extent=extent, aspect="equal")
    if truth is not None:
        axis.plot([truth[1]], [truth[0]], marker="x", color=GT_COLOR, markersize=8, markeredgewidth=2,
                  gid="ground-truth", linestyle="none")
    axis.set_xlabel("end (s)", fontsize=8)
    axis.set_ylabel("start (s)", fontsize=8)
    axis.tick_params(labelsize=7)
    bar = fig.colorbar(image, ax=axis, fraction=0.046)
    bar.set_label("score", fontsize=7)
    bar.ax.tick_params(labelsize=6)


def _word_bars(axis, explanation) -> None:
    """One bar per word: its Shapley value (green raises the explained target, red lowers it)."""
    if explanation is None:
        axis.axis("off")
        return
    values = [w.value for w in explanation.words]
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    axis.bar(range(len(values)), values, color=colors, yerr=[w.stderr for w in explanation.words] if not explanation.exact else None)
    axis.axhline(0, color="black", linewidth=0.6)
    size = 7 if len(values) <= 16 else 5
    axis.set_xticks(range(len(values)), [textwrap.shorten(w.word, 14, placeholder="…") for w in explanation.words],
                    rotation=45 if len(values) <= 30 else 90, ha="right", rotation_mode="anchor", fontsize=size)
    m = explanation.moment
    how = "exact" if explanation.exact else "sampled"
    relative = textwrap.fill(getattr(explanation, "relative_to", "") or "", 70)
    axis.set_title(f"why {m.start_s:.1f}-{m.end_s:.1f} s: word Shapley values ({how})\n{relative}", fontsize=7,
                   loc="left")
    axis.set_ylabel("value", fontsize=7)
    axis.tick_params(axis="y", labelsize=7)


def plot_grounding(path: str, video_name: str, duration_s: float, results, explanations=None, ground_truths=None, *,
                   dpi: int = 100, width_in: float | None = None) -> None:
    """Write ``grounding_figure`` as a PNG at ``path``, atomically."""
    import matplotlib.pyplot as plt

    from g2l.atomic import atomic_path

    fig = grounding_figure(video_name, duration_s, results, explanations, ground_truths, width_in=width_in)
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=dpi, format="png")
    finally:
        plt.close(fig)
