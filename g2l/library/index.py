"""``VideoIndex``: the moments of many videos, encoded once, searched by sentence across all of them.

    grounder = Grounder.from_checkpoint("checkpoints/demo.pt")
    with VideoIndex.create("lib/", grounder) as index:        # or VideoIndex.open("lib/", grounder, write=True)
        index.add(["a.mp4", "b.mp4"], grounder)
    results = VideoIndex.open("lib/", grounder).search(grounder, ["the red circle grows"], top_k=10)

A score is ``score_cells(c, u)`` of the cosines between the sentence's and a moment's contrast and
IoU features (docs/method.md section 1); the moment side does not depend on the sentence, so the
index keeps, per video, its candidate moments (spans in seconds) and their two normalised feature
matrices, and a search is two matrix products over all of them (g2l/library/exact.py).

**The folder** (one folder, no server; its contents are untrusted data, checked before believed):

    INDEX/index.json          the manifest: format and version, the model (weights and config
                              SHA-256, frame encoder: as g2l/batch_output.py made_by), the settings
                              (window, storage dtype, width) and the shards with their sizes and hashes
    INDEX/shards/NNNNNNNN/    one shard: videos.json (per video: the path as indexed, the file's
                              identity as the feature cache keys it, duration, number of moments),
                              spans.npy (k 2) float32, cells_c.npy and cells_u.npy (k d) float16|float32
    INDEX/.lock               held by the one writer

**Writes.** A writer holds the lock (``g2l.io.atomic.lock_file``); a second is refused with a sentence.
It writes a new shard into a temporary folder, renames it into place, then replaces index.json
atomically, then deletes the shards the new manifest no longer lists: a reader sees the old index or
the new one, never half of one. ``add`` commits every ``videos_per_shard`` videos, so adding 100
videos writes those 100 only, and a kill -9 loses at most the videos since the last commit: the next
writer removes the orphan shard and the temporaries, and ``add`` of the same videos resumes (videos
already indexed, unchanged, are skipped). ``remove`` rewrites the shards that held the removed videos.

**Checks on open**: index.json a regular file (no link) of our format and a version we know (a newer
one says so), of the same model as the grounder (another model is refused: its scores mean nothing
here); no links in the folder; each listed shard a real folder whose files are regular, whose
videos.json agrees with the manifest, and whose npy headers have the dtype and shapes that the
manifest and videos.json imply (sizes included) before any array is mapped. ``verify`` also
re-hashes every shard file. Non-finite scores from a crafted shard rank last.

Storage: float16 (default) halves the size and the memory traffic of a search; its scores differ
from float32 by about 1e-3 (bench/search.py measures what that does to the ranking).
"""

from __future__ import annotations

import os
import shutil
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from g2l.errors import G2LError, path_problem
from g2l.inference import Grounder, GroundingError
from g2l.io import atomic, strict_json
from g2l.io.atomic import sync_folder, write_text_atomic
from g2l.io.safe_files import sha256_file
from g2l.library.approximate import record_state
from g2l.library.exact import Block
from g2l.library.store import (DTYPES, FORMAT, LOCK, MANIFEST, SHARDS, VERSION, VIDEOS_PER_SHARD, IndexedVideo,
                               VideoIndexError, check_manifest_model, check_spans, clean_up, damaged_error,
                               file_identity, map_npy, read_manifest, read_videos, refuse_links, take_lock,
                               writable_by_others)

@dataclass
class LibraryMoment:
    video: str  # the path as indexed; resolved: its absolute path then (two folders' clip.mp4 differ there)
    start_s: float
    end_s: float
    score: float
    resolved: str = ""


@dataclass
class LibraryResult:
    query: str
    match: bool | None  # None: the model has no match threshold
    moments: list[LibraryMoment]


@dataclass
class AddSummary:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already indexed, unchanged
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    from_cache: int = 0


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (indexed path, where it is now)
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # shard files whose bytes changed
    unchecked: int = 0  # videos indexed from precomputed features
    fixed: list[str] = field(default_factory=list)


