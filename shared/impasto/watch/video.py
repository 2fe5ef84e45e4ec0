"""The video path: a dropped video goes to the daemon as a clip (clipjobs.send_clip).
Its frames are counted once (budgets checked), each stylized frame is kept on disk
(journal.write_frame) and counted in the entry as it comes back, so that after a crash
the clip resumes at the first frame not kept; once every frame is kept, the video is
written from them at the source's timestamps, with its audio (videoio.VideoWriter)."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from PIL import Image

from impasto import videoio
from impasto.client import DaemonUnavailable
from impasto.clipjobs import ClipFrame, send_clip
from impasto.errors import BAD_OPTIONS, IMAGE_TOO_LARGE, STORAGE, ImpastoError
from impasto.fsio import fit_name
from impasto.options import EngineOptions
from impasto.protocol import Priority, StyleRef
from impasto.watch.confine import Parts
from impasto.watch.job import Failed, Gone, Job, Outcome, Retry, Written, verdict
from impasto.watch.journal import MAX_VIDEO_FRAMES, Entry, Journal, State, video_output_for

log = logging.getLogger(__name__)

# Test hook: seconds to wait after each video frame is kept, so a test can kill the
# process mid-clip whatever the machine's speed.
HOLD_FRAME_ENV = "IMPASTO_WATCH_HOLD_FRAME"
# A kept video frame (PNG of a stylized frame) on disk, at most about: the estimate a
# video's disk budget is checked with before its first frame.
FRAME_BYTES_PER_PIXEL = 3
MAX_REDOS = 3  # times one pass may stylize a clip again from a damaged kept frame


class _FrameLost(Exception):
    """A kept video frame gone or unreadable: the clip is stylized again from it."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def frame_pixels(width: int, height: int, settings: dict[str, Any]) -> int:
    """Pixels of one stylized frame of a video of this size under these settings."""
    opts = EngineOptions.from_dict(settings)
    if opts.match_content_size:
        return width * height
    scale = opts.resolved_size() / max(1, width, height)
    return max(1, round(width * scale)) * max(1, round(height * scale))


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def handle(job: Job) -> Outcome:
    """Stylize a video's frames not done yet, then write the video from the kept
    frames."""
    refused = _check_clip(job)
    if refused is not None:
        return refused
    e, journal = job.entry, job.bench.journal
    # Every frame counted must be on disk (the journal folder is private, but a
    # person or a damaged disk may still lose one): from the first one missing, the
    # clip is stylized again rather than retried for ever at the write.
    lost = next((i for i in range(e.frames_done) if not journal.has_frame(e, i)), None)
    if lost is not None:
        _redo_from(job, lost, "is missing")
    # Damaged rather than missing (found only when read, so that a long clip's frames
    # are not all decoded on every start): the same remedy, a few times; frames
    # damaged again each time they are written mean a failing disk, not a bad file.
    for _ in range(MAX_REDOS):
        try:
            return _to_output(job)
        except _FrameLost as ex:
            _redo_from(job, ex.index, "cannot be read")
    return Retry(f"its kept frames were damaged {MAX_REDOS} times over (the disk of "
                 f"{job.bench.root / '.impasto'}?)")


def _check_clip(job: Job) -> Failed | Gone | None:
    """None if the video-named file can go as a clip: its frames are counted once (and
    journalled). A file that is no readable video, or too long, is refused here. GIFs
    are clips whatever their frame count (the daemon reads no GIF as a still): a
    one-frame GIF comes out a one-frame GIF."""
    e, journal = job.entry, job.bench.journal
    if e.clip_frames is not None:
        return None
    try:
        with journal.open_data(e) as f:
            info = videoio.probe(f)
        with journal.open_data(e) as f:
            n = videoio.count_frames(f, MAX_VIDEO_FRAMES)
        if n <= MAX_VIDEO_FRAMES:
            videoio.check_whole(f, info, n)  # refused before any frame is stylized
        px = frame_pixels(info.width, info.height, job.settings)
    except FileNotFoundError:
        if journal.has_data(e):
            raise
        return Gone()
    except ValueError as ex:
        return Failed(str(ex))
    except ImpastoError as ex:
        return Failed(ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}")
    if n > MAX_VIDEO_FRAMES:
        return Failed(f"more than {MAX_VIDEO_FRAMES} frames; a watch folder takes videos "
                      f"of at most {MAX_VIDEO_FRAMES} (split it, or use impasto send)")
    if n == 0:
        return Failed("the video has no frames")
    # Its frames are kept until the video is written: refused now, with a reason,
    # rather than filling the disk hours later.
    need, free = n * px * FRAME_BYTES_PER_PIXEL, journal.free_bytes()
    if need > free:
        return Failed(f"its {n} frames need about {_size(need)} while it runs; "
                      f"{job.bench.root} has {_size(free)} free")
    e.clip_frames = n
    journal.save(e)
    return None


