"""bench/gpu_check.sh without a GPU: one line on stderr, nothing on stdout, exit status 2, and
nothing run (the script is meant for GPU machines; here it must fail cleanly, not half-run)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_says_one_line_and_exits_2():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run"
    ]


def test_gpu_parity_without_cuda_exits_2():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_parity.py")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
