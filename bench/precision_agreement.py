"""How far grounding's scores move with the precision, the batch and the thread count, and what
grounding each query on its own costs, with the shipped demo checkpoint and demo video.

    python bench/precision_agreement.py [--checkpoint PATH] [--video PATH] [--queries 64]

"former batch" is how Grounder.ground scored queries before issue 23: every query in one padded
batch through the text encoder and one matrix product; now each query goes through on its own.
The "2 threads" line is the same fp32 computation on two threads (other kernels' blocking), the
nearest stand-in for another CPU on one machine. Timings are of the text side only (the map of
the video is computed once either way), median of 3, one thread; noisy on a shared machine.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2l.assets import demo_checkpoint, demo_example  # noqa: E402
from g2l.inference import Grounder  # noqa: E402
from g2l.models.grounding import score_cells  # noqa: E402

WORDS = ("the small yellow triangle slowly turns green while a white square shrinks and a red circle grows "
         "bigger then the blue one leaves the frame").split()


def former_batch_scores(grounder, video, queries):
    """``(q w C)`` scores with every query in one padded batch (the former path)."""
    cells = grounder.video_cells(video)
    tokens = grounder.model.tokenizer(queries, padding=True, truncation=True,
                                      max_length=grounder.cfg.model.text_max_tokens, return_tensors="pt")
    s_c, s_u = grounder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
    return score_cells(torch.einsum("qd,wcd->qwc", s_c, cells.cells_c), torch.einsum("qd,wcd->qwc", s_u, cells.cells_u),
                       grounder.cfg.eval.score_gamma).float().numpy()


def own_scores(grounder, video, queries):
    cells = grounder.video_cells(video)
    return np.stack([grounder.query_scores(q, cells.cells_c, cells.cells_u).numpy() for q in queries])


def median_ms(fn, runs=3):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(demo_checkpoint()))
    parser.add_argument("--video", default=None, help="default: the demo video")
    parser.add_argument("--queries", type=int, default=64, help="queries for the timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    video_path, demo_queries = demo_example()
    rng = np.random.default_rng(0)
    mixed = list(demo_queries) + [" ".join(rng.choice(WORDS, size=n)) for n in (1, 3, 18, 6, 25)]
    queries = mixed[:7]
    fp32 = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    bf16 = Grounder.from_checkpoint(args.checkpoint, device="cpu", precision="bf16")
    video = fp32.encode_video(args.video or video_path)
    copy = lambda: fp32.encode_features(video.features, video.duration_s, fps=video.fps)  # noqa: E731
    with torch.inference_mode():
        own32, former32 = own_scores(fp32, video, queries), former_batch_scores(fp32, video, queries)
        video16 = copy()
        own16, former16 = own_scores(bf16, video16, queries), former_batch_scores(bf16, video16, queries)
        torch.set_num_threads(2)
        own32_two = own_scores(fp32, copy(), queries)
        torch.set_num_threads(1)
    print(f"{len(queries)} queries of 1 to 25 words, {own32.shape[-1]} cells, {args.checkpoint}")
    print(f"fp32 own vs former batch   max |score diff| {np.abs(own32 - former32).max():.2e}")
    print(f"fp32 1 vs 2 threads        max |score diff| {np.abs(own32 - own32_two).max():.2e}")
    print(f"bf16 own vs former batch   max |score diff| {np.abs(own16 - former16).max():.2e}")
    print(f"bf16 vs fp32               max |score diff| {np.abs(own16 - own32).max():.2e}")
    top32, top16 = own32.reshape(len(queries), -1).argmax(1), own16.reshape(len(queries), -1).argmax(1)
    print(f"top moment the same in bf16 and fp32: {int((top32 == top16).sum())} of {len(queries)}")
    many = [" ".join(rng.choice(WORDS, size=rng.integers(3, 16))) for _ in range(args.queries)]
    with torch.inference_mode():
        for n in sorted({7, args.queries}):
            batched = median_ms(lambda: former_batch_scores(fp32, video, many[:n]))
            alone = median_ms(lambda: own_scores(fp32, video, many[:n]))
            print(f"{n:>3} queries, text side: former batch {batched:7.1f} ms, each on its own {alone:7.1f} ms "
                  f"({alone / batched:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
