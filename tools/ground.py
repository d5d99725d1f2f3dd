"""Ground sentences in a video file. The ``g2l-ground`` command; see `python tools/ground.py --help`."""

import sys

from g2l.cli import ground_main

if __name__ == "__main__":
    sys.exit(ground_main())
