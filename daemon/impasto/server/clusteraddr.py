"""The `--cluster` address's syntax: checked by `serve` (settings) and used by the Ray
back end, so neither imports the other."""

from __future__ import annotations

from impasto.errors import BAD_OPTIONS, ImpastoError


def cluster_host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a `ray://HOST:PORT` or `HOST:PORT` cluster address; None for
    `local` and `auto`. Raises ImpastoError(BAD_OPTIONS) for anything else."""
    if address in ("local", "auto"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if (not sep or not host.strip("[]") or "/" in rest or any(c.isspace() for c in rest)
            or not port.isdigit() or not 1 <= int(port) <= 65535):
        raise ImpastoError(BAD_OPTIONS, f"cluster must be local, auto, ray://HOST:PORT or "
                           f"HOST:PORT (a port from 1 to 65535), not {address!r}")
    return host.strip("[]"), int(port)
