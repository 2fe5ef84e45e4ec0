"""CLI flags for engine options, generated from EngineOptions' field metadata."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from impasto.options import FIELDS, EngineOptions, base_type, describe_range, type_hints


def _list_of(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [x.strip() for x in text.split(",")]
        if not all(parts):  # "1,,2" or "2,": refused, never read as something else
            raise argparse.ArgumentTypeError(f"an empty entry in {text!r}")
        try:
            return [kind(x) for x in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """One flag per EngineOptions field; each defaults to None (= not given)."""
    g = p.add_argument_group("engine options (impasto's defaults unless given)")
    hints = type_hints()
    for name, f in FIELDS.items():
        kind, is_list, _ = base_type(hints[name])
        m = f.metadata
        text = f"{m['help']} [{describe_range(f).replace(chr(92), '')}]"
        if kind is bool:
            g.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None,
                           help=m["help"])
        elif is_list:
            g.add_argument(flag(name), type=_list_of(kind), default=None, metavar="A,B,...",
                           help=text)
        elif m["choices"]:
            g.add_argument(flag(name), choices=m["choices"], default=None, help=m["help"])
        else:
            g.add_argument(flag(name), type=kind, default=None, metavar=kind.__name__.upper(),
                           help=text)


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The options a person gave on the command line, validated (raises ImpastoError)."""
    return EngineOptions.from_dict(
        {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None})
