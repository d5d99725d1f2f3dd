"""Render the demo's videos of coloured shapes with ground-truth captions. The ``g2l-render-demo`` command; see `python tools/render_demo_videos.py --help`."""

import sys

from g2l.cli import render_demo_main

if __name__ == "__main__":
    sys.exit(render_demo_main())
