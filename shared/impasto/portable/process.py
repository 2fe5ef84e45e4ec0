"""Stopping a process, and starting one that outlives its parent.

- Linux and macOS: SIGTERM (service managers, `kill`) and SIGINT (Ctrl-C) stop cleanly;
  a detached child gets its own session (setsid), so the parent's terminal or GIMP's
  plug-in process group ending does not take it along.
- Windows: SIGINT (Ctrl-C) and SIGBREAK (Ctrl-Break, and what a console's close sends);
  SIGTERM exists in Python there but nothing delivers it. A detached child gets
  CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW: no console window
  flashes up from GIMP, and Ctrl-C in GIMP's console does not reach it.
- Forced fallback: the Windows signal set on this system (SIGINT only: SIGBREAK does not
  exist here), so the tests stop daemons the way a Windows console does.
"""

from __future__ import annotations

import signal
from typing import Any

from impasto.portable import fallbacks_forced, system

# Windows' process creation flags (winbase.h), spelled out: subprocess has them only there.
CREATE_NEW_PROCESS_GROUP = 0x00000200
DETACHED_PROCESS = 0x00000008
CREATE_NO_WINDOW = 0x08000000


def stop_signals(on: str | None = None) -> list[signal.Signals]:
    """The signals that mean "stop cleanly" on system `on` (default: this one), that
    exist here."""
    on = on or ("Windows" if fallbacks_forced() else system())
    names = ["SIGINT", "SIGBREAK"] if on == "Windows" else ["SIGINT", "SIGTERM"]
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


def detached(on: str | None = None) -> dict[str, Any]:
    """subprocess.Popen keyword arguments for a child that outlives this process."""
    on = on or system()
    if on == "Windows":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW}
    return {"start_new_session": True}
