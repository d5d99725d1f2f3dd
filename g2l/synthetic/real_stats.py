"""Moment statistics of the real benchmarks, recorded as constants for the synthetic benchmark.

The synthetic generator (:mod:`g2l.synthetic.benchmark`) draws video durations, moment lengths,
moment positions and queries per video so that they are distributed like a real benchmark's
training split. The distributions are recorded here as quantile tables, rounded to 3 decimals,
and :func:`compute_real_statistics` recomputes them from the public annotation file (a test
checks that the two agree). Run ``g2l-real-stats ../shared/data/annotations`` (``tools/real_stats.py``)
to print the constants afresh.

Definitions, per kept query of duration ``D`` and window ``[s, e]`` in seconds:

    normalised length  l = (e - s) / D            in (0, 1]
    normalised start   a = s / D                  in [0, 1)
    relative start     r = s / (D - (e - s))       in [0, 1]: where the window sits in the room
                                                   left to it (0: at the start, 1: at the end);
                                                   undefined for l > 1 - 1e-3 (those are left out)

A query is kept as the annotation loaders keep it: ``s < e`` as written, then clamped to
``[0, D]`` and dropped if nothing is left. TACoS timestamps are frames: divided by ``fps``, and
``D = num_frames / fps``.

Tables (``np.quantile``'s default linear interpolation; ``QUANTILE_LEVELS``, 21 levels 0, 0.05,
..., 1, except the two long-tailed ones at ``FINE_QUANTILE_LEVELS``, 101 levels 0, 0.01, ..., 1):

    duration_quantiles_s            video duration in seconds (videos with at least one query); fine
    length_quantiles                normalised length l
    start_quantiles                 normalised start a (marginal; the generator matches it only
                                    through the joint model below, and tests check it)
    relative_start_quantiles        (LENGTH_BINS, 21): r within each length bin; the queries,
                                    sorted by l (stable, file order), are cut into LENGTH_BINS
                                    equal-count bins, so bin k holds the lengths between the
                                    length quantiles at levels k/5 and (k+1)/5
    queries_per_video_quantiles     kept queries per video; fine (sampled by rounding the
                                    interpolated value: means 2.34 / 3.79 / 130.3 for 2.32 / 3.74 / 130.5)

Sampling (the generator): ``u ~ U(0, 1)``, ``l = interp(u, levels, length_quantiles)``, bin
``floor(u * LENGTH_BINS)``, ``r = interp(v, levels, relative_start_quantiles[bin])`` with an
independent ``v``, ``start = r * (1 - l)``: lengths follow the table exactly, starts follow the
joint (length, position) structure of the real data up to the binning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from g2l.errors import G2LError

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)
# Durations and queries per video have long upper tails; a linear tail between the 95% quantile
# and the maximum would inflate their means (ActivityNet queries per video: 4.13 instead of 3.74),
# so they get finer tables.
FINE_QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
LENGTH_BINS = 5
# Lengths above this leave no room to place the window; they get no relative start.
FULL_LENGTH = 1.0 - 1e-3
DECIMALS = 3

# Where each preset's statistics come from, relative to ../shared/data/annotations.
SOURCES = {
    "charades": "charades_sta/mmn/charades_train.json",
    "activitynet": "activitynet_captions/2dtan/train.json",
    "tacos": "tacos/2dtan/train.json",
}


@dataclass(frozen=True)
class RealStatistics:
    """Quantile tables of one benchmark's training split (see the module docstring)."""

    source: str
    num_videos: int
    num_queries: int
    duration_quantiles_s: tuple[float, ...]
    length_quantiles: tuple[float, ...]
    start_quantiles: tuple[float, ...]
    relative_start_quantiles: tuple[tuple[float, ...], ...]
    queries_per_video_quantiles: tuple[float, ...]
    queries_per_video_mean: float


