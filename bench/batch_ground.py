"""Batch grounding throughput: ``g2l-ground --batch`` against a shell loop of ``g2l-ground`` calls
(the way to do it before), on generated videos with the shipped demo checkpoint.

    python bench/batch_ground.py [--videos 6] [--queries 4] [--seconds 30] [--loop-pairs 4]

Both sides run the real command in fresh processes, launch to exit. The batch side runs once with
an empty feature cache and once more with the cache filled (a second pass over the same videos, as
when new questions arrive). The loop side runs ``--loop-pairs`` of the pairs (one process each:
interpreter, imports, checkpoint, decoding and encoding the video, one query) and is scaled to
all pairs. Prints videos and queries per minute for each.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_latency import QUERIES, write_video  # noqa: E402


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--queries", type=int, default=4, help="queries per video")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated video")
    parser.add_argument("--loop-pairs", type=int, default=4, help="pairs timed for the shell loop (scaled to all)")
    args = parser.parse_args()
    ground = [sys.executable, str(REPO / "tools" / "ground.py")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = []
        for v in range(args.videos):
            video = tmp / f"video{v}.mp4"
            write_video(video, args.seconds, 320, 240, 10)
            pairs += [{"video": str(video), "query": QUERIES[(v + q) % len(QUERIES)]} for q in range(args.queries)]
        (tmp / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
        n_pairs, n_videos = len(pairs), args.videos
        rows = []
        batch = [*ground, "--batch", str(tmp / "pairs.jsonl"), "--cache", str(tmp / "cache"), "--quiet"]
        cold = run([*batch, "--out", str(tmp / "out1.jsonl")])
        rows.append(("--batch, empty cache", cold))
        warm = run([*batch, "--out", str(tmp / "out2.jsonl")])
        rows.append(("--batch, cache filled", warm))
        loop = sum(run([*ground, p["video"], p["query"], "--json"]) for p in pairs[: args.loop_pairs])
        loop_all = loop / min(args.loop_pairs, n_pairs) * n_pairs
        rows.append((f"shell loop ({min(args.loop_pairs, n_pairs)} pairs timed, scaled)", loop_all))
        lines = len((tmp / "out1.jsonl").read_text().splitlines())
        assert lines == n_pairs, f"batch output has {lines} lines for {n_pairs} pairs"
    print(f"{n_videos} videos of {args.seconds:g} s, {args.queries} queries each ({n_pairs} pairs); "
          f"{os.cpu_count()} CPUs; demo checkpoint")
    print(f"{'how':<42} {'total s':>8} {'videos/min':>11} {'queries/min':>12} {'vs loop':>8}")
    for name, seconds in rows:
        print(f"{name:<42} {seconds:>8.1f} {60 * n_videos / seconds:>11.1f} {60 * n_pairs / seconds:>12.1f} "
              f"{loop_all / seconds:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
