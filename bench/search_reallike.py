"""Exact library search on real-like moment features: ``ExactSearch.top`` beside scores+rank.

    g2l-render-demo --out /tmp/demo --num-train 0 --num-val 0 --num-test 12
    python bench/search_reallike.py /tmp/demo [--videos 10000] [--queries 30] [--threads 1]

bench/search.py's synthetic moments have unrelated random contrast and IoU cosines: there the
bound of ``top`` prunes little and it costs what scores+rank does. Here the library is the demo
model's moments of the rendered test videos (indexed with ``VideoIndex``), each video repeated
until ``--videos`` with small noise (renormalised, float16, in memory): the joint distribution of a
query's two cosines is the trained model's. Queries: the split's sentences. Each query is timed
both ways back to back in one process, and the two results are checked equal (hits, score bits).
"""

import argparse
import json
import os
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
from g2l.library import VideoIndex  # noqa: E402
from g2l.library.exact import Block, ExactSearch  # noqa: E402


def percentiles(times) -> str:
    times = np.asarray(times) * 1000
    return f"p50 {np.percentile(times, 50):6.1f} ms  p95 {np.percentile(times, 95):6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo", help="a g2l-render-demo folder (videos/ and test.json)")
    parser.add_argument("--videos", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    demo = Path(args.demo)
    with tempfile.TemporaryDirectory(prefix="g2l-reallike-") as tmp:
        with VideoIndex.create(Path(tmp) / "index", grounder) as index:
            index.add(sorted((demo / "videos").glob("test_*.mp4")), grounder, cache_dir=Path(tmp) / "cache")
        real = VideoIndex.open(Path(tmp) / "index", grounder)._blocks()
        cells_c, cells_u = (np.concatenate([np.asarray(getattr(b, name), np.float32) for b in real])
                            for name in ("cells_c", "cells_u"))
        spans, video = np.concatenate([b.spans_s for b in real]), np.concatenate([b.video for b in real])
    per_copy = int(video.max()) + 1
    rng = np.random.default_rng(0)
    blocks, copies, first = [], -(-args.videos // per_copy), 0
    for shard in np.array_split(np.arange(copies), 10):
        def noisy(x):
            y = np.tile(x, (len(shard), 1))
            y += 0.05 / np.sqrt(x.shape[1]) * rng.standard_normal(y.shape, dtype=np.float32)
            return (y / np.linalg.norm(y, axis=-1, keepdims=True)).astype(np.float16)
        blocks.append(Block(noisy(cells_c), noisy(cells_u), np.tile(spans, (len(shard), 1)),
                            first + np.repeat(np.arange(len(shard)), len(video)) * per_copy + np.tile(video, len(shard))))
        first += len(shard) * per_copy
    search = ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma)
    items = json.loads((demo / "test.json").read_text()).values()
    sentences = [s for item in items for s in item["sentences"]][: args.queries]
    s_c, s_u = grounder.query_embeddings(sentences)
    nms = grounder.cfg.eval.nms_thresh
    for c, u in list(zip(s_c, s_u))[:2]:  # warm
        search.top(c, u, top_k=10, per_video=None, nms_thresh=nms)
        search.scores(c, u)
    full, bounded = [], []
    for c, u in zip(s_c, s_u):
        started = time.perf_counter()
        scores = search.scores(c, u)
        kept = search.rank(scores, top_k=10, per_video=None, nms_thresh=nms)
        middle = time.perf_counter()
        got, got_scores = search.top(c, u, top_k=10, per_video=None, nms_thresh=nms)
        bounded.append(time.perf_counter() - middle)
        full.append(middle - started)
        assert got == kept and got_scores.tobytes() == scores[kept].tobytes()
    print(f"real-like library: {first} videos ({per_copy} rendered demo videos repeated), {len(search)} moments "
          f"float16 in memory; torch threads {args.threads}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs (shared: timings are noisy)")
    print(f"{len(full)} queries, top 10: scores+rank {percentiles(full)}; ExactSearch.top {percentiles(bounded)} "
          f"(the same hits and score bits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
