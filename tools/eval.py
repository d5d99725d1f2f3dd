"""Score a predictions file, or evaluate a checkpoint. The ``g2l-eval`` command; see `python tools/eval.py --help`."""

import sys

from g2l.cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
