"""The frame-feature cache of ``g2l-ground --batch --cache DIR``: a video's encoded frame features
kept on disk, so that a later run over the same videos only encodes new ones. Nothing in it is
believed before it is checked: a bad entry is encoded again and replaced, with one warning.

    cache = FeatureCache.open("cache/", encoder_spec=spec, fps=1.0, feature_dim=1280)  # or for_grounder
    video = cache.get(path)        # an EncodedVideo, or None: not cached, or the entry failed a check
    if video is None:
        video = grounder.encode_video(path)
        cache.put(path, video)     # best-effort: a failed write warns once and returns False

**The folder.** ``open`` creates it (mode 0700) or checks it, and refuses (``FeatureCacheError``)
one that is not a folder, cannot be created or written, or that others can write to: owned by
another user, writable by anyone, or by a group other than the owner's private one (named as the
owner, no other member: where umask 002 makes folders group-writable). The checks below cannot tell
features planted by someone else from the video's own when their shape and duration are right, so
such a folder is not used at all, not even read. Temporaries left by killed writers are removed
(``g2l.io.atomic.remove_stale_temporaries``). ``for_grounder`` is the batch's best-effort door: a
run opens the folder once, and one that cannot be used gives one warning, then grounding goes on
without the cache; ``usable_folder`` is the same check for the command line, before the
model loads.

**The key.** An entry's name is a hash of the video file's identity as ``stat`` gives it (resolved
path, device, inode, size, modification and status-change times in ns) and of the encoder's spec
and frame rate. A user can restore a file's modification time but not its status-change time
(ctime): writing, ``utime`` and ``chmod`` set it to now. So a video replaced by other bytes of the
same size with its mtime restored misses (so does a file renamed, copied or chmod-ed: it is
encoded once more). A content hash would keep entries across a copy, but hashes the whole file at
every lookup: for a 30-minute 720p H.264 file of 452 MB, SHA-256 took 0.34-0.96 s from the page
cache (three runs on 2 shared, loaded cores) against 22 us for the stat key, and encoding the video
160-280 s; a sampled hash (16 blocks of 64 KiB, 0.6 ms) misses an edit between its samples
(``bench/cache_key.py``). The ctime is as fine as the kernel's clock tick (a few ms): a file
rewritten within the tick of the ``stat`` that keyed it would not be told apart.

**An entry** is an uncompressed ``.npz`` (``np.savez``) of three members: ``features (T, F)``
float32 little-endian, ``duration_s`` a float64 scalar, ``key`` the entry's own name (an entry
copied under another name is refused). ``put`` writes it with ``g2l.io.atomic.atomic_path``, under the
key of the file as ``get`` saw it: a file that changed while it was encoded is not cached.

**Checks before an entry is believed**: the entry is a regular file of ours (not a link, a folder
or a FIFO) no bigger than the video's features can be; the zip holds exactly those members, stored
(a deflated member could ask for gigabytes) within the file's size; each npy header's dtype and
shape are checked before any data is read: features ``(T, F)`` with ``T`` the samples the encoder
takes from this video file (``g2l.video.decoding``'s sampling rule) and ``F`` the encoder's width,
real float32 (not complex), a scalar duration; the members' CRCs; values finite and at most
``MAX_FEATURE_ABS``; a duration finite, positive and equal to the video file's own, from decord's
index of the file, as the encoder measures it, without decoding a frame. A failed check is one
warning naming the entry, and ``get`` returns None. Cost, for that 30-minute video's entry (9.2
MB): 0.17-0.85 s, nearly all of it decord's index (0.16-0.49 s: it reads the whole file, every
packet), where a bare ``np.load`` took 2-15 ms; for a 1-minute 320x240 video 7 ms against 0.2 ms.
Under 0.3% of encoding the video, so the check stays; an index of many long videos may want the
duration from the container's header instead (``moov``/``mvhd`` of an MP4: a few small reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np

from g2l.errors import G2LError
from g2l.inference import EncodedVideo, Grounder
from g2l.io.atomic import atomic_path, remove_stale_temporaries
from g2l.io.safe_files import NotRegularFile, open_regular, writable_by_others
from g2l.video.decoding import VideoReadError, read_video_frames

# The largest feature value believed. Frame encoders give pooled activations or embeddings of a
# few units (MobileNetV2's pooled ReLU features stay under about 20, CLIP's projected embeddings
# under 5); features scaled by 1e6 are not a video's.
MAX_FEATURE_ABS = 1e4
_MEMBERS = {"features.npy": "<f4", "duration_s.npy": "<f8", "key.npy": "<U32"}  # member -> dtype, as put writes them
_HEADER_SLACK_BYTES = 64 * 1024  # zip and npy headers of the three members, with room to spare


class FeatureCacheError(G2LError):
    """A cache folder that cannot be used: not a folder, not writable, or writable by others."""


class BadEntry(G2LError):
    """An entry that failed a check; its message ends a sentence that begins with the entry's path."""


