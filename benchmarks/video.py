"""Video: do stylized frames hold still where the scene holds still?

A synthetic clip with known motion: a textured scene panning DX px a frame to the left
and a disc with its own texture moving across it. Stylized (a) with temporal
consistency (engine/temporal.py) and (b) frame by frame on its own, same preset, seed
and weights (benchmarks/quality.py's seeded torchvision-format file):

  temporal error  mean |out_t - out_{t-1} moved by the TRUE motion| over background
                  pixels visible in both frames (the disc and the entering strip left
                  out), 0..255; goal (a) at most 0.3x (b)
  static error    the same for a clip of one frame repeated: (a) should be near 0
  style distance  benchmarks/quality.py's measure per frame, mean; goal (a) within 10%
                  of (b)
  time per frame  goal (a) no more than (b)

    python -m benchmarks.video [--size 128] [--frames 12] [--preset draft] [--json]

--split P measures instead a clip cut into P parts run side by side (a cluster's
workers; clipjobs.send_clip_parts), joined by cross-fading the frames both neighbours
stylize: per-transition temporal error at the joins against the one-run clip's, for a
hard cut (overlap 0) and for each --overlaps value.

    python -m benchmarks.video --split 2 --overlaps 0,2,4 [--size 128] [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.quality import IndependentVGG, sample_images, style_distance, write_weight_files

DX = 3  # background pan, px per frame (the scene moves left)
VX = 5  # the disc's own motion, px per frame (to the right)


def clip(size: int, frames: int) -> tuple[list[Image.Image], list[tuple[float, float, float]]]:
    """Frames (size x 3/4 size) and each frame's disc (centre x, centre y, radius)."""
    w, h = size, size * 3 // 4
    rng = np.random.default_rng(1)
    canvas_w = w + DX * frames + 8
    yy, xx = np.mgrid[0:h, 0:canvas_w].astype(np.float64)
    scene = np.stack([0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
                      0.4 + 0.2 * np.sin((xx + yy) / 13.0),
                      0.5 + 0.25 * np.cos(xx / 5.0 - yy / 9.0)], -1)
    scene += rng.normal(0, 0.03, scene.shape)
    for _ in range(40):  # blocks, so there are edges to track
        x0, y0 = rng.integers(0, canvas_w - 12), rng.integers(0, h - 12)
        scene[y0:y0 + rng.integers(4, 12), x0:x0 + rng.integers(4, 12)] = rng.random(3)
    out, discs = [], []
    r = h / 6
    fy, fx = np.mgrid[0:h, 0:w].astype(np.float64)
    for t in range(frames):
        f = scene[:, t * DX:t * DX + w].copy()
        cx, cy = w * 0.2 + t * VX, h * 0.5
        inside = (fx - cx) ** 2 + (fy - cy) ** 2 < r * r
        f[inside] = np.stack([0.9 + 0.1 * np.sin(fx / 2.0), 0.2 + 0.1 * np.cos(fy / 2.0),
                              0.1 + 0 * fx], -1)[inside]
        out.append(Image.fromarray((np.clip(f, 0, 1) * 255).astype(np.uint8)))
        discs.append((cx, cy, r))
    return out, discs


def temporal_error(outs: list[np.ndarray], discs: list[tuple[float, float, float]] | None,
                   dx: int) -> float:
    """Mean |out_t(p) - out_{t-1}(p + dx)| over background pixels seen in both frames."""
    errs = []
    for t in range(1, len(outs)):
        a, b = outs[t].astype(np.float64), outs[t - 1].astype(np.float64)
        h, w = a.shape[:2]
        cur, prev = a[:, :w - dx], b[:, dx:]
        keep = np.ones((h, w - dx), bool)
        if discs is not None:
            yy, xx = np.mgrid[0:h, 0:w - dx].astype(np.float64)
            for (cx, cy, r), shift in ((discs[t], 0), (discs[t - 1], dx)):
                keep &= (xx + shift - cx) ** 2 + (yy - cy) ** 2 > (r + 6) ** 2
        errs.append(np.abs(cur - prev)[keep].mean())
    return float(np.mean(errs))


def run(engine, frames, style, opts, independent: bool) -> tuple[list[Image.Image], float]:  # noqa: ANN001
    from impasto.engine.transfer import StyleInput
    from impasto.engine.video import stylize_frames

    t0 = time.perf_counter()
    outs = [o.image for o in stylize_frames(engine, frames, [StyleInput(style)], opts,
                                            independent=independent)]
    return outs, (time.perf_counter() - t0) / len(frames)


