"""Ground sentences in a video file. See `python tools/ground.py --help`."""

import sys

from g2l.cli import ground_main

if __name__ == "__main__":
    sys.exit(ground_main())
