"""`impasto stylize` (a running daemon when one answers, else in-process) and
`impasto weights`. The engine is imported inside the functions that run it, so that
importing this module, like all of impasto.cli, never loads torch."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from impasto import eventmap, events, imagecodec, paths
from impasto.cli.clip import is_clip, print_clip_summary, send_clip, stylize_clip
from impasto.cli.jobargs import CLI_PREVIEW_SIDE, blend_weights, mask_paths, style_source
from impasto.cli.optionflags import engine_options
from impasto.cli.output import check_outputs, print_summary, save_image
from impasto.cli.progress import ProgressBar, emit_event, format_losses
from impasto.cli.remote import cmd_send
from impasto.client import Client
from impasto.errors import BAD_OPTIONS, DaemonUnavailable, ImpastoError
from impasto.options import EngineOptions
from impasto.protocol import check_region_weights


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_stylize(args: argparse.Namespace) -> int:
    clip = is_clip(args.content)
    if clip:  # before any work: a video file is decoded here, with PyAV
        from impasto import extras, videoio

        if videoio.is_video(args.content):
            extras.require("video", f"stylizing the video {args.content.name}", ("av",))
    explicit_local = (args.local or args.weights is not None or args.device is not None
                      or args.precision is not None)
    if not explicit_local:
        with Client(args.address, timeout=args.timeout) as client:
            try:
                client.ping(timeout=0.5)
                found = True
            except DaemonUnavailable:
                found = False
        if found:
            _say(f"impasto: using the daemon at {client.address}")
            if clip:
                print_clip_summary(send_clip(args, engine_options(args)), args.json)
                return 0
            return cmd_send(args)
        # Said, since an --address that did not answer is otherwise seen only in the
        # done line's weights (docs: the CLI falls back to running in this process).
        said = f"no daemon answered at {client.address}: stylizing in this process"
        if args.json:
            emit_event(events.Status(said))
        else:
            _say(f"impasto: {said}")
    if clip:
        from impasto import extras

        # In this process each frame holds to the one before through OpenCV's flow.
        extras.require("video", f"stylizing the clip {args.content.name}", ("cv2",))
        print_clip_summary(stylize_clip(args, engine_options(args)), args.json)
        return 0
    print_summary(stylize_local(args, engine_options(args)), args.json)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    if args.weights_command == "check":
        from impasto.engine import weights as weights_mod

        w = weights_mod.load(args.spec, download=False)
        print(f"weights load: {w.label}")
        return 0
    from impasto.engine.runtime import load_engine

    load_engine(args.spec, "cpu", say=_say)
    return 0


def stylize_local(args: argparse.Namespace, opts: EngineOptions) -> events.Done:
    from impasto.engine.runtime import load_engine
    from impasto.engine.transfer import Step, StyleInput
    from impasto.server.stylelib import StyleLibrary

    preview_path = getattr(args, "preview", None)
    check_outputs(args.output, preview_path, args.content)
    if not args.content.is_file():
        raise ImpastoError(BAD_OPTIONS, f"content image {args.content} does not exist")
    content = imagecodec.read_file(args.content)
    weights = blend_weights(args.style, args.style_weights)
    masks = mask_paths(args.style, args.style_masks)
    check_region_weights(weights, [m is not None for m in masks])
    library = StyleLibrary(paths.styles_dir())
    styles = []
    for i, (s, w, m) in enumerate(zip(args.style, weights, masks)):
        mask = None if m is None else imagecodec.as_mask(imagecodec.read_mask(m), content.size, i)
        source = style_source(s)
        image = (imagecodec.read_file(source).convert("RGB") if isinstance(source, Path)
                 else library.load(source))
        styles.append(StyleInput(image, w, mask))
    engine = load_engine(args.weights or "auto", args.device or "auto", say=_say,
                         precision=args.precision or "auto")
    bar = ProgressBar()
    last_preview: list[float | None] = [None]

    def on_step(s: Step) -> None:
        now = time.monotonic()
        if preview_path is not None and s.snapshot is not None and (
                last_preview[0] is None or now - last_preview[0] >= args.preview_every):
            from impasto.engine.tensors import to_image

            last_preview[0] = now
            save_image(to_image(s.snapshot(CLI_PREVIEW_SIDE)), preview_path)
        if args.json:
            emit_event(eventmap.progress(s))
        else:
            bar.update(s.step, s.total, f"scale {s.scale + 1}/{s.scales} {s.size}px",
                       format_losses(s.losses))

    try:
        outcome = engine.run(content, styles, opts, on_step=on_step)
    finally:
        bar.close()
    save_image(outcome.image, args.output)
    return events.Done(output=str(args.output), width=outcome.image.width,
                       height=outcome.image.height, losses=outcome.losses, seed=outcome.seed,
                       elapsed_s=round(outcome.elapsed_s, 3), evaluations=outcome.evaluations,
                       weights=engine.weights.label, device=str(engine.device),
                       device_detail=engine.dev.describe(), precision=engine.precision,
                       schedule=[dataclasses.asdict(s) for s in outcome.schedule])
