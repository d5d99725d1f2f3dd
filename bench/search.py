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


def synthetic_index(folder: Path, grounder: Grounder, videos: int, dtype: str, *, per_shard: int = 1000) -> float:
    """An index of ``videos`` random videos (136 moments of 30 s-long demo-like spans); returns videos/s written."""
    rng = np.random.default_rng(0)
    cells = int(grounder.model.cell_start_idx.numel())
    spans = grounder.moment_embeddings(grounder.encode_features(np.ones((30, 1280), np.float32), 30.0))[0]
    dim = grounder.cfg.model.joint_dim
    started, written = time.perf_counter(), 0
    with VideoIndex.create(folder, grounder, dtype=dtype) as index:
        for first in range(0, videos, per_shard):
            count = min(per_shard, videos - first)
            cells_c, cells_u = normalised(rng, (count, cells, dim)), normalised(rng, (count, cells, dim))
            entries = [(IndexedVideo(f"video{first + v:07d}.mp4", f"/library/video{first + v:07d}.mp4", None, 30.0, 0),
                        spans, cells_c[v], cells_u[v]) for v in range(count)]
            index.add_embeddings(entries)
            written += count
    return written / (time.perf_counter() - started)


def percentiles(times) -> str:
    times = np.asarray(times) * 1000
    return f"p50 {np.percentile(times, 50):7.1f} ms  p95 {np.percentile(times, 95):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="videos per index, comma-separated")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--cold-size", type=int, default=10000, help="the index size of the cold g2l-search run (0: skip)")
    parser.add_argument("--demo", default=None, help="a g2l-render-demo folder: time g2l-index build of its videos")
    parser.add_argument("--tmp", default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine's cores are shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    cells = int(grounder.model.cell_start_idx.numel())
    print(f"demo model: joint_dim {grounder.cfg.model.joint_dim}, {cells} moments a video; torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared: timings are noisy)")
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="g2l-search-bench-"))
    rng = np.random.default_rng(1)
    queries = [(normalised(rng, (128,)), normalised(rng, (128,))) for _ in range(args.queries)]
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
