"""Regions: does each region take its own style, whatever its area, without a seam?

Two styles of clearly different statistics (warm diagonal stripes; cool dots on a dark
ground) and masks over the content:
  - halves: a left and a right half, meeting in a soft 16 px edge;
  - small:  a square of about 10% of the area (one style) inside the rest (the other).
Judged by benchmarks/quality.py's independent measure (its own VGG19 module and Grams),
restricted to each region: the region is cut out of the output (less the soft edge
and a margin), and its style distance to its own style is compared with its distance
to the other style; the goal is at most 0.5. The seam: the mean horizontal step of the
columns where the halves meet, against the other columns' (the tiling test's measure).
The time cost: the regions run against an unmasked blend of the same two styles, same
options, same run.

    python -m benchmarks.regions [--size 192] [--strength 3] [--style-loss gram] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.quality import STYLE, IndependentVGG, gram, sample_images, write_weight_files

EDGE = 16  # px of soft edge where two regions meet


def region_styles(size: int) -> tuple[Image.Image, Image.Image]:
    """Warm diagonal stripes; cool dots on a dark ground."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    band = (np.sin((xx + yy) / 2.5) > 0)[..., None]
    stripes = np.where(band, [0.95, 0.45, 0.1], [0.85, 0.8, 0.2])
    dots = np.full((size, size, 3), [0.05, 0.1, 0.25])
    centre = ((xx % 10 - 5) ** 2 + (yy % 10 - 5) ** 2) < 9
    dots[centre] = [0.2, 0.8, 0.9]
    to = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))  # noqa: E731
    return to(stripes), to(dots)


def ramp(d: np.ndarray) -> np.ndarray:
    """1 inside (d > 0), 0 outside, linear across EDGE px centred on the border."""
    return np.clip(d / EDGE + 0.5, 0.0, 1.0)


def halves_masks(w: int, h: int) -> tuple[Image.Image, Image.Image]:
    xx = np.mgrid[0:h, 0:w][1] + 0.5
    left = ramp(w / 2 - xx)
    return _grey(left), _grey(1 - left)


def small_masks(w: int, h: int) -> tuple[Image.Image, Image.Image, tuple[int, int, int, int]]:
    """A centred square of about 10% of the area, and the rest; and the square's box."""
    side = round((0.1 * w * h) ** 0.5)
    x0, y0 = (w - side) // 2, (h - side) // 2
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    inside = np.minimum.reduce([xx - x0, x0 + side - xx, yy - y0, y0 + side - yy])
    square = ramp(inside)
    return _grey(square), _grey(1 - square), (x0, y0, x0 + side, y0 + side)


def _grey(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(a * 255).astype(np.uint8), "L")


def distance(vgg: IndependentVGG, crop: Image.Image, style: Image.Image, long_side: int) -> float:
    """The crop's style distance to a style seen at the engine's scale (long side of the
    whole output), over the layers the crop still has positions at."""
    scale = long_side / max(style.size)
    s = vgg.activations(style.resize((round(style.width * scale), round(style.height * scale)),
                                     Image.Resampling.LANCZOS))
    a = vgg.activations(crop)
    layers = [n for n in STYLE if a[n].shape[1] > 0]
    return float(np.mean([np.linalg.norm(gram(a[n]) - gram(s[n])) / np.linalg.norm(gram(s[n]))
                          for n in layers]))


@dataclass
class RegionScore:
    region: str
    own: float  # style distance to its own style
    other: float  # to the other style
    ratio: float  # own / other: the goal is at most 0.5


def score(vgg: IndependentVGG, out: Image.Image, boxes: list[tuple[int, int, int, int]],
          name: str, own: Image.Image, other: Image.Image) -> RegionScore:
    """Distances averaged over the boxes (rectangles that together cover the region)."""
    a = float(np.mean([distance(vgg, out.crop(b), own, max(out.size)) for b in boxes]))
    b = float(np.mean([distance(vgg, out.crop(b), other, max(out.size)) for b in boxes]))
    return RegionScore(name, round(a, 4), round(b, 4), round(a / b, 4))


