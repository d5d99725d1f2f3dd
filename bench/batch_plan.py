"""Memory and time of planning a batch run (``g2l.batch.plan_batch``: reading the pairs file and the
output before any model loads), for a pairs file of N lines.

    python bench/batch_plan.py [--lines 400000] [--videos 1000] [--resume]

Writes a pairs file of ``--lines`` lines (``{"id", "video", "query"}``, over ``--videos`` distinct
video paths, which need not exist: planning does not open videos) and plans it against an empty
output. ``--resume`` first writes an output that answers every other line (each answer's key
fields and five moments, as a run would write them, and the record of what made it), then measures
the plan of the resume. Prints the peak of Python's and numpy's allocations during the plan
(tracemalloc) and the plan's wall time (measured in another pass, without tracemalloc).
``PYTHONPATH=<an older checkout> python bench/batch_plan.py`` measures an older g2l the same way
(without ``--resume``, whose output format it does not know).

Before the streamed plan (commit 228e8e7, the same pairs files, 2 shared cores): 400,000 lines
planned to a peak of 389 MB in 21 s, and the resume of an output of 200,000 answers (64 MB, its
format then) to 547 MB in 23 s. After: 45 MB in 22 s, and 41 MB in 25 s.
"""

import argparse
import hashlib
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from g2l.batch import plan_batch


def measure(pairs: Path, out: Path) -> tuple[float, float, int]:
    """(peak MB under tracemalloc, seconds without it, lines to answer); the output is planned
    twice, from a copy of it each time (a plan may drop a cut last line)."""
    original = out.read_bytes() if out.exists() else None
    started = time.perf_counter()
    plan = plan_batch(pairs, out)
    elapsed = time.perf_counter() - started
    todo = plan.todo if hasattr(plan, "todo") else sum(map(len, plan.by_video.values()))  # before 228e8e7's successor
    getattr(plan, "close", lambda: None)()
    del plan
    if original is not None:
        out.write_bytes(original)
    tracemalloc.start()
    plan = plan_batch(pairs, out)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    getattr(plan, "close", lambda: None)()
    return peak / 2**20, elapsed, todo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--resume", action="store_true", help="measure the plan of a half-done output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        pairs, out = Path(folder) / "pairs.jsonl", Path(folder) / "preds.jsonl"
        with open(pairs, "w") as handle, open(out, "w") as answers:
            for n in range(args.lines):
                line = json.dumps({"id": f"q{n}", "video": f"videos/v{n % args.videos:05d}.mp4",
                                   "query": f"a person opens the door number {n} and walks out"})
                handle.write(line + "\n")
                if args.resume and n % 2 == 0:
                    key = {"input_line": n + 1, "input_sha256": hashlib.sha256(line.encode()).hexdigest()}
                    answers.write(json.dumps({**key, **json.loads(line),
                                              "moments": [{"start": 1.0, "end": 2.0, "score": 0.5}] * 5}) + "\n")
        if args.resume:
            from g2l.batch_output import MADE_BY_FORMAT, made_by_path

            made_by_path(out).write_text(json.dumps({"format": MADE_BY_FORMAT}))
        peak_mb, elapsed, todo = measure(pairs, out)
        print(f"{args.lines:,} lines ({pairs.stat().st_size / 2**20:.1f} MB pairs file, {args.videos} videos"
              f"{', half already answered' if args.resume else ''}): plan peak {peak_mb:.1f} MB (tracemalloc), "
              f"{elapsed:.1f} s (without it), {todo:,} lines to answer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
