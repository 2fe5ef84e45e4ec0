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


def curve_dealer(keys: ClientKeys) -> zmq.Socket:
    """A raw DEALER that proves `keys` at the handshake (no client library in between)."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = (
        keys.public, keys.secret, keys.server_public)
    return s


def admitted(address: str, keys: ClientKeys) -> bool:
    """One fresh connection with `keys`: True when the daemon answers its status request,
    False when it refuses the handshake. Decided by the handshake's own outcome (the
    socket monitor's events), not by a reply that fails to come in time."""
    s = curve_dealer(keys)
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


def laptop_admitted(d: DaemonProcess, tmp_path: Path) -> tuple[Path, ClientKeys, ClientKeys]:
    """The daemon's keys folder, its local key, and a second machine's key authorised in
    it by a file dropped into authorized/ (in use once the daemon admits it)."""
    keys = tmp_path / "config" / "keys"
    local = load_client_keys(keys)
    assert local is not None
    public, secret = create_pair(tmp_path / "laptop", "laptop")
    (keys / "authorized" / "laptop.key").write_bytes(public.read_bytes())
    laptop = pair(secret, local.server_public)
    eventually(lambda: admitted(d.address, laptop))
    return keys, local, laptop


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


def test_a_replaced_local_key_is_the_local_key_at_once(tmp_path: Path) -> None:
    """The local keyring's client pair made anew (its files deleted, then any impasto
    program): the new key is authorised in place of the old one, and the daemon treats
    it as this machine's own from its next request, with no restart (it read the local
    key once, at start, and took the new one for a foreign key)."""
    from impasto.keys import ensure_local_keys

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = tmp_path / "config" / "keys"
        old = load_client_keys(keys)
        assert old is not None and "pid" in status_as(d.address, old).workers[0]
        (keys / "client.key_secret").unlink()
        (keys / "client.key").unlink()
        new = ensure_local_keys(keys)
        assert new is not None and new.public != old.public
        eventually(lambda: admitted(d.address, new))
        st = status_as(d.address, new)
        assert "pid" in st.workers[0], st.workers  # what only the local client sees
        assert not admitted(d.address, old)  # the old pair's authorisation went with it
    finally:
        d.stop()


def status_as(address: str, keys: ClientKeys) -> Status:
    from impasto.client import Client

    with Client(address, timeout=EXIT_S, keys=keys) as c:
        return c.status()


def test_odd_files_in_authorized_are_skipped_and_logged(tmp_path: Path) -> None:
    """A folder, a FIFO and a 200 MiB file named like keys: each skipped with a log line
    that says why, the 200 MiB one unread (a key file is a few hundred bytes), and the
    keys beside them still work."""
    import os

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = tmp_path / "config" / "keys"
        authorized = keys / "authorized"
        local = load_client_keys(keys)
        assert local is not None
        (authorized / "dir.key").mkdir()
        os.mkfifo(authorized / "fifo.key")
        with open(authorized / "huge.key", "wb") as f:
            f.truncate(200 * 2**20)  # sparse: 200 MiB to read, nothing on the disk
        (authorized / "notes.txt").write_text("not a key")
        public, secret = create_pair(tmp_path / "laptop", "laptop")
        (authorized / "laptop.key").write_bytes(public.read_bytes())
        eventually(lambda: admitted(d.address, pair(secret, local.server_public)))
        assert admitted(d.address, local)
        out = d.output()
        assert f"ignoring {authorized / 'dir.key'}: not a regular file (a folder)" in out
        assert f"ignoring {authorized / 'fifo.key'}: not a regular file (a FIFO)" in out
        assert f"ignoring {authorized / 'huge.key'}: 209,715,200 bytes; a key file" in out
        assert f"ignoring {authorized / 'notes.txt'}: not named NAME.key" in out
        assert d.proc.poll() is None
    finally:
        d.stop()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "large"])
def test_authorize_refuses_what_is_no_key_file_at_once(tmp_path: Path, kind: str) -> None:
    """`keys authorize` of a FIFO used to hang, of /dev/zero to say "out of memory";
    each is refused at once with what it is."""
    import os

    from tests.helpers import make_env

    env = make_env(tmp_path)
    path = {"fifo": tmp_path / "pipe.key", "device": Path("/dev/zero"),
            "folder": tmp_path / "dir.key", "large": tmp_path / "large.key"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "large":
        path.write_bytes(b"#" * (65 * 1024) + b"\npublic-key = \"x\"\n")
    elif not path.exists():
        pytest.skip("no /dev/zero here")
    r = run_cli(["keys", "authorize", str(path)], env, timeout=EXIT_S)
    why = {"fifo": "not a regular file (a FIFO)", "device": "not a regular file (a character "
           "device)", "folder": "not a regular file (a folder)", "large": "over 64 KiB"}[kind]
    assert r.returncode == 2 and why in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "config" / "keys" / "authorized").iterdir()) == [
        "client.key"]


