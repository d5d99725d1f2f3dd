"""Video feature stores and the per-video preprocessing of docs/method.md section 2.

Layouts read:

* HDF5, one dataset per video: ``f[video_id] -> (T, F)`` (Charades-STA VGG, TACoS C3D, and the
  files g2l writes), or one group per video with a named dataset, ``f[video_id][key] -> (T, F)``
  (ActivityNet's ``c3d_features``).
* A folder of per-video ``.npy`` files, or ``.npz`` files holding ``key`` (default ``features``), as
  Moment-DETR releases them. A file ``<anything>__<video_id>.npz`` (the flattened release names,
  e.g. ``clip_video_features__qtyBzFV9yTs_60.0_210.0.npz``) counts as ``video_id``.

A folder may declare the frame encoder that made its files in ``g2l_encoder_spec.json`` (the spec
that g2l's own HDF5 files carry in their ``g2l_encoder_spec`` attribute; ``g2l-extract --declare
qvhighlights_clip FOLDER`` writes it for the public CLIP features); a model trained on it records
the spec in its checkpoint and can then ground video files.

Several stores can be joined with commas (``"clip_dir,slowfast_dir"``): each is L2-normalised
separately, truncated to the shortest, and concatenated along channels, as Moment-DETR does.

A store opens its file lazily, once per process, so DataLoader workers each hold one handle and
never reopen it per item.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

from g2l.errors import G2LError


class FeatureError(G2LError):
    """Missing or unusable video features; the message says which and what to do."""


SPEC_FILE = "g2l_encoder_spec.json"  # a folder's declared frame encoder (the HDF5 attribute's name + .json)
MAX_SPEC_BYTES = 64 << 10


def check_spec(spec, source: str, fix: str = "write it again with g2l-extract --declare") -> dict:
    """A frame-encoder spec is a small flat mapping of names to short plain values (or short lists
    of them), as checkpoints require; anything else is a FeatureError naming ``source`` and ``fix``."""

    def plain(value) -> bool:
        return value is None or isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 4096)

    if not (isinstance(spec, dict) and 0 < len(spec) <= 64 and isinstance(spec.get("name"), str) and all(
            isinstance(k, str) and len(k) <= 256 and (plain(v) or (isinstance(v, list) and len(v) <= 64
                                                                   and all(plain(item) for item in v)))
            for k, v in spec.items())):
        raise FeatureError(f"{source} is not a frame-encoder declaration (a JSON object with a 'name' and short "
                           f"plain values); {fix}")
    return spec


def joined_spec(specs: list[dict | None], paths: list[str]) -> dict | None:
    """The spec of stores joined along channels: None when no store declares an encoder, else
    ``{"name": "joined", "parts": [the JSON of each store's spec, or "undeclared: <path>"]}``."""
    import json

    if all(spec is None for spec in specs):
        return None
    parts = [json.dumps(spec, sort_keys=True) if spec is not None else f"undeclared: {Path(path).name}"
             for spec, path in zip(specs, paths)]
    return {"name": "joined", "parts": parts}


# What numpy, zipfile and h5py raise for a file that is truncated or corrupt.
_UNREADABLE = (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile)


def _unreadable(video_id: str, path: Path, error: Exception) -> FeatureError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return FeatureError(
        f"the features of video {video_id} in {path} cannot be read ({first}); the file is corrupt or truncated: "
        "extract or download it again"
    )


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (rows of zeros stay zero). ``(T, F) -> (T, F)`` float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.float32(1e-12))


def resample_boundaries(num_rows: int, num_pre_clips: int) -> np.ndarray:
    """``b_k = round(k * T / P)`` (half to even, exact rational arithmetic), clamped to T-1, k=0..P."""
    bounds = [round(Fraction(k * num_rows, num_pre_clips)) for k in range(num_pre_clips + 1)]
    return np.minimum(np.asarray(bounds, dtype=np.int64), num_rows - 1)


def resample_features(features: np.ndarray, num_pre_clips: int) -> np.ndarray:
    """``(T, F) -> (P, F)``: row k is the mean of rows ``b_k .. b_{k+1}-1``, or row ``b_k`` if empty.

    This is MMN's ``avgfeats`` (the clamp to T-1 means the last row only counts when a range is
    empty). With T < P rows repeat.
    """
    num_rows = features.shape[0]
    if num_rows == 0:
        raise FeatureError("cannot resample zero-length features")
    bounds = resample_boundaries(num_rows, num_pre_clips)
    starts, ends = bounds[:-1], bounds[1:]
    csum = np.concatenate([np.zeros((1, features.shape[1]), np.float64), np.cumsum(features, axis=0, dtype=np.float64)])
    counts = ends - starts
    sums = np.where((counts > 0)[:, None], csum[np.maximum(ends, starts)] - csum[starts], features[starts])
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def _video_id_from_filename(path: Path) -> str:
    stem = path.stem
    return stem.rsplit("__", 1)[-1] if "__" in stem else stem


class FeatureStore:
    """Reads ``(T, F)`` float32 features of a video by id from one HDF5 file or folder."""

    def __init__(self, path: str | Path, key: str = ""):
        self.path = Path(path)
        self.key = key
        if not self.path.exists():
            raise FeatureError(f"feature file {self.path} does not exist; download the features or fix data.features")
        self._is_folder = self.path.is_dir()
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        self._index: dict[str, Path] | None = None
        if not self._is_folder:
            try:
                with h5py.File(self.path, "r"):
                    pass
            except OSError:
                raise FeatureError(
                    f"feature file {self.path} is not a readable HDF5 file; check that the download completed"
                ) from None

    # Opening -----------------------------------------------------------------------------------
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def _folder_index(self) -> dict[str, Path]:
        if self._index is None:
            files = sorted(p for p in self.path.iterdir() if p.suffix in (".npy", ".npz"))
            self._index = {_video_id_from_filename(p): p for p in files}
        return self._index

    def __getstate__(self):  # a worker process opens its own handle
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def encoder_spec(self) -> dict | None:
        """The frame-encoder spec g2l's extraction tool stores in the file's attributes, or that a
        folder declares in ``g2l_encoder_spec.json``; None if there is none. Either is read as strict
        JSON (g2l/io/strict_json.py) and checked (``check_spec``) before it is believed."""
        from g2l.io import strict_json
        from g2l.io.safe_files import UnsafeFileError, read_text_file

        if self._is_folder:
            declared = self.path / SPEC_FILE
            if not declared.exists():
                return None
            source = f"the frame-encoder declaration {declared}"
            try:
                text = read_text_file(declared, what=source, max_bytes=MAX_SPEC_BYTES)
                return check_spec(strict_json.loads(text), source)
            except UnsafeFileError:
                raise
            except (OSError, ValueError) as error:
                raise FeatureError(f"{source} cannot be read as JSON ({type(error).__name__}); write it again with "
                                   "g2l-extract --declare") from None
        raw = self._file().attrs.get("g2l_encoder_spec")
        if raw is None:
            return None
        source, fix = f"the frame-encoder spec stored in {self.path}", "extract the features again with g2l-extract"
        try:
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            if not isinstance(raw, str) or len(raw) > MAX_SPEC_BYTES:
                raise ValueError("not a short text")
            spec = strict_json.loads(raw)
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise FeatureError(f"{source} cannot be read as JSON ({type(error).__name__}); {fix}") from None
        return check_spec(spec, source, fix)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # Reading -----------------------------------------------------------------------------------
    def video_ids(self) -> list[str]:
        if self._is_folder:
            return list(self._folder_index())
        return list(self._file().keys())

    def __contains__(self, video_id: str) -> bool:
        if self._is_folder:
            return video_id in self._folder_index()
        return video_id in self._file()

    def _npz_array(self, archive, video_id: str, path: Path):
        key = self.key or "features"
        if key not in archive.files:
            raise FeatureError(f"{path} (video {video_id}) holds no array '{key}' (it has {', '.join(archive.files)}); "
                               "set data.feature_key")
        return archive[key]

    def shape(self, video_id: str) -> tuple[int, ...]:
        """``(T, F)`` without reading the values (another shape for a malformed array)."""
        if self._is_folder:
            path = self._folder_index()[video_id]
            try:
                if path.suffix == ".npy":
                    return tuple(np.load(path, mmap_mode="r").shape)
                with np.load(path) as archive:
                    return tuple(self._npz_array(archive, video_id, path).shape)
            except _UNREADABLE as error:
                raise _unreadable(video_id, path, error) from None
        node = self._file()[video_id]
        if isinstance(node, h5py.Group):
            if self.key not in node:
                raise FeatureError(f"{self.path}: video {video_id} has no dataset '{self.key}' (set data.feature_key)")
            node = node[self.key]
        return tuple(node.shape)

    def read(self, video_id: str) -> np.ndarray:
        """The raw ``(T, F)`` float32 features of ``video_id``; an unreadable file is a FeatureError
        naming the video and the file."""
        path = self._folder_index()[video_id] if self._is_folder else self.path
        try:
            if self._is_folder and path.suffix == ".npy":
                array = np.load(path)
            elif self._is_folder:
                with np.load(path) as archive:
                    array = self._npz_array(archive, video_id, path)
            else:
                node = self._file()[video_id]
                if isinstance(node, h5py.Group):
                    node = node[self.key]
                array = node[()]
            return np.asarray(array, dtype=np.float32)
        except _UNREADABLE as error:
            if isinstance(error, FeatureError):
                raise
            raise _unreadable(video_id, path, error) from None


class VideoFeatures:
    """One or more stores joined along channels; the preprocessing of docs/method.md section 2.

    ``load(video_id)`` returns the ``(P, F)`` pre-clip features: each store's rows L2-normalised,
    stores truncated to the shortest and concatenated, non-finite values set to 0 (counted and
    warned once per video), then resampled to P rows.
    """

    def __init__(self, spec: str | list[str], key: str = "", num_pre_clips: int = 32):
        paths = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
        paths = [p for p in paths if p]
        if not paths:
            raise FeatureError("no feature file given; set data.features to an HDF5 file or a folder of .npy/.npz files")
        self.stores = [FeatureStore(p, key) for p in paths]
        self.num_pre_clips = num_pre_clips
        self.nonfinite_videos: set[str] = set()

    def __contains__(self, video_id: str) -> bool:
        return all(video_id in store for store in self.stores)

    def encoder_spec(self) -> dict | None:
        """The frame encoder the features came from: the store's spec, or for joined stores a
        ``joined`` spec listing each (``joined_spec``); None when nothing is declared."""
        specs = [store.encoder_spec() for store in self.stores]
        return specs[0] if len(specs) == 1 else joined_spec(specs, [str(store.path) for store in self.stores])

    def shape(self, video_id: str) -> tuple[int, ...]:
        """``(T, F)`` of the joined stores (T of the shortest) without reading the values; a store
        whose array is not 2-D gives its own shape instead, for the caller to report."""
        shapes = [store.shape(video_id) for store in self.stores]
        malformed = next((s for s in shapes if len(s) != 2), None)
        if malformed is not None:
            return malformed
        return min(s[0] for s in shapes), sum(s[1] for s in shapes)

    def load(self, video_id: str) -> np.ndarray:
        parts = [store.read(video_id) for store in self.stores]
        num_rows = min(part.shape[0] for part in parts)
        if num_rows == 0:
            raise FeatureError(f"video {video_id} has zero-length features; re-extract them or drop the video")
        parts = [part[:num_rows] for part in parts]
        if not all(np.isfinite(part).all() for part in parts):
            if video_id not in self.nonfinite_videos:
                bad = int(sum((~np.isfinite(part)).any(axis=1) for part in parts).astype(bool).sum())
                warnings.warn(f"features of video {video_id}: {bad} row(s) hold NaN or inf; set to 0", stacklevel=2)
                self.nonfinite_videos.add(video_id)
            parts = [np.nan_to_num(part, nan=0.0, posinf=0.0, neginf=0.0) for part in parts]
        normalized = np.concatenate([l2_normalize(part) for part in parts], axis=1)  # (T, F)
        return resample_features(normalized, self.num_pre_clips)  # (P, F)

    def close(self) -> None:
        for store in self.stores:
            store.close()


def check_coverage(features: VideoFeatures, video_ids: list[str], what: str) -> None:
    """Raise FeatureError if any of ``video_ids`` has no features, saying how many and which."""
    missing = [v for v in video_ids if v not in features]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        files = ", ".join(str(s.path) for s in features.stores)
        raise FeatureError(
            f"{len(missing)} of {len(video_ids)} videos of {what} have no features in {files} ({shown}); "
            "point data.features at the right file or remove those videos from the annotations"
        )
