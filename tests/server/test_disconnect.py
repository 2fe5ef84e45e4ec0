"""A client that goes away mid-job takes its jobs with it: the daemon cancels what the
dropped connection submitted (running and queued), and the jobs behind them run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import zmq
from PIL import Image

from impasto import imagecodec
from impasto.client import Client
from impasto.protocol import ImageRef, Result, StyleRef, Stylize, encode
from tests.helpers import EXIT_S, REPO, DaemonProcess, gradient_image, stripes_image
from tests.server.test_daemon import raw_socket

# A job that would run for hours on a CPU: only a cancel ends it within the test.
LONG = {"size": 128, "scales": 1, "iterations": 100000, "tolerance": 0, "seed": 1}

CLIENT = textwrap.dedent("""
    import sys
    from impasto import imagecodec
    from impasto.client import Client
    from impasto.protocol import StyleRef, Stylize
    from tests.helpers import gradient_image, stripes_image

    opts = {opts!r}
    req = Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                  styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                  options=opts)
    with Client({address!r}, timeout=600) as c:
        said = []
        def note(p):
            if p.stage == "optimize" and not said:
                said.append(c.send(req))  # a second job: queued behind the running one
                print("running", flush=True)
        c.stylize(req, on_progress=note)
""")


def _status(d: DaemonProcess):
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    with Client(d.address, timeout=EXIT_S, keys_dir=keys) as c:
        return c.status()


def test_killed_client_its_jobs_are_cancelled(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        proc = subprocess.Popen([sys.executable, "-c", CLIENT.format(opts=LONG, address=d.address)],
                                env=d.env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "running", "the job never ran"
            deadline = time.monotonic() + EXIT_S
            while len((before := _status(d)).queue) < 1:  # the second job's intake
                assert time.monotonic() < deadline, before
                time.sleep(0.2)
            assert before.running is not None and len(before.queue) == 1, before
        finally:
            proc.kill()  # SIGKILL: the client says nothing; only its connection ends
            proc.wait()
        deadline = time.monotonic() + EXIT_S  # generous: only "never" fails
        while True:
            st = _status(d)
            if st.running is None and not st.queue:
                break
            assert time.monotonic() < deadline, f"the dead client's jobs still there: {st}"
            time.sleep(0.5)
        # Both ended cancelled, each counted once: the running one by the worker, the
        # queued one by the loop (it used to be counted nowhere).
        assert (st.jobs_cancelled, st.jobs_failed, st.jobs_done) == (2, 0, 0), st
        assert "cancelled: its client disconnected while it ran" in d.output()
        assert "cancelled: its client disconnected while it waited" in d.output()
        # The next job runs, on a connection of its own.
        keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
        with Client(d.address, timeout=EXIT_S, keys_dir=keys) as c:
            result = c.stylize(Stylize(
                content=imagecodec.to_ref(gradient_image(48, 32)),
                styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                options={"size": 64, "scales": 1, "iterations": 2}))
        assert isinstance(result, Result)
    finally:
        assert d.stop() == 0


def _slow_png(w: int = 4096, h: int = 4095) -> bytes:
    """Cheap to send (it compresses to tens of KiB), slow to decode (16.8 MP)."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    return imagecodec.encode_png(Image.fromarray(arr), compress_level=9)


def _idle(c: Client):
    deadline = time.monotonic() + EXIT_S  # generous: only "never" fails
    while True:
        st = c.status()
        if st.running is None and not st.queue:
            return st
        assert time.monotonic() < deadline, f"a job outlived its client: {st}"
        time.sleep(0.5)


def test_a_client_gone_while_its_images_decode_leaves_no_job(tmp_path: Path) -> None:
    """The client sends a request whose images take a while to decode and closes its
    socket at once: no job is queued for it (it used to run to its end, 100000
    evaluations, holding the worker). Another client's request is decoding first, so
    the disconnect arrives while this one is still in the intake, or even before its
    message is read. Status is asked on a connection opened first: a new connection
    could reuse the closed one's descriptor, and its end used to cancel the job by
    chance."""
    d = DaemonProcess(tmp_path).wait_ready()
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    png = _slow_png()
    style = StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))
    try:
        with (Client(d.address, timeout=EXIT_S, keys_dir=keys) as watcher,
              Client(d.address, timeout=EXIT_S, keys_dir=keys) as first):
            watcher.status()
            first.send(Stylize(content=ImageRef(png, "png"), styles=[style],
                               options={"size": 64, "scales": 1, "iterations": 1}))
            leaver = raw_socket(d.address, keys)
            leaver.setsockopt(zmq.LINGER, EXIT_S * 1000)  # the request goes out whole first
            leaver.send_multipart(encode(Stylize(content=ImageRef(png, "png"), styles=[style],
                                                 options=LONG), "gone"))
            leaver.close()
            while (got := first.receive(EXIT_S)) is not None and got[0].TYPE != "result":
                assert got[0].TYPE in ("accepted", "progress"), got
            assert got is not None, "the first request never finished"
            st = _idle(watcher)
        assert (st.jobs_done, st.jobs_cancelled, st.jobs_failed) == (1, 1, 0), st
        out = d.output()
        assert ("disconnected while its images were decoded" in out
                or "cancelled: its client disconnected" in out), out[-3000:]
    finally:
        assert d.stop() == 0


