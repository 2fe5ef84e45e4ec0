"""The daemon as a real subprocess on 127.0.0.1, driven over real ZeroMQ sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from PIL import Image

from impasto import errors, imagecodec
from impasto.client import Client, DaemonUnavailable
from impasto.errors import ImpastoError
from impasto.protocol import (
    PROTOCOL_VERSION,
    Accepted,
    Error,
    ImageRef,
    Progress,
    StyleRef,
    Stylize,
    decode,
)
from tests.helpers import (
    EXIT_S,
    REPO,
    DaemonProcess,
    free_port,
    gradient_image,
    run_cli,
    stripes_image,
    test_device,
)

FAST = {"size": 64, "scales": 1, "iterations": 3, "seed": 1}
SLOW = {"size": 64, "scales": 1, "iterations": 100000, "seed": 1, "tolerance": 0.0}


def request(options: dict | None = None, style: str | None = None, **kw) -> Stylize:
    styles = ([StyleRef(name=style)] if style else
              [StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))])
    return Stylize(content=imagecodec.to_ref(gradient_image(64, 48)), styles=styles,
                   options=options or dict(FAST), **kw)


def accepted(client: Client, req: str) -> Accepted:
    """The accept reply to request `req`, skipping anything else on the socket."""
    while True:
        msg, r = client.receive(10)
        if r == req and isinstance(msg, Accepted):
            return msg


def wait_for(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_ping_status_and_result(daemon: DaemonProcess) -> None:
    with Client(daemon.address) as c:
        assert c.ping().protocol == PROTOCOL_VERSION
        st = c.status()
        assert st.state == "ready" and st.device == test_device() and st.weights.startswith("random")
        # What computes, in which precision and why: for people, beside the plain device.
        d = st.device_detail
        assert d.startswith(test_device()) and ("fp32" in d or "bf16" in d), d
        events: list = []
        result = c.stylize(request(output="rgba8"), on_accepted=events.append,
                           on_progress=events.append)
        assert isinstance(events[0], Accepted) and events[0].position == 0
        prog = [e for e in events if isinstance(e, Progress)]
        assert prog[0].stage == "prepare"
        steps = [p.step for p in prog if p.stage == "optimize"]
        assert steps == sorted(steps) and steps[-1] == prog[-1].total == 3
        assert result.image.format == "rgba8" and (result.image.width, result.image.height) == (64, 48)
        assert result.seed == 1 and set(result.losses) >= {"content", "style", "tv", "total"}
        assert c.status().jobs_done == 1


def test_status_counts_a_job_as_soon_as_its_result_arrives(daemon: DaemonProcess) -> None:
    # The worker once sent the result before counting the job, so a status asked for at
    # once could still show it running (seen in CI); repeating makes that window likely.
    with Client(daemon.address) as c:
        before = c.status().jobs_done
        for i in range(1, 9):
            c.stylize(request(dict(FAST, seed=i)))
            st = c.status()
            assert (st.jobs_done, st.running) == (before + i, None)


def test_two_clients_at_once(daemon: DaemonProcess) -> None:
    results: dict[int, object] = {}

    def go(i: int) -> None:
        with Client(daemon.address, timeout=30) as c:
            results[i] = c.stylize(request(dict(FAST, seed=i)))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1]
    assert results[0].job != results[1].job
    assert {results[0].seed, results[1].seed} == {0, 1}


def test_cancel_queued_and_running(daemon: DaemonProcess) -> None:
    with Client(daemon.address) as a, Client(daemon.address) as b, Client(daemon.address) as ctl:
        run_job = accepted(a, a.send(request(SLOW)))
        queued_job = accepted(b, b.send(request(SLOW)))
        assert run_job.position == 0
        assert queued_job.position == 1
        wait_for(lambda: (ctl.status().running or {}).get("job") == run_job.job)
        assert ctl.cancel(queued_job.job).was == "queued"
        msg, _ = b.receive(10)
        assert isinstance(msg, Error) and msg.code == errors.CANCELLED
        assert ctl.cancel(run_job.job).was == "running"
        while True:
            msg, r = a.receive(30)
            if isinstance(msg, Error):
                assert msg.code == errors.CANCELLED and msg.job == run_job.job
                break
        with pytest.raises(ImpastoError) as e:
            ctl.cancel("j999")
        assert e.value.code == errors.UNKNOWN_JOB
        # still serving
        assert ctl.stylize(request()).image is not None


def test_style_library_and_cache_hit(daemon: DaemonProcess, tmp_path: Path) -> None:
    style = tmp_path / "stripes.png"
    stripes_image(40, 40).save(style)
    r = run_cli(["styles", "add", "stripes", str(style), "--address", daemon.address], daemon.env)
    assert r.returncode == 0, r.stderr
    r = run_cli(["styles", "list", "--json", "--address", daemon.address], daemon.env)
    assert [s["name"] for s in json.loads(r.stdout)["styles"]] == ["stripes"]
    with Client(daemon.address) as c:
        c.stylize(request(style="stripes"))
        before = c.status()
        c.stylize(request(style="stripes"))
        after = c.status()
        assert after.cache_hits == before.cache_hits + 1
        assert after.cache_misses == before.cache_misses
        with pytest.raises(ImpastoError) as e:
            c.stylize(request(style="nope"))
        assert e.value.code == errors.UNKNOWN_STYLE and "stripes" in e.value.message
    r = run_cli(["styles", "remove", "stripes", "--address", daemon.address], daemon.env)
    assert r.returncode == 0
    r = run_cli(["styles", "remove", "stripes", "--address", daemon.address], daemon.env)
    assert r.returncode == 2 and "unknown style" in r.stderr


def test_bad_requests_get_errors_and_daemon_keeps_serving(daemon: DaemonProcess) -> None:
    with Client(daemon.address) as c:
        cases = [
            (request(options={"size": 3}), errors.BAD_OPTIONS),
            (request(options={"bogus": 1}), errors.BAD_OPTIONS),
            (Stylize(content=ImageRef(b"\x89PNG junk", "png"), styles=[StyleRef(name="x")]),
             errors.BAD_IMAGE),
            (Stylize(content=imagecodec.to_ref(gradient_image(8, 8)), styles=[]), errors.BAD_OPTIONS),
            (request(priority="urgent"), errors.BAD_OPTIONS),
        ]
        for msg, code in cases:
            with pytest.raises(ImpastoError) as e:
                c.stylize(msg)
            assert e.value.code == code, e.value
        # a huge image is refused from its header, before decoding
        huge = gradient_image(8, 8).resize((4200, 4200))
        with pytest.raises(ImpastoError) as e:
            c.stylize(Stylize(content=ImageRef(imagecodec.encode_png(huge), "png"),
                              styles=[StyleRef(name="x")]))
        assert e.value.code == errors.IMAGE_TOO_LARGE
        assert c.stylize(request()).image is not None


def raw_socket(address: str, keys_dir: Path | None = None) -> zmq.Socket:
    """A bare DEALER, to send what no well-behaved client would; with this user's keys,
    since the daemon speaks CurveZMQ only."""
    from impasto import paths
    from impasto.keys import ensure_local_keys

    keys = ensure_local_keys(keys_dir or paths.keys_dir())
    assert keys is not None
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = (
        keys.public, keys.secret, keys.server_public)
    s.connect(address)
    return s


def test_thousand_malformed_messages_then_valid(daemon: DaemonProcess) -> None:
    s = raw_socket(daemon.address)
    junk = [
        [b""], [b"\x00\xff"], [b"{"], [b"[]"], [b'{"v":1}'], [b'{"v":2,"type":"ping"}'],
        [b'{"v":1,"type":"nope"}'], [b'{"v":1,"type":"stylize","content":{"blob":9}}'],
        [b'{"v":1,"type":"cancel","job":[1]}'], [b"null", b"x", b"y"],
        [b'{"v":1,"type":"stylize","content":{"blob":0,"format":"rgba8","width":1,"height":1}}', b""],
        [b'{"v":1,"type":"result"}'], [b'{"v":1,"type":"styles.add","name":"../x"}'],
    ]
    for i in range(1000):
        s.send_multipart(junk[i % len(junk)])
    codes = []
    for _ in range(1000):
        assert s.poll(10000), "daemon stopped answering"
        msg, _ = decode(s.recv_multipart())
        assert isinstance(msg, Error)
        codes.append(msg.code)
    assert set(codes) <= set(errors.ALL_CODES)
    assert {errors.BAD_MESSAGE, errors.BAD_VERSION, errors.UNKNOWN_TYPE} <= set(codes)
    s.close()
    with Client(daemon.address) as c:
        assert c.stylize(request()).image is not None


def test_wrong_version_reply_names_versions(daemon: DaemonProcess) -> None:
    s = raw_socket(daemon.address)
    s.send_multipart([json.dumps({"v": 7, "type": "ping", "req": "a"}).encode()])
    assert s.poll(5000)
    msg, req = decode(s.recv_multipart())
    assert req == "a" and msg.code == errors.BAD_VERSION and "7" in msg.message
    s.close()


def test_graceful_shutdown_and_restart(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).wait_ready()
    with Client(d.address) as a, Client(d.address) as b:
        ra = a.send(request(SLOW))
        rb = b.send(request(SLOW))
        wait_for(lambda: len(Client(d.address).status().queue) == 1)
        assert d.stop(signal.SIGINT) == 0
        for client, req in ((a, ra), (b, rb)):
            codes = []
            while (got := client.receive(10)) is not None:
                msg, r = got
                if r == req and isinstance(msg, Error):
                    codes.append(msg.code)
                    break
            assert codes == [errors.SHUTDOWN]
    assert "stopped" in d.output()
    # restart on the same port
    d2 = DaemonProcess(tmp_path, port=d.port).wait_ready()
    with Client(d2.address) as c:
        assert c.stylize(request()).image is not None
    assert d2.stop() == 0


def test_refuses_public_address_without_keys(tmp_path: Path, env: dict[str, str]) -> None:
    r = run_cli(["serve", "--weights", "random", "--bind", f"tcp://0.0.0.0:{free_port()}"], env,
                timeout=EXIT_S)
    assert r.returncode == 1
    assert "refusing to listen" in r.stderr and "impasto keys add-client" in r.stderr
    assert "Traceback" not in r.stderr


def test_curve_authorised_client_works_unknown_refused(tmp_path: Path, env: dict[str, str]) -> None:
    keys = tmp_path / "config" / "keys"
    assert run_cli(["keys", "init", "--dir", str(keys)], env).returncode == 0
    d = DaemonProcess(tmp_path, extra=["--curve"], env=env)
    try:
        from impasto.keys import ClientKeys, load_client_keys

        good = load_client_keys(keys)
        assert good is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(d.address, timeout=1, keys=good) as c:
                    if c.status().state == "ready":
                        break
            except DaemonUnavailable:
                assert time.monotonic() < deadline
        with Client(d.address, keys=good) as c:
            assert c.stylize(request()).image is not None
        # a key pair the daemon has never seen
        import zmq.auth

        stranger_dir = tmp_path / "stranger"
        stranger_dir.mkdir()
        pub, sec = zmq.auth.create_certificates(stranger_dir, "x")
        p, s = zmq.auth.load_certificate(sec)
        stranger = ClientKeys(p, s, good.server_public)
        with Client(d.address, timeout=2, keys=stranger) as c, pytest.raises(DaemonUnavailable):
            c.ping()
        # and a client without keys at all
        with Client(d.address, timeout=2, keys=False) as c, pytest.raises(DaemonUnavailable):
            c.ping()
    finally:
        d.stop()


def test_send_cli_and_stylize_uses_daemon(daemon: DaemonProcess, content_png: Path,
                                          style_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "sent.png"
    r = run_cli(["send", str(content_png), "--style", str(style_png), "-o", str(out),
                 "--size", "64", "--iterations", "3", "--scales", "1", "--address", daemon.address],
                daemon.env)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and out.exists()
    out2 = tmp_path / "via-daemon.png"
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o", str(out2), "--json",
                 "--size", "64", "--iterations", "3", "--scales", "1", "--address", daemon.address],
                daemon.env)
    assert r.returncode == 0, r.stderr
    assert "using the daemon" in r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["type"] == "accepted" and lines[-1]["type"] == "result"
    r = run_cli(["status", "--address", daemon.address], daemon.env)
    assert "jobs done 2" in r.stdout
    r = run_cli(["status", "--json", "--address", daemon.address], daemon.env)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["jobs_done"] == 2 and st["state"] == "ready"
    assert [w["worker"] for w in st["workers"]] == ["embedded"]


def test_client_commands_without_daemon(env: dict[str, str], content_png: Path, tmp_path: Path) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    for args in (["status"], ["cancel", "j1"], ["styles", "list"],
                 ["send", str(content_png), "--style", "x", "-o", str(tmp_path / "o.png")]):
        t0 = time.monotonic()
        r = run_cli(args + ["--address", addr, "--timeout", "1"], env, timeout=EXIT_S)
        assert r.returncode == 3, (args, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and f"no impasto daemon answered at {addr}" in r.stderr
        assert time.monotonic() - t0 < 20


def test_serve_without_weights_explains(tmp_path: Path, env: dict[str, str]) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "impasto.cli.main", "serve", "--bind", f"tcp://127.0.0.1:{free_port()}",
         "--weights", str(tmp_path / "missing-vgg19.pth")],
        env=env, capture_output=True, text=True, timeout=EXIT_S, cwd=REPO)
    assert p.returncode == 1
    assert "No VGG19 weights are available" in p.stderr and "Traceback" not in p.stderr


def test_interactive_jobs_overtake_queued_batch_jobs(daemon: DaemonProcess) -> None:
    with Client(daemon.address) as a, Client(daemon.address) as b, Client(daemon.address) as i:
        # The first job runs until cancelled, so the queue cannot drain under a slow machine.
        first = accepted(a, a.send(request(SLOW, priority="batch")))
        wait_for(lambda: (i.status().running or {}).get("job") == first.job)
        batch = accepted(b, b.send(request(priority="batch")))
        inter = accepted(i, i.send(request(priority="interactive")))
        # positions when accepted: the interactive job went ahead of the queued batch job
        assert (first.position, batch.position, inter.position) == (0, 1, 1)
        assert [j["job"] for j in i.status().queue] == [inter.job, batch.job]
        assert i.cancel(first.job).was == "running"
        order = []
        for client, job in ((i, inter), (b, batch)):
            while True:
                msg, _ = client.receive(60)
                if getattr(msg, "image", None) is not None:
                    order.append((job.job, time.monotonic()))
                    break
        assert order[0][1] < order[1][1]  # the interactive job finished first


def _strict_json(frame: bytes) -> dict:
    def refuse(name: str) -> float:
        raise AssertionError(f"{name} on the wire")

    return json.loads(frame, parse_constant=refuse)


@pytest.mark.parametrize(("content", "style"), [
    (gradient_image(300, 30, alpha=True), stripes_image(32, 32)),  # a banner layer
    (gradient_image(1, 1), stripes_image(32, 32)),
    (gradient_image(64, 8), stripes_image(32, 32)),
    (gradient_image(40, 40).convert("L").convert("RGB").point(lambda _: 128),  # flat
     stripes_image(32, 32).point(lambda _: 128)),
])
def test_edge_inputs_end_in_results_never_internal(daemon: DaemonProcess, content, style) -> None:
    """Inputs that pass validation get a result: thin, tiny and flat images included.
    Every frame of the exchange is strict JSON (no NaN or Infinity)."""
    sock = raw_socket(daemon.address)
    try:
        msg = Stylize(content=imagecodec.to_ref(content, "rgba8"),
                      styles=[StyleRef(image=imagecodec.to_ref(style))],
                      options={"size": 64, "iterations": 3, "seed": 1, "match_content_size": True},
                      output="rgba8")
        from impasto.protocol import encode

        sock.send_multipart(encode(msg, "edge"))
        while True:
            assert sock.poll(EXIT_S * 1000), "no answer"
            frames = sock.recv_multipart()
            header = _strict_json(frames[0])
            assert header["type"] != "error", header
            if header["type"] == "result":
                break
        result, _ = decode(frames)
        assert (result.image.width, result.image.height) == content.size
        assert result.schedule and result.schedule[-1]["evaluations"] <= 3
    finally:
        sock.close(0)


@pytest.mark.parametrize(("styles", "options", "why"), [
    ([StyleRef(name="x", weight=0.0), StyleRef(name="y", weight=0.0)], {}, "positive"),
    ([StyleRef(name="x", weight=1e308), StyleRef(name="y", weight=1e308)], {}, "finite sum"),
    ([StyleRef(name="x")], {"size": 80, "scales": 2}, "at most 1"),
    ([StyleRef(name="x")], {"style_weights": [1, 2]}, "one number per style"),
])
def test_degenerate_requests_are_bad_options(daemon: DaemonProcess, styles, options, why) -> None:
    with Client(daemon.address) as c, pytest.raises(ImpastoError) as e:
        c.stylize(Stylize(content=imagecodec.to_ref(gradient_image(64, 48)), styles=styles,
                          options=options))
    assert e.value.code == errors.BAD_OPTIONS and why in e.value.message


def _mask(size: tuple[int, int], left: bool) -> imagecodec.ImageRef:
    m = Image.new("L", size, 0)
    m.paste(255, (0, 0, size[0] // 2, size[1]) if left else (size[0] // 2, 0, *size))
    return imagecodec.to_ref(m)


def test_styles_with_masks_paint_their_regions(daemon: DaemonProcess) -> None:
    """Two styles, each with a mask over half the content, through the daemon; and the
    masks' own errors: the wrong size, an undecodable mask, a mask field of the wrong
    shape, a black mask, a weight past the cap. The daemon keeps serving after each."""
    content = gradient_image(64, 48)
    stripes = imagecodec.to_ref(stripes_image(32, 32))
    dark = imagecodec.to_ref(gradient_image(32, 32).point(lambda v: v // 4))
    with Client(daemon.address) as c:
        result = c.stylize(Stylize(
            content=imagecodec.to_ref(content), options=dict(FAST),
            styles=[StyleRef(image=stripes, mask=_mask(content.size, True)),
                    StyleRef(image=dark, mask=_mask(content.size, False))]))
        assert imagecodec.decode_pil(result.image).size == (64, 48)
        assert set(result.losses) == {"content", "style", "tv", "total"}
        black = imagecodec.to_ref(Image.new("L", content.size, 0))
        for mask, weight, why in (
                (_mask((32, 48), True), 1.0, "must have the content's size, 64x48"),
                (imagecodec.ImageRef(b"not an image", "png"), 1.0, "mask of style 1"),
                (black, 1.0, "black everywhere"),
                (_mask(content.size, True), 101.0, "at most 100")):
            with pytest.raises(ImpastoError) as e:
                c.stylize(Stylize(content=imagecodec.to_ref(content), options=dict(FAST),
                                  styles=[StyleRef(image=stripes, mask=mask, weight=weight)]))
            assert why in e.value.message, e.value.message
        assert imagecodec.decode_pil(c.stylize(request()).image).size == (64, 48)  # serving
    sock = raw_socket(daemon.address)
    try:
        header = {"v": PROTOCOL_VERSION, "type": "stylize", "req": "m1",
                  "content": {"blob": 0, "format": "png"},
                  "styles": [{"name": "x", "mask": "white"}]}
        sock.send_multipart([json.dumps(header).encode(), imagecodec.to_ref(content).data])
        assert sock.poll(10_000)
        msg, _ = decode(sock.recv_multipart())
        assert isinstance(msg, Error) and msg.code == errors.BAD_MESSAGE, msg
    finally:
        sock.close(0)
