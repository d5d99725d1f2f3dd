"""bench/gpu_check.sh's summary: the sections' JSON files, statuses and log tails in one JSON file
(written atomically), rewritten after every section; with ``--print`` also the table, and exit 0
only when every section finished.

    python bench/gpu_check_summary.py LOGS SUMMARY.json --sections steps_mmn,steps_g2l,syncs,training,parity [--print]

LOGS is the check's folder: ``status.tsv`` (name, state, seconds, budget per finished section),
``device.txt``, ``NAME.log`` and ``NAME.json`` per section. A section's JSON may be partial (its
script writes it as each check ends, with ``"complete": false``); a syncs section without JSON
(bench/loss_syncs.py writes it at its end) gets its rows from its log's lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from g2l.io.atomic import write_text_atomic  # noqa: E402

LOG_TAIL_LINES = 20
# bench/loss_syncs.py's line per row: "charades      48 videos  kernels=numba  CUDA syncs:   12 per loss  {...}"
# (older logs say loss.kernels=numba)
SYNC_LINE = re.compile(r"^(?P<config>\S+)\s+(?P<videos>\d+) videos\s+(?:loss\.)?kernels=(?P<kernels>\S+)\s+"
                       r"(?P<what>[^:]+):\s+(?P<total>\d+) per loss")


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def syncs_from_log(path: Path):
    """The rows bench/loss_syncs.py printed, when it was stopped before writing its JSON."""
    rows = []
    for line in log_lines(path):
        match = SYNC_LINE.match(line)
        if match:
            rows.append({"config": match["config"], "videos": int(match["videos"]), "kernels": match["kernels"],
                         "total": int(match["total"]), "what": match["what"].strip(), "from_log": True})
    return {"rows": rows, "complete": False} if rows else None


def gather(logs: Path, sections: list[str]) -> dict:
    status = {}
    try:
        lines = (logs / "status.tsv").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            name, state, seconds, budget = line.split("\t")
            seconds, budget = int(seconds), int(budget)
        except ValueError:  # not a line the check wrote: shown as it is
            name, state, seconds, budget = f"line {len(status) + 1}", f"unreadable status line {line!r}", 0, 0
        status[name] = {"state": state, "seconds": seconds, "budget_s": budget,
                        "log_tail": log_lines(logs / f"{name}.log")[-LOG_TAIL_LINES:]}
    syncs = load(logs / "syncs.json") or syncs_from_log(logs / "syncs.log")
    return {"device": (logs / "device.txt").read_text().strip() if (logs / "device.txt").is_file() else "?",
            "logs": str(logs.resolve()), "sections": status,
            "complete": all(status.get(name, {}).get("state") == "ok" for name in sections),
            "steps": {v: load(logs / f"steps_{v}.json") for v in ("mmn", "g2l")}, "syncs": syncs,
            "parity": load(logs / "parity.json"), "training": load(logs / "training.json")}


def show(result: dict, summary: Path) -> None:
    print("\n== gpu_check summary ==", result["device"])
    for name, s in result["sections"].items():
        print(f"  {name:<10} {s['state']:<22} {s['seconds']:>4} s of {s['budget_s']} s")
    cells = {}
    for variant in ("mmn", "g2l"):
        for c in (result["steps"][variant] or {}).get("cells", []):
            cells[(c["config"], c["column"], variant)] = c["step_s"]
    if cells:
        print(f"  {'step (s)':<24} {'MMN':>8} {'G2L':>8} {'G2L/MMN':>8}")
        for config, column in sorted({(k[0], k[1]) for k in cells}):
            mmn, g2l = cells.get((config, column, "mmn")), cells.get((config, column, "g2l"))
            ratio = f"{g2l / mmn:7.2f}x" if mmn and g2l else f"{'-':>8}"

            def fmt(v):
                return f"{v:8.3f}" if v else f"{'-':>8}"

            print(f"  {config + ' ' + column:<24} {fmt(mmn)} {fmt(g2l)} {ratio}")
    for row in (result["syncs"] or {}).get("rows", []):
        print(f"  syncs {row['config']:<12} kernels={row['kernels']:<6} {row['total']:>4} per loss ({row['what']})")
    parity = result["parity"]
    if parity:
        bad = [c["name"] for c in parity["checks"] if not c["ok"]]
        cut = "" if parity.get("complete", True) else " (cut short: the checks it finished)"
        print(f"  parity: {len(parity['checks']) - len(bad)}/{len(parity['checks'])} checks agree{cut}"
              + (f"; FAILED: {bad}" if bad else ""))
    training = result["training"]
    if training:
        for variant in ("mmn", "g2l"):
            r = training.get(variant)
            if not r or not r.get("epoch_s"):
                print(f"  training {variant}: no epoch finished")
                continue
            fed = 1 - sum(r["data_wait_share"]) / len(r["data_wait_share"])
            print(f"  training {variant}: {training[variant + '_epoch_s']:.2f} s/epoch over {len(r['epoch_s'])} epoch(s), "
                  f"fed {100 * fed:.0f}% of the epoch (1 - data_wait_share)")
        if training.get("ratio"):
            print(f"  training G2L/MMN per epoch: {training['ratio']:.2f}x")
    print(f"  summary written to {summary}; logs in {result['logs']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs")
    parser.add_argument("summary")
    parser.add_argument("--sections", required=True, help="the sections the check runs, comma-separated")
    parser.add_argument("--print", action="store_true", help="print the table; exit 1 unless every section is ok")
    args = parser.parse_args()
    sections = args.sections.split(",")
    summary = Path(args.summary)
    result = gather(Path(args.logs), sections)
    write_text_atomic(summary, json.dumps(result, indent=1))
    if not args.print:
        return 0
    show(result, summary)
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
