"""Approximate search for large libraries: FAISS fetches each query's candidate moments by the mean of
its two cosines, ``(c + u) / 2`` (the inner product of ``fetch_vectors``: the normalised ``cells_c``
and ``cells_u`` side by side, over sqrt 2; an inverted-file index), then the candidates are scored
EXACTLY from the memory-mapped shards (both cosines, ``score_cells``) and ranked
by exact search's own code: ``ExactSearch`` built over the candidates' rows, so its scores and its
``rank`` (NMS within each video, ``per_video``, ties in stored order) are the same functions. With a
candidate count that covers every stored moment the result is exact search's, hit for hit.

    search = ApproximateSearch(blocks, faiss_index, gamma=0.5)   # the interface of ExactSearch
    kept = search.rank(search.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5)

**The FAISS file** ``INDEX/approximate.faiss`` is built by ``build_faiss_index`` from the shards in
manifest order (FAISS id = the moment's row across the library, as ``ExactSearch`` numbers them),
written atomically, and recorded in the manifest under ``"approximate"``: its size and SHA-256, the
FAISS factory string, and ``covers``, the shards (name, SHA-256 of cells_c.npy) it was built from. It
is stale when the manifest's shards differ from ``covers`` (videos added or removed since): search
then falls back to exact search, and ``g2l-index approximate INDEX`` rebuilds it. Loading reads the
file's bytes once through ``open_regular_file`` (no link, no special file, size bounded), checks their
SHA-256 against the manifest, and only then hands those same bytes to ``faiss.deserialize_index``:
FAISS never opens a path, so a file swapped after the check is never read, and no pickle is involved.

**The FAISS index**: ``IVF{nlist},Flat`` (exact inner products within the probed lists) while the
float32 vectors fit in ``FLAT_BYTES``; above it ``IVF{nlist},PQ{width/8}`` (32 bytes a moment at the
demo model's width 128, fetched on 256: 100k videos x 136 moments in about 0.5 GB), whose approximate
inner products only pick candidates. Why both cosines: the score grows with each, and where the IoU
cosine varies more than the contrast one (Gaussian moments: the worst case) candidates by the contrast
cosine alone miss the top (recall@10 0.115 at 100k videos, docs/benchmarks.md); on the demo model's
moments of 680 rendered videos the mean fetches better at small candidate counts too (0.984 against
0.931 at 256 candidates; bench/approximate_real.py). A FAISS file from before this choice (no
``"fetch"`` in its record) is stale. ``nlist`` is about sqrt(moments), at most 2048; a search probes
``nprobe`` lists and re-scores ``candidates`` moments.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from g2l.io.atomic import atomic_path
from g2l.library.exact import Block, ExactSearch
from g2l.library.store import MANIFEST, VideoIndexError

FAISS_FILE = "approximate.faiss"
FLAT_BYTES = 1 << 30  # float32 vectors up to this size stay unquantised in the lists
MAX_FAISS_BYTES = 16 << 30
CANDIDATES = 4096  # moments fetched per query, then scored exactly
NPROBE = 64  # lists probed per query (bench/search.py sweeps it)
MAX_NLIST = 2048  # lists: about sqrt(moments), at most this (the build's cost grows with it)
INSTALL = "pip install 'g2l[library]'"
# Above this many stored moments (about 15k videos of the demo model's 136; exact search's p95 is
# about 115 ms at 10k, docs/benchmarks.md), search is approximate by default where the index has a
# current FAISS index (g2l-index approximate): below it exact search is fast enough to keep exact.
APPROXIMATE_ABOVE = 2_000_000


def import_faiss():
    """The ``faiss`` module, or one sentence naming the extra that installs it."""
    try:
        import faiss
    except ImportError:
        raise VideoIndexError(f"approximate search needs faiss, which is not installed; {INSTALL}") from None
    return faiss


FETCH = "mean of the contrast and IoU cosines"  # the manifest record's "fetch": what the vectors hold


def fetch_vectors(cells_c: np.ndarray, cells_u: np.ndarray) -> np.ndarray:
    """``(... 2d)`` float32 vectors whose inner products are the mean of the two cosines (unit norm
    when the inputs are): a moment's stored rows, or a query's ``s_c`` and ``s_u``."""
    both = np.concatenate([np.asarray(cells_c, np.float32), np.asarray(cells_u, np.float32)], axis=-1)
    return np.ascontiguousarray(both * np.float32(np.sqrt(0.5)))


def factory_for(moments: int, width: int) -> str:
    """The FAISS factory string for ``moments`` fetch vectors of ``width`` (module docstring)."""
    nlist = int(min(MAX_NLIST, max(1, round(np.sqrt(moments))), max(1, moments // 39)))
    if moments * width * 4 <= FLAT_BYTES or width % 8 or moments < 256 * 39:
        return f"IVF{nlist},Flat"
    return f"IVF{nlist},PQ{width // 8}"


def covers(manifest: dict) -> list[list[str]]:
    """What a FAISS file built now would cover: the shards in order, with their cells_c digests."""
    return [[s["name"], s["sha256"]["cells_c.npy"]] for s in manifest["shards"]]


def _rows(blocks: list[Block], ids: np.ndarray, which: str) -> np.ndarray:
    """Rows ``ids`` (sorted, global) of the blocks' ``which`` arrays, gathered from the maps: ``(m d)``."""
    out, start = [], 0
    for block in blocks:
        end = start + len(block.video)
        lo, hi = np.searchsorted(ids, [start, end])
        if hi > lo:
            out.append(np.asarray(getattr(block, which)[ids[lo:hi] - start]))
        start = end
    return np.concatenate(out) if out else np.zeros((0, blocks[0].cells_c.shape[1] if blocks else 0), np.float32)


