"""Limits as docs/protocol.md states them: every oversized message is answered
message_too_large, and the pixel budget's message gives honest numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impasto import errors
from impasto.client import Client
from impasto.errors import ImpastoError
from impasto.protocol import MAX_MESSAGE_BYTES, MAX_REQUEST_PIXELS, ImageRef, StylesAdd
from tests.helpers import DaemonProcess
from tests.server.test_daemon import raw_socket
from tests.test_imagecodec import png_header

REPLY_S = 120  # only says "hung": each case is answered as soon as it is read


@pytest.fixture(scope="module")
def limits_daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("limits")
    d = DaemonProcess(tmp).wait_ready()
    yield d
    d.stop()


def _ask(d: DaemonProcess, frames: list[bytes]) -> dict:
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    sock = raw_socket(d.address, keys)
    try:
        sock.send_multipart(frames, copy=False)
        assert sock.poll(REPLY_S * 1000), "no reply"
        return json.loads(sock.recv_multipart()[0])
    finally:
        sock.close(0)


@pytest.mark.parametrize("size", [MAX_MESSAGE_BYTES + 10, 258 * 1024 * 1024],
                         ids=["256MiB+10", "258MiB"])
def test_oversized_messages_are_answered(limits_daemon: DaemonProcess, size: int) -> None:
    """258 MiB used to exceed ZeroMQ's MAXMSGSIZE (257 MiB): the socket dropped the
    connection and the client heard nothing."""
    header = json.dumps({"v": 1, "type": "ping", "req": "big"}).encode()
    reply = _ask(limits_daemon, [header, bytes(size - len(header))])
    assert reply["type"] == "error" and reply["code"] == errors.MESSAGE_TOO_LARGE, reply
    # The daemon keeps serving the same user.
    assert _ask(limits_daemon, [b'{"v":1,"type":"ping"}'])["type"] == "pong"


def test_client_refuses_what_the_daemon_would_drop(limits_daemon: DaemonProcess) -> None:
    """The reference client says message_too_large itself, at once, whatever the size."""
    keys = Path(limits_daemon.env["IMPASTO_CONFIG_DIR"]) / "keys"
    with Client(limits_daemon.address, timeout=REPLY_S, keys_dir=keys) as c:
        image = ImageRef(data=bytes(MAX_MESSAGE_BYTES + 1), format="png")
        with pytest.raises(ImpastoError) as e:
            c.call(StylesAdd(name="big", image=image))
        assert e.value.code == errors.MESSAGE_TOO_LARGE
        assert f"{MAX_MESSAGE_BYTES:,}" in e.value.message


def test_pixel_budget_message_is_exact(limits_daemon: DaemonProcess) -> None:
    """33,554,433 pixels used to read "33.55 MP ... at most 34 MP"."""
    big = png_header(4096, 4096)
    header = {"v": 1, "type": "stylize", "req": "px",
              "content": {"blob": 0, "format": "png"},
              "styles": [{"image": {"blob": 1, "format": "png"}},
                         {"image": {"blob": 2, "format": "png"}}],
              "options": {"size": 64}}
    reply = _ask(limits_daemon, [json.dumps(header).encode(), big, big, png_header(1, 1)])
    assert reply["code"] == errors.IMAGE_TOO_LARGE, reply
    assert f"{MAX_REQUEST_PIXELS + 1:,}" in reply["message"], reply
    assert f"{MAX_REQUEST_PIXELS:,}" in reply["message"], reply

