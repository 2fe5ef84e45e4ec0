"""`impasto watch DIR...`: watch folders against a daemon that is already running."""

from __future__ import annotations

import argparse

from impasto.client import Client
from impasto.watch.folder import start_watchers, wait_forever


def run_watch(args: argparse.Namespace) -> int:
    with Client(args.address, timeout=args.timeout) as c:
        c.ping()  # fail now, with the usual message, if no daemon answers
        address = c.address
    watchers = start_watchers(args.folders, address, poll=args.poll, settle=args.settle)
    print(f"watching {', '.join(str(w.layout.inbox) for w in watchers)} for the daemon at "
          f"{address}; Ctrl-C to stop")
    wait_forever(watchers)
    return 0
