"""Library search at scale, on synthetic moment embeddings at the shipped demo model's dimensions
(joint_dim 128, 136 moments a video at N=16): exact search latency, a cold one-off ``g2l-search``,
build throughput and the index's size, float16 storage beside float32.

    python bench/search.py [--sizes 1000,10000] [--queries 30] [--cold-size 10000] [--demo /tmp/demo]

* warm latency: one query at a time against an opened index (memory-mapped shards, page cache
  warm), p50/p95 over ``--queries`` random sentence vectors: the exact scores (two matrix products)
  plus the ranking (NMS within videos); the bounded exact search ``ExactSearch.top`` (IoU cosines
  of all moments, contrast of few; checked equal); and one full ``VideoIndex.search`` call (the text
  encoder included) on real sentences. The recall@10 of float16 against float32 is printed beside.
* cold: ``g2l-search INDEX "query"`` in a fresh process (interpreter, imports, model, index
  opened, one query), launch to exit, beside ``python -c "import torch"`` alone.
* build: ``add_embeddings`` (shards written, videos/s), ``add_features`` of a features file's
  rows ((32, 1280) a video: the map encoded, videos/s), and with ``--demo`` ``g2l-index build`` of
  rendered videos whose frame features are in the cache.
Sizes beyond memory are extrapolated from the measured ones (linear in the number of moments),
and the output says so.

* approximate (``--approximate-sizes 10000,100000 [--structure random,clustered]``): float16
  indexes written streamed (1,000 videos a shard), the FAISS index built (``build_approximate``,
  one FAISS thread: its time and size), exact search's top 10 of each query as the reference, then
  a fresh process opens the index and searches approximately (warm p50/p95, one thread, its peak
  RSS: the FAISS index plus the pages of the candidates it touched), and recall@10 against exact.
  ``random``: Gaussian moments, independent IoU features (no cluster structure: the worst case for
  an inverted file, and the contrast cosine says little of the score); ``clustered``: moments
  drawn around 4,096 centres (as real moment features cluster), each IoU feature correlated with
  its contrast feature (cosine about 0.7), queries drawn around the same centres.
    python bench/search.py --approximate-only --approximate-sizes 100000 --structure random,clustered
* Milvus (``--milvus-sizes 10000``, with ``--approximate-only`` for these rows alone): a clustered
  float16 index exported by ``g2l.library.milvus.export`` into a Milvus Lite file (the export's
  time), then ``MilvusSearch`` in this process (the default candidates and nprobe; the candidates'
  vectors come back from Milvus): warm p50/p95 and recall@10 against exact search. Milvus Lite is a
  pure-Python server in a thread of this process: its figures are Lite's, not a cluster's.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.assets import demo_checkpoint  # noqa: E402
from g2l.inference import Grounder  # noqa: E402
from g2l.library import IndexedVideo, VideoIndex  # noqa: E402
from g2l.library.exact import ExactSearch  # noqa: E402

SENTENCES = ["the red circle grows.", "a blue square leaves.", "the white triangle turns green.",
             "a yellow circle moves left.", "the green square fades away."]


def normalised(rng, shape) -> np.ndarray:
    x = rng.standard_normal(shape, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


CENTRES = 4096


def centres(dim: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((CENTRES, dim), dtype=np.float32)


def clustered(rng, middle: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Contrast features around ``middle``'s centres and IoU features correlated with them: ``(... d)`` each."""
    c = normalised_rows(middle[rng.integers(len(middle), size=shape[:-1])]
                        + 0.8 * rng.standard_normal(shape, dtype=np.float32))
    u = normalised_rows(c + rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-1]))
    return c, u


def normalised_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_index(folder: Path, grounder: Grounder, videos: int, dtype: str, *, per_shard: int = 1000,
                    structure: str = "random") -> float:
    """An index of ``videos`` random videos (136 moments of 30 s-long demo-like spans); returns videos/s written.
    ``structure``: "random" (Gaussian) or "clustered" (``clustered``)."""
    rng = np.random.default_rng(0)
    cells = int(grounder.model.cell_start_idx.numel())
    spans = grounder.moment_embeddings(grounder.encode_features(np.ones((30, 1280), np.float32), 30.0))[0]
    dim = grounder.cfg.model.joint_dim
    started, written = time.perf_counter(), 0
    with VideoIndex.create(folder, grounder, dtype=dtype) as index:
        for first in range(0, videos, per_shard):
            count = min(per_shard, videos - first)
            if structure == "clustered":
                cells_c, cells_u = clustered(rng, centres(dim), (count, cells, dim))
            else:
                cells_c, cells_u = normalised(rng, (count, cells, dim)), normalised(rng, (count, cells, dim))
            entries = [(IndexedVideo(f"video{first + v:07d}.mp4", f"/library/video{first + v:07d}.mp4", None, 30.0, 0),
                        spans, cells_c[v], cells_u[v]) for v in range(count)]
            index.add_embeddings(entries)
            written += count
    return written / (time.perf_counter() - started)


