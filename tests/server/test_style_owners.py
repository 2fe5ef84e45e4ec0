"""The style library is private to the daemon's user and each style to the client key
that added it: a real daemon (started under umask 022), real CurveZMQ clients with
distinct keys made by `impasto keys add-client`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zmq.auth

from impasto import errors, imagecodec
from impasto.client import Client
from impasto.errors import ImpastoError
from impasto.keys import ClientKeys, load_client_keys
from impasto.protocol import StyleRef, StylesAdd, StylesList, StylesRemove, Stylize
from tests.helpers import DaemonProcess, gradient_image, make_env, run_cli, stripes_image


def mode(p: Path) -> int:
    return os.lstat(p).st_mode & 0o777


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def add(c: Client, name: str, seed: int = 0) -> None:
    c.call(StylesAdd(name=name, image=imagecodec.to_ref(stripes_image(40, 40, 3.0 + seed))),
           timeout=60)


def refused(call) -> None:
    with pytest.raises(ImpastoError) as e:
        call()
    assert e.value.code == errors.NOT_OWNER, e.value
    assert "another client key" in e.value.message


def listed(c: Client) -> dict[str, bool]:
    return {s["name"]: s["mine"] for s in c.call(StylesList()).styles}  # type: ignore[attr-defined]


def test_styles_are_private_and_owned(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    keys = tmp_path / "config" / "keys"
    for name in ("alice", "bob"):  # authorised before the daemon starts
        assert run_cli(["keys", "add-client", name], env).returncode == 0
    # A library from before: open to everyone, styles with no owner record, one record
    # that is garbage and one that is a FIFO (a read of it must not block the daemon).
    library = tmp_path / "data" / "styles"
    library.mkdir(parents=True)
    library.chmod(0o755)
    for name in ("old", "odd", "fifo"):
        gradient_image(16, 16).save(library / f"{name}.png")
        (library / f"{name}.png").chmod(0o644)
    (library / ".odd.owner").write_bytes(b"\xff\x00 not a key " * 100)
    os.mkfifo(library / ".fifo.owner")

    d = DaemonProcess(tmp_path, env=env, umask=0o022).wait_ready()
    try:
        assert mode(library) == 0o700 and mode(library / "old.png") == 0o600
        assert "made it 0700" in d.output()

        local = load_client_keys(keys)
        assert local is not None

        def client_keys(name: str) -> ClientKeys:
            public, secret = zmq.auth.load_certificate(keys / "clients" / name / "client.key_secret")
            assert secret is not None
            return ClientKeys(public, secret, local.server_public)

        with (Client(d.address, keys=client_keys("alice")) as a,
              Client(d.address, keys=client_keys("bob")) as b,
              Client(d.address, keys=local) as me):
            add(a, "s")
            style = library / "s.png"
            assert mode(library) == 0o700
            assert mode(style) == 0o600 and mode(library / ".s.owner") == 0o600
            before = sha256(style)

            # Bob sees and uses Alice's style, but cannot replace or remove it.
            assert listed(b)["s"] is False and listed(a)["s"] is True
            result = b.stylize(Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                                       styles=[StyleRef(name="s")],
                                       options={"size": 64, "scales": 1, "iterations": 2}))
            assert result.image is not None
            refused(lambda: add(b, "s", seed=5))
            refused(lambda: b.call(StylesRemove(name="s")))
            assert sha256(style) == before

            # The local user's key may remove anyone's style; its owner may too.
            add(b, "t")
            refused(lambda: a.call(StylesRemove(name="t")))
            assert listed(me)["t"] is True
            me.call(StylesRemove(name="t"))
            assert "t" not in listed(a)

            # Styles with no valid owner record are the local user's, and read safely.
            for name in ("old", "odd", "fifo"):
                assert listed(a)[name] is False
                refused(lambda name=name: a.call(StylesRemove(name=name)))
                refused(lambda name=name: add(a, name))
                me.call(StylesRemove(name=name))

            a.call(StylesRemove(name="s"))
            assert not style.exists() and not (library / ".s.owner").exists()
            assert listed(me) == {}
        assert d.proc.poll() is None
    finally:
        d.stop()
