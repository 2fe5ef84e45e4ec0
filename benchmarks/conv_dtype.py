"""bf16 layers held in bf16 (the engine's way) against bf16 autocast over float32 layers
(its way before): one VGG19 pass through relu5_1, forward and backward to the image,
as in each evaluation; interleaved, min of --repeats, same bits out (checked).

    python -m benchmarks.conv_dtype [--sizes 128,256,512] [--repeats 5]

Autocast caches no cast of a tensor that needs no gradient, so it casts every weight
the pass uses (13 convolutions, 12.9 M parameters through relu5_1) at every call: a
fixed cost per evaluation, which weighs most at the coarse scales. The saving is that
cast (2.5 ms a pass on an AMD EPYC); the ratio depends on how fast the CPU's bf16
convolutions are. On a CPU without bf16 units they are emulated, about 60x slower than
fp32, and the default sizes take 20 minutes: use --sizes 128 --repeats 2 there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import timings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,256,512", help="long sides (4:3 images)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from impasto.engine.device import Device
    from impasto.engine.transfer import Engine
    from impasto.engine.vgg import VGGFeatures
    from impasto.engine.weights import random_weights
    from impasto.options import EngineOptions

    threads = Device.select("cpu").set_threads()
    eng = Engine(random_weights(0), "cpu", precision="bf16")
    opts = EngineOptions()
    held = eng._network(opts)
    over_fp32 = VGGFeatures(eng.features, eng.weights.flavour, list(held.indices),
                            opts.pooling, None, eng.channels_last)
    convs = [m for m in over_fp32.layers if isinstance(m, torch.nn.Conv2d)]
    params = sum(m.weight.numel() + m.bias.numel() for m in convs)

    def cast_all() -> None:
        for m in convs:
            m.weight.to(torch.bfloat16)
            m.bias.to(torch.bfloat16)

    def autocast(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = over_fp32(x)
        return {k: v.float() for k, v in out.items()}

    def timed(run, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        xg = x.clone().requires_grad_(True)
        feats = run(xg)
        (grad,) = torch.autograd.grad(sum(f.square().mean() for f in feats.values()), xg)
        return time.perf_counter() - t0, grad

    cast = min(timings(cast_all, args.repeats))
    print(f"# {eng.dev.describe()}; {threads} threads; torch {torch.__version__}\n"
          f"casting the {len(convs)} convolutions' {params / 1e6:.1f} M parameters to bf16: "
          f"{cast * 1e3:.1f} ms", flush=True)
    report: dict = {"machine": eng.dev.describe(), "threads": threads,
                    "cast_ms": round(cast * 1e3, 2), "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(1, 3, size * 3 // 4, size, generator=torch.Generator().manual_seed(0))
        best = {"held": float("inf"), "autocast": float("inf")}
        grads = {}
        timed(held, x), timed(autocast, x)  # warm-up: oneDNN builds its kernels once
        for _ in range(args.repeats):
            for name, run in (("held", held), ("autocast", autocast)):
                t, grads[name] = timed(run, x)
                best[name] = min(best[name], t)
        same = torch.equal(grads["held"], grads["autocast"])
        row = {"held_s": round(best["held"], 4), "autocast_s": round(best["autocast"], 4),
               "saved_ms": round((best["autocast"] - best["held"]) * 1e3, 1),
               "ratio": round(best["autocast"] / best["held"], 3), "same_gradient": same}
        report["sizes"][size] = row
        print(f"{size} px: held in bf16 {best['held']:.4f} s, autocast {best['autocast']:.4f} s "
              f"a pass: {row['saved_ms']} ms saved, {row['ratio']}x; same gradient: {same}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