def measure(size: int, n: int, root: Path, preset: str = "draft", stability: float | None = None
            ) -> dict:
    from impasto.engine.transfer import Engine
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    file, spec, prep = write_weight_files(root)["torchvision"]
    engine = Engine(load(spec, cache=root / "cache"), "cpu")
    vgg = IndependentVGG(file, prep)
    _, style = sample_images(size)
    frames, discs = clip(size, n)
    extra = {} if stability is None else {"stability": stability}
    opts = EngineOptions(preset=preset, size=size, seed=0, **extra)
    row: dict = {"size": size, "frames": n, "preset": preset, "stability": opts.stability}
    res = {}
    for name, independent in (("temporal", False), ("independent", True)):
        outs, per_frame = run(engine, frames, style, opts, independent)
        arrs = [np.asarray(o.convert("RGB")) for o in outs]
        s = vgg.activations(style.resize(outs[0].size, Image.Resampling.LANCZOS))
        res[name] = {
            "temporal_error": round(temporal_error(arrs, discs, DX), 3),
            "style_distance": round(float(np.mean([style_distance(vgg.activations(o), s)
                                                   for o in outs])), 4),
            "seconds_per_frame": round(per_frame, 2)}
    static = [frames[0]] * 4
    outs, _ = run(engine, static, style, opts, False)
    res["temporal"]["static_error"] = round(
        temporal_error([np.asarray(o.convert("RGB")) for o in outs], None, 0), 3)
    row.update(res)
    a, b = res["temporal"], res["independent"]
    row["error_ratio"] = round(a["temporal_error"] / max(b["temporal_error"], 1e-9), 3)
    row["style_ratio"] = round(a["style_distance"] / b["style_distance"], 3)
    row["time_ratio"] = round(a["seconds_per_frame"] / b["seconds_per_frame"], 3)
    return row


def transition_errors(outs: list[np.ndarray], discs: list[tuple[float, float, float]],
                      dx: int) -> list[float]:
    """temporal_error of each transition t-1 -> t, t = 1..n-1."""
    return [temporal_error(outs[t - 1:t + 1], discs[t - 1:t + 1], dx) for t in range(1, len(outs))]


def measure_split(size: int, n: int, root: Path, parts: int, overlaps: list[int],
                  preset: str = "draft") -> dict:
    """One run of the clip against `parts` runs joined by cross-fades (clipjobs), the
    parts computed in-process one after another (what each worker would compute)."""
    from impasto.clipjobs import crossfade, part_ranges
    from impasto.engine.transfer import Engine
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    file, spec, _ = write_weight_files(root)["torchvision"]
    engine = Engine(load(spec, cache=root / "cache"), "cpu")
    _, style = sample_images(size)
    frames, discs = clip(size, n)
    opts = EngineOptions(preset=preset, size=size, seed=0)
    whole, _ = run(engine, frames, style, opts, False)
    base = transition_errors([np.asarray(o.convert("RGB")) for o in whole], discs, DX)
    row: dict = {"size": size, "frames": n, "parts": parts, "preset": preset,
                 "one_run": {"mean": round(float(np.mean(base)), 3),
                             "max": round(float(np.max(base)), 3)}}
    for overlap in overlaps:
        ranges = part_ranges(n, parts, overlap)
        runs = [dict(zip(range(first, end), run(engine, frames[first:end], style, opts, False)[0]))
                for first, _, end in ranges]
        outs = []
        for i in range(n):
            j = max(k for k, (_, own, _) in enumerate(ranges) if own <= i)
            img = runs[j][i]
            if j + 1 < len(ranges) and ranges[j + 1][0] <= i:
                nxt = ranges[j + 1]
                img = crossfade(img, runs[j + 1][i], i - nxt[0], nxt[1] - nxt[0])
            outs.append(np.asarray(img.convert("RGB")))
        errs = transition_errors(outs, discs, DX)
        # The transitions a join touches: into and through its cross-fade, and out of it.
        joins = [t for _, own, _ in ranges[1:] for t in range(own - overlap, own + 1) if t >= 1]
        worst = max(errs[t - 1] for t in joins)
        row[f"overlap_{overlap}"] = {"join_max": round(worst, 3),
                                     "join_vs_one_run_max": round(worst / max(base), 3),
                                     "mean": round(float(np.mean(errs)), 3)}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--preset", default="draft")
    ap.add_argument("--stability", type=float)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--split", type=int, metavar="P", help="measure P parts joined by cross-fades")
    ap.add_argument("--overlaps", default="0,2,4", help="with --split: overlaps to measure")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.split:
            row = measure_split(args.size, args.frames, Path(tmp), args.split,
                                [int(x) for x in args.overlaps.split(",")], args.preset)
        else:
            row = measure(args.size, args.frames, Path(tmp), args.preset, args.stability)
    print(json.dumps(row) if args.json else json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
