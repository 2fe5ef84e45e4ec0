"""A daemon is private to the user who runs it: another real Unix account on the same
machine gets nothing from it, cannot pose as it, and cannot cancel or see its jobs.

The other account is real (useradd, runuser), with its own Python and pyzmq, as in
../shared/notes/another-local-user.md; the tests skip where accounts cannot be made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from impasto import imagecodec, paths
from impasto.client import Client
from impasto.errors import DaemonUnavailable
from impasto.protocol import StatusRequest, StyleRef, Stylize
from tests.helpers import EXIT_S, DaemonProcess, free_port, gradient_image, stripes_image

PROBE_USER = "impasto-probe"
PROBE_VENV = Path("/var/tmp/impasto-probe-venv")


def _probe_python() -> Path:
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"):
        pytest.skip("needs root to make a second account (CI and sessions run as root)")
    if subprocess.run(["id", PROBE_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                        PROBE_USER], check=True)
    py = PROBE_VENV / "bin" / "python"
    if not (py.exists() and subprocess.run([py, "-c", "import zmq"]).returncode == 0):
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--clear", PROBE_VENV], check=True)
        r = subprocess.run([py, "-m", "pip", "install", "-q", "pyzmq"], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"cannot install pyzmq for the probe account: {r.stderr[-300:]}")
    return py


def as_other_user(code: str, *args: str, timeout: float = EXIT_S) -> dict:
    py = _probe_python()
    script = Path("/var/tmp") / f"impasto-probe-{os.getpid()}.py"
    script.write_text(textwrap.dedent(code))
    script.chmod(0o644)
    try:
        r = subprocess.run(["runuser", "-u", PROBE_USER, "--", "env", "-i", "PATH=/usr/bin:/bin",
                            "HOME=/nonexistent", str(py), str(script), *args],
                           capture_output=True, text=True, timeout=timeout)
    finally:
        script.unlink()
    lines = r.stdout.splitlines()
    assert lines and lines[0] == "PROBE-STARTED", (r.stdout, r.stderr)  # it really ran
    return json.loads(lines[-1])


PROBE_CLIENT = """
import json, sys, zmq
print("PROBE-STARTED", flush=True)
address, server_public, keys_dir = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
out = {}
try:
    open(keys_dir + "/server.key_secret").read()
    out["read_secret"] = True
except OSError as e:
    out["read_secret"] = False
ctx = zmq.Context()
ping = [json.dumps({"v": 1, "type": "status", "req": "p"}).encode()]
cancel = [json.dumps({"v": 1, "type": "cancel", "job": sys.argv[4], "req": "c"}).encode()]
for mode in ("plain", "curve"):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDTIMEO, 2000)
    if mode == "curve":  # its own keys, and the daemon's public key (which is no secret)
        public, secret = zmq.curve_keypair()
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = public, secret, server_public
    s.connect(address)
    got = []
    for frames in (ping, cancel):
        try:
            s.send_multipart(frames)
        except zmq.Again:
            continue
    while s.poll(3000):
        got.append(s.recv_multipart()[0].decode(errors="replace"))
    out[mode] = got
    s.close()
print(json.dumps(out))
"""


def test_another_local_user_gets_nothing(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = tmp_path / "config" / "keys"
        # The owner stays connected: the daemon cancels a job whose client's connection
        # drops, and this test is about what another user can reach.
        with Client(d.address) as owner:
            job = owner.send(Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                                     styles=[StyleRef(image=imagecodec.to_ref(stripes_image()))],
                                     options={"size": 64, "iterations": 100000, "scales": 1,
                                              "tolerance": 0.0}))
            msg, _ = owner.receive(EXIT_S)
            job_id = msg.job
            server_public = (keys / "server.key").read_text().split('public-key = "')[1].split('"')[0]
            seen = as_other_user(PROBE_CLIENT, d.address, server_public, str(keys), job_id)
            assert seen == {"read_secret": False, "plain": [], "curve": []}
            # the job it tried to cancel is still running
            with Client(d.address) as c:
                st = c.call(StatusRequest())
                assert st.running is not None and st.running["job"] == job_id
                c.cancel(job_id)
        assert job  # the owner's request went through all along
    finally:
        d.stop()


PROBE_SERVER = """
import json, sys, time, zmq
print("PROBE-STARTED", flush=True)
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
s.bind(sys.argv[1])
got, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    if s.poll(200):
        s.recv_multipart()
        got += 1
print(json.dumps({"received": got}))
"""


def test_a_port_taken_by_another_user_receives_nothing(tmp_path: Path) -> None:
    """Another user's program listening where the daemon should be: the client pins
    the daemon's key, so the handshake fails and no pixel leaves this user's process."""
    import threading

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(as_other_user(PROBE_SERVER, address, "8")))
    t.start()
    import time

    time.sleep(3)  # let it bind
    with Client(address, timeout=2) as c, pytest.raises(DaemonUnavailable):
        c.stylize(Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                          styles=[StyleRef(name="x")]))
    t.join(EXIT_S)
    assert result == {"received": 0}
    assert (paths.keys_dir() / "server.key_secret").stat().st_mode & 0o077 == 0


def test_keys_others_can_read_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.helpers import run_cli

    keys = tmp_path / "config" / "keys"
    assert run_cli(["keys", "init"], env).returncode == 0
    assert (keys / "server.key_secret").stat().st_mode & 0o777 == 0o600
    assert (keys / "client.key_secret").stat().st_mode & 0o777 == 0o600
    assert keys.stat().st_mode & 0o777 == 0o700
    (keys / "server.key_secret").chmod(0o644)
    r = run_cli(["serve", "--weights", "random", "--bind", f"tcp://127.0.0.1:{free_port()}"], env)
    assert r.returncode == 1 and "can be read or changed by other users" in r.stderr
    assert "chmod 600" in r.stderr and "Traceback" not in r.stderr


def test_jobs_are_their_owners(tmp_path: Path) -> None:
    """Two clients with different keys, both authorised: neither can cancel the other's
    job, and status shows the other's job without its id, client or styles."""
    import zmq.auth

    from impasto.keys import create_pair, load_client_keys

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = tmp_path / "config" / "keys"
        pub, sec = create_pair(tmp_path / "laptop", "client")
        shutil.copyfile(pub, keys / "authorized" / "laptop.key")  # counts with no restart
        mine = load_client_keys(keys)
        theirs_pub, theirs_sec = zmq.auth.load_certificate(sec)
        from impasto.keys import ClientKeys

        theirs = ClientKeys(theirs_pub, theirs_sec, mine.server_public)
        slow = {"size": 64, "iterations": 100000, "scales": 1, "tolerance": 0.0}
        with Client(d.address, keys=mine) as a, Client(d.address, keys=theirs) as b:
            a.send(Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                           styles=[StyleRef(image=imagecodec.to_ref(stripes_image()))],
                           options=slow, client="alice-gimp"))
            job = a.receive(EXIT_S)[0].job
            from impasto.errors import ImpastoError

            with pytest.raises(ImpastoError) as e:
                b.cancel(job)
            assert e.value.code == "unknown_job"
            st = b.status()
            assert st.running == {"job": "", "mine": False, "priority": "interactive",
                                  "size": 64, "waited_s": st.running["waited_s"]}
            assert a.status().running["client"] == "alice-gimp"
            assert a.cancel(job).was == "running"
    finally:
        d.stop()
