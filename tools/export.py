"""Write a checkpoint as a Hugging Face layout folder (and upload it). The ``g2l-export`` command; see `python tools/export.py --help`."""

import sys

from g2l.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
