#!/usr/bin/env bash
# One short GPU call: installs what the GPU machine lacks into a temporary venv (torch
# comes from that machine when present), then runs benchmarks/gpu.py. About 2-4 min.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import torch, torchvision' 2>/dev/null || pip install -q torch torchvision
python3 -c 'import zmq, PIL, watchdog' 2>/dev/null || pip install -q pyzmq pillow watchdog
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu
