"""Library search where one machine stops being enough: the index's moments exported into a Milvus
collection (a server or a cluster; Milvus Lite, a local ``.db`` folder served in-process, speaks the
same client), searched behind ``ExactSearch``'s interface like the FAISS index (g2l/library/approximate.py).

    export(index, uri=None, collection=None)                   # g2l-index milvus INDEX [--uri] [--collection]
    index.search(grounder, ["the red circle grows"], approximate="milvus")   # g2l-search INDEX ... --milvus

**What Milvus stores**: one entity per stored moment, its primary key ``row`` the moment's row across
the library (the shards in manifest order, as ``ExactSearch`` numbers them), ``fetch`` the FAISS
index's vector (``approximate.fetch_vectors``: inner product = the mean of the two cosines), ``c`` its
``cells_c`` and ``u`` its ``cells_u``, all FLOAT_VECTOR (float16 storage converts exactly); an
inner-product index on ``fetch`` (IVF_FLAT with FAISS's list count while the vectors fit
``FLAT_BYTES``, IVF_SQ8 above), FLAT on ``c`` and ``u`` (Milvus loads only indexed vector fields).
**What stays local**: the index folder (manifest, videos, spans); a search fetches the ``candidates``
moments of best mean cosine WITH ``c`` and ``u`` (no shard is read), turns them back into the
storage dtype and scores them exactly with ``ExactSearch`` (``CandidateSearch``): with candidates
covering every moment the hits are exact search's, hit for hit.

**The record** ``"milvus"`` in the manifest: ``uri`` (a Lite ``.db`` inside the index folder is
recorded relative to it), ``collection``, ``token`` (this index's mark, also stored as the
collection's property ``g2l.index``), ``index_type``, ``nlist``, ``moments``, ``dim``, ``fetch`` and ``covers``
(the shards exported, as ``approximate.covers``): stale when the shards differ (videos added or
removed since) or it fetched by another vector, and then refused with a sentence. Nothing Milvus holds is believed unchecked: at
load the collection must carry this index's token and the digest of ``covers``, and its row count
and widths must be the index's; returned rows must be rows of the index, with vectors of its width.
A collection not marked with this index's token is never dropped without ``replace``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path

import numpy as np

from g2l.io import strict_json
from g2l.library import approximate as ann
from g2l.library.exact import Block
from g2l.library.store import VideoIndexError

LITE_FILE = "milvus.db"  # the default: a Milvus Lite folder inside the index, no server
COLLECTION = "g2l_moments"
INSTALL = "pip install 'g2l[milvus]'"
BATCH = 4096  # moments an insert
MAX_LIMIT = 16384  # Milvus's largest search limit (topk)
NPROBE = ann.NPROBE
MARK = "g2l.index"  # the collection property holding "token covers-digest"
SCHEMES = ("http://", "https://", "tcp://", "unix:")


def import_pymilvus():
    """The ``pymilvus`` module, or one sentence naming the extra that installs it."""
    try:
        import pymilvus
    except ImportError:
        raise VideoIndexError(f"Milvus search needs pymilvus, which is not installed; {INSTALL}") from None
    for name in ("pymilvus", "milvus_lite"):  # their failures reach the user as our sentences, not log tracebacks
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


def _why(error: Exception) -> str:
    return str(getattr(error, "message", None) or error).splitlines()[0][:160]


def resolve_uri(folder: Path, uri: str) -> str:
    """The address to connect to: a server's URL as it is, a Lite ``.db`` path relative to ``folder``."""
    if uri.startswith(SCHEMES):
        return uri
    if not uri.endswith(".db"):
        raise VideoIndexError(f"Milvus address {uri!r} is neither a server's URL (http://host:19530) nor a Milvus "
                              "Lite file (a path ending in .db); pass one of those with --uri")
    return str(folder / uri)


def connect(uri: str):
    """A ``MilvusClient`` for ``uri`` (resolved), or one sentence."""
    pymilvus = import_pymilvus()
    try:
        return pymilvus.MilvusClient(uri=uri, timeout=10)
    except pymilvus.MilvusException as error:
        raise VideoIndexError(f"Milvus at {uri} cannot be reached ({_why(error)}); start the server or pass "
                              "another --uri") from None


def _mark(record: dict) -> str:
    digest = hashlib.sha256(strict_json.dumps(record["covers"]).encode()).hexdigest()
    return f"{record['token']} {digest}"


def _index_params(moments: int, dim: int) -> tuple[str, int]:
    """The Milvus index type on ``fetch`` and its list count, as FAISS's choice (``ann.factory_for``)."""
    factory = ann.factory_for(moments, 2 * dim)
    return ("IVF_FLAT" if factory.endswith(",Flat") else "IVF_SQ8"), int(factory.split(",")[0][3:])