def check_folder(folder: str | Path) -> Path:
    """``folder`` resolved, created (mode 0700) when missing, when it can serve as a cache: a folder
    of ours, writable by us and by nobody else; otherwise ``FeatureCacheError``."""
    given = Path(folder).expanduser()
    try:
        given.mkdir(parents=True, mode=0o700, exist_ok=True)
        resolved = given.resolve(strict=True)
        info = os.stat(resolved)
    except FileExistsError:
        raise FeatureCacheError(f"cache folder {given} exists and is not a folder; pass a folder path") from None
    except OSError as error:  # under a file, under /proc, a name too long, no permission
        raise FeatureCacheError(f"cache folder {given} cannot be created ({error.strerror or error}); "
                                "pass a folder you can write") from None
    if not stat.S_ISDIR(info.st_mode):
        raise FeatureCacheError(f"cache folder {given} is not a folder; pass a folder path")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise FeatureCacheError(f"cache folder {given} belongs to another user, who could plant features in it; "
                                "pass a folder of your own")
    if writable_by_others(info):
        raise FeatureCacheError(f"cache folder {given} can be written by others, who could plant features in it; "
                                f"`chmod go-w {given}` or pass a folder of your own")
    if not os.access(resolved, os.R_OK | os.W_OK | os.X_OK):
        raise FeatureCacheError(f"cache folder {given} is not writable; pass a folder you can write")
    return resolved


def usable_folder(folder: str | Path) -> Path | None:
    """``check_folder(folder)``, or None after a warning that grounding goes on without the cache."""
    try:
        return check_folder(folder)
    except FeatureCacheError as error:
        warnings.warn(f"{error}; grounding goes on without the cache", stacklevel=2)
        return None


