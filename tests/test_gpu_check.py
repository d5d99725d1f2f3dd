"""bench/gpu_check.sh and bench/gpu_parity.py without a GPU: the check refuses in one line (exit 2,
nothing run), a section that fails leaves the others running and the summary written, and the
parity script runs the torch kernels against the Numba ones on the CPU and agrees."""

import json
import os
import stat
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


def test_gpu_check_sections_fail_alone_and_the_summary_is_written(tmp_path):
    # An interpreter whose benchmark scripts all fail at once (inline code, the summary's, runs for real):
    # every section is recorded as failed, none stops the others, the JSON is written, exit 1.
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\ncase "$1" in bench/*) echo "broken $1" >&2; exit 3;; esac\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    summary = tmp_path / "out" / "summary.json"
    summary.parent.mkdir()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": str(fake)}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", str(summary)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(summary.read_text())
    assert list(result["sections"]) == ["steps_mmn", "steps_g2l", "syncs", "parity", "training"]
    assert all(s["state"] == "failed (exit 3)" for s in result["sections"].values())
    assert result["parity"] is None and result["training"] is None
    assert "summary written to" in proc.stdout
    assert [p.name for p in summary.parent.iterdir()] == ["summary.json"]  # nothing half-written beside it


def test_gpu_parity_without_cuda_exits_2():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_parity.py")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def test_gpu_parity_on_the_cpu_runs_the_torch_kernels_against_numba_and_agrees(tmp_path):
    out = tmp_path / "parity.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_parity.py"), "--device", "cpu", "--quick",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = json.loads(out.read_text())["checks"]
    assert {c["section"] for c in checks} == {"B", "C", "D"}  # (A) compares with CUDA
    assert all(c["ok"] for c in checks)
    geodesic_same = [c for c in checks if c["section"] == "B" and "dense" in c["name"]]
    assert geodesic_same and all(c["value"] == 0.0 for c in geodesic_same)  # bit-equal on the same graph
    assert "every check agrees" in proc.stdout