def test_a_network_bind_needs_another_machine_s_key(tmp_path: Path) -> None:
    """The keyring any local command makes is this machine's own: with it alone a
    public address is refused (no other machine could get in); once a key is made for
    another machine (`keys add-client`), it counts as made on purpose."""
    from impasto.keys import other_clients
    from tests.helpers import free_port, make_env

    env = make_env(tmp_path)
    keys = Path(env["IMPASTO_CONFIG_DIR"]) / "keys"
    assert run_cli(["keys", "init"], env).returncode == 0  # as any local command would
    r = run_cli(["serve", "--weights", "random", "--bind", f"tcp://0.0.0.0:{free_port()}"], env,
                timeout=EXIT_S)
    assert r.returncode == 1 and "refusing to listen" in r.stderr, r.stderr
    assert "impasto keys add-client NAME" in r.stderr and "Traceback" not in r.stderr
    # The local key under another name is still this machine's own.
    (keys / "authorized" / "me-again.key").write_bytes((keys / "client.key").read_bytes())
    assert other_clients(keys) == []
    assert run_cli(["keys", "add-client", "laptop"], env).returncode == 0
    assert other_clients(keys) == ["laptop.key"]


def test_a_revoked_key_loses_its_open_connection(tmp_path: Path) -> None:
    """Deleting a key from authorized/ closes the connections it has open (within about
    a second) and cancels their jobs; the client's automatic reconnect is refused at the
    handshake. Other keys' connections stay."""
    from impasto import imagecodec
    from impasto.client import Client
    from impasto.protocol import StyleRef, Stylize
    from tests.helpers import gradient_image, stripes_image

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys, local, laptop = laptop_admitted(d, tmp_path)
        with (Client(d.address, timeout=EXIT_S, keys=laptop) as c,
              Client(d.address, timeout=EXIT_S, keys=local) as own):
            s = c.sock
            monitor = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            c.send(Stylize(content=imagecodec.to_ref(gradient_image(48, 32)),
                           styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                           options={"size": 64, "scales": 1, "iterations": 100000,
                                    "tolerance": 0.0}))
            eventually(lambda: own.status().running is not None, timeout=EXIT_S)
            (keys / "authorized" / "laptop.key").unlink()
            assert monitor.poll(EXIT_S * 1000), "the revoked key's connection stayed open"
            assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
            s.disable_monitor()
            monitor.close(0)
            eventually(lambda: own.status().running is None, timeout=EXIT_S)
            st = own.status()
            assert st.jobs_cancelled == 1 and not st.queue, st
            assert own.ping().protocol == 1  # the local key's connection stays
        assert not admitted(d.address, laptop)
        assert "closed a connection of client key" in d.output()
    finally:
        d.stop()


def test_a_revoked_key_s_silent_connection_gets_nothing_done(tmp_path: Path) -> None:
    """A connection made while its key was authorised and silent since (the handshake
    only): after the key is deleted its first request is not served (here a styles.add,
    which would persist) and the connection is closed."""
    from impasto import imagecodec
    from impasto.client import Client
    from impasto.protocol import StylesAdd, StylesList
    from tests.helpers import gradient_image

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys, local, laptop = laptop_admitted(d, tmp_path)
        s = curve_dealer(laptop)
        monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        try:
            s.connect(d.address)
            assert monitor.poll(EXIT_S * 1000), "no handshake"
            assert recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
            (keys / "authorized" / "laptop.key").unlink()
            eventually(lambda: not admitted(d.address, laptop))  # the daemon has seen it
            image = imagecodec.to_ref(gradient_image(32, 32))
            s.send_multipart(encode(StylesAdd(name="late", image=image), "x"))
            assert monitor.poll(EXIT_S * 1000), "the revoked key's connection stayed open"
            assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
            assert not s.poll(0), "the revoked key's request was answered"
        finally:
            s.disable_monitor()
            monitor.close(0)
            s.close(0)
        with Client(d.address, timeout=EXIT_S, keys=local) as own:
            # Style adds go through the one intake thread in order: once this one is
            # answered, any earlier one is done.
            own.call(StylesAdd(name="mine", image=image))
            names = [st["name"] for st in own.call(StylesList()).styles]
        assert names == ["mine"], names
        assert "dropped a request of client key" in d.output()
    finally:
        d.stop()
