"""What Windows' standard library lacks, met by impasto's code (issue 33's findings).

Marked `windows_library`: scripts/test runs these once as they are and once with
IMPASTO_WINDOWS_LIBRARY=1, where impasto's modules take their Windows branches against
Windows' library (tests/winlib); each failed there before its fix, where that is how
the finding fails here. The tests that start processes give them the mode in either
pass, so the daemon, the CLI and the watch folder run under it on every run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from impasto import fsio
from impasto.portable import fallbacks_forced, locks, memory, openwriters, privacy
from tests.helpers import DaemonProcess, make_env, run_cli, stripes_image

pytestmark = pytest.mark.windows_library

MODE = {"IMPASTO_WINDOWS_LIBRARY": "1"}
# Whether impasto's modules in this process take their Windows branches: on Windows, or
# in the mode's pass.
WINDOWS = sys.platform == "win32" or (
    "impasto_winlib" in sys.modules and sys.modules["impasto_winlib"].applied())


def test_atomic_writes_keep_every_byte_without_folder_handles(tmp_path: Path) -> None:
    """fsio.write_atomic used O_DIRECTORY, O_NOFOLLOW and dir_fd, none of which Windows
    has (connecting the GIMP plug-in and the weights cache both write through it). The
    bytes include b"\\n" and b"\\r\\n": a text-mode open would change them."""
    data = bytes(range(256)) * 4 + b"\n\r\n\x1a\n"
    out = fsio.write_atomic(tmp_path / "sub" / "out.bin", data)
    assert out.read_bytes() == data
    fsio.write_atomic(out, lambda f: f.write(b"second\n"))
    assert out.read_bytes() == b"second\n"
    assert [p.name for p in out.parent.iterdir()] == ["out.bin"]  # no temporary left


def test_memory_readings_answer_on_every_system() -> None:
    """status read /proc/self/statm with os.sysconf, else resource: an internal error on
    Windows while the model loads. Now one reader, portable.memory, per system."""
    from impasto.server.interface import process_memory_bytes

    rss, total = memory.resident_bytes(), memory.physical_bytes()
    assert rss is not None and total is not None and 0 < rss < total
    assert process_memory_bytes() > 0


def test_lock_privacy_and_open_writers_take_this_systems_calls(tmp_path: Path) -> None:
    """locks used fcntl or msvcrt by which one imported (hidden from a checker), privacy
    os.getuid, openwriters os.O_ACCMODE: each now by sys.platform."""
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    held = locks.lock(fd, "lock", wait=False)
    try:
        native = "msvcrt" if WINDOWS else "flock"
        assert locks.kind() == ("owner-file" if fallbacks_forced() else native)
    finally:
        held.release()
        os.close(fd)
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0o644)
    found = privacy.problem(secret)
    assert (found is None) == (WINDOWS or fallbacks_forced()), found
    unknown = WINDOWS or fallbacks_forced() or sys.platform != "linux"
    assert (openwriters.written_files() is None) == unknown


def test_daemon_starts_reports_status_keeps_styles_and_stops_in_the_mode(
        tmp_path: Path, style_png: Path, content_png: Path) -> None:
    """The daemon in the Windows-library mode: keys, the style library (owner records
    read without O_NOFOLLOW), status while loading and after (no resource, no sysconf),
    a stylize through the CLI, and a clean stop. faulthandler.register(SIGUSR1) ended
    it at start before."""
    env = {**make_env(tmp_path), **MODE}
    d = DaemonProcess(tmp_path, env=env).wait_ready()
    try:
        r = run_cli(["status", "--json", "--address", d.address], env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["memory_bytes"] > 0
        style = tmp_path / "stripes.png"
        stripes_image(40, 40).save(style)
        for args in (["styles", "add", "stripes", str(style)], ["styles", "list", "--json"]):
            r = run_cli(args + ["--address", d.address], env)
            assert r.returncode == 0, r.stderr
        assert [s["name"] for s in json.loads(r.stdout)["styles"]] == ["stripes"]
        out = tmp_path / "out.png"
        r = run_cli(["send", str(content_png), "--style", "stripes", "-o", str(out),
                     "--iterations", "2", "--size", "64", "--address", d.address], env)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        rc = d.stop(signal.SIGINT)  # Ctrl-C: what the mode's daemon listens for
    assert rc == 0, d.output()
    assert "Traceback" not in d.output(), d.output()


def test_watch_folders_refuse_with_their_message_on_windows(tmp_path: Path) -> None:
    """watch/confine.py read os.O_DIRECTORY at import, so on Windows `impasto watch` died
    with an AttributeError instead of saying that watch folders are not supported."""
    env = {**make_env(tmp_path), **MODE}
    r = run_cli(["watch", str(tmp_path / "box"), "--address", "tcp://127.0.0.1:9"], env,
                timeout=120)
    assert r.returncode == 2, r.stderr
    assert "watch folders are not supported here" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(["serve", "--weights", "random", "--device", "cpu", "--watch",
                 str(tmp_path / "box"), "--bind", "tcp://127.0.0.1:9"], env, timeout=300)
    assert r.returncode == 2 and "watch folders are not supported here" in r.stderr, r.stderr


def test_the_mode_reaches_this_process_when_asked() -> None:
    """In the mode's pass, this process's impasto modules are in it too."""
    from impasto.portable import system

    assert (system() == "Windows") == WINDOWS
