"""Frames picked and cut the way the public CLIP features of QVHighlights were made.

Moment-DETR's ``run_on_video/data_utils.py`` (``VideoLoader``, copied from Linjie Li's
HERO_Video_Feature_Extractor ``clip/video_loader.py``, which made the QVHighlights release) reads a
video with one ffmpeg command; this module runs the same filters, in the same order, through
PyAV's binding of libavfilter, so no ffmpeg binary is needed:

1. probe: the stream's coded ``width, height`` and ``duration`` (ffprobe's stream fields);
2. rate: ``fps = 1 / clip_len_s``, except that a video shorter than ``clip_len_s + 0.1`` s is
   read at ``fps = 2 / max(int(duration), 1)``;
3. ``fps=fps``: ffmpeg's fps filter. Output frame ``k`` (of ``round(D * fps)``, ``D`` the end of
   the last frame, half away from zero) is the last frame whose timestamp, in units of
   ``1 / fps``, rounds to at most ``k``: the last frame that starts before ``(k + 0.5) / fps``
   (a frame starting exactly there belongs to the next clip);
4. ``scale=W:H``: the short side to ``size`` and the long side to ``int(long * size / short)``,
   with swscale's bicubic filter (what the ffmpeg command line gives a ``scale`` filter that
   names no flags), converting to RGB;
5. ``crop=size:size:x:y`` with ``x = int((W - size) / 2)``, ``y = int((H - size) / 2)``: the centre.

The normalisation that follows (``x / 255``, then ``(x - mean) / (std + 1e-8)`` with OpenAI CLIP's
mean and std) is the encoder's (``g2l.video.frame_encoders.ClipReleaseEncoder``).
``tests/reference/moment_detr_clip.py`` ports the original step by step; the tests compare the two.

Not reproduced: the release ran on CUDA, where OpenAI's ``clip.load`` keeps the weights in float16,
and stored float16 features (the model here runs in float32: features agree to about 1e-3); ffmpeg
versions differ in their rounding at the last pixel (FFmpeg 3.4 made the release, PyAV bundles its
own); the command line auto-rotates phone videos, this reader does not (nor did the release's
width/height probe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from g2l.video.decoding import REENCODE_HINT, VideoReadError, check_video_file



@dataclass(frozen=True)
class ReleasePlan:
    """How one video is read: its probed geometry, the rate, the scaled size and the crop corner."""

    width: int
    height: int
    duration_s: float  # the stream's duration from its header (-1 when the header has none)
    fps: float
    scaled_width: int
    scaled_height: int
    crop_x: int
    crop_y: int


def scaled_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(H, W)`` after ``VideoLoader._get_output_dim``: the short side becomes ``size``."""
    if height >= width:
        return int(height * size / width), size
    return size, int(width * size / height)


def clip_rate(duration_s: float, clip_len_s: float) -> float:
    """Frames per second: one per clip, or ``2 / max(int(D), 1)`` for a video shorter than a clip + 0.1 s."""
    fps = 1.0 / clip_len_s
    if 0 < duration_s < 1 / fps + 0.1:
        fps = 2 / max(int(duration_s), 1)
    return fps


def plan_release_read(width: int, height: int, duration_s: float, *, clip_len_s: float, size: int) -> ReleasePlan:
    scaled_height, scaled_width = scaled_size(height, width, size)
    return ReleasePlan(width, height, duration_s, clip_rate(duration_s, clip_len_s), scaled_width, scaled_height,
                       int((scaled_width - size) / 2.0), int((scaled_height - size) / 2.0))


