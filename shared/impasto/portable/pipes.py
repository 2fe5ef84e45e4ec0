"""Reading a pipe without `select`: a thread reads it and hands the bytes over a queue.

Windows' `select` takes sockets only (a pipe gives WinError 10038), so the bridge (its
stdin: `stop`, `cancel`, or its closing when the plug-in goes away) and the GIMP
plug-in (the bridge's stdout) read their pipes on a thread each, on every system: the
path Windows takes is the one tested here.

Standard library only and no impasto import: the GIMP plug-in carries a copy of this
file beside it, `impasto_pipes.py`.
"""

from __future__ import annotations

import os
import queue
import threading


class PipeReader:
    """Reads a file descriptor on a daemon thread until end of file. The owner polls
    with `read(timeout)`; the thread never blocks anyone (it dies with the process if
    the pipe never ends)."""

    def __init__(self, fd: int, chunk: int = 65536, name: str = "impasto-pipe") -> None:
        self._fd = fd
        self._chunk = chunk
        self._queue: queue.Queue[bytes] = queue.Queue()
        self.eof = False  # end of file handed to the owner
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self._fd, self._chunk)
            except OSError:  # closed under us, or broken: the same as its end
                data = b""
            self._queue.put(data)
            if not data:
                return

    def read(self, timeout: float = 0.0) -> bytes | None:
        """What has arrived, waiting up to `timeout` seconds for the first bytes: None if
        nothing came, b"" at end of file (then always b"")."""
        if self.eof:
            return b""
        try:
            first = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        parts = [first]
        while parts[-1]:
            try:
                parts.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not parts[-1]:
            self.eof = True
        return b"".join(parts)


class LineReader:
    """Whole lines from a pipe, as they come."""

    def __init__(self, fd: int, name: str = "impasto-lines") -> None:
        self._reader = PipeReader(fd, name=name)
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._reader.eof

    def lines(self, timeout: float = 0.0) -> list[bytes]:
        """The whole lines that arrived (waiting up to `timeout` for any); at end of file
        the last, unterminated piece too. [] with `eof` set: the pipe is done."""
        data = self._reader.read(timeout)
        if data is None:
            return []
        self._pending += data
        *out, self._pending = self._pending.split(b"\n")
        if self._reader.eof and self._pending:
            out.append(self._pending)
            self._pending = b""
        return out
