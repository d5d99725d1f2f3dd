"""How long ``--explain`` takes: the Shapley values of every word of a 12-word query for its top
moment on the shipped demo model (MiniLM text encoder), on the example video already encoded.

    python bench/explain_latency.py [--threads 1,2] [--repeats 5] [--permutations 12]

Reports per thread count the median and best wall time of ``explain_top_moment`` (sampled: 12 words
is beyond the exact limit of 8), the distinct coalitions it evaluated (one text-encoder pass each),
the largest standard error of a word's value next to the largest value, and, for reference, the
same coalitions scored without packing (masked full-length sequences) and the exact values (4096
coalitions) once, to say how far the sampled ones are. Target: under 1 s on this 2-core CPU.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUERY = "the small yellow triangle slowly turns green while a white square gets smaller"  # 14 words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=12)
    parser.add_argument("--words", type=int, default=12)
    parser.add_argument("--exact", action="store_true", help="also compute the exact values (slow: 2^words passes)")
    args = parser.parse_args()
    from g2l.assets import demo_checkpoint, demo_example
    from g2l.explain import coalition_scores, explain_top_moment, find_top_cell, word_game
    from g2l.inference import Grounder

    query = " ".join(QUERY.split()[: args.words])
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    video = grounder.encode_video(demo_example()[0])
    print(f"query ({len(query.split())} words): {query!r}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        explain_top_moment(grounder, video, query, num_permutations=args.permutations)  # warm-up
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            explanation = explain_top_moment(grounder, video, query, num_permutations=args.permutations)
            times.append(time.perf_counter() - began)
        game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
        top = find_top_cell(grounder, video, query, None)
        cell_c, cell_u = top.cells_c[top.cell], top.cells_u[top.cell]  # (d,) the top moment's cell
        coalitions = np.random.default_rng(0).random((explanation.num_evaluations, len(game.words))) < 0.5
        began = time.perf_counter()
        coalition_scores(grounder, game, coalitions, cell_c, cell_u, pack=False, batch_size=256)
        masked = time.perf_counter() - began
        largest = max(abs(w.value) for w in explanation.words)
        print(f"{threads} thread(s): median {statistics.median(times):.3f} s, best {min(times):.3f} s over "
              f"{args.repeats}; {explanation.num_evaluations} coalitions; largest stderr "
              f"{max(w.stderr for w in explanation.words):.4f} (largest |value| {largest:.4f}); the same number of "
              f"coalitions masked, unpacked: {masked:.3f} s")
    if args.exact:
        exact = explain_top_moment(grounder, video, query, max_exact_words=len(query.split()))
        sampled = explain_top_moment(grounder, video, query, num_permutations=args.permutations)
        error = max(abs(a.value - b.value) for a, b in zip(exact.words, sampled.words))
        print(f"exact ({exact.num_evaluations} coalitions): largest |sampled - exact| {error:.4f}")


if __name__ == "__main__":
    main()
