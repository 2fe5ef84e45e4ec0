"""A client that goes away mid-job takes its jobs with it: the daemon cancels what the
dropped connection submitted (running and queued), and the jobs behind them run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from impasto import imagecodec
from impasto.client import Client
from impasto.protocol import Result, StyleRef, Stylize
from tests.helpers import EXIT_S, REPO, DaemonProcess, gradient_image, stripes_image

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
        assert st.jobs_failed == 1 and st.jobs_done == 0, st  # ended cancelled, not done
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
