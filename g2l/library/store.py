"""The on-disk layout of a ``VideoIndex`` (g2l/library/index.py's docstring): its constants, the
records of its videos, and reading it back: the manifest, the shards' ``videos.json`` and their npy
arrays, each checked against what the manifest says before it is believed; the lock and the clean-up
of what killed writers left."""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from g2l.errors import G2LError
from g2l.io import atomic, safe_files, strict_json
from g2l.io.atomic import remove_stale_temporaries
from g2l.io.safe_files import NotRegularFile, open_regular


FORMAT = "g2l video index"
VERSION = 1
MANIFEST = "index.json"
SHARDS = "shards"
LOCK = ".lock"
DTYPES = ("float16", "float32")
VIDEOS_PER_SHARD = 256
SHARD_NAME = re.compile(r"^[0-9]{8}$")
MAX_MANIFEST_BYTES = 64 << 20
MAX_VIDEOS_JSON_BYTES = 256 << 20
MEMBERS = ("videos.json", "spans.npy", "cells_c.npy", "cells_u.npy")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class VideoIndexError(G2LError):
    """An index folder that cannot be used: damaged, of another model or version, or being written."""

@dataclass
class IndexedVideo:
    """One video of the index. ``identity``: ``[device, inode, size, mtime_ns, ctime_ns]`` of the
    file when it was indexed (None for a video indexed from precomputed features)."""

    path: str
    resolved: str
    identity: list | None
    duration_s: float
    cells: int
    shard: str = ""

    def entry(self) -> dict:
        return {"path": self.path, "resolved": self.resolved, "identity": self.identity,
                "duration_s": self.duration_s, "cells": self.cells}



