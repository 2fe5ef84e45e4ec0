"""Progress output for people (a bar on a terminal) and scripts (JSON lines)."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from impasto import events
from impasto.protocol import printable


class ProgressBar:
    """One line redrawn in place on a terminal; occasional plain lines elsewhere."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self._last_plain = 0.0
        self._drawn = False

    def update(self, step: int, total: int, label: str = "", extra: str = "") -> None:
        frac = 0.0 if total <= 0 else min(1.0, step / total)
        if self.tty:
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{label} [{bar}] {step}/{total} {frac:4.0%} {extra}\033[K")
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_plain > 5 or step >= total:
            self._last_plain = time.monotonic()
            self.stream.write(f"{label} {step}/{total} {extra}\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


_LINES = threading.Lock()


def emit_event(event: events.Event, stream: TextIO | None = None) -> None:
    """A line of the typed event stream (impasto.events), the one the GIMP bridge speaks
    too: `--json` progress, results and errors."""
    stream = stream or sys.stdout
    with _LINES:  # the parts of a split clip report from threads of their own
        stream.write(event.to_line() + "\n")
        stream.flush()


def emit_json(obj: dict[str, Any], stream: TextIO | None = None) -> None:
    """Plain JSON for answers that are not part of a job's stream (status, lists)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    stream.flush()


def format_losses(losses: dict[str, float]) -> str:
    """Whatever terms ran, in the engine's order, the total last."""
    keys = [k for k in losses if k != "total"] + (["total"] if "total" in losses else [])
    # Names come from the daemon: shown, never interpreted by the terminal.
    return " ".join(f"{printable(k, 40)}={losses[k]:.4g}" for k in keys
                    if isinstance(losses[k], (int, float)))
