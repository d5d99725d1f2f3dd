"""Prior-only and random-ranking floors of a dataset. The ``g2l-baselines`` command; see `python tools/baselines.py --help`."""

import sys

from g2l.cli import baselines_main

if __name__ == "__main__":
    sys.exit(baselines_main())