def file_identity(path: str | Path) -> tuple[str, list]:
    """``(resolved path, [device, inode, size, mtime_ns, ctime_ns])``, as the feature cache keys a file."""
    info = os.stat(path)
    return str(Path(path).resolve()), [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def take_lock(folder: Path) -> int | None:
    return atomic.hold_lock(folder / LOCK, error=VideoIndexError, fix="",
                            busy=f"index {folder} is being changed by another g2l-index command (it holds "
                                 f"{folder / LOCK}); wait for it to end")


def refuse_links(folder: Path) -> None:
    """An index holds no links: one in the folder or its shards folder (a planted temporary, a shard
    pointed elsewhere) is refused, never followed."""
    shards = folder / SHARDS
    if shards.is_symlink() or not shards.is_dir():
        raise damaged_error(folder, f"its {SHARDS} folder is {'a link' if shards.is_symlink() else 'missing'}")
    for place in (folder, shards):
        for entry in os.scandir(place):
            if entry.is_symlink():
                raise VideoIndexError(f"index {folder} holds a link at {Path(entry.path).relative_to(folder)}; an index "
                                      "holds no links: remove it, or rebuild the index with g2l-index build")


def writable_by_others(folder: Path, manifest: dict) -> str | None:
    """The first place of the index (its folder, the shards folder, a listed shard's folder or one
    of its files) that users other than its owner can write (writable by anyone, or by a group
    other than the owner's private one, as the feature cache judges its folder), or None. Whoever
    can write there can plant moments with consistent hashes, which no check of the files can tell
    from the model's own."""
    places = [folder, folder / SHARDS]
    for shard in manifest["shards"]:
        places += [folder / SHARDS / shard["name"], *(folder / SHARDS / shard["name"] / m for m in MEMBERS)]
    for place in places:
        try:
            info = os.lstat(place)
        except OSError:  # missing: found by the checks that read it
            continue
        if stat.S_ISLNK(info.st_mode):  # a link's own mode means nothing; links are refused where read
            continue
        if safe_files.writable_by_others(info):
            return str(place)
    return None


def clean_up(folder: Path) -> None:
    """Under the writer's lock: remove killed writers' temporaries and the shards no manifest lists."""
    remove_stale_temporaries(folder)
    listed = {s.get("name") for s in (read_manifest(folder).get("shards") or []) if isinstance(s, dict)}
    for entry in os.scandir(folder / SHARDS):
        orphan = SHARD_NAME.match(entry.name) and entry.name not in listed
        if (orphan or atomic.TEMPORARY.match(entry.name)) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        elif atomic.TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def damaged_error(folder: Path, what: str) -> VideoIndexError:
    return VideoIndexError(f"index {folder} is damaged: {what}; rebuild it with g2l-index build")


def read_manifest(folder: Path) -> dict:
    from g2l.io.safe_files import read_text_file

    try:
        manifest = strict_json.loads(read_text_file(folder / MANIFEST, what=f"index {folder} {MANIFEST}",
                                                    max_bytes=MAX_MANIFEST_BYTES))
    except (OSError, ValueError) as error:
        raise damaged_error(folder, f"{MANIFEST} cannot be read ({str(error)[:120]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VideoIndexError(f"{folder} is not a g2l index ({MANIFEST} is not one); pass a folder g2l-index build made")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise damaged_error(folder, f"{MANIFEST} has the version {version!r}")
    if version > VERSION:
        raise VideoIndexError(f"index {folder} was written by a newer g2l (index format {version}, this one reads "
                              f"{VERSION}); upgrade g2l to read it")
    settings, shards = manifest.get("settings"), manifest.get("shards")
    good = (isinstance(manifest.get("model"), dict) and isinstance(settings, dict)
            and settings.get("dtype") in DTYPES and _is_count(settings.get("dim")) and settings["dim"] > 0
            and (settings.get("window_s") is None or isinstance(settings.get("window_s"), (int, float)))
            and isinstance(shards, list) and _is_count(manifest.get("next_shard")))
    names = set()
    for shard in shards if good else []:
        good = good and (isinstance(shard, dict) and isinstance(shard.get("name"), str)
                         and bool(SHARD_NAME.match(shard["name"])) and shard["name"] not in names
                         and _is_count(shard.get("videos")) and _is_count(shard.get("cells"))
                         and isinstance(shard.get("sha256"), dict) and sorted(shard["sha256"]) == sorted(MEMBERS)
                         and all(isinstance(d, str) and SHA256.match(d) for d in shard["sha256"].values()))
        if good:
            names.add(shard["name"])
    if not good:
        raise damaged_error(folder, f"{MANIFEST} is not laid out as g2l writes it")
    return manifest


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**40


def _is_stat_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def check_manifest_model(folder: Path, manifest: dict, identity: dict) -> None:
    recorded = manifest["model"]
    differs = [what for key, what in (("weights_sha256", "weights"), ("config_sha256", "config"),
                                      ("frame_encoder", "frame encoder")) if recorded.get(key) != identity.get(key)]
    if differs:
        raise VideoIndexError(f"index {folder} was built with another model (its {', '.join(differs)} differ), whose "
                              "scores mean nothing to this one; pass the --checkpoint it was built with, or build a "
                              "new index")


def read_videos(folder: Path, manifest: dict) -> list[IndexedVideo]:
    """Every shard's videos.json, checked against the manifest."""
    from g2l.io.safe_files import read_text_file

    videos = []
    for shard in manifest["shards"]:
        place = folder / SHARDS / shard["name"]
        if place.is_symlink() or (place.exists() and not place.is_dir()):
            raise damaged_error(folder, f"shard {shard['name']} is not a folder")
        if not place.exists():
            raise FileNotFoundError(place)
        if (place / "videos.json").is_symlink():  # an index holds no links: never read through one
            raise damaged_error(folder, f"shard {shard['name']} videos.json is a link")
        try:
            entries = strict_json.loads(read_text_file(place / "videos.json", what=f"index {folder} shard "
                                                       f"{shard['name']} videos.json", max_bytes=MAX_VIDEOS_JSON_BYTES))
        except FileNotFoundError:
            raise damaged_error(folder, f"shard {shard['name']} has no videos.json") from None
        except (OSError, ValueError) as error:
            raise damaged_error(folder, f"shard {shard['name']} videos.json cannot be read ({str(error)[:120]})") from None
        ok, mine = isinstance(entries, list) and len(entries) == shard["videos"], []
        for entry in entries if ok else []:
            ok = ok and (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                         and isinstance(entry.get("resolved"), str) and _is_count(entry.get("cells"))
                         and entry["cells"] > 0 and isinstance(entry.get("duration_s"), (int, float))
                         and not isinstance(entry.get("duration_s"), bool)
                         and np.isfinite(entry["duration_s"]) and entry["duration_s"] > 0
                         and (entry.get("identity") is None or (isinstance(entry["identity"], list)
                              and len(entry["identity"]) == 5 and all(_is_stat_number(x) for x in entry["identity"]))))
            if ok:
                mine.append(IndexedVideo(entry["path"], entry["resolved"], entry["identity"],
                                         float(entry["duration_s"]), entry["cells"], shard["name"]))
        if not ok or sum(v.cells for v in mine) != shard["cells"]:
            raise damaged_error(folder, f"shard {shard['name']} videos.json does not agree with {MANIFEST}")
        videos += mine
    return videos


def check_spans(folder: Path, shard: str, spans: np.ndarray, videos: list[IndexedVideo]) -> None:
    """Each video's moments (rows of ``spans``, in the order of ``videos``) are finite spans that
    start at 0 or later, before the video's end, and end after they start: a crafted spans.npy
    (moments at 750,000,000 s in a 40 s video, NaN) is refused, never shown."""
    start = 0
    for video in videos:
        rows = np.asarray(spans[start:start + video.cells], np.float64)
        start += video.cells
        if not (np.isfinite(rows).all() and (rows[:, 0] >= 0).all() and (rows[:, 1] > rows[:, 0]).all()
                and (rows[:, 0] < video.duration_s).all()):
            raise damaged_error(folder, f"shard {shard} spans.npy holds moments outside their video {video.path} "
                                        f"({video.duration_s:g} s)")


def map_npy(path: Path, dtype: str, shape: tuple[int, int], *, what: str) -> np.ndarray:
    """The array of the npy file ``path``, memory-mapped, after its header says ``dtype`` (little-
    endian) and ``shape`` and its size agrees; a link or special file is refused."""
    try:
        fd = open_regular(path)
    except NotRegularFile:
        raise VideoIndexError(f"{what}: {path.name} is not a regular file; rebuild the index with g2l-index build") from None
    except OSError as error:
        raise VideoIndexError(f"{what}: {path.name} cannot be opened ({error.strerror or error}); rebuild the index "
                              "with g2l-index build") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            found_shape, fortran, found_dtype = read_header(handle, max_header_size=1024)
            offset = handle.tell()
        except (ValueError, OSError, SyntaxError, EOFError) as error:
            raise VideoIndexError(f"{what}: {path.name} is damaged ({str(error)[:100]}); rebuild the index with "
                                  "g2l-index build") from None
        expected = np.dtype(dtype).newbyteorder("<")
        if found_dtype != expected or tuple(found_shape) != tuple(shape) or fortran:
            raise VideoIndexError(f"{what}: {path.name} holds {found_dtype} {tuple(found_shape)}, not {expected} "
                                  f"{tuple(shape)} as the index says; rebuild the index with g2l-index build")
        if info.st_size != offset + int(np.prod(shape, dtype=np.int64)) * expected.itemsize:
            raise VideoIndexError(f"{what}: {path.name} is {info.st_size:,} bytes, not what its shape needs; rebuild "
                                  "the index with g2l-index build")
        if shape[0] == 0:
            return np.zeros(shape, expected)
        # Mapped from the descriptor just checked, not by name: a file swapped in between (a link, a
        # shorter file whose pages would fault past its end) is never mapped.
        return np.memmap(handle, dtype=expected, mode="c", offset=offset, shape=shape)