def percentiles(times) -> str:
    times = np.asarray(times) * 1000
    return f"p50 {np.percentile(times, 50):7.1f} ms  p95 {np.percentile(times, 95):7.1f} ms"


def timed_recall(search, s_c, s_u, exact_tops) -> tuple[list[float], list[float]]:
    """Each query's search time (scores and rank) and recall@10 against exact search's top 10."""
    times, recalls = [], []
    for c, u, want in zip(s_c, s_u, exact_tops):
        started = time.perf_counter()
        got = search.rank(search.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5)
        times.append(time.perf_counter() - started)
        recalls.append(len(set(got) & set(want)) / 10)
    return times, recalls


def approximate_worker(folder: str, queries_file: str, out: str) -> int:
    """In a fresh process: open the index, load its FAISS index, search each query approximately
    (3 warm-up queries first); write the top 10s and the times, print the peak RSS."""
    import json
    import resource

    torch.set_num_threads(1)
    from g2l.library.approximate import ApproximateSearch, load_faiss_index

    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    index = VideoIndex.open(folder, grounder)
    started = time.perf_counter()
    search = ApproximateSearch(index._blocks(), load_faiss_index(index.folder, index.manifest),
                               gamma=grounder.cfg.eval.score_gamma, threads=1)
    loaded = time.perf_counter() - started
    s_c, s_u = np.load(queries_file)
    for c, u in zip(s_c[:3], s_u[:3]):
        search.rank(search.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5)
    times, tops = [], []
    for c, u in zip(s_c, s_u):
        started = time.perf_counter()
        tops.append(search.rank(search.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5))
        times.append(time.perf_counter() - started)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(f"    memory after the timed queries: anonymous {int(status['RssAnon'].split()[0]) / 2**20:.2f} GiB, mapped "
          f"shard pages {int(status['RssFile'].split()[0]) / 2**20:.2f} GiB (page cache, shared and reclaimable); "
          f"peak RSS {rss / 2**30:.2f} GiB counts both", flush=True)
    Path(out).write_text(json.dumps({"times": times, "tops": tops, "rss": rss, "load_s": loaded}))
    # other settings (after the peak RSS above was taken), each against exact search's top 10
    exact = ExactSearch(index._blocks(), gamma=grounder.cfg.eval.score_gamma)
    exact_tops = [exact.rank(exact.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5) for c, u in zip(s_c, s_u)]
    del exact
    import faiss

    for candidates, nprobe in SWEEP:
        search.candidates = candidates
        faiss.extract_index_ivf(search.faiss_index).nprobe = nprobe
        times, recalls = timed_recall(search, s_c, s_u, exact_tops)
        print(f"    candidates {candidates:>6}, nprobe {nprobe:>3}: approximate {percentiles(times)}; recall@10 "
              f"{np.mean(recalls):.3f}", flush=True)
    return 0


def milvus_rows(tmp: Path, grounder: Grounder, sizes: list[int], count: int) -> None:
    from g2l.library import milvus

    dim = grounder.cfg.model.joint_dim
    s_c, s_u = clustered(np.random.default_rng(3), centres(dim), (count, dim))
    for videos in sizes:
        folder = tmp / f"milvus-{videos}"
        shutil.rmtree(folder, ignore_errors=True)
        synthetic_index(folder, grounder, videos, "float16", structure="clustered")
        with VideoIndex.open(folder, grounder, write=True) as index:
            started = time.perf_counter()
            record = milvus.export(index)
            exported = time.perf_counter() - started
        index = VideoIndex.open(folder, grounder)
        blocks = index._blocks()
        exact = ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma)
        exact_tops = [exact.rank(exact.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5) for c, u in zip(s_c, s_u)]
        del exact
        search = milvus.open_search(index.folder, index.manifest, blocks, gamma=grounder.cfg.eval.score_gamma)
        for c, u in zip(s_c[:3], s_u[:3]):
            search.rank(search.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5)
        times, recalls = timed_recall(search, s_c, s_u, exact_tops)
        print(f"{videos:>7} videos clustered: Milvus Lite {percentiles(times)}; recall@10 {np.mean(recalls):.3f} "
              f"({search.candidates} candidates, nprobe {search.nprobe}); export of {record['moments']:,} moments "
              f"({record['index_type']}) in {exported:.0f} s", flush=True)
        del search, index, blocks
        shutil.rmtree(folder)


