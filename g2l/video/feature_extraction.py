"""Extract per-frame features from video files into an HDF5 file in the public layout.

Layout written (the one Charades-STA's ``vgg_rgb_features.hdf5`` uses, so the feature stores read
it unchanged)::

    f[video_id]                  (T, d) float32, one row per sample at times (k + 0.5) / fps
    f[video_id].attrs            duration_s (float), fps (float)
    f.attrs["g2l_encoder_spec"]  JSON of the encoder's spec plus the sampling fps
    f.attrs["fps"]               the sampling fps

``video_id`` is the file name without its extension. Runs resume: videos already in the file are
skipped; a file made with another encoder or fps is an ``EncoderMismatchError``. A video's
dataset is written only once all its features are computed, under a temporary name that is
renamed when complete, and the file is flushed after each video; a leftover temporary dataset
(from a run killed while writing) is removed on the next run. Unreadable videos are counted,
reported and skipped.

A ``clip_release`` encoder (``g2l.video.frame_encoders.ClipReleaseEncoder``) reads its frames the
way the public CLIP features were made (``g2l.video.release_frames``: one per ``clip_len_s``, short
side resized and centre-cropped), so ``fps`` is ``1 / clip_len_s``. ``declare_release`` writes the
spec of a public release into a folder of downloaded features (``g2l_encoder_spec.json``), so that
models trained on it record the encoder and can ground video files.

Decoding runs in a background thread that keeps up to ``prefetch_chunks`` decoded chunks ready
in a bounded queue, so decoding overlaps with encoding and memory stays bounded.
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import h5py
import numpy as np
from tqdm import tqdm

from g2l.errors import G2LError
from g2l.io.limits import MAX_TEXT_FILE_BYTES
from g2l.io.safe_files import read_text_file
from g2l.video.decoding import (
    VIDEO_EXTENSIONS,
    SamplingRateError,
    VideoReadError,
    check_sampling_fps,
    is_video_file,
    read_video_frames,
)
from g2l.video.frame_encoders import RELEASE_SPECS, ClipReleaseEncoder, FrameEncoder, check_encoder_compatible
from g2l.video.release_frames import ReleaseVideo

SPEC_ATTR = "g2l_encoder_spec"
PARTIAL_PREFIX = ".partial-"


class FeatureFileError(G2LError):
    """The output path is not an HDF5 feature file this module can resume."""


class VideoListError(G2LError):
    """Video inputs that cannot be listed: a path that does not exist, a folder with no video, or
    two videos with one id."""


def extract_video_features(
    path: str | Path,
    encoder: FrameEncoder,
    fps: float = 1.0,
    batch_size: int = 32,
    *,
    chunk_frames: int = 64,
    prefetch_chunks: int = 2,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Features ``(T, d)`` float32 of one video sampled at ``fps``, and its duration in seconds.

    Frames are read at the encoder's input size; raises ``VideoReadError`` for an unreadable file.
    ``progress(fraction of the frames encoded)`` is called after each chunk. A ``ClipReleaseEncoder``
    reads its frames the release's way (``g2l.video.release_frames``: one per ``clip_len_s``, whatever
    ``fps`` says, which callers set to ``1 / clip_len_s``).
    """
    chunk_frames = max(chunk_frames, batch_size)
    if isinstance(encoder, ClipReleaseEncoder):
        video = ReleaseVideo(path, clip_len_s=encoder.clip_len_s, size=encoder.input_size, chunk_frames=chunk_frames)
        chunks = prefetch(video, prefetch_chunks)  # (f, s, s, 3) each
    else:
        video = read_video_frames(path, fps=fps, size=encoder.input_size, chunk_frames=chunk_frames)
        chunks = (chunk.frames for chunk in prefetch(video, prefetch_chunks))
    features, done = [], 0
    for frames in chunks:
        features.append(encoder.encode(frames, batch_size=batch_size))
        done += len(frames)
        if progress is not None:
            progress(min(1.0, done / max(1, len(video))))
    return np.concatenate(features).astype(np.float32, copy=False), video.duration_s  # (T, d)


