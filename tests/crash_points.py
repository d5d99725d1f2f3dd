"""Crash points, for the kill -9 tests: ``python -m tests.crash_points <g2l-train arguments>`` runs
``g2l-train`` in this process with ``g2l.io.atomic.kill_point`` replaced by ``crash_point``, so that
with ``G2L_TEST_CRASH_AT=<point>`` in the environment the process kills itself (as ``kill -9``
would: no cleanup, no flush) when it reaches ``kill_point(<point>)``; ``<point>#<n>`` waits for the
n-th time. The library never reads the variable: the replacement is made here, by the harness.
"""

from __future__ import annotations

import os
import signal
import sys

ENV_VAR = "G2L_TEST_CRASH_AT"
_times_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, _, nth = wanted.partition("#")
    if point != name:
        return
    _times_reached[name] = _times_reached.get(name, 0) + 1
    if _times_reached[name] == int(nth or 1):
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)


if __name__ == "__main__":
    import g2l.io.atomic
    from g2l.cli import train_main

    g2l.io.atomic.kill_point = crash_point
    sys.exit(train_main(sys.argv[1:]))