class FeatureCache:
    """A checked cache folder for one frame encoder (its ``spec``, ``fps`` and width ``feature_dim``);
    see the module docstring. Build it with ``open`` or ``for_grounder``."""

    def __init__(self, folder: Path, *, encoder_spec: dict | None, fps: float, feature_dim: int):
        self.folder = folder
        self.fps = float(fps)
        self.feature_dim = int(feature_dim)
        self._encoder = json.dumps({"encoder": encoder_spec, "fps": self.fps}, sort_keys=True, default=str)
        self._missed: dict[Path, tuple] = {}  # the identity of each file `get` missed, for `put`
        self._write_failed = False

    @classmethod
    def open(cls, folder: str | Path, *, encoder_spec: dict | None, fps: float, feature_dim: int) -> "FeatureCache":
        """Check (or create) the folder and clean its stale temporaries; ``FeatureCacheError`` when it
        cannot be used."""
        resolved = check_folder(folder)
        remove_stale_temporaries(resolved)
        return cls(resolved, encoder_spec=encoder_spec, fps=fps, feature_dim=feature_dim)

    @classmethod
    def for_grounder(cls, folder: str | Path, grounder: Grounder) -> "FeatureCache | None":
        """The cache of ``grounder``'s frame encoder in ``folder``; None, after one warning, when the
        folder cannot be used. A run opens it once and keeps it."""
        spec = grounder.frame_encoder_spec or {}
        width = spec.get("output_dim", grounder.cfg.data.feature_dim)
        try:
            return cls.open(folder, encoder_spec=grounder.frame_encoder_spec, fps=grounder.fps, feature_dim=width)
        except FeatureCacheError as error:
            warnings.warn(f"{error}; grounding goes on without the cache", stacklevel=2)
            return None

    # Keys ------------------------------------------------------------------------------------------
    def _identity(self, path: Path) -> tuple:
        info = os.stat(path)
        return (str(path.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def _key(self, identity: tuple) -> str:
        text = json.dumps([list(identity), self._encoder])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def entry_path(self, path: str | Path) -> Path:
        """Where the entry of the video file ``path``, as it is now, lives."""
        return self.folder / f"{self._key(self._identity(Path(path)))}.npz"

    # Reading ---------------------------------------------------------------------------------------
    def get(self, path: str | Path) -> EncodedVideo | None:
        """The cached features of the video file ``path``, checked against the file; None when there
        is no entry, or (after a warning naming it) when the entry failed a check."""
        path = Path(path)
        try:
            identity = self._identity(path)
        except OSError:
            return None  # the encoder says what is wrong with the file
        self._missed.pop(path, None)
        key = self._key(identity)
        entry = self.folder / f"{key}.npz"
        if not os.path.lexists(entry):
            self._missed[path] = identity
            return None
        try:
            sampled = read_video_frames(path, fps=self.fps, size=None)  # the index only, no frame decoded
        except VideoReadError:
            return None  # the encoder will say it again, for the line
        try:
            features, duration_s = self._read_entry(entry, key, rows=len(sampled), duration_s=sampled.duration_s)
        except BadEntry as error:
            warnings.warn(f"feature cache entry {entry} {error}; the video {path} is encoded again and the entry "
                          "replaced", stacklevel=2)
            self._missed[path] = identity
            return None
        return EncodedVideo(path.name, duration_s, features, self.fps)

    def _read_entry(self, entry: Path, key: str, *, rows: int, duration_s: float) -> tuple[np.ndarray, float]:
        """``(features (rows, F), duration_s)`` of ``entry`` after every check of the module docstring."""
        try:
            fd = open_regular(entry)
        except NotRegularFile:
            raise BadEntry("is not a regular file") from None
        except OSError as error:
            raise BadEntry("is a symbolic link" if os.path.islink(entry)
                           else f"cannot be opened ({error.strerror or error})") from None
        info = os.fstat(fd)
        with os.fdopen(fd, "rb") as file:
            if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
                raise BadEntry("belongs to another user")
            limit = rows * self.feature_dim * 4 + _HEADER_SLACK_BYTES
            if info.st_size > limit:
                raise BadEntry(f"is {info.st_size:,} bytes, more than the video's features can be ({limit:,})")
            try:
                with zipfile.ZipFile(file) as archive:
                    members = {m.filename: m for m in archive.infolist()}
                    if set(members) != set(_MEMBERS) or len(archive.infolist()) != len(_MEMBERS):
                        raise BadEntry(f"holds {sorted(members)[:5]}, not the members g2l writes")
                    for member in members.values():
                        if (member.compress_type != zipfile.ZIP_STORED or member.file_size > info.st_size
                                or member.compress_size != member.file_size):
                            raise BadEntry(f"has a member {member.filename} that is compressed or larger than the file")
                    stored_key = str(_read_member(archive, "key.npy", ()))
                    stored_s = float(_read_member(archive, "duration_s.npy", ()))
                    if stored_key != key:
                        raise BadEntry("is the entry of another file (copied under this name)")
                    if not (np.isfinite(stored_s) and stored_s > 0):
                        raise BadEntry(f"has a duration of {stored_s} s")
                    if abs(stored_s - duration_s) > 1e-6 * max(1.0, duration_s):
                        raise BadEntry(f"has a duration of {stored_s:.6g} s, the video file {duration_s:.6g} s")
                    features = _read_member(archive, "features.npy", (rows, self.feature_dim))
            except BadEntry:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, SyntaxError,
                    NotImplementedError, KeyError, TypeError, OverflowError, RuntimeError, struct.error) as error:
                raise BadEntry(f"is damaged ({type(error).__name__}: {str(error)[:100]})") from None
        if not np.isfinite(features).all():
            raise BadEntry("has NaN or infinite features")
        largest = float(np.abs(features).max(initial=0.0))
        if largest > MAX_FEATURE_ABS:
            raise BadEntry(f"has a feature of {largest:.3g}, beyond any frame encoder's (at most {MAX_FEATURE_ABS:g})")
        return features, stored_s

    # Writing ---------------------------------------------------------------------------------------
    def put(self, path: str | Path, video: EncodedVideo) -> bool:
        """Keep ``video``'s features as the entry of the file ``path``; False when it was not written:
        the file changed since ``get`` missed it (the features may be of its old bytes), or the write
        failed (the first failure warns, naming the entry and the reason)."""
        path = Path(path)
        features = np.ascontiguousarray(video.features, dtype="<f4")
        try:
            identity = self._identity(path)
        except OSError:
            return False
        if self._missed.pop(path, identity) != identity:
            return False
        entry = self.folder / f"{self._key(identity)}.npz"
        try:
            with atomic_path(entry) as temporary:
                with open(temporary, "wb") as handle:
                    np.savez(handle, features=features, duration_s=np.float64(video.duration_s),
                             key=np.str_(entry.stem))
        except OSError as error:  # disk full, no permission, a folder at the entry's name
            if not self._write_failed:
                self._write_failed = True
                warnings.warn(f"feature cache entry {entry} could not be written ({error.strerror or error}); "
                              "grounding goes on, and videos not cached are encoded again next time", stacklevel=2)
            return False
        return True




def _read_member(archive: zipfile.ZipFile, name: str, shape: tuple) -> np.ndarray:
    """The array of ``name`` after its header says the dtype and ``shape`` expected; read exactly to
    its end, so that the zip checks its CRC."""
    dtype = _MEMBERS[name]
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise BadEntry(f"has a member {name} of npy format {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found_shape, fortran_order, found_dtype = read_header(member, max_header_size=1024)
        if found_dtype != np.dtype(dtype) or tuple(found_shape) != shape or fortran_order:
            raise BadEntry(f"has {name[:-4]} of {found_dtype} {tuple(found_shape)}, not {np.dtype(dtype)} {shape}")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        data = bytearray(size)  # writable, so that the array is too
        if member.readinto(data) != size or member.read(1):
            raise BadEntry(f"has a member {name} of the wrong length")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