def encoder_fps(encoder: FrameEncoder, fps: float | None) -> float:
    """The sampling rate to use: ``fps`` (1 when None), or a release encoder's ``1 / clip_len_s``,
    which a different ``fps`` may not override (``SamplingRateError``)."""
    if isinstance(encoder, ClipReleaseEncoder):
        own = 1.0 / encoder.clip_len_s
        if fps is not None and not math.isclose(fps, own, rel_tol=1e-9):
            raise SamplingRateError(
                f"the {encoder.name} encoder samples one frame per {encoder.clip_len_s:g} s clip ({own:g} frames/s), "
                f"not {fps:g}; leave the frame rate out (g2l-extract: drop --fps, set --clip-len instead)"
            )
        return own
    return 1.0 if fps is None else fps


def declare_release(folder: str | Path, release: str) -> Path:
    """Write ``folder/g2l_encoder_spec.json``: the spec of the public release ``release`` (a key of
    ``RELEASE_SPECS``) that made the folder's features. An existing declaration is kept when it says
    the same and refused when it differs; the folder must hold ``.npy``/``.npz`` features."""
    from g2l.data.features import SPEC_FILE, FeatureStore
    from g2l.io import strict_json
    from g2l.io.atomic import write_text_atomic

    if release not in RELEASE_SPECS:
        raise FeatureFileError(f"unknown release {release!r}; declare one of {', '.join(sorted(RELEASE_SPECS))}")
    folder = Path(folder)
    if not folder.is_dir() or not any(p.suffix in (".npy", ".npz") for p in folder.iterdir()):
        raise FeatureFileError(f"{str(folder)!r} is not a folder of .npy/.npz feature files; pass the folder the "
                               "release's features were unpacked into (e.g. features/clip_features)")
    spec = RELEASE_SPECS[release]
    target = folder / SPEC_FILE
    if target.exists():
        current = FeatureStore(folder).encoder_spec()
        if current != json.loads(json.dumps(spec)):
            raise FeatureFileError(f"{str(target)!r} already declares another frame encoder "
                                   f"({(current or {}).get('name')!r}); remove it first if it is wrong")
        return target
    return write_text_atomic(target, strict_json.dumps(spec, indent=2, sort_keys=True) + "\n")


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``items`` in a background thread, keeping at most ``depth`` items ready.

    An exception in the producer is re-raised here; stopping early (an exception in the consumer)
    stops the producer.
    """
    ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(("error", error))

    thread = threading.Thread(target=produce, name="g2l-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


@dataclass
class ExtractionReport:
    """What one run did: ids written, ids already present, and ``(path, reason)`` of failures."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"extracted {len(self.extracted)} videos, skipped {len(self.skipped)} already in the file, "
            f"failed {len(self.failed)}"
        ]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def list_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, folders (their video files, sorted, not recursive) and ``.txt`` lists of paths.

    In a ``.txt`` list, one path a line, relative paths are relative to the list's folder, blank
    lines and lines starting with ``#`` are skipped; listed files that are missing are kept (they
    fail later as unreadable videos). A command-line input that does not exist, a folder with no
    video, or two videos with the same id raise ``VideoListError``.
    """
    videos: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_video_file(p))
            if not found:
                raise VideoListError(f"Folder {str(path)!r} holds no video file (looked for {', '.join(VIDEO_EXTENSIONS)}).")
            videos += found
        elif path.suffix.lower() == ".txt" and path.is_file():
            for line in read_text_file(path, what=f"video list {path}", max_bytes=MAX_TEXT_FILE_BYTES).splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    listed = Path(line)
                    videos.append(listed if listed.is_absolute() else path.parent / listed)
        elif path.exists():
            videos.append(path)
        else:
            raise VideoListError(f"Input {str(path)!r} does not exist; pass video files, folders or .txt lists of paths.")
    by_id: dict[str, Path] = {}
    for video in videos:
        other = by_id.setdefault(video.stem, video)
        if other != video:
            raise VideoListError(f"Videos {str(other)!r} and {str(video)!r} share the id {video.stem!r}; rename one or extract them into separate files.")
    return list(by_id.values())


def extract_features_to_hdf5(
    videos: Sequence[str | Path],
    out_path: str | Path,
    encoder: FrameEncoder,
    *,
    fps: float | None = None,
    batch_size: int = 32,
    progress: bool | Callable[[float], None] = True,
) -> ExtractionReport:
    """Extract every video not yet in ``out_path`` (see the module docstring); never stops on a bad video.
    ``progress``: True for a tqdm bar over videos on stderr, False for none, or a callback given the
    fraction of the work done (videos done plus the encoded share of the current one) as it goes.

    Raises ``EncoderMismatchError`` when ``out_path`` holds features of another encoder or fps,
    and ``FeatureFileError`` when it is not a feature file this function wrote; an ``fps`` outside
    ``(0, MAX_SAMPLING_FPS]`` is a ``SamplingRateError`` before anything is written.
    """
    fps = check_sampling_fps(encoder_fps(encoder, fps),
                             fix="features are usually sampled at 1 to 5 frames per second (g2l-extract --fps)")
    spec = {**encoder.spec, "fps": fps}
    report = ExtractionReport()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = h5py.File(out_path, "a")
    except OSError as error:
        raise FeatureFileError(f"Output {str(out_path)!r} exists but is not an HDF5 file h5py can open ({error}); choose another --out.") from error
    with handle:
        _prepare_output(handle, spec, out_path)
        callback = progress if callable(progress) else None
        bar = tqdm(videos, desc="extracting", unit="video", disable=callback is not None or not progress, file=sys.stderr)
        for index, video in enumerate(bar):
            video = Path(video)
            video_id = video.stem
            if callback is not None:
                callback(index / len(videos))
            if video_id in handle:
                report.skipped.append(video_id)
                continue
            bar.set_postfix_str(video.name[-30:])
            within = None if callback is None else (lambda share, i=index: callback((i + share) / len(videos)))
            try:
                features, duration_s = extract_video_features(video, encoder, fps, batch_size, progress=within)
            except VideoReadError as error:
                report.failed.append((str(video), str(error)))
                continue
            _write_video(handle, video_id, features, duration_s=duration_s, fps=fps)
            report.extracted.append(video_id)
        bar.close()
        if callback is not None:
            callback(1.0)
    return report


def _prepare_output(handle: h5py.File, spec: dict, out_path: Path) -> None:
    """Check (or, for a new file, write) the encoder spec; remove datasets left half-written."""
    for name in [name for name in handle if name.startswith(PARTIAL_PREFIX)]:
        del handle[name]
    if SPEC_ATTR in handle.attrs:
        stored = json.loads(handle.attrs[SPEC_ATTR])
        check_encoder_compatible(spec, stored, what=f"the existing feature file {str(out_path)!r}")
    elif len(handle) > 0:
        raise FeatureFileError(
            f"{str(out_path)!r} already holds features that carry no {SPEC_ATTR!r} attribute (not written by g2l); "
            f"write to a new file."
        )
    else:
        handle.attrs[SPEC_ATTR] = json.dumps(spec, sort_keys=True)
        handle.attrs["fps"] = spec["fps"]
    handle.flush()


def _write_video(handle: h5py.File, video_id: str, features: np.ndarray, *, duration_s: float, fps: float) -> None:
    """Write under a temporary name, then rename: a reader never sees a half-written video."""
    partial = PARTIAL_PREFIX + video_id
    dataset = handle.create_dataset(partial, data=features.astype(np.float32, copy=False))  # (T, d)
    dataset.attrs["duration_s"] = float(duration_s)
    dataset.attrs["fps"] = float(fps)
    handle.move(partial, video_id)
    handle.flush()