def _to_output(job: Job) -> Outcome:
    e, bench = job.entry, job.bench
    if e.state != State.WRITING and not e.frames_complete:
        unfinished = _frames(job)
        if unfinished is not None:
            return unfinished
        if e.clip_frames is not None and e.frames_done < e.clip_frames:
            log.warning("%s: %d of its %d frames decoded (damaged packets); the video "
                        "has %d", e.rel, e.frames_done, e.clip_frames, e.frames_done)
        e.clip_frames = e.frames_done  # exact now: what the decoder gave
        e.frames_complete = True
        bench.journal.save(e)
    try:
        out = video_output_for(e.rel_parts, job.style)
    except ValueError:
        return Failed(f"the style name {job.style!r} cannot be a folder name")
    with bench.names:
        out = bench.journal.unique(out)
        n = 1
        while out in bench.reserved:  # another video of this name is being written
            stem, dot, suffix = out[-1].rpartition(".")
            out = bench.journal.unique(out[:-1] + (fit_name(f"{stem}-v{n}", dot + suffix),))
            n += 1
        bench.reserved.add(out)
        e.state, e.output = State.WRITING, "/".join(out)
    try:
        bench.journal.save(e)
        bench.journal.write(out, lambda f: _encode(job, out, f),
                            before_rename=bench.before_rename)
    except ImpastoError as ex:
        e.state, e.output = State.CLAIMED, None  # nothing written; the frames stay kept
        if ex.code == STORAGE:  # the disk's fault, not the file's: retried
            raise OSError(errno.EIO, ex.message) from None
        return Failed(ex.message)
    except OSError:
        e.state, e.output = State.CLAIMED, None
        raise
    finally:
        with bench.names:
            bench.reserved.discard(out)
    bench.journal.remove_frames(e)
    return Written(f" ({e.frames_done} frames)")


def _frames(job: Job) -> Failed | Retry | Gone | None:
    """Run the frames from e.frames_done on; None once every frame is kept."""
    e, bench = job.entry, job.bench
    journal = bench.journal
    # A frame kept just before a crash, its count not yet journalled: not redone.
    while journal.has_frame(e, e.frames_done) and e.frames_done < MAX_VIDEO_FRAMES:
        e.frames_done += 1
    _keep_held(job)  # OSError while the disk still refuses them: no frame is sent
    start = e.frames_done
    failure: list[OSError] = []
    hold_frame = float(os.environ.get(HOLD_FRAME_ENV, "0") or 0)

    def keep(f: ClipFrame) -> None:
        buf = io.BytesIO()
        f.image.save(buf, "PNG")
        png = buf.getvalue()
        if not failure:
            try:
                _keep_frame(journal, e, f.index, png, f.event.seed)
                if hold_frame > 0:
                    time.sleep(hold_frame)
                return
            except OSError as ex:  # a storage fault: stop the clip, retry from here
                failure.append(ex)
        # Held for the retry (as a still's result is), so that a full disk does not
        # cost these frames' stylization again.
        bench.held.add(job.kind, e.id, (f.index, png, f.event.seed))

    options = dict(job.settings)
    if e.clip_seed is not None:
        options["seed"] = e.clip_seed
    try:
        with (journal.open_data(e) as source,
              contextlib.closing(videoio.read_frames(source)) as decoded):
            frames = (img for img, _, _ in decoded)
            previous = None
            if start > 0:
                log.info("%s: resuming at frame %d of %s", e.rel, start + 1, e.clip_frames or "?")
                for _ in range(start - 1):
                    if next(frames, None) is None:
                        break
                before = next(frames, None)
                if before is None:
                    return None  # every frame was done (the count was high)
                previous = (before, _kept(journal, e, start - 1))
            clip = send_clip(job.client, _capped(frames, start), [StyleRef(name=job.style)],
                             options, keep, start=start, previous=previous,
                             priority=Priority.BATCH, client_name=bench.client_name,
                             should_cancel=lambda: bench.stopping() or bool(failure))
    except FileNotFoundError:
        if journal.has_data(e):
            raise  # something else was missing: a storage fault
        return Gone()
    except ValueError as ex:
        if failure:
            raise failure[0] from None
        return Failed(str(ex))
    except DaemonUnavailable as ex:
        if failure:
            raise failure[0] from None
        return Retry(str(ex))
    except ImpastoError as ex:
        if failure:
            raise failure[0] from None
        refused = verdict(ex, bench.stopping())
        if isinstance(refused, Failed) and e.frames_done:
            return Failed(f"frame {e.frames_done + 1}: {refused.reason}")
        return refused
    if failure:
        raise failure[0]
    if clip.stopped:  # stopped by the daemon's stop-and-keep: not the file's fault
        return Retry(f"the clip stopped after frame {e.frames_done}")
    if e.frames_done == 0:
        return Failed("the video has no frames")
    return None


