"""`impasto watch DIR...`: watch folders against a daemon that is already running."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from impasto.client import Client, DaemonUnavailable
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.keys import ClientKeys
from impasto.portable.process import stop_signals
from impasto.watch.confine import unsupported
from impasto.watch.folder import start_watchers, wait_forever

log = logging.getLogger(__name__)


class DaemonWorkers:
    """How many files to keep in flight: the daemon's workers that are up (from its
    status, asked every few seconds, so a cluster that grows gets more), plus one
    waiting in its queue. A daemon without a `workers` list counts as one worker."""

    def __init__(self, address: str, keys: ClientKeys | None = None, every: float = 5.0) -> None:
        self.address = address
        self.keys = keys
        self.every = every
        self.count = 1
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name="watch-workers", daemon=True).start()

    def __call__(self) -> int:
        return self.count + 1

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        with Client(self.address, timeout=self.every, keys=self.keys) as c:
            while not self._stop.is_set():
                try:
                    workers = c.status().workers
                    self.count = max(1, sum(1 for w in workers
                                            if w.get("state") in ("idle", "busy")))
                except (DaemonUnavailable, ImpastoError) as e:
                    log.debug("daemon status: %s", e)
                self._stop.wait(self.every)


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT both stop the watchers cleanly. Both are set explicitly: a
    process started in the background by a non-interactive shell inherits SIGINT as
    ignored (POSIX), and Python then never raises KeyboardInterrupt, so Ctrl-C or
    `kill -INT` would be lost and the process would run on (this is what made the
    watch-command test hang when the suite ran as a background job)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    for sig in stop_signals():  # SIGINT and SIGTERM; Windows: SIGINT and SIGBREAK
        signal.signal(sig, handler)
    return stop


def run_watch(args: argparse.Namespace) -> int:
    why = unsupported()
    if why:  # Windows: say so before anything else, the daemon's absence included
        raise ImpastoError(BAD_OPTIONS, why)
    with Client(args.address, timeout=args.timeout) as c:
        c.ping()  # fail now, with the usual message, if no daemon answers
        address = c.address
    stop = stop_on_signals()
    workers = DaemonWorkers(address)
    watchers = start_watchers(args.folders, address, poll=args.poll, settle=args.settle,
                              in_flight=workers)
    print(f"watching {', '.join(str(w.layout.inbox) for w in watchers)} for the daemon at "
          f"{address}; Ctrl-C to stop")
    try:
        wait_forever(watchers, stop=stop)
    finally:
        workers.stop()
    return 0