def seam(out: Image.Image) -> float:
    """The largest mean column step across the middle (where the halves meet) over the
    95th percentile of the other columns' steps; the tiling test's rule is that a seam
    shows at 1.5 and above."""
    a = np.asarray(out.convert("RGB"), dtype=np.float64)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))
    mid = a.shape[1] // 2 - 1
    border = dx[mid - 2:mid + 3]
    inner = np.delete(dx, range(mid - EDGE, mid + EDGE + 1))
    return float(border.max() / np.percentile(inner, 95))


def measure(size: int, root: Path, options: dict | None = None) -> dict:
    from impasto.engine.transfer import Engine, StyleInput
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    file, spec, prep = write_weight_files(root)["torchvision"]
    engine = Engine(load(spec, cache=root / "cache"), "cpu")
    vgg = IndependentVGG(file, prep)
    content, _ = sample_images(size)
    stripes, dots = region_styles(size)
    opts = EngineOptions(size=size, seed=0, **(options or {}))
    w, h = content.size
    m = EDGE // 2 + 4  # the soft edge's half, and a margin
    rows: dict = {"size": size, "options": options or {}}

    t0 = time.perf_counter()
    blend = engine.run(content, [StyleInput(stripes), StyleInput(dots)], opts)
    rows["blend_s"] = round(time.perf_counter() - t0, 2)

    left, right = halves_masks(w, h)
    t0 = time.perf_counter()
    out = engine.run(content, [StyleInput(stripes, mask=left), StyleInput(dots, mask=right)], opts)
    rows["halves_s"] = round(time.perf_counter() - t0, 2)
    rows["time_ratio"] = round(rows["halves_s"] / rows["blend_s"], 3)
    rows["halves"] = [asdict(score(vgg, out.image, [(0, 0, w // 2 - m, h)], "left", stripes, dots)),
                      asdict(score(vgg, out.image, [(w // 2 + m, 0, w, h)], "right", dots, stripes))]
    rows["seam"] = round(seam(out.image), 3)
    rows["blend_seam"] = round(seam(blend.image), 3)

    square, rest, (x0, y0, x1, y1) = small_masks(w, h)
    small = engine.run(content, [StyleInput(dots, mask=square), StyleInput(stripes, mask=rest)], opts)
    inner = (x0 + m, y0 + m, x1 - m, y1 - m)
    bands = [(0, 0, w, y0 - m), (0, y1 + m, w, h), (0, 0, x0 - m, h), (x1 + m, 0, w, h)]
    rows["small"] = [asdict(score(vgg, small.image, [inner], "square (10%)", dots, stripes)),
                     asdict(score(vgg, small.image, bands, "rest (90%)", stripes, dots))]
    rows["images"] = {"blend": blend.image, "halves": out.image, "small": small.image}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--style-loss", default="gram", choices=("gram", "wasserstein"))
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--save", type=Path, help="write the three results as PNGs into this folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.size, Path(tmp), {"style_loss": args.style_loss,
                                              "strength": args.strength})
    images = rows.pop("images")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for k, img in images.items():
            img.save(args.save / f"regions-{k}.png")
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"regions at {rows['size']} px, {args.style_loss}, strength {args.strength:g}: blend {rows['blend_s']} s, "
          f"regions {rows['halves_s']} s ({rows['time_ratio']}x)")
    for r in rows["halves"] + rows["small"]:
        print(f"  {r['region']:22} own {r['own']:.3f}  other {r['other']:.3f}  "
              f"ratio {r['ratio']:.3f} (goal <= 0.5)")
    print(f"  seam {rows['seam']:.3f} (blend {rows['blend_seam']:.3f}; 1.5 and above would show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
