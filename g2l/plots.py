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
ROW_HEIGHT_IN = 2.6  # one query
MAP_COLUMN_IN = 3.3  # the score map's column: a square map as high as a row, its labels and colour bar
WORDS_SHARE = 0.3  # the word panel's share of the figure's width
TITLE_LINES, WORDS_TITLE_LINES = 2, 5  # a query's title wraps to at most this many lines (then "…")


def grounding_figure(video_name: str, duration_s: float, results, explanations=None, ground_truths=None, *,
                     width_in: float | None = None):
    """A matplotlib figure (Agg): one row per query of ``results`` (``QueryResult``s); a third
    column of word bars when ``explanations`` (one ``Explanation`` or None per query) is given.
    ``ground_truths``: one ``(start_s, end_s)`` or None per query, drawn on the timeline and the
    score map. ``width_in``: the figure's width in inches (default 15 with word bars, 11 without).

    Layout: the score map's column is as wide as a square map of the row's height needs (so no
    empty band opens between the timeline and the map), the timeline takes the rest; titles are
    wrapped to the width of their own panel as the renderer measures them, and the ground truth's
    legend sits under the timeline, beside its axis label, away from the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(results)
    explained = explanations is not None and any(e is not None for e in explanations)
    truths = list(ground_truths) if ground_truths is not None else [None] * rows
    if len(truths) != rows:
        raise ValueError(f"{len(truths)} ground truths for {rows} queries")
    width = width_in or (15 if explained else 11)
    words_in = WORDS_SHARE * width if explained else 0.0
    map_in = min(MAP_COLUMN_IN, 0.35 * width)
    ratios = [max(width - map_in - words_in, 1.0), map_in] + ([words_in] if explained else [])
    fig, axes = plt.subplots(rows, len(ratios), figsize=(width, ROW_HEIGHT_IN * rows + 0.5),
                             gridspec_kw={"width_ratios": ratios}, squeeze=False)
    titles = []  # (axis, text, fontsize, max_lines): set once the layout says how wide each panel is
    for r, result in enumerate(results):
        _timeline(axes[r][0], result, duration_s, truths[r])
        titles.append((axes[r][0], result.query, 9, TITLE_LINES))
        _score_map(fig, axes[r][1], result.score_map, duration_s, truths[r])
        if explained:
            title = _word_bars(axes[r][2], explanations[r])
            if title:
                titles.append((axes[r][2], title, 7, WORDS_TITLE_LINES))
    fig.suptitle(f"{video_name} ({duration_s:.1f} s)", fontsize=10)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    spare_in = _spare_map_width_in(fig, [row[1] for row in axes], renderer)
    if spare_in > 0:  # the square map left part of its column empty: the timeline takes it
        ratios[0], ratios[1] = ratios[0] + spare_in, ratios[1] - spare_in
        axes[0][0].get_gridspec().set_width_ratios(ratios)
        fig.tight_layout()
    for axis, text, size, max_lines in titles:
        room = 0.97 * axis.get_window_extent(renderer).width
        axis.set_title(_fit_lines(text, room, size, renderer, max_lines), fontsize=size, loc="left", parse_math=False)
    fig.tight_layout()  # again: wrapped titles are taller
    return fig


def _spare_map_width_in(fig, maps, renderer) -> float:
    """How much of the score map's column (inches) its square map, with the colour bar beside it,
    leaves empty on the right; 0 when no row has a map."""
    spare_px = []
    for axis in maps:
        if not axis.images:
            continue
        axis.apply_aspect()
        column = axis.get_subplotspec().get_position(fig).transformed(fig.transFigure)  # the cell, pixels
        right = max(child.get_tightbbox(renderer).x1 for child in [axis, *axis.child_axes])
        spare_px.append(column.x1 - right)
    return max(0.0, min(spare_px, default=0.0) / fig.dpi - 0.1)


def _fit_lines(text: str, width_px: float, fontsize: float, renderer, max_lines: int) -> str:
    """``text`` (paragraphs split on newlines) wrapped into lines no wider than ``width_px`` as
    ``renderer`` measures them at ``fontsize``; past ``max_lines`` the last line ends in "…"."""
    from matplotlib.font_manager import FontProperties

    font = FontProperties(size=fontsize)

    def fits(line: str) -> bool:
        return renderer.get_text_width_height_descent(line, font, ismath=False)[0] <= width_px

    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            while not fits(word) and len(word) > 1:  # a word wider than the panel: cut it
                low, high = 1, len(word) - 1  # the longest head that fits with its hyphen (at least one letter)
                while low < high:
                    middle = (low + high + 1) // 2
                    low, high = (middle, high) if fits(word[:middle] + "-") else (low, middle - 1)
                cut = low
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut] + "-")
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and not fits(last + " …"):
            last = last[:-1].rstrip()
        lines = lines[:max_lines - 1] + [last + " …"]
    return "\n".join(lines)


def _timeline(axis, result, duration_s: float, truth) -> None:
    """The ranked moments as bars (colour: score relative to the best), each labelled inside the panel."""
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

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
        # Under the axis, on the row of its label ("time (s)", centred) and right of it: never on the title.
        below = ScaledTranslation(0, -17 / 72, axis.figure.dpi_scale_trans)  # past the ticks and their labels
        axis.legend(loc="upper right", bbox_to_anchor=(1.0, 0.0), bbox_transform=axis.transAxes + below, fontsize=7,
                    frameon=False, borderaxespad=0.0, handlelength=1.2)
    axis.set_xlim(0, duration_s)
    axis.set_ylim(max(len(result.moments), 1) - 0.5, -0.5)
    axis.set_yticks(range(len(result.moments)), [f"#{k + 1}" for k in range(len(result.moments))])
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
    axis.set_anchor("W")  # the square map against the timeline; what its column has left goes to its right
    if truth is not None:
        axis.plot([truth[1]], [truth[0]], marker="x", color=GT_COLOR, markersize=8, markeredgewidth=2,
                  gid="ground-truth", linestyle="none")
    axis.set_xlabel("end (s)", fontsize=8)
    axis.set_ylabel("start (s)", fontsize=8)
    axis.tick_params(labelsize=7)
    bar = fig.colorbar(image, cax=axis.inset_axes((1.05, 0.0, 0.06, 1.0)))  # moves with the square map
    bar.set_label("score", fontsize=7)
    bar.ax.tick_params(labelsize=6)


def _word_bars(axis, explanation) -> str | None:
    """One bar per word: its Shapley value (green raises the explained target, red lowers it).
    Returns the panel's title, which ``grounding_figure`` wraps to the panel's width."""
    if explanation is None:
        axis.axis("off")
        return None
    values = [w.value for w in explanation.words]
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    axis.bar(range(len(values)), values, color=colors, yerr=[w.stderr for w in explanation.words] if not explanation.exact else None)
    axis.axhline(0, color="black", linewidth=0.6)
    size = 7 if len(values) <= 16 else 5
    axis.set_xticks(range(len(values)), [textwrap.shorten(w.word, 14, placeholder="…") for w in explanation.words],
                    rotation=45 if len(values) <= 30 else 90, ha="right", rotation_mode="anchor", fontsize=size)
    m = explanation.moment
    how = "exact" if explanation.exact else "sampled"
    relative = getattr(explanation, "relative_to", "") or ""
    axis.set_ylabel("value", fontsize=7)
    axis.tick_params(axis="y", labelsize=7)
    return f"why {m.start_s:.1f}-{m.end_s:.1f} s: word Shapley values ({how})\n{relative}".rstrip()


def plot_grounding(path: str, video_name: str, duration_s: float, results, explanations=None, ground_truths=None, *,
                   dpi: int = 100, width_in: float | None = None) -> None:
    """Write ``grounding_figure`` as a PNG at ``path``, atomically."""
    import matplotlib.pyplot as plt

    from g2l.io.atomic import atomic_path

    fig = grounding_figure(video_name, duration_s, results, explanations, ground_truths, width_in=width_in)
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=dpi, format="png")
    finally:
        plt.close(fig)
