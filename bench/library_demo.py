"""Library search on the rendered demo test split: is each annotated query's own moment (its video,
IoU >= 0.5 with its first window) in the library-wide top 10?

    g2l-render-demo --out /tmp/demo --num-train 0 --num-val 0 --num-test 12
    python bench/library_demo.py /tmp/demo [--checkpoint C] [--cache DIR]

Rows (each a count of the split's queries):
  index top-10          g2l-search over an index of the split's videos (float16 and float32 storage),
                        with no per-video limit and with --per-video 1 and 2
  naive merge top-10    issue 27's baseline: each video's top 5 moments from g2l-ground (--batch's
                        default), merged across videos by raw score
  own video top-5       the video's own ranking (g2l-ground on the query's own video only)
  exhaustive top-10     every moment of every video scored by Grounder.ground (top_k=136, so no
                        cut; the map features cached), merged: what the index must equal; its
                        time per query is that of grounding the query in every video
  diagnostics           the same merge ranked by the contrast cosine alone (the term trained
                        against other videos' moments) and by the IoU term alone, and video R@1
                        by each video's best score and by its best contrast cosine: where the
                        cross-video ranking is lost
"""

import argparse
import json
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
from g2l.ops.spans import span_iou  # noqa: E402


def hit(moments, video, window, k) -> bool:
    return any(m[0] == video and span_iou(np.array(m[1:3], np.float32), np.array(window, np.float32)) >= 0.5
               for m in moments[:k])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo", help="a folder written by g2l-render-demo (its test.json and videos/)")
    parser.add_argument("--checkpoint", default=str(demo_checkpoint()))
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    demo = Path(args.demo)
    split = json.loads((demo / "test.json").read_text())
    grounder = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    queries = [(video_id, sentence, window) for video_id, entry in split.items()
               for sentence, window in zip(entry["sentences"], entry["timestamps"])]
    paths = {video_id: str(demo / "videos" / f"{video_id}.mp4") for video_id in split}
    encoded = {video_id: grounder.encode_video(path) for video_id, path in paths.items()}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float16", "float32"):
            with VideoIndex.create(Path(tmp) / dtype, grounder, dtype=dtype) as index:
                entries = []
                from g2l.library.store import IndexedVideo, file_identity
                for video_id, video in encoded.items():
                    resolved, identity = file_identity(paths[video_id])
                    entries.append((IndexedVideo(paths[video_id], resolved, identity, video.duration_s, 0),
                                    *grounder.moment_embeddings(video)))
                index.add_embeddings(entries)
            index = VideoIndex.open(Path(tmp) / dtype, grounder)
            for per_video in (None, 1, 2):
                started = time.perf_counter()
                results = index.search(grounder, [q for _, q, _ in queries], top_k=10, per_video=per_video)
                took = time.perf_counter() - started
                found = sum(hit([(m.video, m.start_s, m.end_s) for m in r.moments], paths[v], w, 10)
                            for r, (v, _, w) in zip(results, queries))
                rows[f"index top-10, {dtype}, per-video {per_video or 'any'}"] = (found, took)
    own, naive, exhaustive = 0, 0, 0
    for video in encoded.values():
        grounder.ground(video, ["warm up."])  # the map features of every video cached, as the index has them
    started = time.perf_counter()
    for video_id, sentence, window in queries:
        merged, every = [], []
        for other, video in encoded.items():
            ranked = grounder.ground(video, [sentence], top_k=136)[0].moments
            merged += [(m.score, paths[other], m.start_s, m.end_s) for m in ranked[:5]]
            every += [(m.score, paths[other], m.start_s, m.end_s) for m in ranked]
            if other == video_id:
                own += hit([(paths[other], m.start_s, m.end_s) for m in ranked], paths[other], window, 5)
        merged.sort(key=lambda m: -m[0])
        every.sort(key=lambda m: -m[0])
        naive += hit([m[1:] for m in merged], paths[video_id], window, 10)
        exhaustive += hit([m[1:] for m in every], paths[video_id], window, 10)
    from g2l.models.grounding import score_cells
    from g2l.ops.spans import rank_candidates

    embeddings = {v: grounder.moment_embeddings(video) for v, video in encoded.items()}
    s_c, s_u = grounder.query_embeddings([q for _, q, _ in queries])
    diagnostics = {"contrast": 0, "iou": 0, "video_by_score": 0, "video_by_contrast": 0}
    for q, (video_id, _, window) in enumerate(queries):
        merged = {"contrast": [], "iou": []}
        best_score, best_contrast = {}, {}
        for other, (spans, cells_c, cells_u) in embeddings.items():
            c, u = cells_c @ s_c[q], cells_u @ s_u[q]
            best_score[other] = float(score_cells(torch.from_numpy(c), torch.from_numpy(u),
                                                  grounder.cfg.eval.score_gamma).max())
            best_contrast[other] = float(c.max())
            for name, key in (("contrast", c), ("iou", u)):
                merged[name] += [(key[k], paths[other], *spans[k]) for k in rank_candidates(spans, key, 0.5, 10)]
        for name in merged:
            ranked = sorted(merged[name], key=lambda m: -m[0])
            diagnostics[name] += hit([m[1:] for m in ranked], paths[video_id], window, 10)
        diagnostics["video_by_score"] += max(best_score, key=best_score.get) == video_id
        diagnostics["video_by_contrast"] += max(best_contrast, key=best_contrast.get) == video_id
    rows["diagnostic: top-10 ranked by the contrast cosine alone"] = (diagnostics["contrast"], None)
    rows["diagnostic: top-10 ranked by the IoU cosine alone"] = (diagnostics["iou"], None)
    rows["diagnostic: video R@1 by each video's best score"] = (diagnostics["video_by_score"], None)
    rows["diagnostic: video R@1 by each video's best contrast cosine"] = (diagnostics["video_by_contrast"], None)
    exhaustive_took = time.perf_counter() - started
    rows["naive merge top-10 (each video's top 5 by raw score)"] = (naive, None)
    rows["exhaustive top-10 (Grounder.ground on every video, merged)"] = (exhaustive, exhaustive_took)
    rows["own video top-5 (the video's own ranking)"] = (own, None)
    print(f"{len(encoded)} videos, {len(queries)} queries, {args.checkpoint}")
    for name, (found, took) in rows.items():
        timing = f"  ({1000 * took / len(queries):.1f} ms/query)" if took is not None else ""
        print(f"  {name:<62} {found:>3} / {len(queries)}{timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
