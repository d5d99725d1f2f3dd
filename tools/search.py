"""Find moments across an index of videos. The ``g2l-search`` command; see `python tools/search.py --help`."""

import sys

from g2l.cli import search_main

if __name__ == "__main__":
    sys.exit(search_main())
