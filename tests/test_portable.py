"""The per-system mechanisms (impasto.portable): each system's choice through the pure
functions, and the locks and checks really exercised, the fallbacks included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from impasto.portable import FORCE_ENV, locks, openwriters, privacy, process

pytestmark = pytest.mark.portable

HOLD = """
import os, sys, time
from impasto.portable import locks
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
held = locks.lock(fd, sys.argv[1])
print(locks.kind(), flush=True)
time.sleep(600)
"""


@pytest.fixture(params=["native", "fallback"])
def lock_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setenv(FORCE_ENV, "1")
    else:
        monkeypatch.delenv(FORCE_ENV, raising=False)
    return locks.kind()


@pytest.mark.windows_library  # msvcrt's path and the owner file's, in the mode
def test_a_lock_excludes_another_process_and_frees_when_its_holder_dies(
        tmp_path: Path, lock_kind: str) -> None:
    path = tmp_path / "lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == lock_kind
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(locks.Busy):
            locks.lock(fd, str(path), wait=False)
    finally:
        holder.kill()  # no clean release: the kernel's, or the stale owner file
        holder.wait()
    held = locks.lock(fd, str(path), wait=False)
    held.release()
    os.close(fd)


@pytest.mark.windows_library  # msvcrt's path and the owner file's, in the mode
def test_the_fallback_lock_excludes_a_second_holder_in_one_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Windows' per-handle locks do: a second watcher of one folder in the same daemon
    is refused too."""
    monkeypatch.setenv(FORCE_ENV, "1")
    path = tmp_path / "lock"
    a, b = (os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2))
    held = locks.lock(a, str(path), wait=False)
    with pytest.raises(locks.Busy):
        locks.lock(b, str(path), wait=False)
    held.release()
    locks.lock(b, str(path), wait=False).release()
    # An owner file that names no process (garbage someone planted) does not lock forever,
    # nor does a symlink or a FIFO in its place (never followed, never waited on).
    owner = tmp_path / "lock.owner"
    owner.write_text("not a pid\n")
    locks.lock(b, str(path), wait=False).release()
    owner.symlink_to(tmp_path / "elsewhere")
    locks.lock(b, str(path), wait=False).release()
    assert not (tmp_path / "elsewhere").exists()
    if locks.sys.platform == "win32":
        return  # the Windows-library mode: no FIFOs in a Windows folder, no O_NONBLOCK
    os.mkfifo(owner)
    locks.lock(b, str(path), wait=False).release()
    assert not owner.exists()


def test_stop_signals_and_detaching_for_each_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    assert process.stop_signals("Linux") == [signal.SIGINT, signal.SIGTERM]
    assert process.stop_signals("Darwin") == [signal.SIGINT, signal.SIGTERM]
    # SIGBREAK exists on Windows only; here the Windows set is SIGINT alone.
    assert process.stop_signals("Windows")[0] == signal.SIGINT
    assert signal.SIGTERM not in process.stop_signals("Windows")
    assert process.detached("Linux") == {"start_new_session": True}
    assert process.detached("Darwin") == {"start_new_session": True}
    flags = process.detached("Windows")["creationflags"]
    assert flags == 0x00000200 | 0x00000008 | 0x08000000
    if sys.platform == "win32":
        assert flags & subprocess.CREATE_NEW_PROCESS_GROUP  # the names, where they exist
    monkeypatch.setenv(FORCE_ENV, "1")
    assert process.stop_signals() == process.stop_signals("Windows")


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_privacy_checks_modes_on_posix_and_defers_to_profile_acls_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0o644)
    assert "chmod 600" in (privacy.problem(secret) or "")
    privacy.make_private(secret)
    assert privacy.problem(secret) is None
    with privacy.private_umask():
        (tmp_path / "new").write_text("y")
    assert (tmp_path / "new").stat().st_mode & 0o077 == 0
    monkeypatch.setenv(FORCE_ENV, "1")
    secret.chmod(0o644)
    assert privacy.problem(secret) is None  # documented: Windows relies on profile ACLs