def model_identity(grounder: Grounder) -> dict:
    """What an index's scores depend on: the model's weights, config and frame encoder, as
    ``g2l-ground --batch`` records them (g2l/batch_output.py ``made_by``); hashed once per grounder
    (a grounder's model is not changed in place)."""
    from g2l.batch_output import made_by

    if grounder not in _IDENTITIES:
        _IDENTITIES[grounder] = made_by(grounder, top_k=1, window_s=None, explain=False, explain_target="runner_up",
                                        seed=0)["model"]
    return _IDENTITIES[grounder]


_IDENTITIES: "weakref.WeakKeyDictionary[Grounder, dict]" = weakref.WeakKeyDictionary()


class VideoIndex:
    """An index folder (module docstring). ``create`` or ``open(write=True)`` for a writer (holds the
    lock until ``close``); ``open`` for a reader."""

    def __init__(self, folder: Path, manifest: dict, videos: list[IndexedVideo], lock_fd: int | None, *,
                 writer: bool = False):
        self.folder = folder
        self.writer = writer
        self.manifest = manifest
        self.videos = videos
        self._lock_fd = lock_fd
        self._search: dict = {}  # exact and approximate backends, by name, built on first use

    # Opening ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, grounder: Grounder, *, window_s: float | None = None,
               dtype: str = "float16") -> "VideoIndex":
        """A new, empty index in ``folder`` (created if missing; it must be empty or hold an index
        of the same model, which is opened instead), held for writing."""
        folder = Path(folder)
        if dtype not in DTYPES:
            raise VideoIndexError(f"storage dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        grounder.check_window(window_s, grounder.fps, what="--window")
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise VideoIndexError(f"index {folder} is not a folder; pass a new folder for the index")
        if os.path.lexists(folder / MANIFEST):
            index = cls.open(folder, grounder, write=True)
            settings = index.manifest["settings"]
            if settings["window_s"] != window_s or settings["dtype"] != dtype:
                index.close()
                raise VideoIndexError(f"index {folder} exists with other settings (window {settings['window_s']}, "
                                      f"{settings['dtype']}); add to it with the same ones, or pick a new folder")
            return index
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / SHARDS).mkdir(exist_ok=True)
        except OSError as error:
            raise VideoIndexError(f"index {folder} cannot be created ({error.strerror or error}); "
                                  "pass a folder you can write") from None
        others = [p.name for p in folder.iterdir() if p.name not in (SHARDS, LOCK)]
        if others or any((folder / SHARDS).iterdir()):
            raise VideoIndexError(f"index {folder} is a folder that holds other files ({', '.join(sorted(others)[:3])}"
                                  "); pass a new or empty folder for the index")
        lock = take_lock(folder)
        manifest = {"format": FORMAT, "version": VERSION, "model": model_identity(grounder),
                    "settings": {"window_s": window_s, "dtype": dtype, "dim": int(grounder.cfg.model.joint_dim)},
                    "shards": [], "next_shard": 1}
        index = cls(folder, manifest, [], lock, writer=True)
        index._write_manifest()
        return index

    @classmethod
    def open(cls, folder: str | Path, grounder: Grounder | None = None, *, write: bool = False) -> "VideoIndex":
        """The index in ``folder``, checked (module docstring); refused when ``grounder`` is another
        model than the one it was built with. ``write``: take the writer's lock and clean up what
        a killed writer left."""
        folder = Path(folder)
        problem = path_problem(folder / MANIFEST)
        if folder.is_symlink() or not folder.is_dir():
            raise VideoIndexError(f"index {folder} is not a folder; pass the folder g2l-index build made")
        if problem:
            if problem.endswith("does not exist") and not (folder / MANIFEST).is_symlink():
                raise VideoIndexError(f"{folder} is not a g2l index (it has no {MANIFEST}); build one with "
                                      "g2l-index build")
            raise VideoIndexError(f"index {folder}: {MANIFEST} {problem}; an index holds no links or special files, "
                                  "rebuild it with g2l-index build")
        lock = take_lock(folder) if write else None
        try:
            refuse_links(folder)
            if write:
                clean_up(folder)
            for attempt in range(3):  # a writer may swap the manifest and delete a shard while we read
                manifest = read_manifest(folder)
                if grounder is not None:
                    check_manifest_model(folder, manifest, model_identity(grounder))
                try:
                    videos = read_videos(folder, manifest)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise VideoIndexError(f"index {folder} is damaged: a shard listed in {MANIFEST} is missing; "
                                              "rebuild it with g2l-index build") from None
            shared = writable_by_others(folder, manifest)
            if shared:
                warnings.warn(f"index {folder} can be changed by others ({shared} is writable by users other than "
                              "its owner), who could plant moments in it: `chmod -R go-w` it, or keep the index in "
                              "a folder of your own", stacklevel=2)
            return cls(folder, manifest, videos, lock, writer=write)
        except BaseException:
            if lock is not None:
                os.close(lock)
            raise

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.writer = False

    def __enter__(self) -> "VideoIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_model(self, grounder: Grounder) -> None:
        check_manifest_model(self.folder, self.manifest, model_identity(grounder))

    # Reading ---------------------------------------------------------------------------------------
    def info(self) -> dict:
        settings = self.manifest["settings"]
        size = sum(p.stat().st_size for p in (self.folder / SHARDS).rglob("*") if p.is_file())
        return {"index": str(self.folder), "videos": len(self.videos), "moments": sum(v.cells for v in self.videos),
                "hours": sum(v.duration_s for v in self.videos) / 3600, "shards": len(self.manifest["shards"]),
                "bytes": size, "dtype": settings["dtype"], "dim": settings["dim"], "window_s": settings["window_s"],
                "model": self.manifest["model"], "approximate": record_state(self.manifest),
                "milvus": record_state(self.manifest, "milvus")}

    def _blocks(self) -> list[Block]:
        settings, blocks, number, of_shard = self.manifest["settings"], [], 0, {}
        for v in self.videos:  # grouped once, not scanned again for each shard
            of_shard.setdefault(v.shard, []).append(v)
        for shard in self.manifest["shards"]:
            folder, k, mine = self.folder / SHARDS / shard["name"], shard["cells"], of_shard.get(shard["name"], [])
            counts = [v.cells for v in mine]
            arrays = {name: map_npy(folder / f"{name}.npy", dtype, (k, width), what=f"index {self.folder} shard "
                                     f"{shard['name']}")
                      for name, dtype, width in (("cells_c", settings["dtype"], settings["dim"]),
                                                 ("cells_u", settings["dtype"], settings["dim"]),
                                                 ("spans", "float32", 2))}
            check_spans(self.folder, shard["name"], arrays["spans"], mine)
            video = np.repeat(np.arange(number, number + len(counts)), counts)
            number += len(counts)
            blocks.append(Block(arrays["cells_c"], arrays["cells_u"], np.asarray(arrays["spans"]), video))
        return blocks

    def search(self, grounder: Grounder, queries: list[str], *, top_k: int = 10,
               per_video: int | None = None, approximate: bool | str | None = None) -> list[LibraryResult]:
        """The best ``top_k`` moments of each query across the index, at most ``per_video`` per video
        (after NMS within each video, as ``Grounder.ground``); ``match``: the best score reaches the
        model's ``match_threshold`` (None when the model has none). ``approximate``: True, the FAISS
        candidates; ``"milvus"``, the Milvus export's (g2l/library/milvus.py); False, every moment exactly;
        None, as g2l/library/approximate.py's ``backend`` decides."""
        if top_k < 1 or (per_video is not None and per_video < 1):
            raise VideoIndexError("top_k and per_video must be at least 1")
        self.check_model(grounder)
        s_c, s_u = grounder.query_embeddings(queries)  # (q d)
        dim = self.manifest["settings"]["dim"]
        if s_c.shape[-1] != dim:  # a manifest edited to another width
            raise damaged_error(self.folder, f"{MANIFEST} says its moments have width {dim}, where this model's have "
                                f"{s_c.shape[-1]}")
        search = self._backend(grounder.cfg.eval.score_gamma, approximate)
        threshold = getattr(grounder, "match_threshold", None)
        results = []
        for query, c, u in zip([q.strip() for q in queries], s_c, s_u):
            # ExactSearch.top is bounded (the same hits and score bits as scores + rank); the candidate backends'
            # top is scores + rank over their candidates
            kept, scores = search.top(c, u, top_k=top_k, per_video=per_video, nms_thresh=grounder.cfg.eval.nms_thresh)
            moments = []
            for index, score in zip(kept, scores):
                video = self.videos[int(search.video[index])]
                start, end = search.spans_s[index]
                moments.append(LibraryMoment(video.path, float(start), float(min(end, video.duration_s)),
                                             float(score), video.resolved))
            match = None if threshold is None else bool(moments and moments[0].score >= threshold)
            results.append(LibraryResult(query, match, moments))
        return results

    def _backend(self, gamma: float, approximate: bool | None):
        """ExactSearch, ApproximateSearch or MilvusSearch (the same interface), as ``search``'s
        ``approximate`` picks (g2l/library/milvus.py's ``backend``), kept for the next search."""
        from g2l.library.milvus import backend

        return backend(self._search, self.folder, self.manifest, sum(v.cells for v in self.videos), self._blocks,
                       gamma=gamma, approximate=approximate)

    def build_approximate(self) -> dict:
        """Build the FAISS index of every stored moment (g2l/library/approximate.py), write it and
        record it in the manifest; returns that record."""
        from g2l.library import approximate as ann

        self._require_writer()
        ann.import_faiss()
        try:
            record = ann.write_faiss_index(self.folder, self.manifest, ann.build_faiss_index(self._blocks()))
            self._record("approximate", record)
        except OSError as error:
            raise VideoIndexError(f"index {self.folder}: its approximate index could not be written "
                                  f"({error.strerror or error}); free space or fix permissions and run the command "
                                  "again") from None
        return record

    def _record(self, key: str, value) -> None:
        """Set the manifest's ``key`` and write it atomically (under the writer's lock); the search
        backends built from the old one are dropped. A failed write keeps the old manifest."""
        old, self.manifest = self.manifest, dict(self.manifest, **{key: value})
        try:
            self._write_manifest()
        except BaseException:
            self.manifest = old
            raise
        self._search = {}

    # Writing ---------------------------------------------------------------------------------------
    def _require_writer(self) -> None:
        if not self.writer:
            raise VideoIndexError(f"index {self.folder} was opened for reading; open it with write=True to change it")

    def add(self, paths: list[str | Path], grounder: Grounder, *, cache_dir: str | Path | None = None,
            videos_per_shard: int = VIDEOS_PER_SHARD, on_video=None, on_failure=None,
            _shown: dict[str, str] | None = None) -> AddSummary:
        """Encode and add the video files ``paths`` (skipping those indexed and unchanged; a changed
        one is encoded again and replaces its entry). A video that cannot be read is reported
        (``on_failure(path, why)``) and skipped. ``on_video(done, total)`` after each."""
        from g2l.feature_cache import FeatureCache
        from g2l.video.decoding import VideoReadError

        self._require_writer()
        self.check_model(grounder)
        store = FeatureCache.for_grounder(cache_dir, grounder) if cache_dir is not None else None
        by_resolved = {v.resolved: v for v in self.videos}
        summary, pending, replaced = AddSummary(), [], set()
        window_s = self.manifest["settings"]["window_s"]
        for done, path in enumerate(paths, start=1):
            path = Path(path)
            try:
                problem = path_problem(path)
                if problem:
                    raise GroundingError(f"video {path} {problem}")
                resolved, identity = file_identity(path)
                old = by_resolved.get(resolved)
                if old is not None and old.identity == identity:
                    summary.skipped.append(str(path))
                    continue
                video = store.get(path) if store is not None else None
                if video is None:
                    video = grounder.encode_video(path)
                    if store is not None:
                        store.put(path, video)
                else:
                    summary.from_cache += 1
                shown = (_shown or {}).get(str(path), str(path))  # verify --fix: the path as first indexed
                entry = IndexedVideo(shown, resolved, identity, float(video.duration_s), 0)
                pending.append((entry, *grounder.moment_embeddings(video, window_s)))
                if old is not None:
                    replaced.add(old.resolved)
                by_resolved[resolved] = entry
                summary.added.append(str(path))
            except (G2LError, VideoReadError, OSError) as error:
                why = str(error) if not isinstance(error, OSError) else (error.strerror or str(error))
                summary.failed.append((str(path), why))
                if on_failure is not None:
                    on_failure(str(path), why)
            finally:
                if on_video is not None:
                    on_video(done, len(paths))
            if len(pending) >= videos_per_shard:
                self._commit(pending, replaced)
                pending, replaced = [], set()
        if pending or replaced:
            self._commit(pending, replaced)
        return summary

    def add_features(self, items, grounder: Grounder, *, videos_per_shard: int = VIDEOS_PER_SHARD,
                     on_video=None) -> int:
        """Add videos from precomputed features: ``items`` yields ``(name, features (T F), duration_s)``
        (a split's feature rows); each is indexed under ``name`` with no file identity. Returns the count."""
        self._require_writer()
        self.check_model(grounder)
        known = {v.resolved for v in self.videos}
        pending, replaced, count = [], set(), 0
        for done, (name, features, duration_s) in enumerate(items, start=1):
            video = grounder.encode_features(features, duration_s, name=name)
            entry = IndexedVideo(name, f"features:{name}", None, float(duration_s), 0)
            if entry.resolved in known:
                replaced.add(entry.resolved)
            pending.append((entry, *grounder.moment_embeddings(video, self.manifest["settings"]["window_s"])))
            count += 1
            if on_video is not None:
                on_video(done)
            if len(pending) >= videos_per_shard:
                self._commit(pending, replaced)
                pending, replaced = [], set()
        if pending or replaced:
            self._commit(pending, replaced)
        return count

    def add_embeddings(self, entries: list[tuple[IndexedVideo, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Add videos whose moments are already embedded: ``(video, spans_s (k 2), cells_c (k d),
        cells_u (k d))`` each (``moment_embeddings``'s output), in one shard."""
        self._require_writer()
        self._commit(list(entries), set())

    def remove(self, paths: list[str | Path]) -> tuple[list[str], list[str]]:
        """Drop the videos indexed under ``paths`` (the same file, else as indexed); returns
        ``(removed, not_found)``."""
        self._require_writer()
        removed, not_found, drop = [], [], set()
        for path in paths:
            text = str(path)
            try:
                resolved = str(Path(path).resolve())
            except (OSError, RuntimeError, ValueError):
                resolved = text
            # The file the path names when one is indexed; else the entries indexed under that text (a
            # video gone since, or one indexed from another folder): never both, so that a.mp4 indexed
            # from two folders loses only the one meant.
            hits = ([v for v in self.videos if v.resolved in (resolved, f"features:{text}")]
                    or [v for v in self.videos if v.path == text])
            if hits:
                drop |= {v.resolved for v in hits}
                removed.append(text)
            else:
                not_found.append(text)
        if drop:
            self._commit([], drop)
        return removed, not_found

    def verify(self, grounder: Grounder | None = None, *, fix: bool = False, cache_dir: str | Path | None = None,
               on_failure=None) -> VerifyReport:
        """Each video file against its indexed identity: unchanged, changed (other bytes or times),
        moved (the same file, by device and inode, size and mtime, now in a folder of an indexed
        video under another name) or missing; each shard file against its recorded hash. ``fix``
        (a writer with ``grounder``): changed videos are encoded again, moved ones re-pointed,
        missing ones dropped, and damaged shards dropped with their videos."""
        report = VerifyReport()
        for shard in self.manifest["shards"]:
            for name, digest in shard["sha256"].items():  # the four members (read_manifest checks the names)
                try:
                    found = sha256_file(self.folder / SHARDS / shard["name"] / name)
                except OSError:  # missing, a link, a FIFO: damaged, never followed or waited on
                    found = None
                if found != digest:
                    report.damaged.append(f"{SHARDS}/{shard['name']}/{name}")
        damaged_shards = {p.split("/")[1] for p in report.damaged}
        files_near: dict[tuple, str] | None = None
        # What --fix acts on, by resolved path: two videos indexed under one relative path from two
        # folders are two entries, and one missing must not drop the other.
        changed, missing, moved = {}, set(), {}
        for video in self.videos:
            if video.shard in damaged_shards:
                continue
            if video.identity is None:
                report.unchecked += 1
                continue
            try:
                resolved, identity = file_identity(video.resolved)
            except OSError:
                resolved, identity = None, None
            if identity == video.identity:
                report.ok.append(video.path)
            elif identity is not None:
                report.changed.append(video.path)
                changed[video.resolved] = video.path
            else:
                if files_near is None:
                    files_near = self._files_near()
                now = files_near.get((video.identity[0], video.identity[1], video.identity[2], video.identity[3]))
                if now is not None and now != video.resolved:
                    report.moved.append((video.path, now))
                    moved[video.resolved] = now
                else:
                    report.missing.append(video.path)
                    missing.add(video.resolved)
        if not fix:
            return report
        self._require_writer()
        if grounder is None:
            raise VideoIndexError("verify --fix needs the model to encode changed videos again")
        drop = missing | set(moved) | {v.resolved for v in self.videos if v.shard in damaged_shards}
        pending = []
        for video in self.videos:
            if video.resolved in moved:
                resolved, identity = file_identity(moved[video.resolved])
                entry = IndexedVideo(moved[video.resolved], resolved, identity, video.duration_s, 0)
                arrays = self._arrays_of(video)
                pending.append((entry, *arrays))
        if drop or pending:
            self._commit(pending, drop)
        report.fixed += [f"dropped {p}" for p in report.missing] + [f"moved {a} -> {b}" for a, b in report.moved]
        report.fixed += [f"dropped the videos of damaged shard {s}" for s in sorted(damaged_shards)]
        if changed:
            # The files that changed, by the resolved path checked above: the path as indexed may be
            # relative to another folder than this command's, where another file of that name may be.
            summary = self.add(list(changed), grounder, cache_dir=cache_dir, on_failure=on_failure, _shown=changed)
            report.fixed += [f"encoded {changed.get(p, p)} again" for p in summary.added]
        return report

    def _files_near(self) -> dict[tuple, str]:
        """Files in the folders of the indexed videos, by (device, inode, size, mtime_ns)."""
        found = {}
        for parent in sorted({str(Path(v.resolved).parent) for v in self.videos if v.identity is not None}):
            try:
                entries = list(os.scandir(parent))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found[(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)] = str(Path(entry.path).resolve())
                except OSError:
                    continue
        return found

    def _arrays_of(self, video: IndexedVideo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(spans (k 2), cells_c (k d), cells_u (k d))`` of one indexed video, from its shard."""
        settings = self.manifest["settings"]
        shard = next(s for s in self.manifest["shards"] if s["name"] == video.shard)
        members = [v for v in self.videos if v.shard == video.shard]
        start = sum(v.cells for v in members[:members.index(video)])
        rows = slice(start, start + video.cells)
        folder, k = self.folder / SHARDS / shard["name"], shard["cells"]
        what = f"index {self.folder} shard {shard['name']}"
        return (np.array(map_npy(folder / "spans.npy", "float32", (k, 2), what=what)[rows]),
                np.array(map_npy(folder / "cells_c.npy", settings["dtype"], (k, settings["dim"]), what=what)[rows]),
                np.array(map_npy(folder / "cells_u.npy", settings["dtype"], (k, settings["dim"]), what=what)[rows]))

    def _commit(self, pending: list, drop: set[str]) -> None:
        """Write ``pending`` as a new shard, rewrite the shards holding videos of ``drop`` (resolved
        paths) without them, swap the manifest, then delete the shards it no longer lists. A failed
        write (disk full, no permission) leaves the index as it was, with one sentence."""
        try:
            self._write(pending, drop)
        except OSError as error:
            raise VideoIndexError(f"index {self.folder} could not be written ({error.strerror or error}); it is as it "
                                  "was before this change: free space or fix permissions and run the command again") from None

    def _write(self, pending: list, drop: set[str]) -> None:
        dropped_from = {v.shard for v in self.videos if v.resolved in drop}
        keep_shards = [s for s in self.manifest["shards"] if s["name"] not in dropped_from]
        rewritten = []
        for name in sorted(dropped_from):
            rest = [v for v in self.videos if v.shard == name and v.resolved not in drop]
            if rest:
                rewritten.append([(v, *self._arrays_of(v)) for v in rest])
        new_shards, new_videos = [], []
        for group in rewritten + ([pending] if pending else []):
            record, videos = self._write_shard(group)
            new_shards.append(record)
            new_videos += videos
        self._record("shards", keep_shards + new_shards)
        for name in sorted(dropped_from):
            shutil.rmtree(self.folder / SHARDS / name, ignore_errors=True)
        # the manifest's order, as read_videos gives it, without reading every shard again at each commit
        self.videos = [v for v in self.videos if v.shard not in dropped_from] + new_videos
        self._search = {}

    def _write_shard(self, group: list) -> tuple[dict, list[IndexedVideo]]:
        """Write ``group``'s videos as a new shard: its manifest record, and its videos as indexed."""
        settings = self.manifest["settings"]
        dtype, dim = settings["dtype"], settings["dim"]
        name = f"{self.manifest['next_shard']:08d}"
        self.manifest = dict(self.manifest, next_shard=self.manifest["next_shard"] + 1)
        videos, spans, cells_c, cells_u = [], [], [], []
        for video, video_spans, video_c, video_u in group:
            if video_c.shape[-1] != dim or video_c.shape != video_u.shape or video_spans.shape != (len(video_c), 2):
                raise VideoIndexError(f"moments of {video.path} have shapes {video_c.shape}, {video_spans.shape}; "
                                      f"this index holds (k, {dim}) features")
            videos.append(dict(video.entry(), cells=int(len(video_c))))
            spans.append(np.asarray(video_spans, np.float32))
            cells_c.append(np.asarray(video_c, dtype))
            cells_u.append(np.asarray(video_u, dtype))
        shards = self.folder / SHARDS
        temporary = shards / f".{name}.{os.getpid()}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        arrays = {"spans": np.concatenate(spans), "cells_c": np.concatenate(cells_c),
                  "cells_u": np.concatenate(cells_u)}
        for member, array in arrays.items():
            np.save(temporary / f"{member}.npy", np.ascontiguousarray(array))
        (temporary / "videos.json").write_text(strict_json.dumps(videos) + "\n")
        sync_folder(temporary)
        atomic.kill_point(f"shard-written:{name}")  # looked up at each call: the kill -9 tests replace it
        os.rename(temporary, shards / name)
        digests = {member: sha256_file(shards / name / member)
                   for member in ("videos.json", "spans.npy", "cells_c.npy", "cells_u.npy")}
        record = {"name": name, "videos": len(videos), "cells": int(len(arrays["spans"])), "sha256": digests}
        return record, [IndexedVideo(v["path"], v["resolved"], v["identity"], float(v["duration_s"]), v["cells"], name)
                        for v in videos]

    def _write_manifest(self) -> None:
        write_text_atomic(self.folder / MANIFEST, strict_json.dumps(self.manifest, indent=1) + "\n")
