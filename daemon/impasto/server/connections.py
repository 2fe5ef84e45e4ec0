"""The daemon's connections: which TCP connection each client's routing id came in on,
whose key it proved, and which of its stylize requests are still being decoded.

A ROUTER socket does not say when a peer goes. The socket monitor's EVENT_DISCONNECTED
names the connection's file descriptor, and each message's SRCFD names the one it came
on, so the loop can tell which routing ids (and so which jobs) a closed connection
takes with it. A request still in the intake (its images decoding) is no job yet: it
is marked here, so that the loop drops it instead of queueing a job nobody can hear.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

import zmq

log = logging.getLogger(__name__)


@dataclass
class _Conn:
    fd: int
    key: str  # the CurveZMQ public key (Z85) the authenticator vouched for
    remote: object  # the connection's far end, to tell a reused fd from this one


def _remote(fd: int) -> object:
    """The far end of the connection on `fd`, or None when there is none any more: libzmq
    may have closed the descriptor (a client that sent and left at once) or handed the
    number to a file before its disconnect is read. Wrapping a closed descriptor raises
    at once, so it is inside the try too: raised in the loop, it stopped the daemon."""
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        return s.getpeername()
    except OSError:
        return None
    finally:
        s.detach()  # libzmq owns the descriptor: never closed here


@dataclass
class Connections:
    _peers: dict[bytes, _Conn] = field(default_factory=dict)
    _fd_peers: dict[int, set[bytes]] = field(default_factory=dict)
    # Per peer, one event per stylize request in the intake; set when the peer goes.
    _intake: dict[bytes, set[threading.Event]] = field(default_factory=dict)
    # Descriptors whose connection closed and that no new connection has taken since
    # (the monitor says EVENT_ACCEPTED first): a message read from one was sent just
    # before its connection closed, and nobody is there to answer.
    _dead: set[int] = field(default_factory=set)

    def note(self, frame: zmq.Frame, key: str) -> None:
        """A message came from the routing id in `frame` (the ROUTER's first frame)."""
        peer = frame.bytes
        if peer in self._peers:
            return
        fd = int(frame.get(zmq.SRCFD))
        if fd in self._dead:  # not noted: its requests find their peer gone
            return
        self._peers[peer] = _Conn(fd, key, _remote(fd))
        self._fd_peers.setdefault(fd, set()).add(peer)

    def accepted(self, fd: int) -> None:
        """A new connection came in on `fd`."""
        self._dead.discard(fd)

    def closed(self, fd: int) -> set[bytes]:
        """The connection on `fd` ended: the routing ids it carried, now forgotten. Their
        requests still in the intake are marked gone."""
        self._dead.add(fd)
        peers = self._fd_peers.pop(fd, set())
        for peer in peers:
            self._peers.pop(peer, None)
            for gone in self._intake.get(peer, ()):
                gone.set()
        return peers

    def intake(self, peer: bytes) -> threading.Event:
        """A stylize request of `peer` goes to the intake; the event is set if the peer
        disconnects before `intake_done`."""
        gone = threading.Event()
        if peer not in self._peers:  # already gone (or never seen): nobody to answer
            gone.set()
        self._intake.setdefault(peer, set()).add(gone)
        return gone

    def intake_done(self, peer: bytes, gone: threading.Event) -> None:
        waiting = self._intake.get(peer)
        if waiting is not None:
            waiting.discard(gone)
            if not waiting:
                del self._intake[peer]

    def cut_keys_not_in(self, authorized: frozenset[bytes]) -> list[str]:
        """Close every connection whose key is no longer authorised (its file was
        deleted from authorized/): a revoked key keeps no open connection. The close is
        a TCP shutdown under libzmq, which then ends the connection as if the client had
        (its jobs are cancelled when the disconnect arrives) and refuses the client's
        automatic reconnect at the handshake. Returns the keys cut off."""
        cut: list[str] = []
        done: set[int] = set()
        for conn in list(self._peers.values()):
            if not conn.key or conn.key.encode() in authorized or conn.fd in done:
                continue
            done.add(conn.fd)
            # A descriptor closed and reused by a new connection before its disconnect
            # was read belongs to someone else now: its far end differs.
            if conn.remote is None or _remote(conn.fd) != conn.remote:
                continue
            try:
                s = socket.socket(fileno=conn.fd)
            except OSError:  # closed meanwhile: nothing left to cut
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
                cut.append(conn.key)
            except OSError as e:
                log.warning("could not close a revoked key's connection: %s", e)
            finally:
                s.detach()
        return cut
