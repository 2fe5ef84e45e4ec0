"""CPU precision: `--precision auto` (bf16 autocast and channels-last on CPUs with bf16
units) against fp32, whole runs of a preset, interleaved, min of --repeats; quality of
each result by benchmarks/quality.py's independent measure (its own VGG19, float64).

    python -m benchmarks.precision [--size 512] [--preset normal] [--evaluations 40,20,10]
                                   [--repeats 2] [--precisions auto,fp32]

Acceptance (issue 24): auto at least 1.8x faster than fp32 with style and content
distances within 3% of fp32's. --evaluations shrinks the preset's schedule where the
full one is too slow to run twice (say so when quoting the figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import quality


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--preset", default="normal")
    ap.add_argument("--evaluations", default=None, help="e.g. 40,20,10 (default: the preset's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precisions", default="auto,fp32")
    ap.add_argument("--flavour", default="torchvision", choices=("torchvision", "caffe", "random"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from impasto.engine import weights as weights_mod
    from impasto.engine.device import Device
    from impasto.engine.transfer import Engine, StyleInput
    from impasto.options import EngineOptions

    threads = Device.select("cpu").set_threads()
    root = Path(tempfile.mkdtemp(prefix="impasto-precision-"))
    f, spec, flavour = quality.write_weight_files(root)[args.flavour]
    w = weights_mod.load(spec)
    vgg = quality.IndependentVGG(f, flavour)
    content, style = quality.sample_images(args.size)
    kw: dict = {"preset": args.preset, "size": args.size, "seed": args.seed}
    if args.evaluations:
        kw["evaluations"] = [int(x) for x in args.evaluations.split(",")]
    opts = EngineOptions(**kw)
    engines = {p: Engine(w, "cpu", precision=p) for p in args.precisions.split(",")}
    print(f"# {engines[next(iter(engines))].dev.describe()}; {threads} threads; "
          f"torch {torch.__version__}; schedule {opts.schedule()}", flush=True)
    rows: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name, e in engines.items():
            t0 = time.perf_counter()
            out = e.run(content, [StyleInput(style)], opts)
            dt = time.perf_counter() - t0
            v = quality.judge(vgg, out.image, content, style)
            row = rows.setdefault(name, {"precision": e.precision, "seconds": []})
            row["seconds"].append(round(dt, 2))
            row.update(style=v.style_ratio, content=v.content_to_content,
                       objective=out.losses["total"], evaluations=out.evaluations,
                       schedule=[(r.size, r.evaluations) for r in out.schedule])
            if rep and (row.get("image_bytes") != out.image.tobytes()):
                row["deterministic"] = False
            row.setdefault("deterministic", True)
            row["image_bytes"] = out.image.tobytes()
            print(f"  {name} ({e.precision}) run {rep + 1}: {dt:.1f} s, {out.evaluations} "
                  f"evaluations, style {v.style_ratio:.4f}, content {v.content_to_content:.4f}, "
                  f"objective {out.losses['total']:.4e}", flush=True)
    for row in rows.values():
        row.pop("image_bytes")
        row["best_s"] = min(row["seconds"])
    names = list(rows)
    if "fp32" in rows and len(names) > 1:
        ref = rows["fp32"]
        for name in names:
            if name == "fp32":
                continue
            r = rows[name]
            r["speedup"] = round(ref["best_s"] / r["best_s"], 2)
            r["style_vs_fp32"] = round(r["style"] / ref["style"] - 1, 4)
            r["content_vs_fp32"] = round(r["content"] / ref["content"] - 1, 4)
            print(f"{name} ({r['precision']}): {r['speedup']}x fp32's speed; style distance "
                  f"{r['style_vs_fp32']:+.1%}, content distance {r['content_vs_fp32']:+.1%} of "
                  f"fp32's; same seed, same image in both runs: {r['deterministic']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
