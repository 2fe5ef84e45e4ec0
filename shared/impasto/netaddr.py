"""Is a ZeroMQ endpoint local to this machine?"""

from __future__ import annotations

import ipaddress


def endpoint_host(address: str) -> tuple[str, str]:
    """("tcp", host) for tcp://host:port; (transport, "") otherwise."""
    transport, _, rest = address.partition("://")
    if transport != "tcp":
        return transport, ""
    host = rest.rsplit(":", 1)[0]
    return transport, host.strip("[]")


def is_local_address(address: str) -> bool:
    transport, host = endpoint_host(address)
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a hostname: treat as public
