"""Runs one parsed command; turns every expected failure into one clear line."""

from __future__ import annotations

import argparse
import importlib
import sys

from daemon.cli import EXIT_CANCELLED, EXIT_FAIL, EXIT_NO_DAEMON, EXIT_USAGE, engine_options
from shared.client import Client, DaemonUnavailable
from shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from shared.frontend import fail, print_summary

USAGE_CODES = {BAD_OPTIONS, BAD_IMAGE, "unknown_style", "image_too_large"}


def run_command(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        return _dispatch(args)
    except ImpastoError as e:
        fail(e.message, e.code, as_json)
        return EXIT_USAGE if e.code in USAGE_CODES else EXIT_FAIL
    except DaemonUnavailable as e:
        fail(str(e), "unavailable", as_json)
        return EXIT_NO_DAEMON
    except KeyboardInterrupt:
        fail("interrupted", "cancelled", as_json)
        return EXIT_CANCELLED
    except Exception as e:
        from daemon.errors import describe

        msg, code = describe(e)
        if code is None:
            raise
        fail(msg, code, as_json)
        return EXIT_FAIL


# command -> (module, function taking args); imported only when run, so client
# commands never load torch.
COMMANDS = {
    "status": ("shared.frontend", "cmd_status"),
    "cancel": ("shared.frontend", "cmd_cancel"),
    "styles": ("shared.frontend", "cmd_styles"),
    "serve": ("daemon.serve", "run_serve"),
    "keys": ("daemon.keyscmd", "run_keys"),
    "watch": ("shared.watch.command", "run_watch"),
    "gimp": ("plugin.install", "run_gimp"),
}


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "send":
        from shared.frontend import cmd_send

        return cmd_send(args, engine_options(args))
    if cmd == "stylize":
        return _stylize(args)
    if cmd == "weights":
        from daemon.runtime import load_engine

        load_engine(args.spec, "cpu", say=lambda m: print(m, file=sys.stderr))
        return 0
    if cmd not in COMMANDS:
        raise ImpastoError(BAD_OPTIONS, f"unknown command {cmd}")
    module, func = COMMANDS[cmd]
    return getattr(importlib.import_module(module), func)(args)


def _stylize(args: argparse.Namespace) -> int:
    options = engine_options(args)
    explicit_local = (args.local or args.weights is not None or args.device is not None
                      or args.precision is not None)
    if not explicit_local:
        client = Client(args.address, timeout=args.timeout)
        try:
            client.ping(timeout=0.5)
        except DaemonUnavailable:
            client.close()
        else:
            from shared.frontend import cmd_send

            client.close()
            print(f"impasto: using the daemon at {client.address}", file=sys.stderr)
            return cmd_send(args, options)
    from daemon.local import stylize_local

    print_summary(stylize_local(args, options), args.json)
    return 0
