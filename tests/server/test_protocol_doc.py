"""docs/protocol.md's minimal client, run exactly as the document prints it, against a
real daemon: a client written from the document alone connects (CurveZMQ keys from the
documented files), pings, stylizes and writes the result."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.helpers import REPO, DaemonProcess, gradient_image, stripes_image

DOC = REPO / "docs" / "protocol.md"


def doc_client() -> str:
    text = DOC.read_text()
    section = text[text.index("### A minimal client"):]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "docs/protocol.md: the minimal client's code block is gone"
    return m.group(1)


def test_the_documented_minimal_client_connects_and_stylizes(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(doc_client())
    gradient_image(60, 40).save(tmp_path / "c.png")
    stripes_image(32, 32).save(tmp_path / "s.png")
    d = DaemonProcess(tmp_path).wait_ready()
    try:
        env = {**d.env, "IMPASTO_ADDRESS": d.address}
        r = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "c.png"),
                            str(tmp_path / "s.png"), str(tmp_path / "out.png"),
                            json.dumps({"size": 64, "scales": 1, "iterations": 3})],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        assert d.stop() == 0
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert "'type': 'pong'" in first, r.stdout
    assert "optimize 3 / 3" in r.stdout, r.stdout
    with Image.open(tmp_path / "out.png") as im:
        assert im.format == "PNG" and max(im.size) == 64


def test_the_documented_key_files_are_the_ones_a_daemon_makes(tmp_path: Path) -> None:
    """Every file the key table names exists where it says, in the format it says."""
    import zmq.auth

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        keys = Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys"
        table = DOC.read_text().split("### Key files")[1].split("###")[0]
        named = re.findall(r"^\| `([^`]+)` \|", table, re.M)
        assert named[:4] == ["server.key", "server.key_secret", "client.key", "client.key_secret"]
        for name in named[:4]:
            public, secret = zmq.auth.load_certificate(keys / name)
            assert len(public) == 40 and (secret is not None) == name.endswith("_secret")
            if name.endswith("_secret"):
                assert (keys / name).stat().st_mode & 0o077 == 0
        assert (keys / "authorized" / "client.key").exists()
        assert keys.stat().st_mode & 0o077 == 0
    finally:
        assert d.stop() == 0


def test_the_documented_clip_request_is_one_the_protocol_takes() -> None:
    """The Clips section's example header, with four PNG blobs, decodes into a clip
    request that continues an earlier one."""
    from impasto import imagecodec
    from impasto.protocol import Stylize, decode

    text = DOC.read_text()
    section = text[text.index("#### Clips"):]
    m = re.search(r"```json\n(.*?)```", section, re.S)
    assert m, "docs/protocol.md: the clip example is gone"
    blobs = [imagecodec.to_ref(gradient_image(48, 32)).data for _ in range(4)]
    msg, req = decode([m.group(1).encode()] + blobs)
    assert isinstance(msg, Stylize) and req == "c2"
    assert len(msg.frames) == 2 and msg.content is None
    assert msg.previous_frame is not None and msg.previous_result is not None
