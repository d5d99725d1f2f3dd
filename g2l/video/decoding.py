"""Reading frames from video files with decord, sampled at a fixed rate by their timestamps.

Sampling rule. A video of duration ``D`` seconds sampled at ``fps`` frames per second gives
``n = floor(D * fps)`` samples at times ``t_k = (k + 0.5) / fps``, ``k = 0 .. n-1``: the centres of
consecutive windows of ``1 / fps`` seconds (a trailing partial window is dropped). A video shorter
than one window gives a single sample at ``D / 2``. Each time is mapped to the frame whose
presentation interval ``[start_i, start_{i+1})`` covers it, using decord's per-frame timestamps
(``get_frame_timestamp``), so odd and variable frame rates are handled exactly rather than through
``index / fps``. ``D`` is the end of the last frame's presentation interval, measured from the
first frame (decord subtracts the stream's start time).

Resize rule. Frames are resized at decode time (by decord's FFmpeg scaler, which filters like an
antialiased bilinear resize) to a ``size x size`` square, i.e. squashed, not cropped: the whole
field of view is kept, so an action at the edge of a 16:9 frame is still seen. The frame encoders
(``g2l.video.frame_encoders``) take square inputs of the same side (224), so their own resize is
then a no-op. ``size=None`` keeps the native resolution.

Memory. Samples are decoded ``chunk_frames`` at a time with ``VideoReader.get_batch``, and decord's
decoder is reset (``VideoReader.seek(0)``) after each chunk, before the caller works on it. Without
the reset memory grew with the video's length: decord's reader, when its decoding thread has no
frame ready, pushes the next packet instead of waiting, so one ``get_batch`` queues the packets up
to the end of the file; while the caller then encodes the chunk, that thread keeps decoding them
and resizes every frame, sampled or not, into a queue that each pause lengthens, from buffers that
FFmpeg's filter-graph pool keeps until the reader is closed (grounding a 30-minute video held over
a GB of them). The reset drops both queues; decord then seeks the next chunk's first sample from
its keyframe, as it does whenever a read crosses a keyframe, so the frames are the same. It is
skipped where it would decode more frames a second time than the next chunk spans (keyframes
further apart than a chunk), which keeps the old behaviour there. Still held: the packets queued up
to the end of the file, i.e. the compressed rest of the video (a few MB for the benchmark's videos,
the file's size for a high-bitrate one).

Every failure to open or decode a file is raised as ``VideoReadError`` with one sentence that
names the file and says what to do; decord's own exceptions (``DECORDError``, ``RuntimeError``,
``AssertionError``, ...) never escape.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from g2l.errors import G2LError, path_problem

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")

REENCODE_HINT = "re-download it or re-encode it (e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`)"

# The densest sampling allowed. Videos rarely hold more frames a second, so a faster rate only
# repeats frames; and a rate like 10^6 would decode and encode for minutes before anything fails.
MAX_SAMPLING_FPS = 60.0


class VideoReadError(G2LError):
    """A video file is missing, empty, truncated, corrupt or not a video at all."""


class SamplingRateError(G2LError):
    """A sampling rate that is not a number of frames per second in ``(0, MAX_SAMPLING_FPS]``."""


def check_sampling_fps(fps, *, what: str = "fps", fix: str = "sample at 1 frame per second, the default") -> float:
    """``fps`` as a float when it is a frame rate in ``(0, MAX_SAMPLING_FPS]``; otherwise a
    ``SamplingRateError`` whose sentence names the setting (``what``) and says what to do (``fix``)."""
    number = isinstance(fps, numbers.Real) and not isinstance(fps, (bool, np.bool_))
    if not (number and 0 < fps <= MAX_SAMPLING_FPS):  # also false for NaN
        raise SamplingRateError(
            f"{what} must be a positive frame rate of at most {MAX_SAMPLING_FPS:g} frames per second, got {fps!r}; {fix}"
        )
    return float(fps)


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` finds: the decodable duration and the native stream geometry."""

    duration_s: float  # end of the last frame's presentation interval
    native_fps: float  # average frame rate (frames / duration) reported by decord
    num_frames: int
    width: int
    height: int


