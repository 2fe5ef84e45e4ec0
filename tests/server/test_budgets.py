"""Budgets instead of hope: what one request may hold, and a socket loop that keeps
answering while large images are decoded elsewhere."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto import errors, imagecodec
from impasto.client import Client
from impasto.errors import ImpastoError
from impasto.protocol import MAX_PIXELS, ImageRef, StyleRef, Stylize
from tests.helpers import EXIT_S, DaemonProcess, gradient_image


@pytest.fixture(scope="module")
def maximal_png() -> bytes:
    """A 4096x4096 image, the largest allowed: cheap to send (it compresses), costly to
    decode (16.8 MP)."""
    side = int(MAX_PIXELS ** 0.5)
    yy, xx = np.mgrid[0:side, 0:side]
    arr = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    return imagecodec.encode_png(Image.fromarray(arr), compress_level=9)


def test_forty_maximal_images_are_refused_while_others_are_answered(
        tmp_path: Path, maximal_png: bytes) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        with Client(d.address, timeout=EXIT_S) as greedy, Client(d.address) as other:
            # One request with 40 maximal style images: refused for their number; with 3,
            # for their pixels, from the headers alone (no pixel decoded).
            t0 = time.monotonic()
            for n, code in ((40, errors.BAD_OPTIONS), (2, errors.IMAGE_TOO_LARGE)):
                with pytest.raises(ImpastoError) as e:
                    greedy.stylize(Stylize(
                        content=ImageRef(maximal_png, "png"),
                        styles=[StyleRef(image=ImageRef(maximal_png, "png")) for _ in range(n)]))
                assert e.value.code == code and "at most" in e.value.message
            # Requests at the limit are decoded off the socket loop: meanwhile another
            # client's status is answered at once.
            reqs = [greedy.send(Stylize(content=ImageRef(maximal_png, "png"),
                                        styles=[StyleRef(image=ImageRef(maximal_png, "png"))],
                                        options={"size": 64, "iterations": 1, "scales": 1}))
                    for _ in range(3)]
            latencies = []
            for _ in range(20):
                t = time.monotonic()
                other.status()
                latencies.append(time.monotonic() - t)
            # the decoding really was going on during those answers
            accepted = 0
            while accepted < len(reqs):
                got = greedy.receive(EXIT_S)
                assert got is not None
                accepted += got[0].TYPE == "accepted"
            assert time.monotonic() - t0 > max(latencies)
            assert statistics.median(latencies) < 0.1, latencies
            assert max(latencies) < 2.0, latencies
    finally:
        d.stop()


def test_style_scale_cannot_make_an_oversized_style() -> None:
    from impasto.options import EngineOptions

    with pytest.raises(ImpastoError) as e:
        EngineOptions.from_dict({"size": 1024, "style_scale": 8})
    assert e.value.code == errors.BAD_OPTIONS and "at most 4096" in e.value.message
    EngineOptions.from_dict({"size": 512, "style_scale": 8})


def test_too_many_styles(tmp_path: Path) -> None:
    from impasto.protocol import decode, encode

    msg = Stylize(content=imagecodec.to_ref(gradient_image(8, 8)),
                  styles=[StyleRef(name="a") for _ in range(17)])
    with pytest.raises(ImpastoError) as e:
        decode(encode(msg))
    assert e.value.code == errors.BAD_OPTIONS and "at most 16" in e.value.message


def test_an_oversized_header_is_dropped_unread(tmp_path: Path) -> None:
    """A 2 MiB header (the limit is 1 MiB) is answered message_too_large without being
    parsed: its req, which a parser would have found, is not echoed."""
    import json

    from tests.server.test_daemon import raw_socket

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        sock = raw_socket(d.address)
        sock.send_multipart([json.dumps({"v": 1, "type": "ping", "req": "r" * (2 << 20)}).encode()])
        assert sock.poll(EXIT_S * 1000)
        frames = sock.recv_multipart()
        reply = json.loads(frames[0])
        assert reply["code"] == errors.MESSAGE_TOO_LARGE and "req" not in reply
        assert sum(len(f) for f in frames) < 4096
        sock.close(0)
        with Client(d.address) as c:
            assert c.ping().protocol == 1
    finally:
        d.stop()


def test_the_largest_job_a_request_may_ask_for() -> None:
    """The work cap, counted as documented (long side squared times evaluations, over
    scales and frames): 100,000 evaluations at 1024 px fit, the `best` preset at the
    largest size fits, 800,000 evaluations at 8192 px (eight scales of 100,000) do not,
    and neither does a clip of 1000 frames of 100,000 evaluations each at 512 px."""
    from impasto.options import MAX_SIZE, EngineOptions
    from impasto.server.intake import MAX_JOB_WORK, check_work, job_work

    one = EngineOptions(size=1024, scales=1, iterations=100000)
    assert job_work(one) == 1024 * 1024 * 100000 <= MAX_JOB_WORK
    check_work(one)
    check_work(EngineOptions(preset="best", size=MAX_SIZE, style_scale=0.5))
    check_work(EngineOptions(preset="normal"), frames=1000)  # a long clip at 512 px
    huge = EngineOptions(size=MAX_SIZE, evaluations=[100000] * 8, style_scale=0.5)
    with pytest.raises(ImpastoError) as e:
        check_work(huge)
    assert e.value.code == errors.BAD_OPTIONS
    assert f"{job_work(huge):,} pixel-evaluations" in e.value.message
    assert f"at most {MAX_JOB_WORK:,}" in e.value.message
    clip = EngineOptions(size=512, scales=1, iterations=100000)
    check_work(clip, frames=1)
    with pytest.raises(ImpastoError):
        check_work(clip, frames=1000)


def test_one_key_holds_at_most_a_quarter_of_the_queue_images(tmp_path: Path,
                                                              maximal_png: bytes) -> None:
    """Clips of two maximal frames (each request 33.5 MP, a few KiB to send) from one
    key: while the worker is busy, two wait in the queue (67 MP, a quarter of its
    268 MP: the key's share) and the third is refused queue_full; another key's request
    still goes in.
    One key could fill the whole budget with seven of them; a refused request is
    counted as no job. A job over 800k evaluations at 8192 px is refused too."""
    from impasto.keys import ClientKeys, create_pair, load_client_keys
    from impasto.protocol import Accepted, Error, StylesAdd

    d = DaemonProcess(tmp_path).wait_ready()
    keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
    own = load_client_keys(keys)
    assert own is not None
    public, secret = create_pair(tmp_path / "other", "other")
    (keys / "authorized" / "other.key").write_bytes(public.read_bytes())
    import zmq.auth

    pub, sec = zmq.auth.load_certificate(secret)
    assert sec is not None
    other_keys = ClientKeys(pub, sec, own.server_public)
    style = [StyleRef(name="s")]  # from the library: the frames alone fill the request
    endless = {"size": 64, "scales": 1, "iterations": 100000, "tolerance": 0.0}
    clip = Stylize(frames=[ImageRef(maximal_png, "png")] * 2, styles=style, options=endless)

    def outcome(c: Client, req: str) -> Accepted | Error:
        while (got := c.receive(EXIT_S)) is not None:
            if got[1] == req and isinstance(got[0], (Accepted, Error)):
                return got[0]
        raise AssertionError("no answer")

    try:
        with Client(d.address, timeout=EXIT_S) as c:
            c.call(StylesAdd(name="s", image=imagecodec.to_ref(gradient_image(16, 16))))
            busy = c.send(Stylize(content=imagecodec.to_ref(gradient_image(16, 16)),
                                  styles=style, options=endless))
            assert isinstance(outcome(c, busy), Accepted)
            while c.status().running is None:  # the worker holds it: the rest queue
                time.sleep(0.1)
            answers = [outcome(c, c.send(clip)) for _ in range(3)]
            assert [type(a).__name__ for a in answers] == ["Accepted", "Accepted", "Error"], answers
            refused = answers[2]
            assert isinstance(refused, Error) and refused.code == errors.QUEUE_FULL
            assert f"share of the queue ({16 * MAX_PIXELS // 4:,})" in refused.message, refused
            huge = c.send(Stylize(content=imagecodec.to_ref(gradient_image(16, 16)),
                                  styles=style,
                                  options={"size": 8192, "evaluations": [100000] * 8,
                                           "style_scale": 0.5}))
            bad = outcome(c, huge)
            assert isinstance(bad, Error) and bad.code == errors.BAD_OPTIONS
            assert "pixel-evaluations" in bad.message
            with Client(d.address, timeout=EXIT_S, keys=other_keys) as o:
                assert isinstance(outcome(o, o.send(clip)), Accepted)
                assert len(o.status().queue) == 3
    finally:
        d.stop()
