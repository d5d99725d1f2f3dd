"""bench/gpu_parity.py with its sections replaced by two quick stand-in checks and then a stall:
what tests/bench/test_gpu_check.py runs in place of the parity section to force its timeout. The
script's own argument parsing, JSON writer and check recorder run as they are.

    python tests/support/stalled_parity.py [gpu_parity.py's arguments]
"""

import importlib.util
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
spec = importlib.util.spec_from_file_location("gpu_parity", BENCH / "gpu_parity.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)


def stall(*_args, **_kwargs) -> None:
    parity.check("B", "stand-in check 1", 0.0, 1e-4, True)
    parity.check("B", "stand-in check 2", 2e-5, 1e-4, True)
    print("stalled_parity: stalling after 2 checks", flush=True)
    time.sleep(3600)


parity.section_a = parity.section_b = parity.section_c = parity.section_d = stall
sys.argv[0] = str(BENCH / "gpu_parity.py")
sys.exit(parity.main())
