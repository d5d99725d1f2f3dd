"""Extract per-frame video features into an HDF5 file. The ``g2l-extract`` command; see `python tools/extract_features.py --help`."""

import sys

from g2l.cli import extract_main

if __name__ == "__main__":
    sys.exit(extract_main())
