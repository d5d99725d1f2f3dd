#!/usr/bin/env bash
# One GPU check, under 9 minutes of wall time on a fresh machine (Numba's cold compiles included),
# writing one JSON summary and printing a table:
#   steps     a training step of MMN and of G2L (G2L_KERNELS=auto: torch on CUDA), fp32 and bf16, map
#             width 512, Charades-STA and ActivityNet (48 videos each)     bench/train_step.py  90 + 110 s
#   syncs     CUDA syncs of one G2L loss, kernels numba and torch           bench/loss_syncs.py         50 s
#   training  a short synthetic Charades-STA training of MMN and G2L on CUDA:
#             seconds per epoch and the fed share (1 - data_wait_share)     bench/epoch_cost.py         60 s
#   parity    CPU vs CUDA losses; torch kernels vs Numba (geodesic, Shapley
#             within standard errors, the G2L terms)                        bench/gpu_parity.py  170 s (the rest)
#
#     bash bench/gpu_check.sh [SUMMARY.json]     # from anywhere; PYTHON=... chooses the interpreter
#     bash bench/gpu_check.sh --cpu-dry-run [SUMMARY.json]   # every section on the CPU at toy sizes
#                                                            # (Charades-STA's setting only)
#
# The summary goes to SUMMARY.json (default: $GPU_CHECK_JSON, else gpu_check.json in the repository);
# beside it a new folder SUMMARY.logs.XXXXXX keeps every section's log and JSON. Each section runs
# under its own timeout, capped so that the whole check ends within GPU_CHECK_TOTAL_S (default 510 s;
# a section with under 5 s left is skipped; the dry run multiplies both by 4, for a small shared
# CPU: it checks the code paths, not the budgets); one that fails or times out is recorded as such and the
# others still run. The benchmark scripts write their JSON as each check, cell or epoch ends, and the
# summary is rewritten (atomically) after every section, so a timeout, or the whole check being
# stopped, keeps every number measured so far (exit 1 if a section did not finish). Budgets can be
# changed by name: GPU_CHECK_BUDGETS="parity=240,training=90".
# Needs torch, numba, transformers, h5py, scipy, einops; no downloads (a tiny random text encoder),
# no W&B. Without a CUDA device (and without --cpu-dry-run) it prints one line and exits 2, having run nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then DRY=1; shift; fi
SUMMARY="${1:-${GPU_CHECK_JSON:-gpu_check.json}}"
SCALE=$((DRY ? 4 : 1))  # a dry run on a small shared CPU: four times the time (its processes start slowly)
TOTAL_S="${GPU_CHECK_TOTAL_S:-$((510 * SCALE))}"
RESERVE_S=15  # the last section's kill grace (10 s) and the final summary
if ! [[ "$TOTAL_S" =~ ^[0-9]+$ ]] || ! [[ "${GPU_CHECK_BUDGETS:-}" =~ ^([a-z_0-9]+=[0-9]+(,[a-z_0-9]+=[0-9]+)*)?$ ]]; then
    echo "gpu_check: GPU_CHECK_TOTAL_S must be whole seconds and GPU_CHECK_BUDGETS name=seconds pairs separated by commas (e.g. parity=240,training=90); got '${GPU_CHECK_TOTAL_S:-}' and '${GPU_CHECK_BUDGETS:-}'" >&2
    exit 2
fi
if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
    exit 2
fi
mkdir -p "$(dirname "$SUMMARY")"
LOGS="$(mktemp -d "$(dirname "$SUMMARY")/$(basename "$SUMMARY" .json).logs.XXXXXX")" || exit 1
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")" || exit 1  # the training data and runs; removed
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STATUS="$LOGS/status.tsv"
: > "$STATUS"
SECTIONS=(steps_mmn steps_g2l syncs training parity)

summarize() {  # summarize [--print]: (re)write the summary from what the sections left so far
    "$PYTHON" bench/gpu_check_summary.py "$LOGS" "$SUMMARY" --sections "$(IFS=,; echo "${SECTIONS[*]}")" "$@"
}
stopped() {
    printf '%s\t%s\t%s\t%s\n' "gpu_check" "stopped by a signal" "$SECONDS" "$TOTAL_S" >> "$STATUS"
    summarize --print
    rm -rf "$SCRATCH"
    exit 1
}
trap stopped TERM INT HUP

