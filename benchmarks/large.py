"""A large output on this machine: time and peak memory, tiled against untiled.

  python -m benchmarks.large [--size 4096] [--evaluations 8,3,2] [--tile-size 1024]

Peak memory is the process's resident high-water mark (ru_maxrss). Before the large
run it also measures one untiled and one tiled evaluation at --probe px, in the same
process, to give memory per megapixel and the tiling overhead as ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from pathlib import Path

from benchmarks.common import photo_like, texture
from impasto.engine.runtime import tune_allocator
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.options import EngineOptions


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Linux: restart the resident high-water mark, so each phase shows its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--evaluations", default="8,3,2")
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--probe", type=int, default=1024)
    args = ap.parse_args()
    tune_allocator()
    engine = Engine(random_weights(0), "cpu")
    style = StyleInput(texture(512, 512))
    base_mib = peak_rss_mib()

    # Probe: one evaluation at --probe px, untiled then tiled (memory grows monotonically,
    # so untiled first shows its own peak; tiled time is the overhead ratio).
    probe = photo_like(args.probe, args.probe)
    times = {}
    for tiled in (False, True):
        opts = EngineOptions(size=args.probe, evaluations=[3], seed=0, tolerance=0.0,
                             tile_size=args.tile_size // 4,
                             tile_pixels=4096 if tiled else 1 << 40)
        t0 = time.perf_counter()
        engine.run(probe, [style], opts)
        times[tiled] = (time.perf_counter() - t0) / 3
        if not tiled:
            untiled_mib = peak_rss_mib() - base_mib
    mp = args.probe**2 / 1e6
    print(f"probe {args.probe}px: untiled {times[False]:.1f} s/eval, peak +{untiled_mib:.0f} MiB "
          f"({untiled_mib / mp:.0f} MiB/MP); tiled ({args.tile_size // 4}px tiles) "
          f"{times[True]:.1f} s/eval = {times[True] / times[False]:.2f}x untiled", flush=True)

    content = photo_like(args.size, args.size)
    reset_peak()
    evals = [int(x) for x in args.evaluations.split(",")]
    opts = EngineOptions(size=args.size, evaluations=evals, seed=0, tolerance=0.0,
                         tile_size=args.tile_size)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    last = [0.0]

    def on_step(s) -> None:  # noqa: ANN001
        if time.perf_counter() - last[0] > 30 or s.step == s.total:
            last[0] = time.perf_counter()
            print(f"  scale {s.scale + 1}/{s.scales} {s.size}px step {s.step}/{s.total} "
                  f"{s.elapsed_s:.0f} s, peak RSS {peak_rss_mib() / 1024:.1f} GiB", flush=True)

    out = engine.run(content, [style], opts, on_step=on_step)
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mib()
    mp = args.size**2 / 1e6
    print(f"{args.size}x{args.size} ({mp:.1f} MP) schedule {opts.schedule()} tiled scales "
          f"{out.tiled_scales}: {elapsed:.0f} s, peak RSS {peak / 1024:.1f} GiB "
          f"({peak / mp:.0f} MiB per output MP; {before / 1024:.1f} GiB at the start)")
    out.image.save("/tmp/impasto-large.png")


if __name__ == "__main__":
    main()
