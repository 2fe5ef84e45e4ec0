"""Runs one parsed command; turns every expected failure into one clear line and an exit code."""

from __future__ import annotations

import argparse
import importlib

from impasto.cli.output import fail
from impasto.errors import (
    OUT_OF_MEMORY,
    UNAVAILABLE,
    USAGE_CODES,
    ImpastoError,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_CANCELLED = 0, 1, 2, 3, 130

# command -> (module, function taking the parsed args). Imported only when run, so the
# client commands never load torch; only stylize (in-process), weights and serve do.
COMMANDS: dict[str, tuple[str, str]] = {
    "stylize": ("impasto.cli.local", "cmd_stylize"),
    "weights": ("impasto.cli.local", "cmd_weights"),
    "send": ("impasto.cli.remote", "cmd_send"),
    "status": ("impasto.cli.remote", "cmd_status"),
    "cancel": ("impasto.cli.remote", "cmd_cancel"),
    "styles": ("impasto.cli.remote", "cmd_styles"),
    "keys": ("impasto.cli.keys", "cmd_keys"),
    "serve": ("impasto.server.serve", "run_serve"),
    "watch": ("impasto.watch.command", "run_watch"),
    "gimp": ("impasto.gimp.install", "run_gimp"),
    "setup": ("impasto.gimp.serversetup", "run_setup"),
}


def exit_code(e: ImpastoError) -> int:
    if e.code in USAGE_CODES:
        return EXIT_USAGE
    if e.code == UNAVAILABLE:
        return EXIT_NO_DAEMON
    return EXIT_FAIL


def run_command(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    module, func = COMMANDS[args.command]
    try:
        return getattr(importlib.import_module(module), func)(args)
    except ImpastoError as e:
        fail(e.message, e.code, as_json)
        return exit_code(e)
    except KeyboardInterrupt:
        fail("interrupted", "cancelled", as_json)
        return EXIT_CANCELLED
    except MemoryError:
        fail("out of memory; use a smaller --size or the draft preset", OUT_OF_MEMORY, as_json)
        return EXIT_FAIL
