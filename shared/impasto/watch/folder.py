"""One watched folder: detect complete files, claim them, send them to the daemon as
batch jobs, and file the results, durably at every step (journal.py).

Two kinds of trouble, kept apart:
  - the file's fault (not an image, unknown style, bad settings): a verdict; the file
    goes to failed/ with the reason;
  - the world's fault (daemon away, disk full, read-only, permissions, I/O errors): not
    a verdict; the file stays claimed and its step is retried with back-off until the
    fault clears, and `status` says what is wrong meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import io
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from PIL import Image

from impasto import videoio
from impasto.client import Client, DaemonUnavailable
from impasto.clipjobs import ClipFrame, send_clip
from impasto.errors import (
    BAD_OPTIONS,
    IMAGE_TOO_LARGE,
    QUEUE_FULL,
    SHUTDOWN,
    STORAGE,
    ImpastoError,
)
from impasto.fsio import fit_name
from impasto.keys import ClientKeys
from impasto.options import EngineOptions
from impasto.protocol import MAX_MESSAGE_BYTES, ImageRef, Priority, StyleRef, Stylize
from impasto.watch.confine import Parts
from impasto.watch.detect import Detector
from impasto.watch.journal import (
    MAX_VIDEO_FRAMES,
    Entry,
    Journal,
    State,
    is_video_name,
    output_for,
    report_for,
    video_output_for,
)
from impasto.watch.layout import DONE, FAILED, JOURNAL, MAX_DEPTH, OUT, Layout

log = logging.getLogger(__name__)

# Worth retrying: the daemon is away or busy, not the file's fault.
TRANSIENT = {SHUTDOWN, QUEUE_FULL}
# Seconds all folders together get to stop: a daemon asked to stop exits within a few
# seconds (a service manager's SIGKILL comes after its own timeout, often 10 s).
STOP_S = 3.0
INPUT_LIMIT = MAX_MESSAGE_BYTES - 1024 * 1024  # room for the request around the image
# Test hook: seconds to wait inside the output write window (temporary file written,
# not yet renamed), so a test can kill the process exactly there.
HOLD_ENV = "IMPASTO_WATCH_HOLD_WRITE"
# Test hook: seconds to wait after each video frame is kept, so a test can kill the
# process mid-clip whatever the machine's speed.
HOLD_FRAME_ENV = "IMPASTO_WATCH_HOLD_FRAME"
# Results whose write met a storage fault are kept for the retry, so that a full disk
# does not cost a stylization per back-off; past this many bytes they are recomputed.
KEEP_RESULTS_BYTES = 256 * 2**20
# Sender threads when the daemon says how many files it can take at once (in_flight):
# the most files one folder ever has in flight, whatever the cluster's size.
MAX_SENDERS = 32
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


def backoff(attempt: int, cap: float) -> float:
    return min(cap, 0.5 * 2 ** min(attempt, 8))


class FolderWatcher:
    def __init__(self, root: Path, address: str, poll: bool = False, settle: float = 2.0,
                 senders: int = 2, keys: ClientKeys | None = None, timeout: float = 5.0,
                 in_flight: Callable[[], int] | None = None) -> None:
        self.layout = Layout(Path(root).resolve())
        self.address = address
        self.detector = Detector(self.layout, poll=poll, settle=settle)
        self.keys = keys
        self.timeout = timeout
        self.work: queue.Queue[Entry] = queue.Queue()
        # With in_flight (how many jobs the daemon's workers can run now), the folder
        # keeps that many files at the daemon, up to MAX_SENDERS; without it, `senders`.
        self.capacity = in_flight
        self.senders = MAX_SENDERS if in_flight is not None else senders
        self._admitted = 0
        # Counts for status, kept as the work happens, under _lock: a file is pending
        # in the detector until claimed, then in flight until filed; working ones are
        # in flight too.
        self.working = self.inflight = 0
        self.done = self.failed = 0
        self.set_aside: list[str] = []
        self.fault: str | None = None  # the storage or daemon trouble being retried (_lock)
        self._later: list[tuple[float, int, Entry]] = []  # retries, by due time
        self._results: dict[str, bytes] = {}  # entry id -> result awaiting its write
        self._tick = itertools.count()
        self._claim_faults = 0
        self._lock = threading.Lock()
        self._names = threading.Lock()  # output and done/failed names
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._hold = float(os.environ.get(HOLD_ENV, "0") or 0)
        self._hold_frame = float(os.environ.get(HOLD_FRAME_ENV, "0") or 0)
        self._reserved: set[Parts] = set()  # video outputs being written (_names)
        # Video frames that came back while the disk refused them, kept for the retry
        # as results are: entry id -> [(index, png, seed)], in order.
        self._frames_held: dict[str, list[tuple[int, bytes, int | None]]] = {}

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> FolderWatcher:
        tree = self.layout.create()
        self.journal = Journal(tree)
        for top in (OUT, DONE, FAILED, JOURNAL):
            for p in self.journal.remove_temps(top):
                log.info("removed %s, left by a crash inside a write", "/".join(p))
        self.done = self._count(DONE)
        self.failed = self._count(FAILED)
        self.recover()
        self.detector.start()
        self._spawn(self._dispatch, "watch-dispatch")
        for i in range(self.senders):
            self._spawn(self._send_loop, f"watch-send-{i}")
        log.info("watching %s (%s)", self.layout.inbox, "polling" if self.detector.poll else "events")
        return self

    def _spawn(self, fn: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            # A watcher thread must not die: a bug in one step is logged, shown in
            # status, and the loop goes on.
            while not self._stop.is_set():
                try:
                    fn()
                except Exception as ex:  # noqa: BLE001
                    log.exception("%s: watcher thread %s failed; restarting it", self.layout.root, name)
                    self._set_fault(f"thread {name} failed: {type(ex).__name__}: {ex}")
                    self._stop.wait(1.0)

        t = threading.Thread(target=guarded, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def request_stop(self) -> None:
        """Stop taking files and cancel what is in flight, without waiting: the daemon
        calls this as its shutdown begins, while its socket still answers the cancels
        (asked later, each sender would wait out its client timeout on a closed socket)."""
        self._stop.set()

    def stop(self, deadline: float | None = None) -> None:
        """Stop and join the threads by `deadline` (time.monotonic()), one budget shared
        by every thread and folder rather than a wait per thread."""
        self._stop.set()
        deadline = time.monotonic() + STOP_S if deadline is None else deadline
        self.detector.stop(max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        late = [t.name for t in self._threads if t.is_alive()]
        if late:
            # Daemon threads: the process may exit; what they held stays claimed in the
            # journal and the next start resumes it.
            log.warning("%s: threads still busy at shutdown: %s", self.layout.root, ", ".join(late))
        self.layout.close()

    def _set_fault(self, problem: str | None) -> None:
        """The trouble being retried, for status; threads report it, so under the lock."""
        with self._lock:
            self.fault = problem

    def _count(self, top: Parts) -> int:
        """Files in done/ or failed/ at start; kept up to date as work happens after."""
        return self.journal.count(top)

    def counts(self) -> dict[str, Any]:
        with self._lock:
            pending = self.detector.pending() + self.inflight - self.working
            working, done, failed = self.working, self.done, self.failed
            problem = self.fault
        dead = [t.name for t in self._threads if not t.is_alive() and not self._stop.is_set()]
        if dead:
            problem = f"watcher threads stopped: {', '.join(dead)}"
        c: dict[str, Any] = {"folder": str(self.layout.root),
                             "pending": pending, "working": working, "done": done,
                             "failed": failed}
        if problem:
            c["problem"] = problem
        if self.set_aside:
            c["set_aside"] = len(self.set_aside)
        return c

    # --- recovery --------------------------------------------------------------------------
    def recover(self) -> None:
        """Replay each journal entry from the step it reached before a crash."""
        entries, rejected = self.journal.load()
        for name, why in rejected:
            log.error("%s: journal entry %s set aside as %s.rejected, not acted on: %s",
                      self.layout.root, name, name, why)
            self.set_aside.append(name)
        # Frames of a video whose entry is gone (or set aside): nothing will use them.
        for stray in self.journal.stray_frames({e.id for e in entries}):
            try:
                self.journal.remove_frames(stray)
            except OSError as ex:  # left for the next start; nothing reads them
                log.warning("%s: cannot remove the kept frames %s.frames: %s", self.layout.root,
                            stray, ex)
        for e in entries:
            has_data = self.journal.has_data(e)
            if e.state == State.QUEUED and not has_data:
                self.journal.remove(e)  # still in in/: the scan picks it up again
                continue
            if not has_data:
                if e.state not in (State.FINISHING, State.FAILING):
                    log.warning("journal entry %s for %s has no data; dropping it", e.id, e.rel)
                self.journal.remove(e)  # else the move was done; only the entry was left
                continue
            if e.state == State.QUEUED:
                e.state = State.CLAIMED  # the claim's move happened; its journal update did not
                self.journal.save(e)
            log.info("recovered %s (%s)", e.rel, e.state)
            self.inflight += 1
            self.work.put(e)

    # --- detection -> claim ------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            for path in self.detector.ready():
                try:
                    self._claim(path)
                    self._claim_faults = 0
                except OSError as ex:
                    self._claim_faults += 1
                    delay = backoff(self._claim_faults, 10.0)
                    self._set_fault(f"cannot claim files: {ex} (retrying)")
                    log.warning("%s: cannot claim %s: %s; again in %.1f s", self.layout.root,
                                path.name, ex, delay)
                    self.detector.again(path, delay)
            self._release_due()
            self._stop.wait(0.2)

    def _claim(self, path: Path) -> None:
        rel = self.layout.candidate(path)
        if rel is None:
            self.detector.taken(path)
            return
        e = self.journal.new(rel, self.layout.style_of(rel))
        self.journal.save(e)
        try:
            self.journal.claim(rel, e)
        except OSError as ex:
            self.journal.remove(e)
            if isinstance(ex, (FileNotFoundError, NotADirectoryError)) or ex.errno == errno.ELOOP:
                # Gone, or a folder on the way swapped for a symlink (ELOOP): not ours.
                log.warning("%s: %s vanished or moved before it could be taken", self.layout.root,
                            "/".join(rel))
                self.detector.taken(path)
                return
            raise
        with self._lock:
            self.detector.taken(path)
            self.inflight += 1
        e.state = State.CLAIMED
        try:
            self.journal.save(e)
        except OSError:
            # The data is in the journal folder: recovery treats a queued entry with
            # data as claimed, and the next step saves the entry again.
            log.warning("%s: could not record the claim of %s yet", self.layout.root, e.rel)
        self._set_fault(None)
        self.work.put(e)

    def _later_put(self, e: Entry, delay: float) -> None:
        with self._lock:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._tick), e))

    def _release_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            while self._later and self._later[0][0] <= now:
                self.work.put(heapq.heappop(self._later)[2])

    # --- claimed -> daemon -> filed ------------------------------------------------------------
    def _send_loop(self) -> None:
        client = Client(self.address, timeout=self.timeout, keys=self.keys)
        try:
            while not self._stop.is_set():
                if not self._admit():
                    self._stop.wait(0.2)
                    continue
                try:
                    e = self.work.get(timeout=0.2)
                except queue.Empty:
                    self._unadmit()
                    continue
                with self._lock:
                    self.working += 1
                try:
                    self._step(client, e)
                except OSError as ex:
                    if ex.errno == errno.ENAMETOOLONG:  # the name's fault, not the disk's
                        self._fail_or_retry(e, f"the name is too long to file: {ex.strerror}")
                    else:
                        self._storage_fault(e, ex)
                except Exception as ex:  # noqa: BLE001 - keep the folder alive
                    log.exception("unexpected failure on %s", e.rel)
                    self._fail_or_retry(e, f"internal error: {type(ex).__name__}: {ex}")
                finally:
                    with self._lock:
                        self.working -= 1
                    self._unadmit()
        finally:
            client.close()

    def _admit(self) -> bool:
        """A sender may take a file while fewer than in_flight() are being worked on."""
        if self.capacity is None:
            return True
        try:
            limit = max(1, self.capacity())
        except Exception:  # noqa: BLE001 - a broken count must not stop the folder
            limit = 1
        with self._lock:
            if self._admitted >= limit:
                return False
            self._admitted += 1
            return True

    def _unadmit(self) -> None:
        if self.capacity is not None:
            with self._lock:
                self._admitted -= 1

    def _fail_or_retry(self, e: Entry, reason: str) -> None:
        try:
            self._fail(e, reason)
        except OSError as ex:
            self._storage_fault(e, ex)

    def _step(self, client: Client, e: Entry) -> None:
        """Take an entry on from the step it reached (first try, retry or recovery)."""
        if e.state in (State.FINISHING, State.FAILING):
            self._complete_move(e)
        elif (e.state == State.WRITING and e.output
              and self.journal.exists(e.output_parts)):
            self._finish(e)
        else:
            self._process(client, e)

    def _storage_fault(self, e: Entry, ex: OSError) -> None:
        if self._stop.is_set():
            return  # stays claimed in the journal; the next start resumes it
        e.attempts += 1
        delay = backoff(e.attempts, 10.0)
        self._set_fault(f"storage: {ex} (retrying)")
        log.warning("%s: %s: %s; retrying in %.1f s", self.layout.root, e.rel, ex, delay)
        self._later_put(e, delay)

    def _process(self, client: Client, e: Entry) -> None:
        rel = e.rel_parts
        if len(rel) > MAX_DEPTH + 1:
            self._fail(e, f"{len(rel) - 1} folders deep below in/; the limit is {MAX_DEPTH}")
            return
        try:
            settings = self.layout.settings(e.style)
        except ImpastoError as ex:
            self._fail(e, ex.message)
            return
        style = settings.pop("style", None)
        if not style or not isinstance(style, str):
            self._fail(e, f"no style for {e.rel}: drop files into in/<style>/ (a style of the "
                       "library), or set style = \"NAME\" in in/impasto.toml")
            return
        if is_video_name(e.rel):
            if self._is_clip(e, settings):
                self._process_video(client, e, style, settings)
            return
        try:
            data = self.journal.read_data(e, INPUT_LIMIT)
        except FileNotFoundError:
            log.warning("%s: the claimed data of %s is gone; dropping its entry", self.layout.root, e.rel)
            self.journal.remove(e)
            with self._lock:
                self.inflight -= 1
            return
        except ValueError as ex:
            self._fail(e, str(ex))
            return
        image = self._results.pop(e.id, None)
        if image is None:
            image = self._stylize(client, e, data, style, settings)
            if image is None:
                return
        try:
            out = output_for(rel, style)
        except ValueError:
            self._fail(e, f"the style name {style!r} cannot be a folder name")
            return
        # Choosing a free name and taking it must be one step: two senders finishing
        # a.png and a.jpg of one style would otherwise both pick out/<style>/a.png.
        with self._names:
            out = self.journal.unique(out)
            e.state, e.output = State.WRITING, "/".join(out)
            try:
                self.journal.save(e)
                self.journal.write(out, image, before_rename=self._held)
            except OSError:
                e.state, e.output = State.CLAIMED, None  # nothing written
                if sum(map(len, self._results.values())) + len(image) <= KEEP_RESULTS_BYTES:
                    self._results[e.id] = image
                raise
        self._finish(e)
        log.info("%s -> %s", e.rel, e.output)

    def _stylize(self, client: Client, e: Entry, data: bytes, style: str,
                 settings: dict[str, Any]) -> bytes | None:
        """The result's bytes; None when the entry was failed or set to retry."""
        request = Stylize(content=ImageRef(data, "encoded"), styles=[StyleRef(name=style)],
                          options=settings, priority=Priority.BATCH,
                          client=f"watch:{self.layout.root.name}")
        try:
            result = client.stylize(request, should_cancel=self._stop.is_set)
        except DaemonUnavailable as ex:
            self._retry(e, str(ex))
            return None
        except ImpastoError as ex:
            if ex.code in TRANSIENT or (ex.code == "cancelled" and self._stop.is_set()):
                self._retry(e, ex.message)
            else:
                reason = ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}"
                self._fail(e, reason)
            return None
        assert result.image is not None
        return result.image.data

    # --- videos ------------------------------------------------------------------------------
    def _is_clip(self, e: Entry, settings: dict[str, Any]) -> bool:
        """Whether a video-named file can go as a clip: its frames are counted once (and
        journalled). A file that is no readable video, or too long, is failed here
        (then False). GIFs are clips whatever their frame count (the daemon reads no
        GIF as a still): a one-frame GIF comes out a one-frame GIF."""
        if e.clip_frames is None:
            try:
                with self.journal.open_data(e) as f:
                    info = videoio.probe(f)
                with self.journal.open_data(e) as f:
                    n = videoio.count_frames(f, MAX_VIDEO_FRAMES)
                if n <= MAX_VIDEO_FRAMES:
                    videoio.check_whole(f, info, n)  # refused before any frame is stylized
                px = frame_pixels(info.width, info.height, settings)
            except FileNotFoundError:
                if self.journal.has_data(e):
                    raise
                self._gone(e)
                return False
            except ValueError as ex:
                self._fail(e, str(ex))
                return False
            except ImpastoError as ex:
                self._fail(e, ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}")
                return False
            if n > MAX_VIDEO_FRAMES:
                self._fail(e, f"more than {MAX_VIDEO_FRAMES} frames; a watch folder takes videos "
                           f"of at most {MAX_VIDEO_FRAMES} (split it, or use impasto send)")
                return False
            if n == 0:
                self._fail(e, "the video has no frames")
                return False
            # Its frames are kept until the video is written: refused now, with a reason,
            # rather than filling the disk hours later.
            need, free = n * px * FRAME_BYTES_PER_PIXEL, self.journal.free_bytes()
            if need > free:
                self._fail(e, f"its {n} frames need about {_size(need)} while it runs; "
                           f"{self.layout.root} has {_size(free)} free")
                return False
            e.clip_frames = n
            self.journal.save(e)
        return True

    def _process_video(self, client: Client, e: Entry, style: str,
                       settings: dict[str, Any]) -> None:
        """Stylize a video's frames not done yet, each kept (journal.write_frame) and
        counted in the entry as it comes back, then write the video from the kept frames
        at the source's timestamps, with its audio."""
        # Every frame counted must be on disk (the journal folder is private, but a
        # person or a damaged disk may still lose one): from the first one missing, the
        # clip is stylized again rather than retried for ever at the write.
        lost = next((i for i in range(e.frames_done) if not self.journal.has_frame(e, i)), None)
        if lost is not None:
            self._redo_from(e, lost, "is missing")
        # Damaged rather than missing (found only when read, so that a long clip's frames
        # are not all decoded on every start): the same remedy, a few times; frames
        # damaged again each time they are written mean a failing disk, not a bad file.
        for _ in range(MAX_REDOS):
            try:
                self._video_to_output(client, e, style, settings)
                return
            except _FrameLost as ex:
                self._redo_from(e, ex.index, "cannot be read")
        self._retry(e, f"its kept frames were damaged {MAX_REDOS} times over (the disk of "
                    f"{self.layout.root / '.impasto'}?)")

    def _redo_from(self, e: Entry, index: int, why: str) -> None:
        log.warning("%s: kept frame %d %s; stylizing again from it", e.rel, index + 1, why)
        self._frames_held.pop(e.id, None)
        # Frames first: a crash between the two leaves a count past a missing frame,
        # which the next start redoes from; the other order would let the frames after
        # the damaged one be taken as done.
        self.journal.remove_frames_from(e, index)
        e.state, e.output, e.frames_done = State.CLAIMED, None, index
        e.frames_complete = False
        if index == 0:
            e.clip_size = None
        self.journal.save(e)

    def _kept(self, e: Entry, index: int) -> Image.Image:
        """A kept frame, decoded; _FrameLost if it is gone or damaged (not a file, not
        a PNG, or not the clip's size)."""
        try:
            data = self.journal.read_frame(e, index)
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

    def _video_to_output(self, client: Client, e: Entry, style: str,
                         settings: dict[str, Any]) -> None:
        if e.state != State.WRITING and not e.frames_complete:
            if not self._video_frames(client, e, style, settings):
                return
            if e.clip_frames is not None and e.frames_done < e.clip_frames:
                log.warning("%s: %d of its %d frames decoded (damaged packets); the video "
                            "has %d", e.rel, e.frames_done, e.clip_frames, e.frames_done)
            e.clip_frames = e.frames_done  # exact now: what the decoder gave
            e.frames_complete = True
            self.journal.save(e)
        try:
            out = video_output_for(e.rel_parts, style)
        except ValueError:
            self._fail(e, f"the style name {style!r} cannot be a folder name")
            return
        with self._names:
            out = self.journal.unique(out)
            n = 1
            while out in self._reserved:  # another video of this name is being written
                stem, dot, suffix = out[-1].rpartition(".")
                out = self.journal.unique(out[:-1] + (fit_name(f"{stem}-v{n}", dot + suffix),))
                n += 1
            self._reserved.add(out)
            e.state, e.output = State.WRITING, "/".join(out)
        try:
            self.journal.save(e)
            self.journal.write(out, lambda f: self._encode(e, out, f), before_rename=self._held)
        except ImpastoError as ex:
            e.state, e.output = State.CLAIMED, None  # nothing written; the frames stay kept
            if ex.code == STORAGE:  # the disk's fault, not the file's: retried
                raise OSError(errno.EIO, ex.message) from None
            self._fail(e, ex.message)
            return
        except OSError:
            e.state, e.output = State.CLAIMED, None
            raise
        finally:
            with self._names:
                self._reserved.discard(out)
        self.journal.remove_frames(e)
        self._finish(e)
        log.info("%s -> %s (%d frames)", e.rel, e.output, e.frames_done)

    def _video_frames(self, client: Client, e: Entry, style: str,
                      settings: dict[str, Any]) -> bool:
        """Run the frames from e.frames_done on; True once every frame is kept."""
        # A frame kept just before a crash, its count not yet journalled: not redone.
        while self.journal.has_frame(e, e.frames_done) and e.frames_done < MAX_VIDEO_FRAMES:
            e.frames_done += 1
        self._keep_held(e)  # OSError while the disk still refuses them: no frame is sent
        start = e.frames_done
        failure: list[OSError] = []

        def keep(f: ClipFrame) -> None:
            buf = io.BytesIO()
            f.image.save(buf, "PNG")
            png = buf.getvalue()
            if not failure:
                try:
                    self._keep_frame(e, f.index, png, f.event.seed)
                    if self._hold_frame > 0:
                        time.sleep(self._hold_frame)
                    return
                except OSError as ex:  # a storage fault: stop the clip, retry from here
                    failure.append(ex)
            # Held for the retry (as a still's result is), so that a full disk does not
            # cost these frames' stylization again.
            held = self._frames_held.setdefault(e.id, [])
            total = sum(len(x[1]) for h in self._frames_held.values() for x in h)
            if total + len(png) <= KEEP_RESULTS_BYTES:
                held.append((f.index, png, f.event.seed))

        options = dict(settings)
        if e.clip_seed is not None:
            options["seed"] = e.clip_seed
        try:
            with (self.journal.open_data(e) as source,
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
                        return True  # every frame was done (the count was high)
                    previous = (before, self._kept(e, start - 1))
                outcome = send_clip(client, self._capped(frames, start), [StyleRef(name=style)],
                                    options, keep, start=start, previous=previous,
                                    priority=Priority.BATCH,
                                    client_name=f"watch:{self.layout.root.name}",
                                    should_cancel=lambda: self._stop.is_set() or bool(failure))
        except FileNotFoundError:
            if self.journal.has_data(e):
                raise  # something else was missing: a storage fault
            self._gone(e)
            return False
        except ValueError as ex:
            if failure:
                raise failure[0] from None
            self._fail(e, str(ex))
            return False
        except DaemonUnavailable as ex:
            if failure:
                raise failure[0] from None
            self._retry(e, str(ex))
            return False
        except ImpastoError as ex:
            if failure:
                raise failure[0] from None
            if ex.code in TRANSIENT or (ex.code == "cancelled" and self._stop.is_set()):
                self._retry(e, ex.message)
            else:
                reason = ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}"
                if e.frames_done:
                    reason = f"frame {e.frames_done + 1}: {reason}"
                self._fail(e, reason)
            return False
        if failure:
            raise failure[0]
        if outcome.stopped:  # stopped by the daemon's stop-and-keep: not the file's fault
            self._retry(e, f"the clip stopped after frame {e.frames_done}")
            return False
        if e.frames_done == 0:
            self._fail(e, "the video has no frames")
            return False
        return True

    def _keep_frame(self, e: Entry, index: int, png: bytes, seed: int | None) -> None:
        """A video frame on disk, then counted in the journal."""
        self.journal.write_frame(e, index, png)
        e.frames_done = index + 1
        if index == 0:
            with Image.open(io.BytesIO(png)) as img:  # the header only
                e.clip_size = list(img.size)
        if e.clip_seed is None:
            e.clip_seed = seed
        self.journal.save(e)
        log.info("%s: frame %d of %s kept", e.rel, index + 1, e.clip_frames or "?")

    def _keep_held(self, e: Entry) -> None:
        """Keep the frames held after a storage fault, in order (OSError while the
        fault lasts; they stay held)."""
        held = self._frames_held.get(e.id, [])
        while held:
            index, png, seed = held[0]
            if index == e.frames_done:
                self._keep_frame(e, index, png, seed)
            held.pop(0)  # kept now, or before (a frame out of line is stylized again)
        self._frames_held.pop(e.id, None)

    def _gone(self, e: Entry) -> None:
        """A video's claimed data vanished (by hand, from the private journal)."""
        log.warning("%s: the claimed data of %s is gone; dropping its entry", self.layout.root, e.rel)
        self._frames_held.pop(e.id, None)
        self.journal.remove_frames(e)
        self.journal.remove(e)
        with self._lock:
            self.inflight -= 1

    @staticmethod
    def _capped(frames: Iterator[Image.Image], start: int) -> Iterator[Image.Image]:
        """The frames from `start` on, refusing a video longer than its count said by
        more than MAX_VIDEO_FRAMES allows."""
        for i, img in enumerate(frames, start):
            if i >= MAX_VIDEO_FRAMES:
                raise ImpastoError(IMAGE_TOO_LARGE, f"more than {MAX_VIDEO_FRAMES} frames; a watch "
                                   f"folder takes videos of at most {MAX_VIDEO_FRAMES}")
            yield img

    def _encode(self, e: Entry, out: Parts, f: BinaryIO) -> None:
        """The video from the kept frames, written into f: the source's timestamps,
        frame rate and audio (videoio.VideoWriter)."""
        writer: videoio.VideoWriter | None = None
        with (self.journal.open_data(e) as source, self.journal.open_data(e) as audio,
              contextlib.closing(videoio.read_frames(source)) as decoded):
            try:
                for i, (_, pts, _) in enumerate(decoded):
                    if i >= e.frames_done:
                        break
                    img = self._kept(e, i)
                    if writer is None:
                        writer = videoio.VideoWriter(PurePosixPath(out[-1]), audio, img.width,
                                                     img.height, file=f)
                    writer.write(img, pts)
            finally:
                if writer is not None:
                    writer.close()

    def _held(self) -> None:
        if self._hold > 0:
            log.warning("holding inside the output write for %.1f s (%s)", self._hold, HOLD_ENV)
            time.sleep(self._hold)

    def _retry(self, e: Entry, why: str) -> None:
        if self._stop.is_set():
            return  # stays claimed in the journal; the next start resumes it
        e.attempts += 1
        log.warning("%s: %s; retrying", e.rel, why)
        self._later_put(e, backoff(e.attempts, 30.0))

    def _finish(self, e: Entry) -> None:
        with self._names:
            e.state = State.FINISHING
            e.final = "/".join(self.journal.unique(DONE + e.rel_parts))
            self.journal.save(e)
        self._complete_move(e)

    def _fail(self, e: Entry, reason: str) -> None:
        with self._names:
            e.state, e.reason = State.FAILING, reason
            e.final = "/".join(self.journal.unique(FAILED + e.rel_parts))
            self.journal.save(e)
        self._complete_move(e)
        log.warning("%s failed: %s", e.rel, reason)

    def _complete_move(self, e: Entry) -> None:
        final = e.final_parts
        if e.state == State.FAILING:
            report = report_for(final)
            if not self.journal.exists(report):
                self.journal.write(report, f"{e.rel}: {e.reason}\n".encode())
        moved = False
        if self.journal.has_data(e):
            with self._names:
                if self.journal.exists(final):  # someone put a file there meanwhile
                    final = self.journal.unique(final)
                    e.final = "/".join(final)
                    self.journal.save(e)
                self.journal.move_data(e, final)
            moved = True
        else:  # a retry after the move itself succeeded (its folder sync did not)
            moved = self.journal.exists(final)
        self.journal.remove_frames(e)  # a video's kept frames, if any
        self._frames_held.pop(e.id, None)
        self.journal.remove(e)
        with self._lock:
            self.inflight -= 1
            if moved and e.state == State.FAILING:
                self.failed += 1
            elif moved:
                self.done += 1
            self.fault = None