def build_faiss_index(blocks: list[Block], *, seed: int = 0, chunk: int = 1 << 18):
    """A trained FAISS index of every moment's ``fetch_vectors``, ids = rows in block order."""
    faiss = import_faiss()
    moments = sum(len(b.video) for b in blocks)
    if moments == 0:
        raise VideoIndexError("the index holds no moments; add videos before building its approximate index")
    width = 2 * blocks[0].cells_c.shape[1]
    factory = factory_for(moments, width)
    index = faiss.index_factory(width, factory, faiss.METRIC_INNER_PRODUCT)
    nlist = int(factory.split(",")[0][3:])
    sample = min(moments, max(64 * nlist, 256 * 64))
    ids = np.sort(np.random.default_rng(seed).choice(moments, size=sample, replace=False))
    train = fetch_vectors(_rows(blocks, ids, "cells_c"), _rows(blocks, ids, "cells_u"))
    index.train(train)
    del train
    for block in blocks:  # streamed: one chunk of float32 rows at a time
        for first in range(0, len(block.video), chunk):
            index.add(fetch_vectors(block.cells_c[first:first + chunk], block.cells_u[first:first + chunk]))
    return index


def write_faiss_index(folder: Path, manifest: dict, index) -> dict:
    """Write ``index`` to ``folder/FAISS_FILE`` atomically; returns the manifest's ``"approximate"`` record."""
    faiss = import_faiss()
    data = faiss.serialize_index(index).tobytes()
    with atomic_path(folder / FAISS_FILE) as temporary:
        temporary.write_bytes(data)
    return {"file": FAISS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "factory": factory_for(index.ntotal, index.d), "moments": int(index.ntotal), "fetch": FETCH,
            "covers": covers(manifest)}


def record_state(manifest: dict, key: str = "approximate") -> str:
    """The state of the manifest's candidate index under ``key`` (``"approximate"``: the FAISS file;
    ``"milvus"``: the Milvus export): ``"none"`` (never built), ``"stale"`` (built before the last
    change, or by a g2l that fetched by another vector), ``"ready"``."""
    record = manifest.get(key)
    if record is None:
        return "none"
    current = isinstance(record, dict) and record.get("fetch") == FETCH
    return "ready" if current and record.get("covers") == covers(manifest) else "stale"



