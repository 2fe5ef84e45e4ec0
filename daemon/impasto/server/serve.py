"""`impasto serve`: settings from flags and an optional TOML file, then the server."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import secrets
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto import paths
from impasto.errors import BAD_OPTIONS, ImpastoError, ServeError
from impasto.netaddr import endpoint_host, is_local_address
from impasto.options import PRECISIONS
from impasto.server.clusteraddr import cluster_host_port

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
    cluster: str | None = None  # None: the embedded worker; "local" or a Ray address
    workers: int | None = None
    worker_cpus: int = 1
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
    for name in ("tile_pixels", "tile_size", "idle_exit", "settle", "cluster", "workers",
                 "worker_cpus"):
        if getattr(args, name, None) is not None:
            setattr(s, name, getattr(args, name))
    _check_cluster(s)
    return s


def _check_cluster(s: ServeSettings) -> None:
    if s.workers is not None and s.workers < 1:
        raise ImpastoError(BAD_OPTIONS, f"workers must be 1 or more, not {s.workers}")
    if s.worker_cpus < 1:
        raise ImpastoError(BAD_OPTIONS, f"worker_cpus must be 1 or more, not {s.worker_cpus}")
    if s.cluster is None:
        if s.workers is not None or s.worker_cpus != 1:
            raise ImpastoError(BAD_OPTIONS, "workers and worker_cpus size a cluster's pool; "
                               "without --cluster (cluster = ... in the config) the daemon "
                               "has one embedded worker: add --cluster local, or drop them")
        return
    cluster_host_port(s.cluster)


# Config keys and the TOML type each must have; checked before anything is used.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "bind": (str,), "device": (str,), "weights": (str,), "precision": (str,),
    "styles": (str,), "keys": (str,), "curve": (bool,), "poll": (bool,),
    "watch": (str, list), "settle": (int, float), "tile_pixels": (int,), "tile_size": (int,),
    "idle_exit": (int, float),
    "cluster": (str,), "workers": (int,), "worker_cpus": (int,),
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
                "tile_size", "settle", "idle_exit", "cluster", "workers", "worker_cpus"):
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


CLUSTER_MISSING = ("--cluster needs Ray, which is not installed here: "
                   "pip install 'impasto[cluster]' (in a checkout: "
                   ".venv/bin/pip install -e '.[cluster]')")


def _private_token() -> None:
    """Ray listens on every interface, and whoever reaches its ports can run code as
    this user. Ray 2.60 turns token auth on for local instances, but with one token per
    user, kept in ~/.ray/auth_token world-readable (0644). The private instance gets a
    fresh token of its own instead, known only to this process and the Ray processes it
    starts (they inherit the environment; /proc/PID/environ is readable by this user
    alone). Ray reads these when it is imported, so this comes first."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _backend_factory(s: ServeSettings):  # noqa: ANN202 - a loop.BackendFactory
    """The Ray back end's factory; Ray is imported only here, only for --cluster."""
    # Ray's C++ core would otherwise take SIGTERM over in this process and abort it, and
    # the daemon could not stop cleanly (answering its queued jobs). Read at import.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if s.cluster == "local":
        _private_token()
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ServeError(CLUSTER_MISSING) from None
    from impasto.server.cluster import ClusterSettings, RayBackend

    assert s.cluster is not None
    cs = ClusterSettings(address=s.cluster, workers=s.workers, worker_cpus=s.worker_cpus,
                         weights=s.weights, precision=s.precision, tile_pixels=s.tile_pixels,
                         tile_size=s.tile_size)
    return lambda queue, ctx: RayBackend(queue, ctx, cs)


def run_serve(args: argparse.Namespace) -> int:
    from impasto.engine.runtime import load_engine
    from impasto.server.backend import embedded_factory
    from impasto.server.loop import Server, ServerConfig

    s = settings_from(args)
    if s.watch:
        from impasto.watch.confine import unsupported

        why = unsupported()
        if why:  # before the model loads: Windows has no watch folders yet
            raise ImpastoError(BAD_OPTIONS, why)
    if sys.platform != "win32":
        # `kill -USR1 PID` prints every thread's stack to the log: where a stuck daemon
        # waits (on a cluster, which Ray call). Windows has neither SIGUSR1 nor
        # faulthandler.register.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    watchers = []
    config = ServerConfig(bind=s.bind, styles_dir=s.styles, keys_dir=s.keys, curve=s.curve,
                          idle_exit_s=s.idle_exit)
    if s.cluster is not None:
        server = Server(config, backend_factory=_backend_factory(s))
    else:
        server = Server(config, embedded_factory(
            lambda: load_engine(s.weights, s.device, say=log.info, precision=s.precision,
                                tile_pixels=s.tile_pixels, tile_size=s.tile_size),
            config.cache_bytes))
    server.bind()
    if s.watch:
        from impasto.keys import load_client_keys
        from impasto.watch.folder import start_watchers

        keys = load_client_keys(s.keys) if (s.curve or not is_local_address(s.bind)) else None
        # As many files in flight as the back end has workers up, plus one waiting in
        # the queue, so a worker that finishes finds the next file already decoded.
        in_flight = getattr(server.backend, "in_flight", None)
        watchers = start_watchers(s.watch, local_endpoint(s.bind), poll=s.poll, keys=keys,
                                  settle=s.settle,
                                  in_flight=(lambda: in_flight() + 1) if in_flight else None)
        config.watch_status = lambda: [w.counts() for w in watchers]
        def request_stops() -> None:
            for w in watchers:
                w.request_stop()

        config.on_stopping = request_stops
    log.info("impasto daemon on %s; stop with Ctrl-C", s.bind)
    try:
        server.serve_forever()
    finally:
        if watchers:
            from impasto.watch.folder import stop_watchers

            stop_watchers(watchers)
    return 0
