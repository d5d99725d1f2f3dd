"""Write the built-in synthetic grounding benchmark. The ``g2l-make-synthetic`` command; see `python tools/make_synthetic.py --help`."""

import sys

from g2l.cli import make_synthetic_main

if __name__ == "__main__":
    sys.exit(make_synthetic_main())