def load_faiss_index(folder: Path, manifest: dict):
    """The FAISS index the manifest records, after its bytes are checked (module docstring)."""
    from g2l.io.safe_files import UnsafeFileError, open_regular_file

    faiss = import_faiss()
    record = manifest.get("approximate")
    fix = f"rebuild it with g2l-index approximate {folder}, or search with --exact"
    good = (isinstance(record, dict) and record.get("file") == FAISS_FILE and isinstance(record.get("bytes"), int)
            and isinstance(record.get("sha256"), str) and isinstance(record.get("moments"), int))
    if not good:
        raise VideoIndexError(f"index {folder}: the {MANIFEST} record of its approximate index is not laid out as g2l "
                              f"writes it; {fix}")
    try:
        with open_regular_file(folder / FAISS_FILE, what=f"index {folder} {FAISS_FILE}",
                               max_bytes=MAX_FAISS_BYTES) as handle:
            data = handle.read(record["bytes"] + 1)
    except FileNotFoundError:
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} is missing; {fix}") from None
    except UnsafeFileError:
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} is not a regular file; {fix}") from None
    except OSError as error:
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} cannot be read "
                              f"({error.strerror or error}); {fix}") from None
    if len(data) != record["bytes"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} is not the file g2l wrote (its "
                              f"SHA-256 differs from {MANIFEST}'s); {fix}")
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as error:  # our hash, yet unreadable: another FAISS version's format
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} cannot be read by this FAISS "
                              f"({str(error).splitlines()[0][:100]}); {fix}") from None
    width = 2 * manifest["settings"]["dim"]
    if index.ntotal != record["moments"] or index.metric_type != faiss.METRIC_INNER_PRODUCT or index.d != width:
        raise VideoIndexError(f"index {folder}: its approximate index {FAISS_FILE} does not hold the index's "
                              f"moments; {fix}")
    return index


class CandidateSearch:
    """``ExactSearch``'s interface over a candidate search: ``scores`` is exact for the ``candidates``
    moments that ``candidate_rows`` fetches (the best by mean cosine, ``fetch_vectors``) and -inf for
    the rest; ``rank`` ranks those candidates with ``ExactSearch.rank``. ``ApproximateSearch`` fetches
    them from a FAISS index, g2l/library/milvus.py's ``MilvusSearch`` from a Milvus collection."""

    def __init__(self, blocks: list[Block], *, gamma: float, candidates: int | None = None):
        self.blocks = blocks
        self.gamma = float(gamma)
        self.candidates = int(CANDIDATES if candidates is None else candidates)
        self.spans_s = (np.concatenate([b.spans_s for b in blocks]) if blocks
                        else np.zeros((0, 2), np.float32))  # (k 2)
        self.video = np.concatenate([b.video for b in blocks]) if blocks else np.zeros(0, np.int64)  # (k)
        self._last: tuple[np.ndarray, np.ndarray, ExactSearch] | None = None

    def __len__(self) -> int:
        return len(self.video)

    def candidate_rows(self, s_c: np.ndarray, s_u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids (m), cells_c (m d), cells_u (m d))``: the candidates' stored rows, sorted, and their features."""
        raise NotImplementedError

    def scores(self, s_c: np.ndarray, s_u: np.ndarray) -> np.ndarray:
        """Float32 scores ``(k)``: exact (ExactSearch's) for the candidates, -inf elsewhere."""
        ids, cells_c, cells_u = self.candidate_rows(s_c, s_u)
        rows = [Block(cells_c, cells_u, self.spans_s[ids], self.video[ids])] if len(ids) else []
        subset = ExactSearch(rows, gamma=self.gamma)
        scores = np.full(len(self.video), -np.inf, np.float32)
        if len(ids):
            scores[ids] = subset.scores(s_c, s_u)
        self._last = (scores, ids, subset)
        return scores

    def top(self, s_c: np.ndarray, s_u: np.ndarray, *, top_k: int, per_video: int | None,
            nms_thresh: float) -> tuple[list[int], np.ndarray]:
        """``ExactSearch.top``'s contract: the ranked moments and their scores."""
        scores = self.scores(s_c, s_u)
        kept = self.rank(scores, top_k=top_k, per_video=per_video, nms_thresh=nms_thresh)
        return kept, scores[kept]

    def rank(self, scores: np.ndarray, *, top_k: int, per_video: int | None, nms_thresh: float) -> list[int]:
        """``ExactSearch.rank`` over the candidates of ``scores`` (the array ``scores`` returned)."""
        if self._last is not None and self._last[0] is scores:
            _, ids, subset = self._last
        else:
            ids = np.flatnonzero(np.isfinite(scores))
            subset = ExactSearch([Block(np.zeros((len(ids), 0)), np.zeros((len(ids), 0)), self.spans_s[ids],
                                        self.video[ids])] if len(ids) else [], gamma=self.gamma)
        kept = subset.rank(np.asarray(scores[ids]), top_k=top_k, per_video=per_video, nms_thresh=nms_thresh)
        return [int(ids[i]) for i in kept]


