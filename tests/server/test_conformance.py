"""The daemon against docs/protocol.md: raw frames from a table of cases, each with the
code the document promises. Part of the table is generated from the message schemas
(every field of every request, given a value of the wrong type, and an unknown field),
so a new field is covered without new test code."""

from __future__ import annotations

import dataclasses
import json
import typing
from enum import StrEnum

import pytest

from impasto import errors, imagecodec
from impasto.protocol import REQUESTS, ImageRef, StyleRef
from tests.helpers import DaemonProcess, gradient_image, stripes_image
from tests.server.test_daemon import raw_socket

PNG = imagecodec.encode_png(gradient_image(16, 12))
REPLY_S = 60  # every case is answered at once; this only says "hung"

# A valid body (header fields, blobs) for each request type, and what it gets.
VALID: dict[str, tuple[dict, list[bytes], str]] = {
    "ping": ({}, [], "pong"),
    "status": ({}, [], "status.reply"),
    "cancel": ({"job": "j999999"}, [], errors.UNKNOWN_JOB),
    "styles.list": ({}, [], "styles.reply"),
    "styles.add": ({"name": "conformance", "image": {"blob": 0, "format": "png"}}, [PNG], "ok"),
    "styles.remove": ({"name": "never-added"}, [], errors.UNKNOWN_STYLE),
    "stylize": ({"content": {"blob": 0, "format": "png"}, "styles": [{"name": "stripes"}],
                 "options": {"size": 64, "iterations": 1, "scales": 1}}, [PNG], "accepted"),
}

# Values of the wrong type for each kind of field.
WRONG = {int: ["x", 1.5, True, None], str: [5, [], True, None], float: ["x", True],
         list: ["x", {}, 5], dict: [[], "x", 5], ImageRef: ["x", 5, {"blob": "0"}],
         StyleRef: ["x", 5]}


def _kind(hint):
    args = typing.get_args(hint)
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
    return typing.get_origin(hint) or hint


def generated() -> list[tuple[str, dict, list[bytes], str]]:
    cases = []
    for cls in sorted(REQUESTS, key=lambda c: c.TYPE):
        base, blobs, _ = VALID[cls.TYPE]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = _kind(hints[f.name])
            if isinstance(kind, type) and issubclass(kind, StrEnum):
                cases.append((f"{cls.TYPE}.{f.name}=bogus", {**base, f.name: "bogus"}, blobs,
                              errors.BAD_OPTIONS))
                kind = str
            for v in WRONG.get(kind, []):
                if v is None and typing.get_args(hints[f.name]) and type(None) in typing.get_args(hints[f.name]):
                    continue  # null is allowed where the field is optional
                cases.append((f"{cls.TYPE}.{f.name}={json.dumps(v)}", {**base, f.name: v}, blobs,
                              errors.BAD_MESSAGE))
        cases.append((f"{cls.TYPE}+unknown", {**base, "colour": "red"}, blobs, errors.BAD_MESSAGE))
        cases.append((f"{cls.TYPE} valid", base, blobs, VALID[cls.TYPE][2]))
    return cases


