"""The library index against exhaustive scoring on a split (issue 27, "measure the choice"): corpus
R@{1,10,100} at IoU {0.5, 0.7} of ``g2l-search`` over an index of the split (exact, and approximate
through FAISS at a small candidate count) beside ``g2l-eval --corpus``'s exhaustive pass, with the
cost of each per query.

    g2l-make-synthetic --out /tmp/synth --preset charades --seed 0 --num-train 400 --num-val 100 --num-test 150
    g2l-train --config configs/synthetic_charades.yaml data.train_annotations=/tmp/synth/train.json ... data.eval_split=val
    python bench/library_split.py --checkpoint RUN/checkpoints/best.pt --split test [--candidates 256] [key=value ...]

* exhaustive: ``encode_split`` once, then ``corpus_metrics`` (every query against every moment of
  every video, each video's cells ranked and NMS'd, merged by score): its time per query excludes
  the encoding.
* index: the split indexed from its features as ``g2l-index build --config --split`` does
  (``VideoIndex.add_features``), then ``VideoIndex.search`` of every query (top 100, no per-video
  limit; the text encoder included in its time); a hit is the query's own video with IoU >= m
  against the best of its ground-truth windows, as in the corpus metrics.
* approximate: the same index with its FAISS index, searched with ``--candidates`` candidates.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.data.dataset import build_dataset  # noqa: E402
from g2l.eval.corpus import corpus_metrics, encode_split  # noqa: E402
from g2l.eval.metrics import candidate_ious  # noqa: E402
from g2l.inference import Grounder  # noqa: E402
from g2l.library import VideoIndex  # noqa: E402
from g2l.library import approximate as ann  # noqa: E402

RECALL_AT, IOUS = (1, 10, 100), (0.5, 0.7)


def index_recalls(results, embeddings) -> dict:
    hits = {(k, m): 0 for k in RECALL_AT for m in IOUS}
    for q, result in enumerate(results):
        own = embeddings.video_ids[int(embeddings.query_video[q])]
        spans = np.asarray([[m.start_s, m.end_s] for m in result.moments], np.float32).reshape(-1, 2)
        ious = candidate_ious(spans, embeddings.gt_windows[q], len(spans))
        ious = np.where([m.video == own for m in result.moments], ious, -1.0)
        for k in RECALL_AT:
            for m in IOUS:
                hits[k, m] += bool((ious[:k] >= np.float32(m)).any())
    return {f"corpus_R{k}@{m}": hits[k, m] / len(results) for k in RECALL_AT for m in IOUS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--candidates", type=int, default=256, help="approximate: moments fetched a query")
    parser.add_argument("overrides", nargs="*", help="config overrides (data paths)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grounder = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    from g2l.config import apply_overrides

    cfg = grounder.cfg
    apply_overrides(cfg, args.overrides)
    dataset, report = build_dataset(cfg.data, args.split, cfg.model.num_clips)
    print(report)
    embeddings = encode_split(grounder.model, dataset, device=torch.device("cpu"), batch_size=cfg.eval.batch_size,
                              max_tokens=cfg.model.text_max_tokens)
    started = time.perf_counter()
    exhaustive = corpus_metrics(embeddings, gamma=cfg.eval.score_gamma, nms_thresh=cfg.eval.nms_thresh).metrics
    exhaustive_s = (time.perf_counter() - started) / len(embeddings.queries)
    queries = list(embeddings.queries)
    rows = [("exhaustive (g2l-eval --corpus)", exhaustive, exhaustive_s)]
    with tempfile.TemporaryDirectory() as tmp:
        with VideoIndex.create(Path(tmp) / "index", grounder) as index:
            items = [(v, dataset.features.load(v), float(duration)) for v, duration in
                     zip(embeddings.video_ids, embeddings.durations_s)]
            index.add_features(items, grounder)
            index.build_approximate()
        index = VideoIndex.open(Path(tmp) / "index", grounder)
        for name, approximate in (("index, exact (g2l-search)", False),
                                  (f"index, approximate ({args.candidates} candidates)", True)):
            index.search(grounder, queries[:2], top_k=100, approximate=approximate)  # warm: maps, FAISS loaded
            if approximate:
                index._search["approximate"].candidates = args.candidates
            started = time.perf_counter()
            results = [index.search(grounder, [q], top_k=100, approximate=approximate)[0] for q in queries]
            rows.append((name, index_recalls(results, embeddings), (time.perf_counter() - started) / len(queries)))
        moments = sum(v.cells for v in index.videos)
    print(f"{args.split}: {len(embeddings.video_ids)} videos ({moments} moments), {len(queries)} queries; "
          f"{args.checkpoint}; torch threads 1 (shared machine: times are noisy)")
    keys = [f"corpus_R{k}@{m}" for m in IOUS for k in RECALL_AT]
    print(f"  {'':44}" + "".join(f"{k[7:]:>11}" for k in keys) + "   time a query")
    for name, metrics, seconds in rows:
        print(f"  {name:44}" + "".join(f"{100 * metrics[k]:11.2f}" for k in keys) + f"   {1000 * seconds:8.1f} ms")
    print(f"  (FAISS default candidates: {ann.CANDIDATES})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