@dataclass
class VideoChunk:
    """A run of consecutive samples of one video.

    ``frames`` is ``(f, h, w, 3)`` uint8 RGB; ``times_s`` ``(f,)`` float64 holds the sample times in
    seconds; ``frame_idx`` ``(f,)`` int64 the native frame each sample was taken from.
    """

    frames: np.ndarray
    times_s: np.ndarray
    frame_idx: np.ndarray


def sample_times(duration_s: float, fps: float) -> np.ndarray:
    """Sample times ``(n,)`` in seconds: ``(k + 0.5) / fps`` for ``k < floor(duration_s * fps)``.

    A video shorter than ``1 / fps`` gives one sample at ``duration_s / 2``. ``fps`` must be in
    ``(0, MAX_SAMPLING_FPS]`` (``SamplingRateError``).
    """
    fps = check_sampling_fps(fps)
    num_samples = int(math.floor(duration_s * fps + 1e-6))  # tolerance for 4.0 * 1.0 == 3.9999...
    if num_samples == 0:
        return np.array([duration_s / 2.0])
    return (np.arange(num_samples, dtype=np.float64) + 0.5) / fps


def frames_at_times(frame_starts_s: np.ndarray, times_s: np.ndarray, *, tolerance_s: float = 1e-4) -> np.ndarray:
    """For each time, the index of the frame whose interval ``[start_i, start_{i+1})`` covers it.

    ``frame_starts_s`` ``(n,)`` need not be sorted (the result refers to its original order);
    times before the first frame map to the first frame. A frame counts as starting
    ``tolerance_s`` early, so that a time on a frame boundary goes to the later frame even though
    decord returns float32 timestamps (0.1 ms is far below any frame period).
    """
    order = np.argsort(frame_starts_s, kind="stable")
    position = np.searchsorted(frame_starts_s[order] - tolerance_s, times_s, side="right") - 1
    return order[np.clip(position, 0, len(order) - 1)].astype(np.int64)


def probe_video(path: str | Path) -> VideoInfo:
    """Duration, frame rate, frame count and size of a video, from its container and stream
    headers: no frame is decoded, so a check on them (the web app's limits) costs no more than
    reading the file's index, whatever the frames' size. Raises ``VideoReadError``.

    decord gives the frame count and timestamps (its packet index) but not the frame size; PyAV
    (installed with ``g2l[app]``) reads that from the stream's parameters. Without PyAV the first
    frame is decoded at full size to measure it (a 12000 x 12000 frame takes GBs).
    """
    reader = _open_reader(path, size=None)  # reads the packet index; decodes nothing
    starts_s, duration_s = _frame_starts_and_duration(reader, path)
    size = _stream_size(path)
    if size is None:
        first = _get_batch(reader, np.zeros(1, dtype=np.int64), path)  # (1, h, w, 3)
        size = int(first.shape[2]), int(first.shape[1])
    return VideoInfo(
        duration_s=duration_s,
        native_fps=float(_call_decord(reader.get_avg_fps, path)),
        num_frames=len(starts_s),
        width=size[0],
        height=size[1],
    )


