"""CurveZMQ key files: a server pair, and client pairs the server authorises.

Layout under the keys folder (default ~/.config/impasto/keys):
  server.key, server.key_secret     the daemon's pair (ZeroMQ's certificate format)
  client.key, client.key_secret     this machine's client pair
  authorized/NAME.key               public keys of clients the daemon accepts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq.auth


@dataclass
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def load_client_keys(keys_dir: Path) -> ClientKeys | None:
    """This machine's client pair plus the server's public key, if all are there."""
    try:
        server_public, _ = zmq.auth.load_certificate(keys_dir / "server.key")
        public, secret = zmq.auth.load_certificate(keys_dir / "client.key_secret")
    except (OSError, ValueError):
        return None
    if secret is None:
        return None
    return ClientKeys(public, secret, server_public)
