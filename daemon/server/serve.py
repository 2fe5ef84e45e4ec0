"""`impasto serve`: settings from flags and an optional TOML file, then the server."""

from __future__ import annotations

import argparse
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto import paths
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.netaddr import endpoint_host, is_local_address
from impasto.options import PRECISIONS

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    bind: str = field(default_factory=paths.default_address)
    device: str = "auto"
    weights: str = "auto"
    precision: str = "auto"
    styles: Path = field(default_factory=paths.styles_dir)
    keys: Path = field(default_factory=paths.keys_dir)
    curve: bool = False
    watch: list[Path] = field(default_factory=list)
    poll: bool = False
    settle: float = 2.0  # seconds a watched file must stay unchanged (see watch/detect.py)
    tile_pixels: int | None = None  # None: from the device's memory
    tile_size: int = 512
    idle_exit: float | None = None  # seconds without requests or jobs, then stop


def settings_from(args: argparse.Namespace) -> ServeSettings:
    s = ServeSettings()
    if args.config is not None:
        _apply_file(s, args.config)
    for name in ("bind", "device", "weights", "precision"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    if args.styles is not None:
        s.styles = args.styles
    if args.curve:
        s.curve = True
    if args.watch:
        s.watch = s.watch + list(args.watch)
    if args.poll:
        s.poll = True
    for name in ("tile_pixels", "tile_size", "idle_exit", "settle"):
        if getattr(args, name, None) is not None:
            setattr(s, name, getattr(args, name))
    return s


# Config keys and the TOML type each must have; checked before anything is used.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "bind": (str,), "device": (str,), "weights": (str,), "precision": (str,),
    "styles": (str,), "keys": (str,), "curve": (bool,), "poll": (bool,),
    "watch": (str, list), "settle": (int, float), "tile_pixels": (int,), "tile_size": (int,),
    "idle_exit": (int, float),
}
TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
              list: "a list"}


def _apply_file(s: ServeSettings, path: Path) -> None:
    def bad(message: str) -> ImpastoError:
        return ImpastoError(BAD_OPTIONS, f"config {path}: {message}")

    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as e:
        raise ImpastoError(BAD_OPTIONS, f"cannot read config {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise bad(f"not valid TOML: {e}") from None
    unknown = set(data) - set(CONFIG_TYPES)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key, value in data.items():
        types = CONFIG_TYPES[key]
        # bool is an int in Python; "true" is a string, not a bool: both are refused.
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise bad(f"{key} must be {' or '.join(TYPE_NAMES[t] for t in types)}, "
                      f"not {value!r}")
    if isinstance(data.get("watch"), list) and not all(isinstance(w, str) for w in data["watch"]):
        raise bad("watch must be a folder or a list of folders (strings)")
    for key in ("bind", "device", "weights", "precision", "curve", "poll", "tile_pixels",
                "tile_size", "settle", "idle_exit"):
        if key in data:
            setattr(s, key, data[key])
    for key in ("styles", "keys"):
        if key in data:
            setattr(s, key, Path(data[key]).expanduser())
    if "watch" in data:
        w = data["watch"]
        s.watch = [Path(x).expanduser() for x in ([w] if isinstance(w, str) else w)]
    if not 0.01 <= s.settle <= 3600:
        raise bad(f"settle must be seconds from 0.01 to 3600, not {s.settle!r}")
    if s.idle_exit is not None and not 1 <= s.idle_exit <= 365 * 86400:
        raise bad(f"idle_exit must be 1 to {365 * 86400} seconds, not {s.idle_exit!r}")
    if s.precision not in PRECISIONS:
        raise bad(f"precision must be one of {', '.join(PRECISIONS)}, not {s.precision!r}")


def local_endpoint(bind: str) -> str:
    """An address this machine can connect to for a bind endpoint (0.0.0.0 -> 127.0.0.1)."""
    transport, host = endpoint_host(bind)
    if transport == "tcp" and host in ("0.0.0.0", "*", "::", ""):
        port = bind.rsplit(":", 1)[1]
        return f"tcp://127.0.0.1:{port}"
    return bind


def run_serve(args: argparse.Namespace) -> int:
    from impasto.engine.runtime import load_engine
    from impasto.server.loop import Server, ServerConfig

    s = settings_from(args)
    watchers = []
    config = ServerConfig(bind=s.bind, styles_dir=s.styles, keys_dir=s.keys, curve=s.curve,
                          idle_exit_s=s.idle_exit)
    server = Server(config, lambda: load_engine(s.weights, s.device, say=log.info,
                                                   precision=s.precision,
                                                   tile_pixels=s.tile_pixels,
                                                   tile_size=s.tile_size))
    server.bind()
    if s.watch:
        from impasto.keys import load_client_keys
        from impasto.watch.folder import start_watchers

        keys = load_client_keys(s.keys) if (s.curve or not is_local_address(s.bind)) else None
        watchers = start_watchers(s.watch, local_endpoint(s.bind), poll=s.poll, keys=keys,
                                  settle=s.settle)
        config.watch_status = lambda: [w.counts() for w in watchers]
    log.info("impasto daemon on %s; stop with Ctrl-C", s.bind)
    try:
        server.serve_forever()
    finally:
        for w in watchers:
            w.stop()
    return 0
