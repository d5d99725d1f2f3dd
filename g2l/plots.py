"""The grounding picture: per query, a timeline of its ranked moments, its 2D score map, and (when
explained) a bar per word of the query, its Shapley value for the top moment (``g2l.explain``).

``g2l-ground --plot`` writes it as a PNG and ``g2l-app`` shows it; matplotlib is imported only
when a picture is drawn.
"""

from __future__ import annotations


def grounding_figure(video_name: str, duration_s: float, results, explanations=None):
    """A matplotlib figure (Agg): one row per query of ``results`` (``QueryResult``s); a third
    column of word bars when ``explanations`` (one ``Explanation`` or None per query) is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = len(results)
    explained = explanations is not None and any(e is not None for e in explanations)
    ratios = [3, 1, 2] if explained else [3, 1]
    fig, axes = plt.subplots(rows, len(ratios), figsize=(15 if explained else 11, 2.4 * rows + 0.4),
                             gridspec_kw={"width_ratios": ratios}, squeeze=False)
    for r, result in enumerate(results):
        timeline, heat = axes[r][:2]
        top = max((m.score for m in result.moments), default=1.0) or 1.0
        for rank, m in enumerate(result.moments):
            timeline.barh(rank, m.end_s - m.start_s, left=m.start_s, color=plt.cm.viridis(m.score / top), edgecolor="black")
            timeline.text(m.end_s, rank, f" {m.start_s:.1f}-{m.end_s:.1f} s ({m.score:.2f})", va="center", fontsize=7)
        timeline.set_xlim(0, duration_s)
        timeline.set_ylim(len(result.moments) - 0.5, -0.5)
        timeline.set_yticks(range(len(result.moments)), [f"#{k + 1}" for k in range(len(result.moments))])
        timeline.set_title(result.query[:90], fontsize=9, loc="left")
        timeline.set_xlabel("seconds")
        if result.score_map is not None:
            shown = np.ma.masked_where(result.score_map == 0, result.score_map)
            image = heat.imshow(shown, cmap="viridis")
            heat.set_xlabel("end clip", fontsize=8)
            heat.set_ylabel("start clip", fontsize=8)
            fig.colorbar(image, ax=heat, fraction=0.046)
        heat.set_title("score map", fontsize=8)
        if explained:
            _word_bars(axes[r][2], explanations[r])
    fig.suptitle(f"{video_name} ({duration_s:.1f} s)", fontsize=10)
    fig.tight_layout()
    return fig


def _word_bars(axis, explanation) -> None:
    """One bar per word: its Shapley value for the top moment's score (green raises it, red lowers it)."""
    if explanation is None:
        axis.axis("off")
        return
    values = [w.value for w in explanation.words]
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    axis.bar(range(len(values)), values, color=colors, yerr=[w.stderr for w in explanation.words] if not explanation.exact else None)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks(range(len(values)), [w.word for w in explanation.words], rotation=45, ha="right", fontsize=7)
    m = explanation.moment
    how = "exact" if explanation.exact else "sampled"
    axis.set_title(f"why {m.start_s:.1f}-{m.end_s:.1f} s: word Shapley values ({how})", fontsize=8)
    axis.tick_params(axis="y", labelsize=7)


def plot_grounding(path: str, video_name: str, duration_s: float, results, explanations=None) -> None:
    """Write ``grounding_figure`` as a PNG at ``path``, atomically."""
    import matplotlib.pyplot as plt

    from g2l.atomic import atomic_path

    fig = grounding_figure(video_name, duration_s, results, explanations)
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=100, format="png")
    finally:
        plt.close(fig)
