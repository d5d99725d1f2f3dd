#!/usr/bin/env bash
# One GPU check, under 8 minutes on one GPU (budgets below add up to 450 s), writing one JSON summary
# and printing a table:
#   steps     a training step of MMN and of G2L (loss.kernels=auto: torch on CUDA), fp32 and bf16, map
#             width 512, Charades-STA and ActivityNet (48 videos each)     bench/train_step.py    2 x 100 s
#   syncs     CUDA syncs of one G2L loss, loss.kernels=numba and =torch     bench/loss_syncs.py         40 s
#   parity    CPU vs CUDA losses; torch kernels vs Numba (geodesic, Shapley
#             within standard errors, the G2L terms)                        bench/gpu_parity.py         90 s
#   training  a short synthetic Charades-STA training of MMN and G2L on CUDA:
#             seconds per epoch and the fed share (1 - data_wait_share)     bench/epoch_cost.py        120 s
#
#     bash bench/gpu_check.sh [SUMMARY.json]     # from anywhere; PYTHON=... chooses the interpreter
#     bash bench/gpu_check.sh --cpu-dry-run [SUMMARY.json]   # every section on the CPU at toy sizes
#
# The summary goes to SUMMARY.json (default: $GPU_CHECK_JSON, else gpu_check.json in the repository).
# Each section runs under its own timeout; one that fails or times out is recorded as such and the
# others still run; the summary is written at the end whatever happened (exit 1 if a section failed).
# Needs torch, numba, transformers, h5py, scipy, einops; no downloads (a tiny random text encoder),
# no W&B. Without a CUDA device (and without --cpu-dry-run) it prints one line and exits 2, having run nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then DRY=1; shift; fi
SUMMARY="${1:-${GPU_CHECK_JSON:-gpu_check.json}}"
if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
    exit 2
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STATUS="$WORK/status.tsv"
: > "$STATUS"

# section NAME BUDGET_S COMMAND...: run it under its timeout, log its output, record status and seconds.
section() {
    local name="$1" budget="$2"; shift 2
    echo "== $name (budget ${budget} s) =="
    local start=$SECONDS
    timeout --kill-after=10 "$budget" "$@" 2>&1 | tee "$WORK/$name.log"
    local rc=${PIPESTATUS[0]}
    local state=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then state=timeout; elif [ "$rc" != 0 ]; then state="failed (exit $rc)"; fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$state" "$((SECONDS - start))" "$budget" >> "$STATUS"
    echo "-- $name: $state in $((SECONDS - start)) s"
}

if [ "$DRY" = 1 ]; then
    DEVICE=cpu; WIDTH=16; THREADS=1; VIDEOS=(--videos 2); PARITY=(--quick); SYNC_VIDEOS=(--videos 4)
    TRAIN=(--videos 16 --epochs 2 --batch-size 8 --hidden-dim 16 --threads 1)
else
    DEVICE=cuda; WIDTH=512; THREADS=0; VIDEOS=(); PARITY=(); SYNC_VIDEOS=()
    TRAIN=(--videos 192 --epochs 3 --batch-size 48 --hidden-dim 512 --threads 0 --precision auto)
fi
"$PYTHON" -c "import torch; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'; print('gpu_check:', d, 'torch', torch.__version__)" | tee "$WORK/device.txt"

for variant in mmn g2l; do
    section "steps_$variant" 100 "$PYTHON" bench/train_step.py --device "$DEVICE" --hidden-dim "$WIDTH" --variant "$variant" \
        --configs charades,activitynet --columns fp32-cropped,bf16-cropped --steps 3 --warmup 1 --threads "$THREADS" \
        "${VIDEOS[@]}" --json "$WORK/steps_$variant.json"
done
section syncs 40 "$PYTHON" bench/loss_syncs.py --device "$DEVICE" "${SYNC_VIDEOS[@]}" --json "$WORK/syncs.json"
section parity 90 "$PYTHON" bench/gpu_parity.py --device "$DEVICE" "${PARITY[@]}" --json "$WORK/parity.json"
section training 120 "$PYTHON" bench/epoch_cost.py --preset charades --device "$DEVICE" "${TRAIN[@]}" \
    --data "$WORK/synthetic-charades" --out "$WORK/runs" --json "$WORK/training.json"

"$PYTHON" - "$WORK" "$SUMMARY" <<'EOF'
"""Gather the sections' JSON files and statuses into one summary (written atomically) and print it."""
import json, os, sys
from pathlib import Path

work, summary = Path(sys.argv[1]), Path(sys.argv[2])
def load(name):
    path = work / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
status = {}
for line in (work / "status.tsv").read_text().splitlines():
    name, state, seconds, budget = line.split("\t")
    status[name] = {"state": state, "seconds": int(seconds), "budget_s": int(budget)}
result = {"device": (work / "device.txt").read_text().strip() if (work / "device.txt").is_file() else "?",
          "sections": status, "steps": {v: load(f"steps_{v}") for v in ("mmn", "g2l")}, "syncs": load("syncs"),
          "parity": load("parity"), "training": load("training")}
tmp = summary.with_name(summary.name + ".tmp")
tmp.write_text(json.dumps(result, indent=1))
os.replace(tmp, summary)

print("\n== gpu_check summary ==", result["device"])
for name, s in status.items():
    print(f"  {name:<10} {s['state']:<16} {s['seconds']:>4} s of {s['budget_s']} s")
cells = {}
for variant in ("mmn", "g2l"):
    for c in (result["steps"][variant] or {}).get("cells", []):
        cells[(c["config"], c["column"], variant)] = c["step_s"]
if cells:
    print(f"  {'step (s)':<24} {'MMN':>8} {'G2L':>8} {'G2L/MMN':>8}")
    for config, column in sorted({(k[0], k[1]) for k in cells}):
        mmn, g2l = cells.get((config, column, "mmn")), cells.get((config, column, "g2l"))
        ratio = f"{g2l / mmn:7.2f}x" if mmn and g2l else f"{'-':>8}"
        fmt = lambda v: f"{v:8.3f}" if v else f"{'-':>8}"
        print(f"  {config + ' ' + column:<24} {fmt(mmn)} {fmt(g2l)} {ratio}")
for row in (result["syncs"] or {}).get("rows", []):
    print(f"  syncs {row['config']:<12} loss.kernels={row['kernels']:<6} {row['total']:>4} per loss ({row['what']})")
parity = result["parity"]
if parity:
    bad = [c["name"] for c in parity["checks"] if not c["ok"]]
    print(f"  parity: {len(parity['checks']) - len(bad)}/{len(parity['checks'])} checks agree" + (f"; FAILED: {bad}" if bad else ""))
training = result["training"]
if training:
    for variant in ("mmn", "g2l"):
        r = training[variant]
        fed = 1 - sum(r["data_wait_share"]) / len(r["data_wait_share"])
        print(f"  training {variant}: {training[variant + '_epoch_s']:.2f} s/epoch, fed {100 * fed:.0f}% of the epoch (1 - data_wait_share)")
    print(f"  training G2L/MMN per epoch: {training['ratio']:.2f}x")
print(f"  summary written to {summary}")
sys.exit(0 if all(s["state"] == "ok" for s in status.values()) and len(status) == 5 else 1)
EOF
rc=$?
rm -rf "$WORK"
exit $rc