def _keep_frame(journal: Journal, e: Entry, index: int, png: bytes, seed: int | None) -> None:
    """A video frame on disk, then counted in the journal."""
    journal.write_frame(e, index, png)
    e.frames_done = index + 1
    if index == 0:
        with Image.open(io.BytesIO(png)) as img:  # the header only
            e.clip_size = list(img.size)
    if e.clip_seed is None:
        e.clip_seed = seed
    journal.save(e)
    log.info("%s: frame %d of %s kept", e.rel, index + 1, e.clip_frames or "?")


def _keep_held(job: Job) -> None:
    """Keep the frames held after a storage fault, in order (OSError while the
    fault lasts; they stay held)."""
    e, held = job.entry, job.bench.held
    pieces = held.pieces(e.id)
    while pieces:
        index, png, seed = pieces[0]
        if index == e.frames_done:
            _keep_frame(job.bench.journal, e, index, png, seed)
        pieces.pop(0)  # kept now, or before (a frame out of line is stylized again)
    held.drop(e.id)


def _redo_from(job: Job, index: int, why: str) -> None:
    e, journal = job.entry, job.bench.journal
    log.warning("%s: kept frame %d %s; stylizing again from it", e.rel, index + 1, why)
    job.bench.held.drop(e.id)
    # Frames first: a crash between the two leaves a count past a missing frame,
    # which the next start redoes from; the other order would let the frames after
    # the damaged one be taken as done.
    journal.remove_frames_from(e, index)
    e.state, e.output, e.frames_done = State.CLAIMED, None, index
    e.frames_complete = False
    if index == 0:
        e.clip_size = None
    journal.save(e)


def _kept(journal: Journal, e: Entry, index: int) -> Image.Image:
    """A kept frame, decoded; _FrameLost if it is gone or damaged (not a file, not
    a PNG, or not the clip's size)."""
    try:
        data = journal.read_frame(e, index)
    except (FileNotFoundError, ValueError):  # ValueError: not a file, or too large
        raise _FrameLost(index) from None
    except OSError as ex:
        if ex.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise _FrameLost(index) from None
        raise  # the disk's fault: retried
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
    except Exception:  # noqa: BLE001 - bytes already read: any failure is the file's
        raise _FrameLost(index) from None
    if e.clip_size is not None and list(img.size) != e.clip_size:
        raise _FrameLost(index)
    return img


def _capped(frames: Iterator[Image.Image], start: int) -> Iterator[Image.Image]:
    """The frames from `start` on, refusing a video longer than its count said by
    more than MAX_VIDEO_FRAMES allows."""
    for i, img in enumerate(frames, start):
        if i >= MAX_VIDEO_FRAMES:
            raise ImpastoError(IMAGE_TOO_LARGE, f"more than {MAX_VIDEO_FRAMES} frames; a watch "
                               f"folder takes videos of at most {MAX_VIDEO_FRAMES}")
        yield img


def _encode(job: Job, out: Parts, f: BinaryIO) -> None:
    """The video from the kept frames, written into f: the source's timestamps,
    frame rate and audio (videoio.VideoWriter)."""
    e, journal = job.entry, job.bench.journal
    writer: videoio.VideoWriter | None = None
    with (journal.open_data(e) as source, journal.open_data(e) as audio,
          contextlib.closing(videoio.read_frames(source)) as decoded):
        try:
            for i, (_, pts, _) in enumerate(decoded):
                if i >= e.frames_done:
                    break
                img = _kept(journal, e, i)
                if writer is None:
                    writer = videoio.VideoWriter(PurePosixPath(out[-1]), audio, img.width,
                                                 img.height, file=f)
                writer.write(img, pts)
        finally:
            if writer is not None:
                writer.close()
