"""Train a grounding model; works under torchrun too. The ``g2l-train`` command; see `python tools/train.py --help`."""

import sys

from g2l.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
