"""Children without consoles, detached daemons, liveness, and pipes read by threads:
what the GIMP plug-in, its set-up and the bridge share (impasto.portable.spawn and
.pipes, copied beside the plug-in). Windows' own calls cannot run here; their values
and the choices around them are checked, and the pipe reading runs with select refusing
pipes as Windows' does."""

from __future__ import annotations

import ast
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from impasto.gimp import PLUGIN_FILE
from impasto.portable import pipes, process, spawn

# Also run with impasto's modules held to Windows' standard library (scripts/test).
pytestmark = pytest.mark.windows_library


def test_flags_for_helpers_and_the_daemon_per_system() -> None:
    assert spawn.helper_flags("Windows") == 0x08000000  # CREATE_NO_WINDOW
    assert spawn.helper_flags("Linux") == spawn.helper_flags("Darwin") == 0
    assert spawn.daemon_flags("Windows") == 0x00000200 | 0x00000008 | 0x08000000
    assert process.detached("Windows")["creationflags"] == spawn.daemon_flags("Windows")
    if spawn.sys.platform == "win32":  # Windows, or the tests' Windows-library mode
        assert spawn.hidden()["startupinfo"].wShowWindow == spawn.SW_HIDE
        assert spawn.hidden()["creationflags"] == spawn.CREATE_NO_WINDOW
        assert spawn.detached()["creationflags"] == spawn.daemon_flags("Windows")
    else:
        assert spawn.hidden() == {}
        assert spawn.detached() == process.detached() == {"start_new_session": True}


def test_the_daemon_is_started_with_pythonw_where_a_venv_has_one(tmp_path: Path) -> None:
    """A venv's Scripts\\python.exe is a console launcher: the daemon would get a console
    window, and closing it would kill the daemon. pythonw.exe beside it has none."""
    scripts = tmp_path / "Scripts"
    scripts.mkdir()
    (scripts / "python.exe").write_bytes(b"")
    assert spawn.windowless(scripts / "python.exe", on="Windows") == str(scripts / "python.exe")
    (scripts / "pythonw.exe").write_bytes(b"")
    assert spawn.windowless(scripts / "python.exe", on="Windows") == str(scripts / "pythonw.exe")
    assert spawn.windowless(scripts / "python.exe", on="Linux") == str(scripts / "python.exe")
    assert spawn.windowless(sys.executable) == sys.executable  # not Windows here


def test_pid_alive_without_signalling() -> None:
    import os

    assert spawn.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not spawn.pid_alive(child.pid)
    assert not spawn.pid_alive(0) and not spawn.pid_alive(-1) and not spawn.pid_alive(2**40)
    assert process.pid_alive is spawn.pid_alive


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    return names | {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module}


def test_plugin_and_bridge_use_no_select_and_never_probe_with_kill() -> None:
    """Windows' select refuses pipes, and os.kill(pid, 0) there sends CTRL_C_EVENT."""
    bridge = PLUGIN_FILE.parents[1] / "bridge.py"
    for path in (PLUGIN_FILE, bridge):
        assert "select" not in imports(path), path
        assert "os.kill" not in path.read_text(), path


def test_line_reader_reads_a_pipe_where_select_refuses_pipes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise OSError(10038, "An operation was attempted on something that is not a socket")

    monkeypatch.setattr(select, "select", refuse)
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "for i in range(3):\n"
        "    sys.stdout.write(f'line {i}\\n'); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.write('last, unterminated'); sys.stdout.flush()\n")],
        stdout=subprocess.PIPE)
    assert child.stdout is not None
    reader = pipes.LineReader(child.stdout.fileno())
    got: list[bytes] = []
    deadline = time.monotonic() + 60  # generous: the machine may be busy
    empty_polls = 0
    while not reader.eof and time.monotonic() < deadline:
        lines = reader.lines(timeout=0.05)
        empty_polls += not lines
        got += lines
    child.wait(30)
    assert got == [b"line 0", b"line 1", b"line 2", b"last, unterminated"]
    assert empty_polls  # it returned while the child paused: the caller's loop went on
    assert reader.lines() == [] and reader.eof


def test_pipe_reader_sees_a_closed_pipe_as_its_end() -> None:
    import os

    r, w = os.pipe()
    reader = pipes.PipeReader(r)
    assert reader.read(0.05) is None
    os.write(w, b"stop\n")
    assert reader.read(5) == b"stop\n"
    os.close(w)
    assert reader.read(5) == b"" and reader.eof
    os.close(r)


def test_stale_temporary_folders_of_gone_processes_are_removed(tmp_path: Path) -> None:
    import os

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = tmp_path / f"impasto-gimp-{child.pid}-abc"
    mine = tmp_path / f"impasto-gimp-{os.getpid()}-def"
    other = tmp_path / "impasto-gimp-notapid-x"
    for d in (gone, mine, other):
        d.mkdir()
    spawn.remove_stale(tmp_path, "impasto-gimp-")
    assert not gone.exists() and mine.exists() and other.exists()
