"""Stopping always works: cancel during style preparation, SIGTERM during a long job.

The jobs here prepare a style of 4096x4096 pixels (style_scale 8 at 512 px), work that
takes tens of seconds on a CPU; a stop must land between two tiles of it. The bounds
(20 s) leave room for a loaded machine while staying far below the work itself."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from impasto import errors, imagecodec
from impasto.client import Client
from impasto.protocol import Error, Progress, Stage, StyleRef, Stylize
from tests.helpers import EXIT_S, DaemonProcess, gradient_image, stop_signal, stripes_image

# Run again with the portable fallbacks forced (scripts/test): the paths other systems take.
pytestmark = pytest.mark.portable

HEAVY = {"size": 512, "style_scale": 8.0, "scales": 1, "iterations": 1000, "seed": 1}


def heavy_request() -> Stylize:
    return Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                   styles=[StyleRef(image=imagecodec.to_ref(stripes_image(256, 256)))],
                   options=dict(HEAVY))


def wait_for_prepare(c: Client, req: str) -> str:
    job = ""
    while True:
        got = c.receive(EXIT_S)
        assert got is not None, "no progress"
        msg, r = got
        if r != req:
            continue
        if hasattr(msg, "position"):
            job = msg.job
        if isinstance(msg, Progress) and msg.stage == Stage.PREPARE:
            return job
        assert not isinstance(msg, Error), msg


def test_cancel_during_style_preparation(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, extra=["--tile-size", "256"]).wait_ready()
    try:
        with Client(d.address) as c:
            req = c.send(heavy_request())
            job = wait_for_prepare(c, req)
            time.sleep(1.0)  # well inside the preparation
            t0 = time.monotonic()
            with Client(d.address) as ctl:
                assert ctl.cancel(job).was == "running"
            while True:
                msg, r = c.receive(EXIT_S)
                if r == req and isinstance(msg, Error):
                    break
            took = time.monotonic() - t0
            assert msg.code == errors.CANCELLED
            assert took < 20, took
            assert Client(d.address).status().running is None
    finally:
        d.stop()


def test_sigterm_during_a_long_job_stops_in_seconds(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, extra=["--tile-size", "256"]).wait_ready()
    with Client(d.address) as c:
        req = c.send(heavy_request())
        queued = c.send(heavy_request())
        wait_for_prepare(c, req)
        time.sleep(1.0)
        t0 = time.monotonic()
        d.proc.send_signal(stop_signal())
        assert d.proc.wait(EXIT_S) == 0
        took = time.monotonic() - t0
        codes = {}
        while (got := c.receive(5)) is not None:
            msg, r = got
            if isinstance(msg, Error):
                codes[r] = msg.code
    d.stop()
    assert took < 20, took
    assert codes == {req: errors.SHUTDOWN, queued: errors.SHUTDOWN}  # every job answered