def start_watchers(folders: list[Path], address: str, poll: bool = False,
                   keys: ClientKeys | None = None, settle: float = 2.0,
                   in_flight: Callable[[], int] | None = None) -> list[FolderWatcher]:
    return [FolderWatcher(f, address, poll=poll, keys=keys, settle=settle,
                          in_flight=in_flight).start() for f in folders]


def wait_forever(watchers: list[FolderWatcher], report_every: float = 30.0,
                 stop: threading.Event | None = None) -> None:
    """Log each folder's counts now and then until `stop` is set (or Ctrl-C), then stop
    the watchers."""
    stop = stop or threading.Event()
    last = 0.0
    try:
        while not stop.wait(1.0):
            if time.monotonic() - last > report_every:
                last = time.monotonic()
                for w in watchers:
                    c = w.counts()
                    log.info("%s: pending %d, working %d, done %d, failed %d%s", c["folder"],
                             c["pending"], c["working"], c["done"], c["failed"],
                             f"; {c['problem']}" if c.get("problem") else "")
    except KeyboardInterrupt:
        pass
    finally:
        stop_watchers(watchers)


def stop_watchers(watchers: list[FolderWatcher], budget: float = STOP_S) -> None:
    """Stop every folder within one shared budget: all are told first, then joined."""
    for w in watchers:
        w.request_stop()
    deadline = time.monotonic() + budget
    for w in watchers:
        w.stop(deadline)
