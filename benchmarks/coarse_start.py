"""Where a coarse scale leaves the output scale: why coarse-to-fine pays or does not.

  python -m benchmarks.coarse_start [--size 512] [--coarse-evals 50] [--weights random]

Scores, with the output scale's objective (Engine.evaluate; the tutorial's weights
as in benchmarks/engine.py), the image a coarse-to-fine run hands to its output
scale (the half-size result, upsampled as the engine does) against the single-scale
run after a few evaluations, and the content image itself after a round trip through
the coarse size. If the handed-over image scores like the single-scale run after k
evaluations, the coarse scale can save at most k output-scale evaluations.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import photo_like, texture
from benchmarks.engine import TUTORIAL_CW, TUTORIAL_SW
from impasto.engine.runtime import tune_allocator
from impasto.engine.tensors import long_side_size, to_image, to_tensor, upscale
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import load as load_weights
from impasto.options import EngineOptions


def upsample(image, size: tuple[int, int]):  # noqa: ANN001, ANN201 - PIL in, PIL out
    """As the engine hands one scale to the next."""
    return to_image(upscale(to_tensor(image).unsqueeze(0), (size[1], size[0]))[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--coarse-evals", type=int, default=50)
    ap.add_argument("--single-evals", default="10,25")
    ap.add_argument("--weights", default="random")
    args = ap.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    engine = Engine(load_weights(args.weights), "cpu")
    content, styles = photo_like(640, 480), [StyleInput(texture(512, 512))]

    def opts(size: int, evals: int = 1) -> EngineOptions:
        return EngineOptions(size=size, scales=1, evaluations=[evals], seed=0, tolerance=0.0,
                             content_weight=TUTORIAL_CW, style_weight=TUTORIAL_SW)

    full = long_side_size(content.width, content.height, args.size)
    half = args.size // 2

    def show(label: str, image) -> None:  # noqa: ANN001
        p = engine.evaluate(image, content, styles, opts(args.size))
        print(f"{label:44s} total {p['total']:.3g}  content {p['content']:.3g}  "
              f"style {p['style']:.3g}", flush=True)

    show("content image", content.resize(full))
    small = content.resize(long_side_size(content.width, content.height, half))
    show(f"content image via {half} px", upsample(small, full))
    coarse = engine.run(content, styles, opts(half, args.coarse_evals))
    at_half = engine.evaluate(coarse.image, content, styles, opts(half))
    print(f"{half} px after {args.coarse_evals} evaluations, at its own scale: total "
          f"{at_half['total']:.3g}  content {at_half['content']:.3g}  style {at_half['style']:.3g}")
    show(f"  the same, handed to {args.size} px", upsample(coarse.image, full))
    for n in (int(k) for k in args.single_evals.split(",")):
        show(f"{args.size} px single scale after {n} evaluations",
             engine.run(content, styles, opts(args.size, n)).image)


if __name__ == "__main__":
    main()