SWEEP = [(1024, 16), (4096, 32), (4096, 64), (16384, 64), (16384, 128)]  # (candidates, nprobe)


def approximate_rows(tmp: Path, grounder: Grounder, sizes: list[int], structures: list[str], count: int) -> None:
    import json

    import faiss

    faiss.omp_set_num_threads(1)
    dim = grounder.cfg.model.joint_dim
    for videos in sizes:
        for structure in structures:
            folder = tmp / f"approximate-{structure}-{videos}"
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            synthetic_index(folder, grounder, videos, "float16", structure=structure)
            written = time.perf_counter() - started
            rng = np.random.default_rng(3)
            if structure == "clustered":
                s_c, s_u = clustered(rng, centres(dim), (count, dim))
            else:
                s_c, s_u = normalised(rng, (count, dim)), normalised(rng, (count, dim))
            np.save(tmp / "queries.npy", np.stack([s_c, s_u]))
            with VideoIndex.open(folder, grounder, write=True) as index:
                started = time.perf_counter()
                record = index.build_approximate()
                built = time.perf_counter() - started
            index = VideoIndex.open(folder, grounder)
            exact = ExactSearch(index._blocks(), gamma=grounder.cfg.eval.score_gamma)
            exact.rank(exact.scores(s_c[0], s_u[0]), top_k=10, per_video=None, nms_thresh=0.5)
            exact_times, exact_tops = [], []
            for c, u in zip(s_c, s_u):
                started = time.perf_counter()
                exact_tops.append(exact.rank(exact.scores(c, u), top_k=10, per_video=None, nms_thresh=0.5))
                exact_times.append(time.perf_counter() - started)
            del exact, index
            out = tmp / "worker.json"
            env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
            subprocess.run([sys.executable, __file__, "--approximate-worker", str(folder), str(tmp / "queries.npy"),
                            str(out)], env=env, check=True)
            found = json.loads(out.read_text())
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found["tops"], exact_tops)])
            print(f"{videos:>7} videos {structure:>9}: approximate {percentiles(found['times'])}; exact "
                  f"{percentiles(exact_times)}; recall@10 {recall:.3f}; peak RSS {found['rss'] / 2**30:.2f} GiB "
                  f"(FAISS loaded in {found['load_s']:.1f} s); FAISS {record['factory']} built in {built:.0f} s, "
                  f"{record['bytes'] / 2**20:.0f} MiB; index written in {written:.0f} s", flush=True)
            shutil.rmtree(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="videos per index, comma-separated")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--cold-size", type=int, default=10000, help="the index size of the cold g2l-search run (0: skip)")
    parser.add_argument("--demo", default=None, help="a g2l-render-demo folder: time g2l-index build of its videos")
    parser.add_argument("--tmp", default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--approximate-sizes", default="", help="videos per index for the approximate rows "
                        "(comma-separated; default none)")
    parser.add_argument("--milvus-sizes", default="", help="videos per index for the Milvus Lite rows "
                        "(comma-separated; default none)")
    parser.add_argument("--structure", default="random,clustered", help="synthetic moments: random, clustered")
    parser.add_argument("--approximate-only", action="store_true", help="only the approximate (and Milvus) rows")
    parser.add_argument("--approximate-worker", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine's cores are shared)")
    args = parser.parse_args()
    if args.approximate_worker:
        return approximate_worker(*args.approximate_worker)
    torch.set_num_threads(args.threads)
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    cells = int(grounder.model.cell_start_idx.numel())
    print(f"demo model: joint_dim {grounder.cfg.model.joint_dim}, {cells} moments a video; torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared: timings are noisy)")
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="g2l-search-bench-"))
    rng = np.random.default_rng(1)
    queries = [(normalised(rng, (128,)), normalised(rng, (128,))) for _ in range(args.queries)]
    if args.approximate_sizes:
        approximate_rows(tmp, grounder, [int(s) for s in args.approximate_sizes.split(",")],
                         args.structure.split(","), args.queries)
    if args.milvus_sizes:
        milvus_rows(tmp, grounder, [int(s) for s in args.milvus_sizes.split(",")], args.queries)
    if args.approximate_only:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    per_video_bytes = {}
    for videos in sizes:
        tops = {}
        for dtype in ("float32", "float16"):
            folder = tmp / f"{dtype}-{videos}"
            shutil.rmtree(folder, ignore_errors=True)
            rate = synthetic_index(folder, grounder, videos, dtype)
            index = VideoIndex.open(folder, grounder)
            size = index.info()["bytes"]
            per_video_bytes[dtype] = size / videos
            search = ExactSearch(index._blocks(), gamma=grounder.cfg.eval.score_gamma)
            for s_c, s_u in queries[:3]:  # page cache and BLAS warm (top: the norms measured at its second query)
                search.rank(search.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5)
                search.top(s_c, s_u, top_k=10, per_video=None, nms_thresh=0.5)
            score_times, rank_times, top_times, tops[dtype] = [], [], [], []
            for s_c, s_u in queries:
                started = time.perf_counter()
                scores = search.scores(s_c, s_u)
                scored = time.perf_counter()
                tops[dtype].append(search.rank(scores, top_k=10, per_video=None, nms_thresh=0.5))
                rank_times.append(time.perf_counter() - scored)
                score_times.append(scored - started)
                started = time.perf_counter()  # the bounded exact search (what VideoIndex.search runs)
                kept, kept_scores = search.top(s_c, s_u, top_k=10, per_video=None, nms_thresh=0.5)
                top_times.append(time.perf_counter() - started)
                assert kept == tops[dtype][-1] and kept_scores.tobytes() == scores[kept].tobytes()
            index.search(grounder, SENTENCES[:1])
            full = []
            for sentence in SENTENCES * 2:
                started = time.perf_counter()
                index.search(grounder, [sentence], top_k=10)
                full.append(time.perf_counter() - started)
            total = np.asarray(score_times) + np.asarray(rank_times)
            print(f"{videos:>7} videos {dtype}: exact search {percentiles(total)}  (scores {percentiles(score_times)}, "
                  f"rank {np.median(rank_times) * 1000:.1f} ms); VideoIndex.search with the text encoder "
                  f"{percentiles(full)}; build {rate:,.0f} videos/s; {size / videos / 1024:.1f} KiB a video")
            print(f"{videos:>7} videos {dtype}: bounded exact search (ExactSearch.top, the same hits and scores) "
                  f"{percentiles(top_times)}")
            del search, index
            if dtype == "float32" and videos != args.cold_size:
                shutil.rmtree(folder)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["float16"], tops["float32"])])
        print(f"{videos:>7} videos: recall@10 of float16 against float32 storage {recall:.3f}")
    biggest = max(sizes)
    for target in (100_000, 1_000_000):
        if target > biggest:
            print(f"{target:>7} videos (extrapolated, linear in moments from {biggest}): float16 "
                  f"{per_video_bytes['float16'] * target / 2**30:.1f} GiB, float32 "
                  f"{per_video_bytes['float32'] * target / 2**30:.1f} GiB on disk and in memory to search")
    if args.cold_size:
        folder = tmp / f"float16-{args.cold_size}"
        if not folder.exists():
            synthetic_index(folder, grounder, args.cold_size, "float16")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for what, cmd in (("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
                          (f"g2l-search at {args.cold_size} videos (float16)",
                           [sys.executable, str(REPO / "tools" / "search.py"), str(folder), SENTENCES[0]])):
            times = []
            for _ in range(3):
                started = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
                times.append(time.perf_counter() - started)
                if done.returncode:
                    raise SystemExit(done.stderr[-400:])
            print(f"cold one-off {what}: {min(times):.2f} s best of 3, {np.median(times):.2f} s median")
    # build from a features file's rows (the map encoded per video)
    features = np.random.default_rng(2).standard_normal((200, 32, 1280), dtype=np.float32)
    folder = tmp / "from-features"
    shutil.rmtree(folder, ignore_errors=True)
    with VideoIndex.create(folder, grounder) as index:
        started = time.perf_counter()
        index.add_features(((f"v{i}", features[i], 30.0) for i in range(len(features))), grounder)
        rate = len(features) / (time.perf_counter() - started)
    print(f"build from a features file: {rate:.1f} videos/s (200 videos of (32, 1280) rows, the map encoded on the CPU)")
    if args.demo:
        cache, out = tmp / "cache", tmp / "demo-index"
        tool = [sys.executable, str(REPO / "tools" / "index.py")]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        subprocess.run(tool + ["build", str(tmp / "warm-cache"), str(Path(args.demo) / "videos"), "--cache", str(cache),
                               "--quiet"], env=env, check=True, capture_output=True)
        paths = sorted((Path(args.demo) / "videos").glob("*.mp4"))
        with VideoIndex.create(out, grounder) as index:
            started = time.perf_counter()
            summary = index.add(paths, grounder, cache_dir=cache)
            took = time.perf_counter() - started
        print(f"build from the feature cache: {len(summary.added) / took:.1f} videos/s ({summary.from_cache} of "
              f"{len(paths)} rendered demo videos from the cache; each checked against its file)")
    if not args.tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
