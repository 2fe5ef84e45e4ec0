"""Authorised client keys change while the daemon runs: a key added with `impasto keys`
is accepted, and a removed one refused, from the next connection on, with no restart.
A real daemon, real CurveZMQ handshakes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from impasto.keys import ClientKeys, create_pair, load_client_keys
from impasto.protocol import Status, StatusRequest, decode, encode
from tests.helpers import EXIT_S, DaemonProcess, run_cli

# Run again with the portable fallbacks forced (scripts/test): the paths other systems take.
pytestmark = pytest.mark.portable


def admitted(address: str, keys: ClientKeys) -> bool:
    """One fresh connection with `keys`: True when the daemon answers its status request,
    False when it refuses the handshake. Decided by the handshake's own outcome (the
    socket monitor's events), not by a reply that fails to come in time."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = (
        keys.public, keys.secret, keys.server_public)
    monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        s.connect(address)
        assert monitor.poll(EXIT_S * 1000), "no handshake outcome"
        if recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return False
        s.send_multipart(encode(StatusRequest(), "k"))
        assert s.poll(EXIT_S * 1000), "admitted but no status reply"
        msg, req = decode(s.recv_multipart())
        assert isinstance(msg, Status) and req == "k"
        return True
    finally:
        s.disable_monitor()
        monitor.close(0)
        s.close(0)


def eventually(pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "the daemon never saw the change"
        time.sleep(0.2)


def pair(secret_file: Path, server_public: bytes) -> ClientKeys:
    public, secret = zmq.auth.load_certificate(secret_file)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def test_keys_added_and_removed_count_without_restart(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = tmp_path / "config" / "keys"
        authorized = keys / "authorized"
        local = load_client_keys(keys)
        assert local is not None and admitted(d.address, local)

        # A pair not yet authorised is refused; `impasto keys authorize` lets it in.
        public, secret = create_pair(tmp_path / "laptop", "laptop")
        laptop = pair(secret, local.server_public)
        assert not admitted(d.address, laptop)
        r = run_cli(["keys", "authorize", str(public)], d.env)
        assert r.returncode == 0, r.stderr
        eventually(lambda: admitted(d.address, laptop))

        # `impasto keys add-client` makes a pair and authorises it: in use at once.
        r = run_cli(["keys", "add-client", "tablet"], d.env)
        assert r.returncode == 0, r.stderr
        tablet = pair(keys / "clients" / "tablet" / "client.key_secret", local.server_public)
        eventually(lambda: admitted(d.address, tablet))

        # Removed: refused again for new connections.
        (authorized / "laptop.key").unlink()
        eventually(lambda: not admitted(d.address, laptop))

        # A file there that is no key does not keep a removed key working.
        (authorized / "junk.key").write_text("public-key\n\x00not a key")
        (authorized / "tablet.key").unlink()
        eventually(lambda: not admitted(d.address, tablet))
        assert admitted(d.address, local) and not admitted(d.address, laptop)
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_authorize_never_replaces_an_authorised_key(tmp_path: Path) -> None:
    """`keys authorize` of a file named like an authorised key (client.key is the local
    user's own) is refused: keys count at once, so the swap would lock its holder out."""
    from tests.helpers import make_env

    env = make_env(tmp_path)
    assert run_cli(["keys", "init"], env).returncode == 0
    keys = Path(env["IMPASTO_CONFIG_DIR"]) / "keys"
    own = (keys / "authorized" / "client.key").read_bytes()
    public, _ = create_pair(tmp_path / "other", "client")  # named client.key too
    r = run_cli(["keys", "authorize", str(public)], env)
    assert r.returncode == 2 and "already authorised as client.key" in r.stderr, r.stderr
    assert (keys / "authorized" / "client.key").read_bytes() == own
    again = run_cli(["keys", "authorize", str(keys / "client.key")], env)  # the same key: fine
    assert again.returncode == 0, again.stderr
