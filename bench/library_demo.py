"""Library search on the rendered demo test split: is each annotated query's own moment (its video,
IoU >= 0.5 with its first window) in the library-wide top 10?

    g2l-render-demo --out /tmp/demo --num-train 0 --num-val 0 --num-test 12
    python bench/library_demo.py /tmp/demo [--checkpoint C] [--cache DIR]

    # the split the calibrated rows were chosen on (fresh videos, another seed; libraries of 12):
    g2l-render-demo --out /tmp/demo-val --num-train 0 --num-val 120 --num-test 0 --seed 1
    python bench/library_demo.py /tmp/demo-val --split val --scores-only

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
  calibrated            cross-video scores tried for issue 27 (the split cut into libraries of
                        --library-size videos, counts summed over them; NMS within each video and
                        the merge as the index does them). The bank: the distinct sentences of the
                        demo model's training split (tools/build_demo.py: seed 0, 560 videos; their
                        scenes sampled as g2l-render-demo samples them, nothing rendered), never
                        the evaluated queries (the demo's vocabulary is small: many test sentences
                        also occur among the training ones). ``within`` is log(score / the best
                        score of the moment's video), so each video keeps its own ranking.
                        - raw score: the index's ranking, per library
                        - Z-norm: (score - mu_v) / sd_v, mu_v and sd_v the mean and standard
                          deviation over the bank of the video's best score (a per-video affine
                          calibration computed at index time; hubs lose their lead)
                        - QB-Norm inverted softmax (Bogolin et al., CVPR 2022), per moment, beta 10
                          (= 1/tau of L_v, the moment-to-sentence contrast): beta x - logsumexp
                          over the bank of beta x_bank, of the score and of the contrast cosine
                        - inverted softmax of the video's best score over the bank (beta 10) + within
                        - two-stage: the bank z of the video's best contrast cosine (the term
                          trained against other videos) + 3 x within (3 chosen on the val split)
                        - two-stage without a bank: the contrast cosine of the video's best moment,
                          standardised over the library's videos for the query, + 3 x within
                        - oracle: the query's own video first, then its own ranking: the bound of
                          any reweighting of videos that keeps each video's ranking
"""

import argparse
import collections
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
from g2l.library.exact import Block, ExactSearch  # noqa: E402
from g2l.models.grounding import score_cells  # noqa: E402
from g2l.ops.spans import span_iou  # noqa: E402

TWO_STAGE_WEIGHT = 3.0  # the weight of the within-video term, chosen on the val split (seed 1, 120 videos)
BETA = 10.0  # 1 / tau of L_v (docs/method.md section 3)


def hit(moments, video, window, k) -> bool:
    return any(m[0] == video and span_iou(np.array(m[1:3], np.float32), np.array(window, np.float32)) >= 0.5
               for m in moments[:k])


def bank_sentences(seed: int = 0, num_train: int = 560) -> list[str]:
    """The distinct sentences of the demo model's training split (tools/build_demo.py renders seed 0,
    560 training videos), sampled as g2l.synthetic.render.render_dataset samples them."""
    from g2l.synthetic.scene import sample_scene

    return sorted({sentence for index in range(num_train)
                   for sentence, _ in sample_scene(np.random.default_rng([seed, 0, index])).queries})


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis, keepdims=True))).squeeze(axis)


def standardise(x: np.ndarray, axis: int) -> np.ndarray:
    return (x - x.mean(axis, keepdims=True)) / (x.std(axis, keepdims=True) + 1e-9)


def calibrated_finals(score, contrast, bank_score, bank_contrast, starts, video, own) -> dict[str, np.ndarray]:
    """The candidate rankings of the module docstring: ``score, contrast (q k)`` of the queries,
    ``bank_* (B k)`` of the bank; ``starts (V)`` each video's first moment, ``video (k)`` the video
    of each moment, ``own (q V)`` the query's own video (for the oracle only) -> ``(q k)`` each."""
    def best(x):  # (r k) -> (r V), each video's best
        return np.maximum.reduceat(x, starts, axis=1)

    log_score = np.log(np.maximum(score, 1e-30))
    within = log_score - best(log_score)[:, video]  # (q k), <= 0
    bank_best = best(bank_score)  # (B V)
    mu, sd = bank_best.mean(0), bank_best.std(0) + 1e-9
    bank_best_c = best(bank_contrast)
    first = np.zeros_like(score[:, :len(starts)], dtype=np.int64)
    for v, (lo, hi) in enumerate(zip(starts, list(starts[1:]) + [score.shape[1]])):
        first[:, v] = lo + score[:, lo:hi].argmax(1)
    contrast_at_best = np.take_along_axis(contrast, first, 1)  # (q V)
    video_inverted = BETA * best(score) - logsumexp(BETA * bank_best, 0)  # (q V)
    video_z_contrast = (best(contrast) - bank_best_c.mean(0)) / (bank_best_c.std(0) + 1e-9)  # (q V)
    return {
        "raw score (the index's ranking)": score,
        "Z-norm: (score - mu_v) / sd_v over the bank": (score - mu[video]) / sd[video],
        "QB-Norm inverted softmax per moment of the score": BETA * score - logsumexp(BETA * bank_score, 0),
        "QB-Norm inverted softmax per moment of the contrast cos":
            BETA * contrast - logsumexp(BETA * bank_contrast, 0),
        "inverted softmax of the video's best score + within": video_inverted[:, video] + within,
        "two-stage: bank z of video's best contrast + 3 within":
            video_z_contrast[:, video] + TWO_STAGE_WEIGHT * within,
        "two-stage, no bank: contrast at video's best, std + 3 within":
            standardise(contrast_at_best, 1)[:, video] + TWO_STAGE_WEIGHT * within,
        "oracle: own video first, then its own ranking": 1e3 * own[:, video] + within,
    }


