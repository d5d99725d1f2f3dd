"""Rebuild the shipped demo checkpoint and example video. The ``g2l-build-demo`` command; see `python tools/build_demo.py --help`."""

import sys

from g2l.cli import build_demo_main

if __name__ == "__main__":
    sys.exit(build_demo_main())
