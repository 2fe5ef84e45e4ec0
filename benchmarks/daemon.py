"""The warm daemon's overhead: request to first event, and total time against the
in-process engine doing the same work, measured in the same run.

  python -m benchmarks.daemon [--size 128] [--evals 20] [--repeats 3]

The daemon runs as a subprocess with seeded random weights on 127.0.0.1; the in-process
engine uses the same weights in this process. Timings are medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import photo_like, texture
from impasto import imagecodec
from impasto.client import Client
from impasto.engine.runtime import tune_allocator
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.options import EngineOptions
from impasto.protocol import Progress, StyleRef, Stylize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import DaemonProcess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--evals", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tune_allocator()
    content, style = photo_like(320, 240), texture(256, 256)
    options = {"size": args.size, "evaluations": [args.evals], "seed": 0, "tolerance": 0.0}

    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp)).wait_ready()
        try:
            req = Stylize(content=imagecodec.to_ref(content),
                          styles=[StyleRef(image=imagecodec.to_ref(style))], options=options)
            accepted, first, total = [], [], []
            with Client(d.address, timeout=30) as c:
                c.stylize(req)  # warm-up
                for _ in range(args.repeats):
                    marks: dict[str, float] = {}
                    t0 = time.perf_counter()

                    def on_progress(p: Progress, marks=marks) -> None:
                        if p.stage == "optimize":
                            marks.setdefault("first", time.perf_counter())

                    c.stylize(req, on_accepted=lambda a, m=marks: m.setdefault(
                        "accepted", time.perf_counter()), on_progress=on_progress)
                    t1 = time.perf_counter()
                    accepted.append(marks["accepted"] - t0)
                    first.append(marks["first"] - t0)
                    total.append(t1 - t0)
        finally:
            d.stop()

    engine = Engine(random_weights(0), "cpu")
    opts = EngineOptions.from_dict(options)
    engine.run(content, [StyleInput(style)], opts)  # warm-up
    local = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        engine.run(content, [StyleInput(style)], opts)
        local.append(time.perf_counter() - t0)

    med = statistics.median
    print(f"{args.size}px, {args.evals} evaluations, median of {args.repeats}:")
    print(f"  send -> accepted       {med(accepted) * 1000:8.1f} ms")
    print(f"  send -> first progress {med(first) * 1000:8.1f} ms")
    print(f"  daemon total           {med(total):8.3f} s")
    print(f"  in-process total       {med(local):8.3f} s")
    print(f"  daemon / in-process    {med(total) / med(local):8.3f}x")


if __name__ == "__main__":
    main()
