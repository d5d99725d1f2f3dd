"""Write tiny synthetic videos with PyAV for the video-reading and feature-extraction tests.

Each frame is one flat colour that encodes its frame index (``index_color``), so a test can
read a decoded frame back to the index it came from (``decode_index``) and check which frame a
sampler chose. Flat colours survive lossy coding to within a few grey levels; the code uses
steps of 16 so that rounding is safe.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import h5py
import numpy as np

from g2l.video.feature_extraction import SPEC_ATTR

COLOR_STEP = 16  # grey levels between neighbouring codes; lossy coding moves a flat colour by < 8


def index_color(frame_idx: int) -> tuple[int, int, int]:
    """Frame index (0..255) -> an RGB colour: low 4 bits in red, high 4 bits in green."""
    low, high = frame_idx % 16, (frame_idx // 16) % 16
    return (COLOR_STEP * low + COLOR_STEP // 2, COLOR_STEP * high + COLOR_STEP // 2, 128)


def decode_index(frame: np.ndarray) -> int:
    """Inverse of ``index_color`` for a decoded ``(h, w, 3)`` uint8 frame (uses the centre pixels)."""
    h, w = frame.shape[:2]
    centre = frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).astype(np.float64).mean(0)
    low = int(np.clip(np.floor(centre[0] / COLOR_STEP), 0, 15))
    high = int(np.clip(np.floor(centre[1] / COLOR_STEP), 0, 15))
    return low + 16 * high


def write_test_video(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    audio: bool = False,
    vfr: bool = False,
    bframes: int = 0,
    faststart: bool = False,
    frame_times_s: Sequence[float] | None = None,
    color_fn: Callable[[int, float], tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Write a video whose frame ``i`` is a flat ``color_fn(i, start_s)`` (default: ``index_color(i)``).

    ``size`` is ``(width, height)``. Constant frame rate: frame ``i`` starts at ``i / fps`` for
    ``round(duration_s * fps)`` frames; ``fps`` may be fractional (29.97 is written as the exact
    NTSC rate 30000/1001). ``vfr=True`` (or explicit ``frame_times_s``) writes a variable-frame-rate
    file: frame start times on a millisecond clock with gaps that alternate between long and short.
    ``audio=True`` adds a mono AAC sine track of the same duration. ``bframes`` > 0 lets libx264
    use that many B-frames (decode order then differs from presentation order). ``faststart``
    puts the mp4 index before the data, so that a truncated copy still opens.

    Returns the frame start times in seconds, ``(n,)`` float64, as written (the frame ``i`` covers
    ``[times[i], times[i + 1])`` and the last one ends at ``duration_s``).
    """
    path = Path(path)
    width, height = size
    color_fn = color_fn or (lambda i, _t: index_color(i))
    if fps == 29.97:
        rate = Fraction(30000, 1001)
    else:
        rate = Fraction(fps).limit_denominator(1001)

    if frame_times_s is None and vfr:
        # Gaps cycle through 1x, 3x and 0.5x the nominal period: visibly non-uniform.
        period_s, times, t = 1.0 / fps, [], 0.0
        factors = (1.0, 3.0, 0.5)
        while t < duration_s - 1e-9:
            times.append(round(t, 3))
            t += period_s * factors[len(times) % len(factors)]
        frame_times_s = times
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if frame_times_s is not None:
            time_base = Fraction(1, 1000)
            pts = [int(round(t * 1000)) for t in frame_times_s]
        else:
            time_base = 1 / rate
            pts = list(range(int(round(duration_s * rate))))
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.codec_context.options = {"crf": "18", "preset": "ultrafast", "bf": str(bframes)}
        else:
            stream.codec_context.bit_rate = 2_000_000
        audio_stream = container.add_stream("aac", rate=16000) if audio else None
        if audio_stream is not None:
            audio_stream.layout = "mono"

        times_s = np.array([p * float(time_base) for p in pts], dtype=np.float64)
        for i, (p, t) in enumerate(zip(pts, times_s)):
            image = np.empty((height, width, 3), dtype=np.uint8)
            image[:] = color_fn(i, float(t))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

        if audio_stream is not None:
            samples_per_frame, sample_rate = 1024, 16000
            total = int(duration_s * sample_rate)
            for start in range(0, total, samples_per_frame):
                n = min(samples_per_frame, total - start)
                t = (start + np.arange(n)) / sample_rate
                wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # (1, n)
                frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                frame.time_base = Fraction(1, sample_rate)
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode())
    return times_s


def read_encoder_spec(path: str | Path) -> dict | None:
    """The encoder spec stored in a feature file, or None if it has none (e.g. a public file)."""
    with h5py.File(path, "r") as handle:
        return json.loads(handle.attrs[SPEC_ATTR]) if SPEC_ATTR in handle.attrs else None