class ApproximateSearch(CandidateSearch):
    """The candidates of best mean cosine by FAISS (``CandidateSearch``), read from the shards."""

    def __init__(self, blocks: list[Block], faiss_index, *, gamma: float, candidates: int | None = None,
                 nprobe: int | None = None, threads: int | None = 1):
        super().__init__(blocks, gamma=gamma, candidates=candidates)
        self.faiss_index = faiss_index
        if faiss_index.ntotal != len(self.video) or (blocks and faiss_index.d != 2 * blocks[0].cells_c.shape[1]):
            raise VideoIndexError("the approximate index does not hold the index's moments; rebuild it with "
                                  "g2l-index approximate")
        faiss = import_faiss()
        faiss.extract_index_ivf(faiss_index).nprobe = int(NPROBE if nprobe is None else nprobe)
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))

    def candidate_ids(self, s_c: np.ndarray, s_u: np.ndarray) -> np.ndarray:
        """The stored rows (sorted) of the best ``candidates`` mean cosines by FAISS."""
        wanted = min(self.candidates, len(self.video))
        _, ids = self.faiss_index.search(fetch_vectors(s_c, s_u)[None], wanted)
        ids = ids[0]
        return np.unique(ids[ids >= 0])

    def candidate_rows(self, s_c: np.ndarray, s_u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = self.candidate_ids(s_c, s_u)
        return ids, _rows(self.blocks, ids, "cells_c"), _rows(self.blocks, ids, "cells_u")


def backend(cache: dict, folder: Path, manifest: dict, moments: int, blocks, *, gamma: float, approximate: bool | None):
    """The search backend of an index, kept in ``cache`` (``VideoIndex._search``): ``approximate``
    True, the FAISS candidates (refused in a sentence when missing, stale or damaged); False, exact
    search of every moment; None, approximate above ``APPROXIMATE_ABOVE`` moments when a current FAISS
    index is there (a damaged one, or no faiss, warns with its sentence and searches exactly), decided
    once per opened index. ``blocks``: the index's shards (a callable; a damaged shard is an error)."""
    import warnings

    if approximate is None:
        if "auto" not in cache:
            wanted = moments > APPROXIMATE_ABOVE and record_state(manifest) == "ready"
            if wanted and "approximate" not in cache:
                loaded = blocks()  # a damaged shard is an error, as for exact search
                try:
                    cache["approximate"] = ApproximateSearch(loaded, load_faiss_index(folder, manifest), gamma=gamma)
                except VideoIndexError as error:
                    warnings.warn(f"{error}; searching exactly", stacklevel=4)
                    wanted = False
                    cache["exact"] = ExactSearch(loaded, gamma=gamma)  # the shards already mapped and checked
            cache["auto"] = backend(cache, folder, manifest, moments, blocks, gamma=gamma, approximate=wanted)
        return cache["auto"]
    if not approximate:
        if "exact" not in cache:
            cache["exact"] = ExactSearch(blocks(), gamma=gamma)
        return cache["exact"]
    if "approximate" not in cache:
        state = record_state(manifest)
        if state != "ready":
            what = "no" if state == "none" else "a stale (older than its videos)"
            raise VideoIndexError(f"index {folder} has {what} approximate index; build it with g2l-index "
                                  f"approximate {folder}, or search with --exact")
        cache["approximate"] = ApproximateSearch(blocks(), load_faiss_index(folder, manifest), gamma=gamma)
    return cache["approximate"]