def test_every_job_ends_in_one_count(tmp_path: Path) -> None:
    """Done, failed or cancelled, once each: a job cancelled while queued (it used to be
    counted nowhere), one cancelled while running, one refused at the door, one done."""
    d = DaemonProcess(tmp_path).wait_ready()
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    req = Stylize(content=imagecodec.to_ref(gradient_image(48, 32)),
                  styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                  options=LONG)
    try:
        # Cancels from a second connection of the same key: the first one's events are
        # all read below, none skipped as another request's reply.
        with (Client(d.address, timeout=EXIT_S, keys_dir=keys) as c,
              Client(d.address, timeout=EXIT_S, keys_dir=keys) as ctl):
            running, queued = c.send(req), c.send(req)
            ids: dict[str, str] = {}
            while len(ids) < 2:
                got = c.receive(EXIT_S)
                assert got is not None, "not accepted"
                if got[0].TYPE == "accepted":
                    ids[got[1]] = got[0].job
            ctl.cancel(ids[queued])
            ctl.cancel(ids[running])
            bad = Stylize(content=ImageRef(b"not an image", "png"), styles=req.styles)
            ok = Stylize(content=req.content, styles=req.styles,
                         options={"size": 64, "scales": 1, "iterations": 1})
            for r in (bad, ok):
                c.send(r)
            ends = 0
            while ends < 4:  # two cancelled, one bad_image, one result
                got = c.receive(EXIT_S)
                assert got is not None, "a job never ended"
                ends += got[0].TYPE in ("error", "result")
            st = _idle(ctl)
        assert (st.jobs_done, st.jobs_failed, st.jobs_cancelled) == (1, 1, 2), st
    finally:
        assert d.stop() == 0


def test_a_request_refused_as_a_message_is_not_counted(tmp_path: Path) -> None:
    """docs/protocol.md: a stylize refused bad_message never became a job, so it counts
    in none of done, failed and cancelled; a bad option value does count as failed."""
    d = DaemonProcess(tmp_path).wait_ready()
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    styles = [StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))]
    try:
        with Client(d.address, timeout=EXIT_S, keys_dir=keys) as c:
            for msg, code in ((Stylize(content=None, styles=styles), "bad_message"),
                              (Stylize(content=imagecodec.to_ref(gradient_image(48, 32)),
                                       styles=styles, options={"size": 3}), "bad_options")):
                c.send(msg)
                got = c.receive(EXIT_S)
                assert got is not None and got[0].TYPE == "error" and got[0].code == code, got
            st = c.status()
        assert (st.jobs_done, st.jobs_failed, st.jobs_cancelled) == (0, 1, 0), st
    finally:
        assert d.stop() == 0


def test_a_descriptor_closed_before_its_message_is_read_does_not_stop_the_daemon(
        tmp_path: Path) -> None:
    """A client that sends and leaves at once: libzmq may close the connection's
    descriptor before the loop reads the message that names it (SRCFD). Wrapping a
    closed descriptor raised in the loop and stopped the daemon ('the daemon is shutting
    down' to everyone; seen once in a clean-clone run). The far end of a closed
    descriptor, or of one now held by a file, is simply unknown."""
    import socket

    from impasto.server.connections import _remote

    a, b = socket.socketpair()
    fd = a.fileno()
    assert _remote(fd) is not None or a.family == socket.AF_UNIX  # a live one answers
    a.close()
    b.close()
    assert _remote(fd) is None  # closed: EBADF when wrapped
    with open(tmp_path / "f", "w") as f:
        assert _remote(f.fileno()) is None  # not a socket
