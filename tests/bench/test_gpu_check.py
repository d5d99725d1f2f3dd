"""bench/gpu_check.sh and bench/gpu_parity.py without a GPU: the check refuses in one line (exit 2,
nothing run), a section that fails leaves the others running and the summary written, a section
that times out keeps the numbers it wrote before the timeout (in the summary, and its log), and
the parity script runs the torch kernels against the Numba ones on the CPU and agrees;
bench/epoch_cost.py reads each epoch's figures while its run trains."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ["steps_mmn", "steps_g2l", "syncs", "training", "parity"]


def fake_interpreter(tmp_path: Path, parity: str = "fail") -> Path:
    """An interpreter whose benchmark scripts fail at once (exit 3), except the summary's, and the
    parity section's when ``parity="stall"`` (tests/support/stalled_parity.py); the rest runs for real."""
    stall = f'bench/gpu_parity.py) shift; exec {sys.executable} {REPO / "tests/support/stalled_parity.py"} "$@";;\n'
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\ncase "$1" in\n'
                    + (stall if parity == "stall" else "")
                    + 'bench/gpu_check_summary.py) ;;\nbench/*) echo "broken $1" >&2; exit 3;;\nesac\n'
                    + f'exec {sys.executable} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


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
    # Every benchmark script fails at once (inline code and the summary run for real): every section
    # is recorded as failed, none stops the others, the JSON is written, the logs are kept, exit 1.
    summary = tmp_path / "out" / "summary.json"
    summary.parent.mkdir()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": str(fake_interpreter(tmp_path))}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", str(summary)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(summary.read_text())
    assert list(result["sections"]) == SECTIONS
    assert all(s["state"] == "failed (exit 3)" for s in result["sections"].values())
    assert result["parity"] is None and result["training"] is None and result["complete"] is False
    assert result["sections"]["syncs"]["log_tail"] == ["broken bench/loss_syncs.py"]
    assert "summary written to" in proc.stdout
    # Beside the summary only its logs folder: nothing half-written.
    (logs,) = [p for p in summary.parent.iterdir() if p != summary]
    assert logs.name.startswith("summary.logs.") and result["logs"] == str(logs.resolve())
    assert {p.name for p in logs.iterdir()} == {"status.tsv", "device.txt", *(f"{s}.log" for s in SECTIONS)}
    assert (logs / "parity.log").read_text() == "broken bench/gpu_parity.py\n"


def test_gpu_check_section_timeout_keeps_the_numbers_written_before_it(tmp_path):
    # The parity section records two checks and then hangs: its budget (25 s) runs out. The summary
    # holds the two checks (marked incomplete), the section's state is "timeout", the log is kept.
    summary = tmp_path / "summary.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": str(fake_interpreter(tmp_path, parity="stall")),
           "GPU_CHECK_BUDGETS": "parity=25"}
    start = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", str(summary)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - start >= 25
    result = json.loads(summary.read_text())
    parity = result["sections"]["parity"]
    assert parity["state"] == "timeout" and parity["budget_s"] == 25
    assert [c["name"] for c in result["parity"]["checks"]] == ["stand-in check 1", "stand-in check 2"]
    assert result["parity"]["complete"] is False and result["parity"]["ok"] is False
    assert [c["value"] for c in result["parity"]["checks"]] == [0.0, 2e-5]
    assert "stalling after 2 checks" in parity["log_tail"][-1]
    assert "parity: 2/2 checks agree (cut short" in proc.stdout
    logs = Path(result["logs"])
    assert json.loads((logs / "parity.json").read_text()) == result["parity"]
    assert "(B) stand-in check 2: 2e-05" in (logs / "parity.log").read_text()


def test_gpu_check_total_budget_skips_what_cannot_fit_and_bad_budgets_are_refused(tmp_path):
    # A whole check of 19 s leaves under 5 s after the 15 s reserve: every section is skipped, none started.
    summary = tmp_path / "summary.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": str(fake_interpreter(tmp_path)), "GPU_CHECK_TOTAL_S": "19"}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", str(summary)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sections = json.loads(summary.read_text())["sections"]
    assert list(sections) == SECTIONS
    assert all(s["state"] == "skipped (no time left)" and s["log_tail"] == [] for s in sections.values())
    for bad in ({"GPU_CHECK_TOTAL_S": "9 min"}, {"GPU_CHECK_BUDGETS": "parity:240"}):
        proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", str(tmp_path / "x.json")],
                              capture_output=True, text=True, env={**env, **bad}, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
        assert not (tmp_path / "x.json").exists()