# budget NAME DEFAULT: the section's seconds, from GPU_CHECK_BUDGETS (name=seconds,...) or the default.
budget() {
    local pair
    local budgets="${GPU_CHECK_BUDGETS:-}"
    for pair in ${budgets//,/ }; do
        if [ "${pair%%=*}" = "$1" ]; then echo "${pair#*=}"; return; fi
    done
    echo $(($2 * SCALE))
}

# section NAME BUDGET_S COMMAND...: run it under its timeout (capped by the time left), keep its
# log, record status and seconds, rewrite the summary.
section() {
    local name="$1" budget; budget="$(budget "$1" "$2")"; shift 2
    local left=$((TOTAL_S - SECONDS - RESERVE_S))
    if [ "$left" -lt "$budget" ]; then budget=$left; fi
    if [ "$budget" -lt 5 ]; then
        echo "== $name: skipped, ${left} s left of the check's ${TOTAL_S} s =="
        printf '%s\t%s\t%s\t%s\n' "$name" "skipped (no time left)" 0 "$budget" >> "$STATUS"
        summarize
        return
    fi
    echo "== $name (budget ${budget} s) =="
    local start=$SECONDS
    timeout --kill-after=10 "$budget" "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    local state=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then state=timeout; elif [ "$rc" != 0 ]; then state="failed (exit $rc)"; fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$state" "$((SECONDS - start))" "$budget" >> "$STATUS"
    echo "-- $name: $state in $((SECONDS - start)) s"
    summarize
}

if [ "$DRY" = 1 ]; then  # the same code paths at toy sizes, one public setting (Charades-STA's)
    DEVICE=cpu; WIDTH=16; THREADS=1; STEP_CONFIGS=charades; VIDEOS=(--videos 2); PARITY=(--quick --compare-device cpu)
    SYNCS=(--configs charades --videos 4)
    TRAIN=(--videos 16 --epochs 2 --batch-size 8 --hidden-dim 16 --threads 1)
else
    DEVICE=cuda; WIDTH=512; THREADS=0; STEP_CONFIGS=charades,activitynet; VIDEOS=(); PARITY=(); SYNCS=()
    TRAIN=(--videos 192 --epochs 3 --batch-size 48 --hidden-dim 512 --threads 0 --precision auto)
fi
"$PYTHON" -c "import torch; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'; print('gpu_check:', d, 'torch', torch.__version__)" | tee "$LOGS/device.txt"
summarize

section steps_mmn 90 "$PYTHON" bench/train_step.py --device "$DEVICE" --hidden-dim "$WIDTH" --variant mmn \
    --configs "$STEP_CONFIGS" --columns fp32-cropped,bf16-cropped --steps 3 --warmup 1 --threads "$THREADS" \
    "${VIDEOS[@]}" --json "$LOGS/steps_mmn.json"
section steps_g2l 110 "$PYTHON" bench/train_step.py --device "$DEVICE" --hidden-dim "$WIDTH" --variant g2l \
    --configs "$STEP_CONFIGS" --columns fp32-cropped,bf16-cropped --steps 3 --warmup 1 --threads "$THREADS" \
    "${VIDEOS[@]}" --json "$LOGS/steps_g2l.json"
section syncs 50 "$PYTHON" bench/loss_syncs.py --device "$DEVICE" "${SYNCS[@]}" --json "$LOGS/syncs.json"
section training 60 "$PYTHON" bench/epoch_cost.py --preset charades --device "$DEVICE" "${TRAIN[@]}" \
    --data "$SCRATCH/synthetic-charades" --out "$SCRATCH/runs" --json "$LOGS/training.json"
section parity 170 "$PYTHON" bench/gpu_parity.py --device "$DEVICE" "${PARITY[@]}" --json "$LOGS/parity.json"

trap - TERM INT HUP
summarize --print
rc=$?
rm -rf "$SCRATCH"
exit $rc
