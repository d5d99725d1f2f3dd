"""The command line: every g2l command's arguments, terminal output and exit status.

One ``<name>_main(argv)`` per command; the console scripts of pyproject.toml (``g2l-train``,
``g2l-ground``, ...) and the scripts in tools/ (the same commands in a clone) call them through
this package (``g2l.cli:ground_main``). Each parses its arguments, calls the library and prints.
Exit status: 0 done; 1 nothing could be done (every video failed to extract); 2 bad input, as one
line on stderr and never a traceback (bad arguments, and any ``G2LError`` the library raises); 130
interrupted; 141 the reader closed stdout early (``| head``). No other module parses arguments or
prints for the terminal tools.

Where things are:
  common.py      OneLineParser, run_cli, CliError and the argument types shared by commands
  train_eval.py  g2l-train, g2l-eval, g2l-baselines
  ground.py      g2l-ground (and what it prints)
  export.py      g2l-export
  app.py         g2l-app
  data.py        g2l-extract, g2l-make-synthetic, g2l-real-stats
  demo.py        g2l-render-demo, g2l-build-demo
  library.py     g2l-index, g2l-search
A new command is a ``_<name>(argv)`` parser in the module of its family, a ``<name>_main`` that
wraps it in ``run_cli``, a line below, a console script in pyproject.toml and a shim in tools/.
"""

from g2l.cli.app import app_main
from g2l.cli.common import CliError, OneLineParser, run_cli
from g2l.cli.data import extract_main, make_synthetic_main, real_stats_main
from g2l.cli.demo import build_demo_main, render_demo_main
from g2l.cli.export import export_main
from g2l.cli.ground import ground_main
from g2l.cli.library import index_main, search_main
from g2l.cli.train_eval import baselines_main, eval_main, train_main

__all__ = [
    "CliError", "OneLineParser", "run_cli",
    "train_main", "eval_main", "baselines_main",
    "ground_main", "app_main", "export_main",
    "extract_main", "make_synthetic_main", "real_stats_main",
    "render_demo_main", "build_demo_main",
    "index_main", "search_main",
]
