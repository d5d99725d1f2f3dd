"""The frame-feature cache of ``g2l-ground --batch --cache DIR``: a video's encoded frame features
kept on disk, so that a later run over the same videos only encodes new ones. One ``.npz`` entry per
(video file, frame encoder, fps)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from g2l.atomic import atomic_path
from g2l.inference import EncodedVideo


def video_cache_key(path: Path, encoder_spec: dict | None, fps: float) -> str:
    """Key of a video's features: the file (resolved path, size, mtime) and the encoder."""
    stat = path.stat()
    ident = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "encoder": encoder_spec, "fps": fps}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_cached(cache_dir: Path, key: str, name: str, fps: float) -> EncodedVideo | None:
    file = cache_dir / f"{key}.npz"
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            features = np.asarray(data["features"], dtype=np.float32)
            duration_s = float(data["duration_s"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is re-encoded
    if features.ndim != 2 or not np.isfinite(features).all() or not duration_s > 0:
        return None
    return EncodedVideo(name, duration_s, features, fps)


def store_cached(cache_dir: Path, key: str, video: EncodedVideo) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_dir / f"{key}.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, features=video.features, duration_s=np.float64(video.duration_s))