def compute_real_statistics(path: str | Path) -> RealStatistics:
    """Recompute the recorded tables from one annotation file, rounded to ``DECIMALS``.

    ``path`` is a JSON file ``{video: {duration, timestamps, sentences}}`` in seconds (Charades-STA
    MMN release, ActivityNet Captions) or the TACoS file with timestamps in frames plus ``fps`` and
    ``num_frames`` per video (recognised by those keys).
    """
    path = Path(path)
    if not path.is_file():
        raise G2LError(f"annotation file {path} not found; pass a file from ../shared/data/annotations")
    with path.open() as handle:
        videos = json.load(handle)
    durations, lengths, starts, counts = [], [], [], []
    for entry in videos.values():
        if "fps" in entry and "num_frames" in entry:
            fps = float(entry["fps"])
            duration = float(entry["num_frames"]) / fps
        else:
            fps = 1.0
            duration = float(entry["duration"])
        kept = 0
        for start, end in entry["timestamps"]:
            start, end = float(start) / fps, float(end) / fps
            if not start < end:
                continue
            start, end = max(start, 0.0), min(end, duration)
            if not start < end:
                continue
            lengths.append((end - start) / duration)
            starts.append(start / duration)
            kept += 1
        if kept:
            durations.append(duration)
            counts.append(kept)
    lengths_array, starts_array = np.asarray(lengths), np.asarray(starts)
    order = np.argsort(lengths_array, kind="stable")
    bins = np.array_split(order, LENGTH_BINS)
    relative_tables = []
    for members in bins:
        room = 1.0 - lengths_array[members]
        placeable = room > 1.0 - FULL_LENGTH
        relative = starts_array[members][placeable] / room[placeable]
        relative_tables.append(_quantiles(np.clip(relative, 0.0, 1.0)))
    return RealStatistics(
        source="/".join(path.parts[-3:]),
        num_videos=len(durations),
        num_queries=len(lengths),
        duration_quantiles_s=_quantiles(durations, FINE_QUANTILE_LEVELS),
        length_quantiles=_quantiles(lengths_array),
        start_quantiles=_quantiles(starts_array),
        relative_start_quantiles=tuple(relative_tables),
        queries_per_video_quantiles=_quantiles(counts, FINE_QUANTILE_LEVELS),
        queries_per_video_mean=round(float(np.mean(counts)), DECIMALS),
    )


def _quantiles(values, levels: np.ndarray = QUANTILE_LEVELS) -> tuple[float, ...]:
    table = np.quantile(np.asarray(values, dtype=np.float64), levels)
    return tuple(round(float(x), DECIMALS) + 0.0 for x in table)


def format_statistics(stats: RealStatistics) -> str:
    """The Python literal of ``stats`` as it is recorded below (rows wrapped at 100 columns)."""
    def row(values, indent: str) -> str:
        lines, line = [], ""
        for text in (repr(float(v)) for v in values):
            if len(indent) + len(line) + len(text) + 2 > 100:
                lines.append(line.rstrip())
                line = ""
            line += text + ", "
        lines.append(line.rstrip())
        return "(\n" + "".join(f"{indent}    {text}\n" for text in lines) + indent + ")"

    tables = "".join(f"        {row(t, '        ')},\n" for t in stats.relative_start_quantiles)
    return (
        "RealStatistics(\n"
        f"    source={stats.source!r},\n"
        f"    num_videos={stats.num_videos},\n"
        f"    num_queries={stats.num_queries},\n"
        f"    duration_quantiles_s={row(stats.duration_quantiles_s, '    ')},\n"
        f"    length_quantiles={row(stats.length_quantiles, '    ')},\n"
        f"    start_quantiles={row(stats.start_quantiles, '    ')},\n"
        f"    relative_start_quantiles=(\n{tables}    ),\n"
        f"    queries_per_video_quantiles={row(stats.queries_per_video_quantiles, '    ')},\n"
        f"    queries_per_video_mean={stats.queries_per_video_mean!r},\n"
        ")"
    )


