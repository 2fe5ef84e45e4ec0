"""`impasto watch DIR...`: watch folders against a daemon that is already running."""

from __future__ import annotations

import argparse
import logging
import threading

from impasto.client import Client, DaemonUnavailable
from impasto.errors import ImpastoError
from impasto.keys import ClientKeys
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


def run_watch(args: argparse.Namespace) -> int:
    with Client(args.address, timeout=args.timeout) as c:
        c.ping()  # fail now, with the usual message, if no daemon answers
        address = c.address
    workers = DaemonWorkers(address)
    watchers = start_watchers(args.folders, address, poll=args.poll, settle=args.settle,
                              in_flight=workers)
    print(f"watching {', '.join(str(w.layout.inbox) for w in watchers)} for the daemon at "
          f"{address}; Ctrl-C to stop")
    try:
        wait_forever(watchers)
    finally:
        workers.stop()
    return 0