STYLIZE = VALID["stylize"][0]
# Hand-written rows: the document's words, one case each.
TABLE = [
    ("v true", {"v": True, "type": "ping"}, [], errors.BAD_VERSION),
    ("v 1.0", {"v": 1.0, "type": "ping"}, [], errors.BAD_VERSION),
    ("v 2", {"v": 2, "type": "ping"}, [], errors.BAD_VERSION),
    ("no type", {"v": 1}, [], errors.UNKNOWN_TYPE),
    ("reply type sent", {"v": 1, "type": "pong"}, [], errors.UNKNOWN_TYPE),
    ("event type sent", {"v": 1, "type": "progress"}, [], errors.UNKNOWN_TYPE),
    ("cancel without job", {"v": 1, "type": "cancel"}, [], errors.BAD_MESSAGE),
    ("negative weight", {"v": 1, "type": "stylize", **STYLIZE,
                         "styles": [{"name": "stripes", "weight": -1}]}, [PNG], errors.BAD_OPTIONS),
    ("zero weights", {"v": 1, "type": "stylize", **STYLIZE,
                      "styles": [{"name": "stripes", "weight": 0}]}, [PNG], errors.BAD_OPTIONS),
    ("unknown image field", {"v": 1, "type": "stylize", **STYLIZE,
                             "content": {"blob": 0, "format": "png", "x": 1}}, [PNG],
     errors.BAD_MESSAGE),
    ("png header 100000 px", {"v": 1, "type": "stylize", **STYLIZE}, ["HUGE"],
     errors.IMAGE_TOO_LARGE),
    ("eps labelled png", {"v": 1, "type": "stylize", **STYLIZE},
     [b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n"], errors.BAD_IMAGE),
    ("unknown style", {"v": 1, "type": "stylize", **STYLIZE, "styles": [{"name": "nope"}]},
     [PNG], errors.UNKNOWN_STYLE),
    ("style name with newline", {"v": 1, "type": "styles.add", "name": "evil\n",
                                 "image": {"blob": 0}}, [PNG], errors.BAD_OPTIONS),
    ("unknown option", {"v": 1, "type": "stylize", **STYLIZE, "options": {"tile_size": 64}},
     [PNG], errors.BAD_OPTIONS),
    ("schedule that cannot run", {"v": 1, "type": "stylize", **STYLIZE,
                                  "options": {"size": 64, "scales": 2}}, [PNG], errors.BAD_OPTIONS),
]


def _huge_png() -> bytes:
    from tests.test_imagecodec import png_header

    return png_header(100_000, 100_000)


@pytest.fixture(scope="module")
def daemon_with_style(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("conformance")
    styles = tmp / "data" / "styles"
    styles.mkdir(parents=True)
    stripes_image(32, 32).save(styles / "stripes.png")
    d = DaemonProcess(tmp).wait_ready()
    yield d, tmp
    d.stop()


@pytest.mark.parametrize(("name", "header", "blobs", "expected"), TABLE, ids=[c[0] for c in TABLE])
def test_table(daemon_with_style, name, header, blobs, expected) -> None:
    run_case(daemon_with_style, header, blobs, expected)


def _type_of(name: str) -> str:
    return next(t for t in VALID if name.startswith(t + ".") or name.startswith(t + "+")
                or name == f"{t} valid")


@pytest.mark.parametrize(("name", "header", "blobs", "expected"), generated(),
                         ids=[c[0] for c in generated()])
def test_generated(daemon_with_style, name, header, blobs, expected) -> None:
    run_case(daemon_with_style, {"v": 1, "type": _type_of(name), **header}, blobs, expected)


def run_case(daemon_with_style, header: dict, blobs: list, expected: str) -> None:
    d, tmp = daemon_with_style
    import os

    from impasto import paths
    os.environ["IMPASTO_CONFIG_DIR"] = str(tmp / "config")  # the daemon's keyring
    assert paths.keys_dir() == tmp / "config" / "keys"
    blobs = [_huge_png() if b == "HUGE" else b for b in blobs]
    sock = raw_socket(d.address)
    try:
        sock.send_multipart([json.dumps({**header, "req": "c1"}).encode(), *blobs])
        while True:
            assert sock.poll(REPLY_S * 1000), "no reply"
            reply = json.loads(sock.recv_multipart()[0])
            if reply.get("req") == "c1":
                break
        got = reply["code"] if reply["type"] == "error" else reply["type"]
        assert got == expected, reply
        if reply["type"] == "accepted":
            sock.send_multipart([json.dumps({"v": 1, "type": "cancel", "job": reply["job"],
                                             "req": "c2"}).encode()])
    finally:
        sock.close(0)


def test_the_table_covers_every_request_type() -> None:
    assert {_type_of(c[0]) for c in generated()} == {c.TYPE for c in REQUESTS}
    assert len(generated()) > 40


def test_progress_without_preview_leaves_the_field_out(daemon_with_style) -> None:
    """docs/protocol.md and the wire agree on a progress event that carries no preview:
    the field is absent (as the rule for fields added within protocol 1 has it, so a
    client that predates previews sees the events it always saw), not null."""
    from tests.helpers import REPO

    doc = " ".join((REPO / "docs" / "protocol.md").read_text().split())
    assert "`preview` is absent (the field is left out, never null) unless the event" in doc
    assert "`preview` is null" not in doc
    d, tmp = daemon_with_style
    sock = raw_socket(d.address, tmp / "config" / "keys")
    try:
        header = {"v": 1, "type": "stylize", "req": "p1", **STYLIZE,
                  "options": {"size": 64, "iterations": 3, "scales": 1}}
        sock.send_multipart([json.dumps(header).encode(), PNG])
        progress = []
        while True:
            assert sock.poll(REPLY_S * 1000), "no reply"
            event = json.loads(sock.recv_multipart()[0])
            if event["type"] == "progress":
                progress.append(event)
            elif event["type"] in ("result", "error"):
                break
        assert event["type"] == "result", event
        assert [e for e in progress if e["stage"] == "optimize"], progress
        assert all("preview" not in e for e in progress), progress
    finally:
        sock.close(0)
