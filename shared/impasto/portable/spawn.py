"""Starting helper programs without console windows, starting a daemon that outlives its
parent, and asking whether a process is alive: the same on every caller's side.

Standard library only and no impasto import: the GIMP plug-in (whose Python has no
impasto) and the stand-alone set-up program use a copy of this file beside the plug-in,
`impasto_spawn.py`, so every child the plug-in, the set-up and the bridge start goes
through these functions.

Windows (each branch is written as `sys.platform == "win32"`, so a type checker run for
each system sees which names it uses):
- A helper with pipes (the bridge, the style-library listing, the set-up's probes and
  installs) gets CREATE_NO_WINDOW and a STARTUPINFO with SW_HIDE: a console program
  started from GIMP (a GUI program, no console of its own) would otherwise flash a
  console window up, or hold one open while it runs.
- The daemon GIMP starts gets DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP (no console to
  close, out of GIMP's Ctrl-C group) and is started with `pythonw.exe` where one lies
  beside the `python.exe` named: a venv's `Scripts\\python.exe` is a launcher that starts
  the base interpreter, a console program, which Windows then gives a console of its
  own, and closing that window would kill the daemon. pythonw.exe is a GUI program:
  there is no console to open or to close.
- Liveness asks OpenProcess and GetExitCodeProcess: `os.kill(pid, 0)` on Windows is not
  a probe but sends CTRL_C_EVENT (0) to the process's console group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Windows' process creation flags (winbase.h), spelled out: subprocess has them only there.
CREATE_NEW_PROCESS_GROUP = 0x00000200
DETACHED_PROCESS = 0x00000008
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0
# OpenProcess access right and GetExitCodeProcess's "still running" (winnt.h, minwinbase.h).
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
STILL_ACTIVE = 259


def helper_flags(on: str) -> int:
    """Creation flags of a helper child with pipes on system `on` (platform.system()'s
    names): pure, so the values are tested on every system."""
    return CREATE_NO_WINDOW if on == "Windows" else 0


def daemon_flags(on: str) -> int:
    """Creation flags of a detached daemon on system `on`: pure."""
    if on == "Windows":
        return CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW
    return 0


def hidden() -> dict[str, Any]:
    """subprocess keyword arguments for a helper this process waits on (pipes, no
    console window on Windows). Elsewhere a child shares the parent's terminal, if any."""
    if sys.platform == "win32":
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        info.wShowWindow = subprocess.SW_HIDE
        return {"creationflags": subprocess.CREATE_NO_WINDOW, "startupinfo": info}
    return {}


def detached() -> dict[str, Any]:
    """subprocess keyword arguments for a child that outlives this process and has no
    console (the daemon GIMP starts). Give it `windowless(python)` as its program."""
    if sys.platform == "win32":
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        info.wShowWindow = subprocess.SW_HIDE
        return {"creationflags": daemon_flags("Windows"), "startupinfo": info,
                "close_fds": True}
    # Its own session: the parent's terminal or GIMP's plug-in process group ending
    # does not take it along.
    return {"start_new_session": True}


def windowless(program: str | os.PathLike[str], on: str | None = None) -> str:
    """The console-less twin of a Python interpreter: `pythonw.exe` beside `python.exe`
    (a venv's Scripts folder has both) on Windows, where it exists; the program itself
    otherwise. `on` is for tests (platform.system()'s names); default: this system."""
    path = Path(program)
    windows = sys.platform == "win32" if on is None else on == "Windows"
    if windows and path.name.lower() in ("python.exe", "python3.exe", "python"):
        twin = path.with_name("pythonw.exe")
        if twin.is_file():
            return str(twin)
    return str(program)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts as alive)."""
    if not 0 < pid < 2**31:  # beyond any system's process ids (a DWORD on Windows)
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        handle = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            # ERROR_ACCESS_DENIED (5): it exists and belongs to someone else.
            return ctypes.get_last_error() == 5
        try:
            code = wintypes.DWORD()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False  # beyond what the system's process ids can be
    return True


def remove_stale(base: str | os.PathLike[str], prefix: str) -> None:
    """Remove the folders in `base` named PREFIX + PID + "-..." whose process is gone
    (the GIMP plug-in's temporary folders: GIMP kills a plug-in on cancel, or it
    crashed). Liveness by pid_alive: never kill(pid, 0), CTRL_C_EVENT on Windows."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
