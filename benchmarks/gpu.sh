#!/usr/bin/env bash
# One short call on a GPU machine (the device tool): benchmarks/gpu.py's checks and
# timings, then the engine, L-BFGS and daemon tests with the engine on CUDA, then
# torch.compile (slowest, least important, last). About 6 minutes on an H100.
#
#   bash benchmarks/gpu.sh                       # everything
#   SKIP_COMPILE=1 bash benchmarks/gpu.sh optimizer to_target   # some sections
#   TEST_FILES=tests/test_engine.py ...                          # some tests
#
# The GPU machine has torch, torchvision, numpy, pillow and pytest but no network:
# pyzmq and watchdog travel as wheels in .whl/ (see docs/engine.md, "GPU").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/impasto-gpu}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1
if ! python3 -c 'import zmq, watchdog' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,temperature.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'

SECTIONS=${*:-env accuracy objective optimizer quality run500 to_target presets large oom}
# shellcheck disable=SC2086 # one word per section
timeout 330 python3 -m benchmarks.gpu --only $SECTIONS 2>&1 | grep -v "RANDOM VGG19" | tee "$OUT/gpu.log"

# shellcheck disable=SC2086 # one word per test file
IMPASTO_TEST_DEVICE=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider --durations=5 \
    ${TEST_FILES:-tests/test_lbfgs.py tests/test_engine.py tests/test_tiled.py tests/test_daemon.py} \
    2>&1 | tee "$OUT/pytest-cuda.log" | tail -25

[ -n "${SKIP_COMPILE:-}" ] || timeout 100 python3 -m benchmarks.gpu --only compile 2>&1 | grep -v "RANDOM VGG19" | tee -a "$OUT/gpu.log"
echo "== summary"
cat "$OUT/gpu.jsonl" | cut -c1-400
