"""GPU checks and timings, for one short call on a machine with CUDA.

  bash benchmarks/gpu.sh      # or: python -m benchmarks.gpu

Measures, in one process: seconds per evaluation at 512 px with TF32 off and on
(and the objective after 100 evaluations each, to see that TF32 does not hurt it),
channels-last, then a full 512 px, 500-evaluation single-scale run and the default
coarse-to-fine preset. Prints JSON lines.
"""

from __future__ import annotations

import json
import time

import torch

from benchmarks.common import photo_like, texture
from daemon.engine import Engine, StyleInput
from daemon.weights import random_weights
from shared.options import EngineOptions


def timed_run(engine: Engine, content, style, opts: EngineOptions) -> tuple[float, dict]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = engine.run(content, [StyleInput(style)], opts)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out.losses


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    engine = Engine(random_weights(0), "cuda")
    content, style = photo_like(640, 480), texture(512, 512)
    single = EngineOptions(size=512, evaluations=[100], seed=0, tolerance=0.0)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        timed_run(engine, content, style, EngineOptions(size=512, evaluations=[5], seed=0))
        t, losses = timed_run(engine, content, style, single)
        print(json.dumps({"check": "tf32", "tf32": tf32, "s_per_eval": t / 100,
                          "objective": losses["total"]}))
    engine.features = engine.features.to(memory_format=torch.channels_last)
    t, losses = timed_run(engine, content, style, single)
    print(json.dumps({"check": "channels_last", "s_per_eval": t / 100, "objective": losses["total"]}))
    engine.features = engine.features.to(memory_format=torch.contiguous_format)
    t, losses = timed_run(engine, content, style,
                          EngineOptions(size=512, evaluations=[500], seed=0, tolerance=0.0))
    print(json.dumps({"check": "512px_500_evals", "seconds": t, "objective": losses["total"],
                      "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20}))
    for preset in ("draft", "normal"):
        t, losses = timed_run(engine, content, style, EngineOptions(preset=preset, seed=0))
        print(json.dumps({"check": f"preset_{preset}", "seconds": t, "objective": losses["total"]}))


if __name__ == "__main__":
    main()
