#!/usr/bin/env bash
# Everything scripts/setup.sh installs, plus training (transformers, Numba, W&B), the web app (Gradio)
# and the test tooling (pytest, scipy, PyAV, Playwright driving Debian's chromium).
#   bash scripts/setup_dev.sh && .venv/bin/python -m pytest -q
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install -q -e ".[dev]"
# The browser test (tests/test_app.py) drives the system Chromium with Playwright (its own browser
# download needs a network that CI does not have). Installed here when we are root with apt-get;
# otherwise install Debian's chromium yourself (the test fails without it under CI, skips elsewhere).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    else
        echo "note: no chromium found; the browser test needs it (apt-get install chromium)" >&2
    fi
fi
