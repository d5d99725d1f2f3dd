"""The web app. The ``g2l-app`` command (needs ``pip install 'g2l[app]'``); see `python tools/app.py --help`."""

import sys

from g2l.cli import app_main

if __name__ == "__main__":
    sys.exit(app_main())
