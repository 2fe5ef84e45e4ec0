"""In-process stylization for `impasto stylize` when no daemon answers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.engine import Step, StyleInput
from daemon.runtime import load_engine
from daemon.stylelib import StyleLibrary
from shared import imagecodec, paths
from shared.errors import BAD_OPTIONS, ImpastoError
from shared.jobspec import looks_like_path
from shared.options import EngineOptions
from shared.outputs import check_writable, save_image
from shared.progressbar import ProgressBar, emit_json, format_losses


def load_styles(specs: list[str]) -> list[StyleInput]:
    library = StyleLibrary(paths.styles_dir())
    out = []
    for s in specs:
        p = Path(s).expanduser()
        if p.is_file():
            out.append(StyleInput(imagecodec.read_file(p).convert("RGB")))
        elif looks_like_path(s):
            raise ImpastoError(BAD_OPTIONS, f"style image {s} does not exist")
        else:
            out.append(StyleInput(library.load(s)))
    return out


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def stylize_local(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    opts = EngineOptions.from_dict(options)
    check_writable(args.output)
    if not args.content.is_file():
        raise ImpastoError(BAD_OPTIONS, f"content image {args.content} does not exist")
    content = imagecodec.read_file(args.content)
    styles = load_styles(args.style)
    if opts.style_weights is not None and len(opts.style_weights) != len(styles):
        raise ImpastoError(BAD_OPTIONS, f"--style-weights has {len(opts.style_weights)} values "
                           f"for {len(styles)} --style arguments")
    engine = load_engine(args.weights or "auto", args.device or "auto", say=_say,
                         precision=args.precision or "auto")
    bar = ProgressBar()

    def on_step(s: Step) -> None:
        if args.json:
            emit_json({"type": "progress", "scale": s.scale, "scales": s.scales, "size": s.size,
                       "step": s.step, "total": s.total, "losses": s.losses,
                       "elapsed_s": round(s.elapsed_s, 4)})
        else:
            bar.update(s.step, s.total, f"scale {s.scale + 1}/{s.scales} {s.size}px",
                       format_losses(s.losses))

    try:
        outcome = engine.run(content, styles, opts, on_step=on_step)
    finally:
        bar.close()
    save_image(outcome.image, args.output)
    return {"type": "result", "output": str(args.output), "width": outcome.image.width,
            "height": outcome.image.height, "losses": outcome.losses, "seed": outcome.seed,
            "elapsed_s": round(outcome.elapsed_s, 3), "evaluations": outcome.evaluations,
            "weights": engine.weights.label, "device": str(engine.device)}