def _stream_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` of the first video stream from its parameters (PyAV, no frame decoded);
    None without PyAV. A stream whose header gives no size is refused (``VideoReadError``)."""
    try:
        import av
    except ImportError:
        return None
    try:
        # absolute: FFmpeg reads a leading "name:" as a protocol; odd tags are no reason to refuse a video
        with av.open(str(Path(path).absolute()), metadata_errors="ignore") as container:
            streams = container.streams.video
            width, height = (streams[0].codec_context.width, streams[0].codec_context.height) if streams else (0, 0)
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:  # decord opened it; PyAV should too
        reason = getattr(error, "strerror", None) or _human_part(str(error))
        raise VideoReadError(f"File {str(path)!r} could not be read as a video (its stream header: {reason}); check "
                             f"the file, then {REENCODE_HINT}.") from error
    if not (width > 0 and height > 0):
        raise VideoReadError(f"Video file {str(path)!r} does not say its frame size in its header; {REENCODE_HINT}.")
    return int(width), int(height)


class SampledVideo:
    """An opened video and its sampling plan; iterate it for ``VideoChunk``s (each pass decodes anew).

    ``duration_s`` is the decodable duration, ``times_s`` ``(n,)`` the sample times and
    ``frame_idx`` ``(n,)`` the native frame chosen for each; ``len()`` is ``n``; ``keyframes``
    ``(k,)`` the native frames decord can seek to.
    """

    def __init__(self, path: str | Path, reader, *, fps: float, chunk_frames: int):
        self.path = Path(path)
        self._reader = reader
        starts_s, self.duration_s = _frame_starts_and_duration(reader, path)
        self.times_s = sample_times(self.duration_s, fps)  # (n,)
        self.frame_idx = frames_at_times(starts_s, self.times_s)  # (n,)
        self.chunk_frames = chunk_frames
        self.keyframes = np.sort(np.asarray(_call_decord(reader.get_key_indices, path), dtype=np.int64))  # (k,)

    def __len__(self) -> int:
        return len(self.times_s)

    def __iter__(self) -> Iterator[VideoChunk]:
        for begin in range(0, len(self.times_s), self.chunk_frames):
            chunk_idx = self.frame_idx[begin : begin + self.chunk_frames]
            frames = _get_batch(self._reader, chunk_idx, self.path)  # (f, h, w, 3)
            following = self.frame_idx[begin + self.chunk_frames : begin + 2 * self.chunk_frames]
            if reset_is_cheap(self.keyframes, int(chunk_idx.max()) + 1, following):
                # Before the caller works on the chunk: drop what decord queued ahead (module docstring).
                _call_decord(lambda: self._reader.seek(0), self.path)
            yield VideoChunk(frames=frames, times_s=self.times_s[begin : begin + self.chunk_frames], frame_idx=chunk_idx)


def reset_is_cheap(keyframes: np.ndarray, position: int, following: np.ndarray) -> bool:
    """Whether resetting the decoder at native frame ``position`` (the frame after the last one
    read) decodes again at most as many frames as the next chunk ``following`` ``(f,)`` spans.

    After a reset decord decodes the next chunk from the keyframe at or before its first frame; the
    frames from that keyframe up to ``position`` are the ones decoded twice. With no next chunk
    the reset is free. ``keyframes`` ``(k,)`` are sorted native frame indices.
    """
    if len(following) == 0:
        return True
    first = int(following.min())
    at_or_before = keyframes[keyframes <= first]
    keyframe = int(at_or_before[-1]) if len(at_or_before) else 0
    return position - keyframe <= int(following.max()) - first + 1


def read_video_frames(
    path: str | Path,
    *,
    fps: float = 1.0,
    size: int | None = 224,
    chunk_frames: int = 64,
    decode_threads: int = 0,
) -> SampledVideo:
    """The video's samples (see the module docstring), iterated in chunks of at most ``chunk_frames``.

    Frames come ``(f, size, size, 3)`` uint8 RGB (native size when ``size`` is None). The file is
    opened and indexed here, so a missing or unreadable file raises ``VideoReadError`` at the
    call; a decoding failure later raises it from the iteration. ``decode_threads=0`` lets FFmpeg
    choose.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}.")
    fps = check_sampling_fps(fps)
    reader = _open_reader(path, size=size, decode_threads=decode_threads)
    return SampledVideo(path, reader, fps=fps, chunk_frames=chunk_frames)


def is_video_file(path: str | Path) -> bool:
    """Whether the name ends with a known video extension (used when a folder is listed)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def check_video_file(path: Path) -> None:
    """Refuse, in one sentence, a video path that is not a non-empty regular file (before any decoder
    opens it)."""
    problem = path_problem(path)  # "does not exist", "is a directory", "is a link to /dev/zero, which is not ..."
    if problem and problem.endswith("does not exist"):
        raise VideoReadError(f"Video file {str(path)!r} {problem}; check the path.")
    if problem:
        raise VideoReadError(f"Video path {str(path)!r} {problem}; pass a video file (folders are listed by the tools).")
    if path.stat().st_size == 0:
        raise VideoReadError(f"Video file {str(path)!r} is empty (0 bytes); {REENCODE_HINT}.")


# --- decord, wrapped so that nothing but VideoReadError escapes ------------------------------------


def _open_reader(path: str | Path, *, size: int | None, decode_threads: int = 0):
    import decord

    path = Path(path)
    check_video_file(path)
    if size is not None and size < 1:
        raise ValueError(f"The frame size must be a positive number of pixels, got size={size}.")
    _quiet_ffmpeg_log()
    side = -1 if size is None else int(size)
    try:
        with _native_stderr_silenced():  # decord logs "ERROR opening: ..." itself before raising
            return decord.VideoReader(str(path), ctx=decord.cpu(0), width=side, height=side, num_threads=decode_threads)
    except Exception as error:  # decord raises RuntimeError, DECORDError or AssertionError
        raise VideoReadError(_describe_failure(path, error, when="opening")) from error


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null while native code runs, so a bad file yields one
    clear error from us instead of the library's own log lines. Python-level stderr is untouched
    outside the block."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (e.g. some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _frame_starts_and_duration(reader, path) -> tuple[np.ndarray, float]:
    """Per-frame start times ``(n,)`` and the end of the last frame, both in seconds."""
    pts_s = np.asarray(_call_decord(lambda: reader.get_frame_timestamp(np.arange(len(reader))), path), dtype=np.float64)
    starts_s, ends_s = pts_s[:, 0], pts_s[:, 1]  # (n,), (n,)
    duration_s = float(max(ends_s.max(), starts_s.max()))
    if ends_s[-1] <= starts_s[-1] and len(starts_s) > 1:
        # Some containers leave the last packet without a duration: extend by the median frame gap.
        duration_s = float(starts_s.max() + np.median(np.diff(np.sort(starts_s))))
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise VideoReadError(f"Video file {str(path)!r} has no usable timestamps (duration {duration_s}); {REENCODE_HINT}.")
    return starts_s, duration_s


def _get_batch(reader, frame_idx: np.ndarray, path) -> np.ndarray:
    frames = _call_decord(lambda: reader.get_batch(frame_idx.tolist()), path)
    frames = _to_numpy(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoReadError(f"Video file {str(path)!r} decoded to an unexpected array {frames.dtype} {frames.shape}; {REENCODE_HINT}.")
    return frames  # (f, h, w, 3)


def _call_decord(function, path):
    try:
        return function()
    except VideoReadError:
        raise
    except Exception as error:
        raise VideoReadError(_describe_failure(Path(path), error, when="decoding")) from error


def _to_numpy(array) -> np.ndarray:
    """decord's bridge is per thread and may have been switched to torch elsewhere: accept both."""
    if hasattr(array, "asnumpy"):
        return array.asnumpy()
    if hasattr(array, "numpy"):
        return array.cpu().numpy()
    return np.asarray(array)


def _describe_failure(path: Path, error: Exception, *, when: str) -> str:
    message = str(error)
    clues = _iso_media_clues(path)
    if "cannot find video stream" in message:
        if clues is not None and clues.declares_video:
            return (f"Video file {str(path)!r} looks truncated or damaged: its container declares a video track, but "
                    f"no frame of it can be decoded; {REENCODE_HINT}.")
        if clues is not None and clues.cut_short:
            return (f"Video file {str(path)!r} looks truncated or damaged: its container ends before its last part "
                    f"does and no video stream can be found in what is left; {REENCODE_HINT}.")
        return f"File {str(path)!r} has no video stream (audio only?); pass a video file."
    if clues is not None and clues.cut_short:
        return (f"Video file {str(path)!r} looks truncated: its container ends before its last part does "
                f"(decoding failed while {when} it); {REENCODE_HINT}.")
    if "av_read_frame" in message or "send_packet" in message or "partial" in message:
        return f"Video file {str(path)!r} is truncated or corrupt (decoding failed while {when} it); {REENCODE_HINT}."
    if message.startswith("Error reading"):  # decord's whole message when FFmpeg cannot open the file
        return (
            f"File {str(path)!r} could not be opened as a video: it is not a video, or it is incomplete "
            f"(a truncated mp4 loses its index); check the file, then {REENCODE_HINT}."
        )
    return (
        f"File {str(path)!r} could not be read as a video (decord failed while {when} it: "
        f"{_human_part(message)}); check the file, then {REENCODE_HINT}."
    )


@dataclass(frozen=True)
class _MediaClues:
    cut_short: bool  # a top-level box runs past the end of the file, or a video track has no media data box
    declares_video: bool  # the index (moov) has a track with the 'vide' handler


def _iso_media_clues(path: Path) -> _MediaClues | None:
    """What the top-level boxes of an ISO media file (mp4, mov, m4v, 3gp) say about why decord
    failed, read without decoding; None for another container or a file that cannot be read.
    A box is ``size (4 bytes, big-endian) kind (4)``, with a 64-bit size after them when size is 1
    and "to the end of the file" when it is 0; a track's ``hdlr`` box names its kind 8 bytes after
    the word ``hdlr`` (``vide``, ``soun``, ...)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            if file.read(8)[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
                return None
            offset, cut_short, declares_video, media_data = 0, False, False, False
            while offset + 8 <= size:
                file.seek(offset)
                header = file.read(16)
                box_size, kind, header_size = int.from_bytes(header[:4], "big"), header[4:8], 8
                if box_size == 1:
                    box_size, header_size = int.from_bytes(header[8:16], "big"), 16
                elif box_size == 0:
                    box_size = size - offset
                if box_size < header_size:  # not a box: the file is damaged from here on
                    cut_short = True
                    break
                cut_short = cut_short or offset + box_size > size
                media_data = media_data or kind == b"mdat"
                if kind == b"moov":
                    file.seek(offset + header_size)
                    index = file.read(min(box_size - header_size, 64 << 20))
                    declares_video = re.search(rb"hdlr.{8}vide", index, re.DOTALL) is not None
                offset += box_size
            cut_short = cut_short or 0 < size - offset < 8 or (declares_video and not media_data)
    except OSError:
        return None
    return _MediaClues(cut_short, declares_video)


def _human_part(message: str) -> str:
    """decord messages start with a time and a build path (``[12:00:00] /src/x.cc:83: ...``): drop them."""
    lines = message.strip().splitlines()
    line = re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", lines[-1] if lines else "no details")
    return line.replace("Check failed: ", "")[:160]


@functools.cache
def _quiet_ffmpeg_log() -> None:
    """Silence the FFmpeg bundled with decord below fatal errors (best effort, once per process).

    Without this every unreadable file also prints FFmpeg's own line ("moov atom not found") on
    stderr, next to the ``VideoReadError`` that already says it. Only decord's private copy of
    libavutil is touched; PyAV or another FFmpeg in the process keeps its own level.
    """
    import decord

    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(decord.__file__)), "decord.libs", "libavutil*.so*"))
    if not libs:
        return
    try:
        ctypes.CDLL(libs[0]).av_log_set_level(8)  # AV_LOG_FATAL
    except (OSError, AttributeError):
        pass
