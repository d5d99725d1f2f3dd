"""Recompute the real benchmarks' moment statistics that the synthetic generator copies. The ``g2l-real-stats`` command; see `python tools/real_stats.py --help`."""

import sys

from g2l.cli import real_stats_main

if __name__ == "__main__":
    sys.exit(real_stats_main())