def export(index, *, uri: str | None = None, collection: str | None = None, replace: bool = False,
           on_batch=None) -> dict:
    """Write every stored moment of ``index`` (a writer) into a Milvus collection and record it in the
    manifest under ``"milvus"``; returns that record. ``on_batch(done, total)`` after each insert."""
    pymilvus = import_pymilvus()
    index._require_writer()
    folder, manifest = index.folder, index.manifest
    old = manifest.get("milvus") if isinstance(manifest.get("milvus"), dict) else {}
    given = LITE_FILE if uri is None else uri
    if not given.startswith(SCHEMES) and given.endswith(".db"):  # a Lite file: recorded relative to the index
        absolute = (Path.cwd() / given) if uri is not None else folder / given
        given = (str(absolute.resolve().relative_to(folder.resolve()))
                 if absolute.resolve().is_relative_to(folder.resolve()) else str(absolute.resolve()))
    address = resolve_uri(folder, given)
    name = collection or COLLECTION
    blocks = index._blocks()
    moments = sum(len(b.video) for b in blocks)
    if moments == 0:
        raise VideoIndexError("the index holds no moments; add videos before exporting it to Milvus")
    dim = int(manifest["settings"]["dim"])
    same = old.get("uri") == given and old.get("collection") == name
    token = old.get("token") if same and isinstance(old.get("token"), str) else secrets.token_hex(8)
    index_type, nlist = _index_params(moments, dim)
    record = {"uri": given, "collection": name, "token": token, "index_type": index_type, "nlist": nlist,
              "moments": moments, "dim": dim, "fetch": ann.FETCH, "covers": ann.covers(manifest)}
    client = connect(address)
    DataType = pymilvus.DataType
    try:
        if client.has_collection(name):
            mark = str(client.describe_collection(name).get("properties", {}).get(MARK, ""))
            if mark.split(" ")[0] != token and not replace:
                raise VideoIndexError(f"Milvus collection {name} at {address} already exists and was not written by "
                                      f"index {folder}; pass --replace to overwrite it, or another --collection")
            client.drop_collection(name)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("fetch", DataType.FLOAT_VECTOR, dim=2 * dim)
        schema.add_field("c", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("u", DataType.FLOAT_VECTOR, dim=dim)
        client.create_collection(name, schema=schema, properties={MARK: _mark(record)})
        done, start = 0, 0
        for block in blocks:  # streamed: BATCH float32 rows at a time
            for first in range(0, len(block.video), BATCH):
                c = np.asarray(block.cells_c[first:first + BATCH], np.float32)
                u = np.asarray(block.cells_u[first:first + BATCH], np.float32)
                fetch = ann.fetch_vectors(c, u)
                client.insert(name, [{"row": start + first + i, "fetch": fetch[i], "c": c[i], "u": u[i]}
                                     for i in range(len(c))])
                done += len(c)
                if on_batch is not None:
                    on_batch(done, moments)
            start += len(block.video)
        client.flush(name)
        params = client.prepare_index_params()
        params.add_index(field_name="fetch", index_type=index_type, metric_type="IP", nlist=nlist)  # Lite 3.2: 128
        for field in ("c", "u"):  # Milvus loads only indexed vector fields
            params.add_index(field_name=field, index_type="FLAT", metric_type="IP")
        client.create_index(name, params)
        client.load_collection(name)
    except pymilvus.MilvusException as error:
        raise VideoIndexError(f"Milvus at {address} refused the export of index {folder} ({_why(error)}); "
                              "fix the server and run g2l-index milvus again") from None
    _check(client, folder, record, address)
    index._record("milvus", record)
    return record


def milvus_state(manifest: dict) -> str:
    """``"none"`` (never exported), ``"stale"`` (exported before the last change), ``"ready"``."""
    return ann.record_state(manifest, "milvus")


def _check(client, folder: Path, record: dict, address: str) -> None:
    """The collection is this index's export of its current shards: its mark, row count and widths."""
    pymilvus = import_pymilvus()
    name, fix = record["collection"], f"export it again with g2l-index milvus {folder}, or search with --exact"
    try:
        if not client.has_collection(name):
            raise VideoIndexError(f"Milvus collection {name} is missing at {address}; {fix}")
        described = client.describe_collection(name)
        rows = int(client.get_collection_stats(name).get("row_count", -1))
    except pymilvus.MilvusException as error:
        raise VideoIndexError(f"Milvus at {address} cannot be read ({_why(error)}); {fix}") from None
    widths = {f.get("name"): (f.get("params") or {}).get("dim") for f in described.get("fields", [])}
    problem = ("it was not written by this index, or not from its current videos"
               if str(described.get("properties", {}).get(MARK, "")) != _mark(record)
               else f"it holds {rows} moments, the index {record['moments']}" if rows != record["moments"]
               else f"its vectors have widths {widths.get('c')}, {widths.get('u')}, the index {record['dim']}"
               if not (str(widths.get("c")) == str(widths.get("u")) == str(record["dim"])
                       and str(widths.get("fetch")) == str(2 * record["dim"])) else None)
    if problem:
        raise VideoIndexError(f"Milvus collection {name} at {address} does not hold this index's moments ({problem}); "
                              f"{fix}")


class MilvusSearch(ann.CandidateSearch):
    """The candidates of best mean cosine by a Milvus search, their vectors from Milvus too
    (``CandidateSearch``: re-scored exactly, ranked by ``ExactSearch.rank``)."""

    def __init__(self, blocks: list[Block], client, collection: str, *, gamma: float, dtype: str,
                 candidates: int | None = None, nprobe: int | None = None, address: str = "Milvus"):
        super().__init__(blocks, gamma=gamma, candidates=candidates)
        self.client, self.collection, self.address = client, collection, address
        self.dtype = np.dtype(dtype)
        self.nprobe = int(NPROBE if nprobe is None else nprobe)
        self.dim = blocks[0].cells_c.shape[1] if blocks else 0

    def candidate_rows(self, s_c: np.ndarray, s_u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pymilvus = import_pymilvus()
        limit = min(self.candidates, len(self.video), MAX_LIMIT)
        try:
            hits = self.client.search(self.collection, data=[ann.fetch_vectors(s_c, s_u)], anns_field="fetch",
                                      limit=limit, output_fields=["c", "u"],
                                      search_params={"metric_type": "IP", "params": {"nprobe": self.nprobe}})[0]
        except pymilvus.MilvusException as error:
            raise VideoIndexError(f"Milvus at {self.address} failed a search ({_why(error)}); check the server, or "
                                  "search with --exact") from None
        ids = np.array([hit["row"] if "row" in hit else hit["id"] for hit in hits], np.int64)
        try:
            c = np.array([hit["entity"]["c"] for hit in hits], np.float32).reshape(len(ids), self.dim)
            u = np.array([hit["entity"]["u"] for hit in hits], np.float32).reshape(len(ids), self.dim)
        except (KeyError, TypeError, ValueError):
            c = None
        if c is None or len(np.unique(ids)) != len(ids) or ((ids < 0) | (ids >= len(self.video))).any():
            raise VideoIndexError(f"Milvus collection {self.collection} at {self.address} returned rows this index "
                                  "does not hold; export it again with g2l-index milvus, or search with --exact")
        order = np.argsort(ids)  # stored order: ties rank as exact search ranks them
        return ids[order], c[order].astype(self.dtype), u[order].astype(self.dtype)


def open_search(folder: Path, manifest: dict, blocks: list[Block], *, gamma: float) -> MilvusSearch:
    """The ``MilvusSearch`` of the manifest's current export, after its collection is checked."""
    state = milvus_state(manifest)
    if state != "ready":
        what = "no" if state == "none" else "a stale (older than its videos)"
        raise VideoIndexError(f"index {folder} has {what} Milvus export; export it with g2l-index milvus {folder}, or "
                              "search with --exact")
    record = manifest["milvus"]
    good = (isinstance(record.get("uri"), str) and isinstance(record.get("collection"), str)
            and isinstance(record.get("token"), str) and isinstance(record.get("moments"), int)
            and isinstance(record.get("dim"), int))
    if not good:
        raise VideoIndexError(f"index {folder}: the record of its Milvus export is not laid out as g2l writes it; "
                              f"export it again with g2l-index milvus {folder}")
    address = resolve_uri(folder, record["uri"])
    client = connect(address)  # imports pymilvus, or says which extra installs it
    _check(client, folder, record, address)
    if record["moments"] != sum(len(b.video) for b in blocks):
        raise VideoIndexError(f"index {folder}: its Milvus export holds {record['moments']} moments, the index "
                              f"{sum(len(b.video) for b in blocks)}; export it again with g2l-index milvus {folder}")
    try:
        client.load_collection(record["collection"])
    except import_pymilvus().MilvusException as error:
        raise VideoIndexError(f"Milvus at {address} cannot load collection {record['collection']} ({_why(error)}); "
                              "check the server, or search with --exact") from None
    return MilvusSearch(blocks, client, record["collection"], gamma=gamma, dtype=manifest["settings"]["dtype"],
                        address=address)


def backend(cache: dict, folder: Path, manifest: dict, moments: int, blocks, *, gamma: float,
            approximate: bool | str | None):
    """``approximate.backend``, with ``approximate="milvus"``: the Milvus export's ``MilvusSearch``
    (refused in a sentence when missing, stale or not this index's), kept in ``cache``."""
    if approximate != "milvus":
        return ann.backend(cache, folder, manifest, moments, blocks, gamma=gamma, approximate=approximate)
    if "milvus" not in cache:
        cache["milvus"] = open_search(folder, manifest, blocks(), gamma=gamma)
    return cache["milvus"]
