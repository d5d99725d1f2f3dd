"""Train a grounding model. See `python tools/train.py --help`; works under torchrun too."""

import sys

from g2l.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
