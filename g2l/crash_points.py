"""Crash points, for tests only: with ``G2L_TEST_CRASH_AT=<point>`` in the environment the process
kills itself (as ``kill -9`` would: no cleanup, no flush) when it reaches ``crash_point(<point>)``;
``<point>#<n>`` waits for the n-th time. Tests use it to check what a killed run leaves behind and
that it resumes. Nothing in g2l sets the variable; when it is unset a crash point does nothing.
"""

from __future__ import annotations

import os
import signal

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
