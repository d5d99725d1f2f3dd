#!/usr/bin/env bash
# One GPU check, under 10 minutes on one GPU: training steps (MMN and G2L; fp32 and bf16; the full
# and the cropped map; map width 512; the three public settings), grounding latency, and CPU-vs-CUDA
# agreement of the losses and of the Numba/torch geodesic kernels on the same inputs.
#
#     bash bench/gpu_check.sh            # from the repository root; PYTHON=... to choose the interpreter
#
# Without a CUDA device it prints one line and exits 2, having run nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
    exit 2
fi
"$PYTHON" -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
echo "== training step, MMN, map width 512 =="
timeout 200 "$PYTHON" bench/train_step.py --device cuda --hidden-dim 512 --variant mmn --steps 5 --warmup 2 --threads 0
echo "== training step, G2L, map width 512 =="
timeout 200 "$PYTHON" bench/train_step.py --device cuda --hidden-dim 512 --variant g2l --steps 5 --warmup 2 --threads 0
echo "== CPU vs CUDA: losses and kernels =="
timeout 120 "$PYTHON" bench/gpu_parity.py
echo "== grounding latency (30 s and 5 min videos) =="
timeout 90 "$PYTHON" bench/ground_latency.py --lengths 30,300