def test_epoch_cost_reads_each_epoch_while_the_run_trains(tmp_path, monkeypatch):
    # A stand-in child writes two epochs' records (and half a third) to metrics.jsonl, pausing between them.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import epoch_cost

    metrics = tmp_path / "mmn" / "metrics.jsonl"
    metrics.parent.mkdir()
    child = (
        "import json, sys, time\n"
        f"path = {str(metrics)!r}\n"
        "for epoch, (s, w) in enumerate([(2.5, 0.1), (1.5, 0.05)]):\n"
        "    with open(path, 'a') as f:\n"
        "        f.write(json.dumps({'epoch': epoch + 1, 'train_epoch/seconds': s, 'train_epoch/data_wait_share': w,"
        " 'train_epoch/total': 1.0 / (epoch + 1)}) + '\\n')\n"
        "    time.sleep(0.6)\n"
        "open(path, 'a').write('{\"epoch\": 3, \"train_epo')\n"
        "print('done')\n"
    )
    seen = []
    returncode, stdout, _ = epoch_cost.run_variant([sys.executable, "-c", child], dict(os.environ), metrics,
                                                   lambda figures: seen.append(figures), poll_s=0.1)
    assert returncode == 0 and stdout.strip() == "done"
    assert seen == [{"epoch_s": [2.5], "data_wait_share": [0.1], "loss": 1.0},
                    {"epoch_s": [2.5, 1.5], "data_wait_share": [0.1, 0.05], "loss": 0.5}]
    assert epoch_cost.summary(seen[-1]["epoch_s"]) == 1.5 and epoch_cost.summary([]) is None


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


def test_summary_keeps_partial_sections_and_reads_sync_rows_from_the_log(tmp_path, capsys, monkeypatch):
    # What a cut-short check leaves: a syncs log with one row and no JSON, a training JSON with one
    # MMN epoch, a parity JSON with one check; the summary holds them all and says the check is incomplete.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import gpu_check_summary

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "device.txt").write_text("gpu_check: cpu torch 2\n")
    (logs / "status.tsv").write_text("syncs\ttimeout\t50\t50\ntraining\ttimeout\t60\t60\nparity\tok\t3\t170\n")
    (logs / "syncs.log").write_text("charades      48 videos  kernels=numba  CUDA syncs:   12 per loss  {'a': 12}\n"
                                    "Terminated\n")
    (logs / "training.json").write_text(json.dumps({"mmn": {"epoch_s": [3.0], "data_wait_share": [0.2], "loss": 1.0},
                                                    "mmn_epoch_s": 3.0, "g2l_epoch_s": None, "ratio": None,
                                                    "complete": False}))
    (logs / "parity.json").write_text(json.dumps({"checks": [{"name": "x", "ok": True}], "complete": False}))
    summary = tmp_path / "summary.json"
    monkeypatch.setattr(sys, "argv", ["gpu_check_summary.py", str(logs), str(summary), "--sections",
                                      "syncs,training,parity", "--print"])
    assert gpu_check_summary.main() == 1
    result = json.loads(summary.read_text())
    assert result["syncs"] == {"rows": [{"config": "charades", "videos": 48, "kernels": "numba", "total": 12,
                                         "what": "CUDA syncs", "from_log": True}], "complete": False}
    assert result["complete"] is False and result["sections"]["syncs"]["log_tail"][-1] == "Terminated"
    out = capsys.readouterr().out
    assert "syncs charades     kernels=numba    12 per loss (CUDA syncs)" in out
    assert "training mmn: 3.00 s/epoch over 1 epoch(s), fed 80%" in out and "training g2l: no epoch finished" in out
    assert "parity: 1/1 checks agree (cut short" in out