class ReleaseVideo:
    """An opened video and its plan; iterate it for chunks ``(f, size, size, 3)`` uint8 RGB.

    ``duration_s`` is the end of the last frame (known once iterated; before, the header's).
    """

    def __init__(self, path: str | Path, *, clip_len_s: float, size: int, chunk_frames: int = 64):
        self.path = Path(path)
        self.size = size
        self.chunk_frames = chunk_frames
        av = _import_av()
        check_video_file(self.path)
        try:
            with av.open(str(self.path.absolute()), metadata_errors="ignore") as container:
                stream = _video_stream(container, self.path)
                header_s = float(stream.duration * stream.time_base) if stream.duration else -1.0
                self.plan = plan_release_read(stream.codec_context.width, stream.codec_context.height, header_s,
                                              clip_len_s=clip_len_s, size=size)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise VideoReadError(_failure(self.path, error)) from error
        if not (self.plan.width > 0 and self.plan.height > 0):
            raise VideoReadError(f"Video file {str(self.path)!r} does not say its frame size in its header; {REENCODE_HINT}.")
        self.duration_s = header_s
        self.fps = self.plan.fps

    def __len__(self) -> int:
        """The number of frames the fps filter will give (from the header; exact after iterating)."""
        return max(1, _round_half_away(max(self.duration_s, 0.0) * self.fps))

    def __iter__(self) -> Iterator[np.ndarray]:
        av = _import_av()
        plan, chunk = self.plan, []
        try:
            with av.open(str(self.path.absolute()), metadata_errors="ignore") as container:
                stream = _video_stream(container, self.path)
                stream.thread_type = "AUTO"  # FFmpeg's frame threads: the same frames, sooner
                graph = _filter_graph(av, stream, plan, self.size)
                last_end = None
                for frame in container.decode(stream):
                    if frame.pts is not None:
                        duration = getattr(frame, "duration", None) or 0
                        last_end = (frame.pts + duration) * frame.time_base
                    graph.push(frame)
                    chunk += _pull_all(av, graph)
                    if len(chunk) >= self.chunk_frames:
                        yield np.stack(chunk[: self.chunk_frames])
                        chunk = chunk[self.chunk_frames:]
                graph.push(None)
                chunk += _pull_all(av, graph)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise VideoReadError(_failure(self.path, error)) from error
        if last_end is None:
            raise VideoReadError(f"Video file {str(self.path)!r} has no decodable frame; {REENCODE_HINT}.")
        self.duration_s = float(last_end)
        if chunk:
            yield np.stack(chunk)


def _filter_graph(av, stream, plan: ReleasePlan, size: int):
    """``fps -> scale (bicubic) -> crop -> rgb24``: the release's ffmpeg command."""
    graph = av.filter.Graph()
    chain = [
        graph.add_buffer(template=stream),
        graph.add("fps", f"fps={plan.fps!r}"),
        graph.add("scale", f"{plan.scaled_width}:{plan.scaled_height}:flags=bicubic"),
        graph.add("crop", f"{size}:{size}:{plan.crop_x}:{plan.crop_y}"),
        graph.add("format", "rgb24"),
        graph.add("buffersink"),
    ]
    for source, target in zip(chain, chain[1:]):
        source.link_to(target)
    graph.configure()
    return graph


def _pull_all(av, graph) -> list[np.ndarray]:
    frames = []
    while True:
        try:
            frames.append(graph.pull().to_ndarray())  # (size, size, 3) uint8
        except (av.BlockingIOError, av.EOFError):
            return frames


def _round_half_away(value: float) -> int:
    return int(math.floor(value + 0.5))


def _import_av():
    try:
        import av
    except ImportError:
        from g2l.video.frame_encoders import FrameEncoderError

        raise FrameEncoderError(
            "reading a video the way the public CLIP features were made needs PyAV; run `pip install av` "
            "(it comes with `pip install 'g2l[app]'`)"
        ) from None
    return av


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoReadError(f"File {str(path)!r} has no video stream (audio only?); pass a video file.")
    return container.streams.video[0]


def _failure(path: Path, error: Exception) -> str:
    reason = (getattr(error, "strerror", None) or str(error).strip().splitlines()[-1:] or ["no details"])
    reason = reason if isinstance(reason, str) else reason[0]
    return f"File {str(path)!r} could not be read as a video ({reason[:160]}); check the file, then {REENCODE_HINT}."
