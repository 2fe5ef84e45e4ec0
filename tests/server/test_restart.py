"""A daemon killed and started again on the same address, during a job: it answers, but
it never had the job. The client notices (the daemon's uptime is shorter than the job's
time since it was accepted) and says the job was lost, rather than waiting for ever; the
CLI, the GIMP bridge and the watch folders all follow jobs through this client."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from impasto import imagecodec
from impasto.client import Client
from impasto.errors import DaemonUnavailable
from impasto.protocol import Accepted, Progress, StyleRef, Stylize
from tests.helpers import DaemonProcess, gradient_image, stripes_image

ENDLESS = {"size": 64, "scales": 1, "iterations": 100000, "seed": 1, "tolerance": 0.0}
SILENCE_S = 20.0  # the client's timeout: longer than a daemon takes to start again


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 is POSIX's")
def test_a_job_lost_with_a_restarted_daemon_is_said_not_waited_for(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    again = None
    outcome: list[BaseException | None] = []
    progressed = threading.Event()

    def follow() -> None:
        req = Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                      styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                      options=dict(ENDLESS))
        try:
            with Client(d.address, timeout=SILENCE_S) as c:
                c.stylize(req, on_progress=lambda p: progressed.set())
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            outcome.append(e)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        assert progressed.wait(120), "the job never started"
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
        again = DaemonProcess(tmp_path, port=d.port, env=d.env).wait_ready()
        t.join(SILENCE_S * 3 + 60)  # before the fix: for ever (each ping answered)
        assert not t.is_alive(), "the client still waits for a job the daemon never had"
        (err,) = outcome
        assert isinstance(err, DaemonUnavailable), err
        assert "was restarted during job" in str(err) and "send it again" in str(err), err
    finally:
        d.stop()
        if again is not None:
            again.stop()


def test_a_busy_daemon_that_stays_up_is_not_taken_for_a_restarted_one(tmp_path: Path) -> None:
    """The same check against the daemon that has the job: silence while it is queued
    behind another job is asked about, answered, and the job goes on to its result."""
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        with Client(d.address, timeout=1.0) as blocker, Client(d.address, timeout=1.0) as c:
            long_req = blocker.send(Stylize(
                content=imagecodec.to_ref(gradient_image(64, 48)),
                styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                options={**ENDLESS, "iterations": 300}))
            while True:  # the first job runs: the next one waits, silent, behind it
                got = blocker.receive(60)
                assert got is not None
                if got[1] == long_req and isinstance(got[0], Progress):
                    break
            accepted: list[Accepted] = []
            t0 = time.monotonic()
            result = c.stylize(Stylize(
                content=imagecodec.to_ref(gradient_image(32, 24)),
                styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                options={"size": 64, "scales": 1, "iterations": 2, "seed": 1}),
                on_accepted=accepted.append)
            assert result.image is not None and accepted and accepted[0].position >= 1
            assert time.monotonic() - t0 > 1.0  # it really waited in silence, and was asked
    finally:
        d.stop()