def calibrated_rows(grounder, embeddings: dict, queries: list, paths: dict, library_size: int) -> dict:
    """Each row of ``calibrated_finals``: own moments in the top 10, summed over libraries of
    ``library_size`` videos of the split."""
    gamma, nms = grounder.cfg.eval.score_gamma, grounder.cfg.eval.nms_thresh
    bank_c, bank_u = grounder.query_embeddings(bank_sentences())  # (B d)
    s_c, s_u = grounder.query_embeddings([q for _, q, _ in queries])  # (q d)
    found: dict[str, int] = collections.defaultdict(int)
    ids = list(embeddings)
    for lo in range(0, len(ids), library_size):
        library = ids[lo:lo + library_size]
        spans = np.concatenate([embeddings[v][0] for v in library])  # (k 2)
        cells_c = np.concatenate([embeddings[v][1] for v in library])  # (k d)
        cells_u = np.concatenate([embeddings[v][2] for v in library])
        counts = [len(embeddings[v][0]) for v in library]
        video = np.repeat(np.arange(len(library)), counts)  # (k)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        search = ExactSearch([Block(cells_c, cells_u, spans, video)], gamma=gamma)
        mine = [q for q, (v, _, _) in enumerate(queries) if v in library]
        contrast, iou = s_c[mine] @ cells_c.T, s_u[mine] @ cells_u.T  # (q k)
        score = score_cells(torch.from_numpy(contrast), torch.from_numpy(iou), gamma).numpy()
        bank_contrast = bank_c @ cells_c.T  # (B k)
        bank_score = score_cells(torch.from_numpy(bank_contrast), torch.from_numpy(bank_u @ cells_u.T), gamma).numpy()
        own = np.array([[v == queries[q][0] for v in library] for q in mine], np.float32)  # (q V)
        for name, final in calibrated_finals(score, contrast, bank_score, bank_contrast, starts, video, own).items():
            for row, q in enumerate(mine):
                kept = search.rank(final[row].astype(np.float32), top_k=10, per_video=None, nms_thresh=nms)
                found[name] += hit([(paths[library[video[i]]], *spans[i]) for i in kept], paths[queries[q][0]],
                                   queries[q][2], 10)
    return dict(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo", help="a folder written by g2l-render-demo (its test.json and videos/)")
    parser.add_argument("--checkpoint", default=str(demo_checkpoint()))
    parser.add_argument("--cache", default=None)
    parser.add_argument("--split", default="test", help="the split's annotations, SPLIT.json (default test)")
    parser.add_argument("--library-size", type=int, default=12, help="videos a library, for the calibrated rows")
    parser.add_argument("--scores-only", action="store_true",
                        help="only the calibrated rows (no index, no exhaustive ground): for the val split")
    args = parser.parse_args()
    torch.set_num_threads(1)
    demo = Path(args.demo)
    split = json.loads((demo / f"{args.split}.json").read_text())
    grounder = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    queries = [(video_id, sentence, window) for video_id, entry in split.items()
               for sentence, window in zip(entry["sentences"], entry["timestamps"])]
    paths = {video_id: str(demo / "videos" / f"{video_id}.mp4") for video_id in split}
    encoded = {video_id: grounder.encode_video(path) for video_id, path in paths.items()}
    rows = {}
    if args.scores_only:
        embeddings = {v: grounder.moment_embeddings(video) for v, video in encoded.items()}
        return report(args, encoded, queries, {f"calibrated: {name}": (found, None) for name, found in
                                               calibrated_rows(grounder, embeddings, queries, paths,
                                                               args.library_size).items()})
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
    for name, found in calibrated_rows(grounder, embeddings, queries, paths, args.library_size).items():
        rows[f"calibrated: {name}"] = (found, None)
    return report(args, encoded, queries, rows)


def report(args, encoded, queries, rows) -> int:
    print(f"{len(encoded)} videos ({args.split}; calibrated rows in libraries of {args.library_size}), "
          f"{len(queries)} queries, {args.checkpoint}")
    for name, (found, took) in rows.items():
        timing = f"  ({1000 * took / len(queries):.1f} ms/query)" if took is not None else ""
        print(f"  {name:<74} {found:>3} / {len(queries)}{timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
