"""Build and keep an index of videos. The ``g2l-index`` command; see `python tools/index.py --help`."""

import sys

from g2l.cli import index_main

if __name__ == "__main__":
    sys.exit(index_main())
