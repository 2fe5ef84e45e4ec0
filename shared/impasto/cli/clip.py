"""`impasto stylize` for clips: a video file in, a video file out (same frame count,
timestamps and audio); a folder or glob of frames in, a folder of frames out. Always
in-process for now (the daemon has no video job yet). Importing this never loads torch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from impasto import imagecodec, paths, videoio
from impasto.cli.output import FORMATS, save_image
from impasto.cli.progress import ProgressBar
from impasto.cli.remote import blend_weights, looks_like_path
from impasto.errors import BAD_OPTIONS, STORAGE, ImpastoError
from impasto.options import EngineOptions


def is_clip(content: Path) -> bool:
    s = str(content)
    return videoio.is_video(content) or content.is_dir() or any(c in s for c in "*?[")


def _check_output(args: argparse.Namespace, video_in: bool) -> None:
    out = Path(args.output)
    if video_in:
        if not videoio.is_video(out):
            raise ImpastoError(BAD_OPTIONS, f"a video in makes a video out: -o {out} needs one of "
                               f"{', '.join(videoio.VIDEO_SUFFIXES)}")
    elif out.exists() and not out.is_dir():
        raise ImpastoError(BAD_OPTIONS, f"frames in make a folder of frames out: {out} is a file")
    parent = out.parent if video_in else out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ImpastoError(STORAGE, f"cannot write {out}: {parent} is not a writable folder")


def stylize_clip(args: argparse.Namespace, opts: EngineOptions) -> dict[str, Any]:
    from impasto.engine.runtime import load_engine
    from impasto.engine.transfer import StyleInput
    from impasto.engine.video import FrameStep, stylize_frames
    from impasto.server.stylelib import StyleLibrary

    if getattr(args, "style_masks", None) is not None:
        raise ImpastoError(BAD_OPTIONS, "--style-masks is for stills; clips take no regions yet")
    video_in = videoio.is_video(args.content)
    _check_output(args, video_in)
    if video_in:
        if not args.content.is_file():
            raise ImpastoError(BAD_OPTIONS, f"video {args.content} does not exist")
        info = videoio.probe(args.content)
        count = info.frames
        source = ((img, pts) for img, pts, _ in videoio.read_frames(args.content))
    else:
        files = videoio.frame_files(str(args.content))
        count = len(files)
        source = ((imagecodec.read_file(f).convert("RGB"), None) for f in files)
    library = StyleLibrary(paths.styles_dir())
    styles = []
    for s, w in zip(args.style, blend_weights(args.style, args.style_weights)):
        p = Path(s).expanduser()
        if p.is_file():
            styles.append(StyleInput(imagecodec.read_file(p).convert("RGB"), w))
        elif looks_like_path(s):
            raise ImpastoError(BAD_OPTIONS, f"style image {s} does not exist")
        else:
            styles.append(StyleInput(library.load(s), w))
    engine = load_engine(args.weights or "auto", args.device or "auto",
                         say=lambda m: print(m, file=__import__("sys").stderr),
                         precision=args.precision or "auto")
    bar = ProgressBar()
    t0 = time.perf_counter()
    pts_list: list[int | None] = []
    frames_iter = iter(source)

    def frames():
        for img, pts in frames_iter:
            pts_list.append(pts)
            yield img

    def on_step(fs: FrameStep) -> None:
        if not args.json:
            total = fs.frames or 0
            bar.update(fs.frame + (fs.step.step / max(1, fs.step.total)), total or fs.frame + 1,
                       f"frame {fs.frame + 1}/{total or '?'}", f"{fs.step.step}/{fs.step.total}")

    writer = None
    out = Path(args.output)
    names = [] if video_in else files
    done = 0
    try:
        for i, outcome in enumerate(stylize_frames(engine, frames(), styles, opts,
                                                   independent=args.independent, count=count,
                                                   on_step=on_step)):
            if video_in:
                if writer is None:
                    writer = videoio.VideoWriter(out, args.content, outcome.image.width,
                                                 outcome.image.height)
                writer.write(outcome.image, pts_list[i])
            else:
                out.mkdir(parents=True, exist_ok=True)
                name = names[i]
                target = out / (name.name if name.suffix.lower() in FORMATS else name.stem + ".png")
                save_image(outcome.image, target)
            done += 1
            if args.json:
                print(json.dumps({"event": "frame", "frame": i, "frames": count,
                                  "elapsed_s": round(time.perf_counter() - t0, 3)}), flush=True)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return {"type": "result", "output": str(out), "frames": done,
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "seconds_per_frame": round((time.perf_counter() - t0) / max(1, done), 3),
            "weights": engine.weights.label, "independent": bool(args.independent),
            "stability": opts.stability}


def print_clip_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": "done", **summary}), flush=True)
        return
    print(f"wrote {summary['output']}: {summary['frames']} frames in {summary['elapsed_s']:.1f} s "
          f"({summary['seconds_per_frame']:.1f} s a frame"
          + (", each on its own" if summary["independent"] else "") + ")")
    if str(summary.get("weights", "")).startswith("random"):
        print("note: made with RANDOM weights (--weights random): a demo, not art")