# Recorded by `g2l-real-stats ../shared/data/annotations`.
RECORDED: dict[str, RealStatistics] = {
    "charades": RealStatistics(
        source='charades_sta/mmn/charades_train.json',
        num_videos=5336,
        num_queries=12404,
        duration_quantiles_s=(
            5.5, 12.804, 14.908, 16.58, 17.452, 18.32, 19.25, 20.08, 20.66, 21.42, 21.92, 22.5, 23.0,
            23.46, 23.96, 24.42, 24.92, 25.29, 25.592, 25.92, 26.29, 26.684, 26.96, 27.33, 27.62, 27.92,
            28.21, 28.478, 28.79, 29.04, 29.25, 29.42, 29.548, 29.71, 29.75, 29.92, 29.96, 30.04, 30.08,
            30.17, 30.25, 30.29, 30.33, 30.38, 30.42, 30.46, 30.5, 30.54, 30.58, 30.58, 30.67, 30.71,
            30.71, 30.75, 30.79, 30.88, 30.92, 30.92, 31.0, 31.04, 31.08, 31.17, 31.25, 31.29, 31.38,
            31.42, 31.54, 31.58, 31.67, 31.75, 31.88, 31.96, 32.08, 32.25, 32.38, 32.54, 32.71, 32.88,
            33.08, 33.29, 33.54, 33.764, 34.04, 34.42, 34.67, 35.08, 35.58, 35.92, 36.492, 37.08, 37.81,
            38.494, 39.088, 39.982, 41.416, 42.92, 45.194, 48.58, 52.71, 60.25, 194.33,
        ),
        length_quantiles=(
            0.034, 0.129, 0.151, 0.165, 0.178, 0.19, 0.2, 0.212, 0.224, 0.236, 0.251, 0.266, 0.282, 0.301,
            0.321, 0.342, 0.365, 0.391, 0.422, 0.458, 0.508,
        ),
        start_quantiles=(
            0.0, 0.0, 0.0, 0.0, 0.007, 0.045, 0.086, 0.136, 0.187, 0.244, 0.302, 0.362, 0.421, 0.477,
            0.535, 0.582, 0.631, 0.683, 0.743, 0.809, 0.966,
        ),
        relative_start_quantiles=(
            (
                0.0, 0.0, 0.0, 0.0, 0.0, 0.017, 0.069, 0.137, 0.22, 0.323, 0.406, 0.488, 0.59, 0.715,
                0.822, 0.908, 0.988, 1.0, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.012, 0.056, 0.095, 0.156, 0.212, 0.27, 0.341, 0.411, 0.474, 0.552, 0.606,
                0.679, 0.756, 0.844, 0.926, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.013, 0.061, 0.119, 0.185, 0.25, 0.312, 0.383, 0.456, 0.545, 0.624, 0.683,
                0.764, 0.829, 0.902, 0.968, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.022, 0.078, 0.144, 0.208, 0.274, 0.356, 0.43, 0.521, 0.587, 0.665,
                0.743, 0.839, 0.908, 0.983, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.044, 0.106, 0.185, 0.288, 0.36, 0.462, 0.567, 0.669, 0.749,
                0.841, 0.931, 1.0, 1.0, 1.0, 1.0,
            ),
        ),
        queries_per_video_quantiles=(
            1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0,
            2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
            2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0,
            3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0,
            5.0, 5.0, 6.0, 6.0, 7.0, 10.0,
        ),
        queries_per_video_mean=2.325,
    ),
    "activitynet": RealStatistics(
        source='activitynet_captions/2dtan/train.json',
        num_videos=10009,
        num_queries=37417,
        duration_quantiles_s=(
            1.58, 8.043, 11.095, 13.775, 15.553, 18.25, 20.955, 23.45, 25.653, 28.26, 30.292, 31.86,
            33.898, 36.271, 38.412, 40.546, 42.616, 44.808, 47.099, 49.59, 51.83, 53.814, 55.82, 58.03,
            60.018, 61.6, 63.18, 65.09, 66.945, 68.8, 70.52, 72.35, 74.501, 76.503, 78.55, 80.39, 82.389,
            84.399, 86.521, 88.965, 91.07, 93.16, 95.601, 97.654, 99.786, 102.35, 104.72, 106.823, 109.168,
            111.46, 113.88, 116.312, 118.428, 120.37, 122.426, 124.71, 126.75, 129.187, 131.222, 133.849,
            136.19, 138.786, 140.9, 143.151, 145.362, 147.694, 150.3, 152.841, 155.579, 158.211, 160.302,
            162.86, 165.463, 168.345, 170.3, 172.64, 175.152, 177.548, 180.082, 182.303, 184.6, 186.98,
            189.231, 191.603, 193.94, 196.974, 199.874, 202.779, 205.26, 208.082, 210.61, 213.41, 215.627,
            218.433, 221.1, 224.12, 227.014, 230.153, 233.53, 236.634, 755.11,
        ),
        length_quantiles=(
            0.005, 0.025, 0.04, 0.055, 0.075, 0.095, 0.115, 0.14, 0.165, 0.195, 0.225, 0.26, 0.295, 0.335,
            0.39, 0.445, 0.51, 0.59, 0.725, 0.93, 1.0,
        ),
        start_quantiles=(
            0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.06, 0.105, 0.15, 0.2, 0.25, 0.3, 0.36, 0.435, 0.51, 0.59,
            0.67, 0.74, 0.815, 0.895, 0.995,
        ),
        relative_start_quantiles=(
            (
                0.0, 0.0, 0.0, 0.0, 0.03, 0.074, 0.123, 0.174, 0.24, 0.316, 0.402, 0.495, 0.583, 0.68,
                0.768, 0.86, 0.926, 0.974, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.061, 0.115, 0.169, 0.245, 0.333, 0.436, 0.541, 0.661,
                0.768, 0.864, 0.941, 1.0, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.0, 0.032, 0.11, 0.172, 0.244, 0.32, 0.423, 0.531, 0.635, 0.745,
                0.869, 0.946, 0.993, 1.0, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.027, 0.089, 0.201, 0.287, 0.371, 0.446, 0.505, 0.558, 0.634, 0.752,
                0.884, 0.951, 0.991, 1.0, 1.0, 1.0, 1.0,
            ),
            (
                0.0, 0.0, 0.0, 0.0, 0.055, 0.217, 0.323, 0.405, 0.479, 0.537, 0.618, 0.73, 0.858, 0.936,
                1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            ),
        ),
        queries_per_video_quantiles=(
            2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
            2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0,
            3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0,
            3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0,
            4.0, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0, 6.0, 6.0, 7.0, 7.0,
            7.0, 8.0, 8.0, 9.0, 11.0, 27.0,
        ),
        queries_per_video_mean=3.738,
    ),
    "tacos": RealStatistics(
        source='tacos/2dtan/train.json',
        num_videos=75,
        num_queries=9790,
        duration_quantiles_s=(
            51.497, 53.435, 54.344, 55.722, 59.522, 62.18, 63.321, 64.978, 71.321, 75.15, 77.612, 79.173,
            80.733, 81.071, 81.367, 81.959, 83.117, 85.103, 88.668, 93.724, 95.612, 96.563, 97.748, 99.833,
            99.933, 104.405, 108.941, 109.244, 109.497, 109.827, 110.524, 112.084, 112.951, 114.185,
            115.642, 116.724, 122.117, 126.115, 127.962, 128.818, 130.857, 133.647, 137.044, 140.844,
            145.007, 148.102, 149.445, 150.502, 154.654, 158.339, 158.741, 160.604, 163.038, 166.665,
            172.378, 175.973, 177.471, 178.767, 183.624, 184.464, 187.143, 191.142, 192.325, 193.761,
            195.895, 198.898, 203.076, 205.499, 207.078, 208.479, 213.211, 217.245, 223.001, 231.905,
            236.965, 241.99, 251.856, 271.841, 276.667, 280.148, 282.333, 282.535, 303.969, 315.705,
            318.586, 321.33, 350.98, 388.09, 421.924, 422.88, 423.653, 445.65, 488.927, 501.335, 518.773,
            552.061, 607.687, 688.861, 930.297, 1201.42, 1402.177,
        ),
        length_quantiles=(
            0.001, 0.012, 0.017, 0.021, 0.027, 0.031, 0.036, 0.041, 0.047, 0.054, 0.062, 0.071, 0.081,
            0.092, 0.109, 0.125, 0.149, 0.187, 0.242, 0.345, 0.834,
        ),
        start_quantiles=(
            0.005, 0.033, 0.051, 0.071, 0.092, 0.116, 0.145, 0.177, 0.213, 0.25, 0.297, 0.335, 0.387,
            0.454, 0.513, 0.588, 0.653, 0.736, 0.844, 0.924, 0.998,
        ),
        relative_start_quantiles=(
            (
                0.005, 0.018, 0.03, 0.04, 0.049, 0.065, 0.081, 0.096, 0.116, 0.144, 0.177, 0.227, 0.303,
                0.372, 0.487, 0.626, 0.723, 0.887, 0.962, 0.989, 1.0,
            ),
            (
                0.005, 0.03, 0.041, 0.053, 0.071, 0.088, 0.106, 0.139, 0.162, 0.204, 0.237, 0.272, 0.327,
                0.415, 0.524, 0.622, 0.701, 0.84, 0.948, 0.977, 1.0,
            ),
            (
                0.007, 0.041, 0.059, 0.077, 0.104, 0.136, 0.174, 0.2, 0.23, 0.256, 0.301, 0.348, 0.399,
                0.441, 0.489, 0.576, 0.685, 0.81, 0.919, 0.979, 1.0,
            ),
            (
                0.007, 0.057, 0.093, 0.116, 0.13, 0.156, 0.199, 0.219, 0.266, 0.306, 0.352, 0.384, 0.423,
                0.511, 0.569, 0.637, 0.717, 0.841, 0.924, 0.961, 1.0,
            ),
            (
                0.007, 0.102, 0.167, 0.224, 0.299, 0.361, 0.396, 0.449, 0.493, 0.57, 0.644, 0.707, 0.773,
                0.812, 0.835, 0.864, 0.884, 0.923, 0.951, 0.969, 1.0,
            ),
        ),
        queries_per_video_quantiles=(
            66.0, 69.7, 71.96, 73.0, 73.0, 77.9, 81.32, 83.18, 83.92, 84.0, 86.0, 89.14, 89.88, 90.62,
            91.36, 92.2, 93.68, 94.58, 96.28, 99.0, 99.0, 100.08, 101.84, 104.0, 104.0, 104.5, 105.0,
            105.0, 105.72, 106.92, 108.0, 108.0, 108.0, 108.42, 109.16, 109.9, 110.64, 111.38, 112.12,
            112.86, 113.0, 113.34, 114.08, 114.82, 115.0, 115.3, 116.0, 116.0, 119.64, 123.78, 126.0,
            126.0, 126.96, 128.0, 128.0, 128.0, 128.44, 129.18, 129.92, 132.64, 134.0, 134.56, 137.52,
            139.86, 141.0, 141.1, 141.84, 143.16, 145.6, 149.18, 151.4, 153.08, 154.84, 157.04, 158.52,
            159.0, 159.72, 161.94, 162.0, 162.0, 162.4, 163.88, 166.72, 168.0, 168.64, 171.6, 172.0,
            172.38, 173.48, 176.44, 179.4, 181.0, 181.4, 185.1, 188.8, 198.2, 215.32, 221.24, 224.04,
            226.3, 230.0,
        ),
        queries_per_video_mean=130.533,
    ),
}


def format_recorded_statistics(root: str | Path) -> str:
    """The ``RECORDED`` entries recomputed from the annotation files under ``root`` (the layout of
    ../shared/data/annotations), as Python source to paste over the table above."""
    lines = []
    for preset, relative_path in SOURCES.items():
        literal = format_statistics(compute_real_statistics(Path(root) / relative_path))
        lines.append(f'    "{preset}": ' + literal.replace("\n", "\n    ") + ",")
    return "\n".join(lines)