def test_open_writers_seen_on_linux_unknown_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    path = tmp_path / "being-written.png"
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "f = open(sys.argv[1], 'wb'); f.write(b'x'); f.flush()\n"
                               "print('open', flush=True); time.sleep(600)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        st = path.stat()
        if sys.platform.startswith("linux"):
            found = openwriters.written_files()
            assert found is not None and (st.st_dev, st.st_ino) in found
        monkeypatch.setenv(FORCE_ENV, "1")
        assert openwriters.written_files() is None
    finally:
        writer.kill()
        writer.wait()


TAKER = """
import os, sys, time
from impasto.portable import locks
path, log = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
held = locks.lock(fd, path, poll_s=0.001)
with open(log, "a") as f:
    f.write(f"in {os.getpid()}\\n")
time.sleep(0.2)
with open(log, "a") as f:
    f.write(f"out {os.getpid()}\\n")
held.release()
"""


@pytest.mark.windows_library  # msvcrt's path and the owner file's, in the mode
def test_takers_of_a_stale_lock_hold_it_one_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four processes find the owner file of a process that died: one takes the lock over,
    the others wait their turn (a hostile review once had two holding it at once)."""
    monkeypatch.setenv(FORCE_ENV, "1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for round_ in range(3):
        path, log = tmp_path / f"lock{round_}", tmp_path / f"log{round_}"
        (tmp_path / f"lock{round_}.owner").write_text(f"{dead.pid}\n")
        takers = [subprocess.Popen([sys.executable, "-c", TAKER, str(path), str(log)])
                  for _ in range(4)]
        for t in takers:
            assert t.wait(120) == 0
        lines = log.read_text().split()
        pairs = [lines[i:i + 4] for i in range(0, len(lines), 4)]
        assert len(pairs) == 4
        for verb_in, pid_in, verb_out, pid_out in pairs:
            assert (verb_in, verb_out) == ("in", "out") and pid_in == pid_out, lines
        assert len({p[1] for p in pairs}) == 4  # each taker held it once


def test_folders_for_each_system() -> None:
    """Where impasto's config, data and cache go, and where GIMP 3's profile is, on each
    system (the pure functions behind impasto.paths and `gimp install`)."""
    from impasto.gimp.install import profile_candidates
    from impasto.paths import folder_for

    home = Path("/home/a")
    win = {"APPDATA": r"C:\Users\a\AppData\Roaming", "LOCALAPPDATA": r"C:\Users\a\AppData\Local"}
    assert folder_for("config", "linux", {}, home) == home / ".config/impasto"
    assert folder_for("data", "linux", {}, home) == home / ".local/share/impasto"
    assert folder_for("cache", "linux", {"XDG_CACHE_HOME": "/c"}, home) == Path("/c/impasto")
    assert folder_for("config", "darwin", {}, home) == home / "Library/Application Support/impasto"
    assert folder_for("cache", "darwin", {}, home) == home / "Library/Caches/impasto"
    assert str(folder_for("config", "win32", win, home)).startswith(win["APPDATA"])
    assert str(folder_for("data", "win32", win, home)).startswith(win["LOCALAPPDATA"])
    assert str(folder_for("cache", "win32", win, home)).startswith(win["LOCALAPPDATA"])
    assert folder_for("config", "win32", {}, home) == home / "AppData/Roaming/impasto"
    linux = profile_candidates("linux", {}, home)
    assert linux[0] == home / ".config/GIMP/3.0"
    assert home / ".var/app/org.gimp.GIMP/config/GIMP/3.0" in linux  # Flatpak
    assert profile_candidates("darwin", {}, home) == [
        home / "Library/Application Support/GIMP/3.0"]
    assert str(profile_candidates("win32", win, home)[0]).startswith(win["APPDATA"])
    assert profile_candidates("win32", {"GIMP3_DIRECTORY": "/p"}, home) == [Path("/p")]
