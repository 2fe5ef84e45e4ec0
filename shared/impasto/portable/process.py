"""Stopping a process, and starting one that outlives its parent.

- Linux and macOS: SIGTERM (service managers, `kill`) and SIGINT (Ctrl-C) stop cleanly;
  a detached child gets its own session (setsid), so the parent's terminal or GIMP's
  plug-in process group ending does not take it along.
- Windows: SIGINT (Ctrl-C) and SIGBREAK (Ctrl-Break, and what a console's close sends);
  SIGTERM exists in Python there but nothing delivers it. A detached child gets
  CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW and a hidden window,
  and is best started with `spawn.windowless(python)` (pythonw.exe): no console window
  flashes up from GIMP, none can be closed under it, and Ctrl-C in GIMP's console does
  not reach it. The flags, the console-less start of helpers and `pid_alive` live in
  `spawn.py` (standard library only, so the GIMP plug-in carries a copy).
- Forced fallback: the Windows signal set on this system (SIGINT only: SIGBREAK does not
  exist here), so the tests stop daemons the way a Windows console does.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from impasto.portable import fallbacks_forced, spawn, system
from impasto.portable.spawn import (  # noqa: F401 - the names callers import from here
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    DETACHED_PROCESS,
    pid_alive,
    windowless,
)


def stop_signals(on: str | None = None) -> list[signal.Signals]:
    """The signals that mean "stop cleanly" on system `on` (default: this one), that
    exist here."""
    on = on or ("Windows" if fallbacks_forced() else system())
    names = ["SIGINT", "SIGBREAK"] if on == "Windows" else ["SIGINT", "SIGTERM"]
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


def detached(on: str | None = None) -> dict[str, Any]:
    """subprocess.Popen keyword arguments for a child that outlives this process. `on`
    names a system to see its flags (a pure answer, for tests); without it, this
    system's whole set (on Windows with the hidden-window STARTUPINFO)."""
    if on is None or (on == "Windows") == (sys.platform == "win32"):
        return spawn.detached()
    if on == "Windows":
        return {"creationflags": spawn.daemon_flags("Windows")}
    return {"start_new_session": True}
