"""`impasto stylize` for clips: a video file in, a video file out (same frame count,
timestamps and audio); a folder or glob of frames in, a folder of frames out; in-process
or on a daemon (clipjobs.py). Importing this never loads torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from impasto import eventmap, events, imagecodec, paths, videoio
from impasto.cli.jobargs import blend_weights, client_for, style_refs, style_source
from impasto.cli.output import FORMATS, random_weights_note, save_image
from impasto.cli.progress import ProgressBar, emit_event
from impasto.clipsend import ClipOutcome
from impasto.errors import BAD_OPTIONS, STORAGE, ImpastoError
from impasto.fsio import unwritable
from impasto.options import EngineOptions
from impasto.protocol import Accepted, Progress


def is_clip(content: Path) -> bool:
    s = str(content)
    return videoio.is_video(content) or content.is_dir() or any(c in s for c in "*?[")


def _check_output(args: argparse.Namespace, video_in: bool, sources: list[Path]) -> None:
    out = Path(args.output)
    try:
        _check_output_path(out, Path(args.content), video_in, sources)
    except OSError as e:  # a name too long, a loop of links: said, not a traceback
        raise ImpastoError(BAD_OPTIONS, f"cannot write {out}: {e.strerror or e}") from None


def _check_output_path(out: Path, content: Path, video_in: bool, sources: list[Path]) -> None:
    if video_in:
        if not videoio.is_video(out):
            raise ImpastoError(BAD_OPTIONS, f"a video in makes a video out: -o {out} needs one of "
                               f"{', '.join(videoio.VIDEO_SUFFIXES)}")
    elif out.exists() and not out.is_dir():
        raise ImpastoError(BAD_OPTIONS, f"frames in make a folder of frames out: {out} is a file")
    elif videoio.is_video(out):
        raise ImpastoError(BAD_OPTIONS, f"frames in make a folder of frames out: -o {out} names "
                           "a video; name a folder")
    elif out.is_dir() and any(s.parent.samefile(out) for s in sources):
        # The frames keep their names: written there, each would replace its source.
        raise ImpastoError(BAD_OPTIONS, f"-o {out} is the folder of the frames being read; "
                           "name another folder")
    if video_in and out.is_dir():
        raise ImpastoError(BAD_OPTIONS, f"-o {out} is a folder; name the video file to write")
    if video_in and out.exists() and os.path.samefile(out, content):
        # The video is written while its source is still read (later frames, the
        # audio at the end): writing over it loses the source and the audio.
        raise ImpastoError(BAD_OPTIONS, f"-o {out} is the video being read; name another file")
    # Tried now, before the first frame: a clip takes minutes, and a folder that cannot
    # take the output (missing under /proc, a file in the way, read-only) must not show
    # only at the end.
    why = unwritable(out, folder=not video_in)
    if why is not None:
        raise ImpastoError(STORAGE, why)
    (out.parent if video_in else out).mkdir(parents=True, exist_ok=True)


class ClipSource:
    """A clip named on the command line: a video file, or a folder or glob of frames."""

    def __init__(self, args: argparse.Namespace) -> None:
        if getattr(args, "style_masks", None) is not None:
            raise ImpastoError(BAD_OPTIONS, "--style-masks is for stills; clips take no regions yet")
        if getattr(args, "preview", None) is not None:
            raise ImpastoError(BAD_OPTIONS, "--preview is for stills; a clip's frames are "
                               "written as they are done")
        self.path = Path(args.content)
        self.video = videoio.is_video(self.path)
        self.files: list[Path] = []
        if self.video:
            if not self.path.is_file():
                raise ImpastoError(BAD_OPTIONS, f"video {self.path} does not exist")
            info = videoio.probe(self.path)
            # A video cut short is refused before any frame is stylized, as a watch
            # folder refuses it: its output would be short with no word of it.
            videoio.check_whole(self.path, info, videoio.count_frames(self.path))
            self.count = info.frames
        else:
            self.files = videoio.frame_files(str(self.path))
            self.count = len(self.files)
        _check_output(args, self.video, self.files)
        self.pts: list[int | None] = []  # each frame's timestamp, as it is read

    def frames(self) -> Iterator[Image.Image]:
        if self.video:
            for img, pts, _ in videoio.read_frames(self.path):
                self.pts.append(pts)
                yield img
        else:
            for f in self.files:
                self.pts.append(None)
                yield imagecodec.read_file(f).convert("RGB")


class ClipSink:
    """Where the stylized frames go: a video at the source's timestamps and with its
    audio, or a folder of frames under the source frames' names."""

    def __init__(self, out: Path, source: ClipSource) -> None:
        self.out = out
        self.source = source
        self.writer: videoio.VideoWriter | None = None
        # A video is written beside its name and renamed into place once whole: a clip
        # cut short (Ctrl-C, a failed frame) leaves no video at -o that looks finished.
        # (Its suffix stays last: it names the container.)
        self.partial = out.with_name(f".{out.stem}.impasto-{os.getpid()}{out.suffix}")
        self.done = 0
        self.size = (0, 0)

    def write(self, index: int, img: Image.Image) -> None:
        self.size = img.size
        if self.source.video:
            if self.writer is None:
                self.writer = videoio.VideoWriter(self.partial, self.source.path, img.width,
                                                  img.height)
            self.writer.write(img, self.source.pts[index])
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            name = self.source.files[index]
            save_image(img, self.out / (name.name if name.suffix.lower() in FORMATS
                                        else name.stem + ".png"))
        self.done += 1

    def finish(self) -> None:
        """Every frame is in: the video takes its name."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            os.replace(self.partial, self.out)

    def close(self) -> None:
        """After finish(), nothing; else (the clip was cut short) the partial video goes."""
        if self.writer is not None:
            try:
                self.writer.close()
            finally:
                self.writer = None
                self.partial.unlink(missing_ok=True)


def _elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _done(sink: ClipSink, t0: float, outcome: ClipOutcome, independent: bool,
          stability: float) -> events.Done:
    """The clip's done line; its times are this command's own clock."""
    elapsed = time.perf_counter() - t0
    return eventmap.clip_done(outcome, output=sink.out, size=sink.size,
                              elapsed_s=round(elapsed, 3),
                              seconds_per_frame=round(elapsed / max(1, sink.done), 3),
                              independent=independent, stability=stability)


def stylize_clip(args: argparse.Namespace, opts: EngineOptions) -> events.Done:
    """A clip in-process."""
    from impasto.engine.runtime import load_engine
    from impasto.engine.transfer import StyleInput
    from impasto.engine.video import FrameStep, stylize_frames
    from impasto.server.stylelib import StyleLibrary

    source = ClipSource(args)
    library = StyleLibrary(paths.styles_dir())
    styles = []
    for s, w in zip(args.style, blend_weights(args.style, args.style_weights)):
        found = style_source(s)
        styles.append(StyleInput(imagecodec.read_file(found).convert("RGB")
                                 if isinstance(found, Path) else library.load(found), w))
    engine = load_engine(args.weights or "auto", args.device or "auto",
                         say=lambda m: print(m, file=sys.stderr),
                         precision=args.precision or "auto")
    bar = ProgressBar()
    t0 = time.perf_counter()

    def on_step(fs: FrameStep) -> None:
        if args.json:
            emit_event(eventmap.progress(fs.step, frame=fs.frame, frames=fs.frames))
        else:
            total = fs.frames or 0
            bar.update(fs.frame + (fs.step.step / max(1, fs.step.total)), total or fs.frame + 1,
                       f"frame {fs.frame + 1}/{total or '?'}", f"{fs.step.step}/{fs.step.total}")

    sink = ClipSink(Path(args.output), source)
    seed = opts.seed if opts.seed is not None else 0
    try:
        for i, outcome in enumerate(stylize_frames(engine, source.frames(), styles, opts,
                                                   independent=args.independent,
                                                   count=source.count, on_step=on_step)):
            seed = outcome.seed  # the one the clip ran with (drawn when none was given)
            sink.write(i, outcome.image)
            if args.json:
                emit_event(events.FrameDone(frame=i, frames=source.count, elapsed_s=_elapsed(t0)))
        sink.finish()
    finally:
        bar.close()
        sink.close()
    ran = ClipOutcome(frames=sink.done, seed=seed,
                      weights=engine.weights.label, elapsed_s=time.perf_counter() - t0)
    return _done(sink, t0, ran, bool(args.independent), opts.stability)


def send_clip(args: argparse.Namespace, opts: EngineOptions) -> events.Done:
    """A clip on a running daemon: clipjobs sends it in requests that continue each
    other; frames are written as they come back. Ctrl-C cancels the running request."""
    from impasto.clipjobs import ClipFrame, send_clip_parts
    from impasto.clipjobs import send_clip as send_frames

    source = ClipSource(args)
    styles = style_refs(args.style, args.style_weights, None)
    options = opts.changed()
    if args.independent:
        options["stability"] = 0.0  # every frame on its own: the daemon's baseline
    bar = ProgressBar()
    t0 = time.perf_counter()
    sink = ClipSink(Path(args.output), source)
    total = source.count

    parts = getattr(args, "split", None) or 1

    def on_frame(f: ClipFrame) -> None:
        sink.write(f.index, f.image)
        if args.json:
            emit_event(eventmap.frame_done(f.event, index=f.index, frames=total,
                                           elapsed_s=_elapsed(t0)))
        elif parts > 1:  # parts report no shared step count: the bar counts frames
            bar.update(f.index + 1, total or f.index + 1, f"frame {f.index + 1}/{total or '?'}",
                       f"{parts} parts")

    def on_progress(index: int, p: Progress) -> None:
        if args.json:
            emit_event(eventmap.progress(p, frame=index, frames=total))
        else:
            bar.update(index + p.step / max(1, p.total), total or index + 1,
                       f"frame {index + 1}/{total or '?'}", f"{p.step}/{p.total}")

    def on_accepted(a: Accepted) -> None:  # one a request: a long clip is several
        if args.json:
            emit_event(eventmap.accepted(a))

    with client_for(args) as client:
        client.ping()
        try:
            if parts > 1:
                # The parts run side by side, each on its own connection: the frames
                # are all read first (a clip in parts is one for a cluster's memory).
                # Progress lines for scripts only: the bar counts frames (on_frame).
                outcome = send_clip_parts(lambda: client_for(args), list(source.frames()), styles,
                                          options, on_frame, parts=parts, client_name="cli",
                                          on_accepted=on_accepted,
                                          on_progress=on_progress if args.json else None,
                                          priority=getattr(args, "priority", "interactive"))
            else:
                outcome = send_frames(client, source.frames(), styles, options, on_frame,
                                      on_progress=on_progress, client_name="cli",
                                      on_accepted=on_accepted,
                                      priority=getattr(args, "priority", "interactive"))
            sink.finish()
        finally:
            bar.close()
            sink.close()
    return _done(sink, t0, outcome, bool(args.independent),
                 float(options.get("stability", opts.stability)))


def print_clip_summary(done: events.Done, as_json: bool) -> None:
    if as_json:
        emit_event(done)
        return
    print(f"wrote {done.output}: {done.frames} frames in {done.elapsed_s or 0:.1f} s "
          f"({done.seconds_per_frame or 0:.1f} s a frame"
          + (", each on its own" if done.independent else "") + ")")
    random_weights_note(done)
