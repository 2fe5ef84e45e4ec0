"""The client every front end uses: CLI, GIMP bridge and watch folder.

One DEALER socket; each request carries a fresh `req` id and replies are matched on it.
Every wait has a timeout, so a dead or missing daemon is reported, never waited on.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from impasto import paths
from impasto.errors import BAD_OPTIONS, MESSAGE_TOO_LARGE, DaemonUnavailable, ImpastoError
from impasto.keys import ClientKeys, ensure_local_keys, load_client_keys
from impasto.netaddr import is_local_address
from impasto.protocol import (
    MAX_MESSAGE_BYTES,
    Accepted,
    Cancel,
    Cancelled,
    Error,
    Frame,
    Message,
    Ping,
    Pong,
    Progress,
    Result,
    Status,
    StatusRequest,
    Stylize,
    decode,
    encode,
    printable,
)

_ids = itertools.count(1)


def unavailable_message(address: str, timeout: float) -> str:
    # `impasto serve` alone listens on the default address: name the one asked for when
    # it is another, so that the advice starts a daemon where this client looks.
    serve = "impasto serve" if address == paths.default_address() else f"impasto serve --bind {address}"
    return (f"no impasto daemon answered at {address} within {timeout:g} s; "
            f"start one with `{serve}` (or point --address / IMPASTO_ADDRESS at one)")


class Client:
    def __init__(self, address: str | None = None, timeout: float = 5.0,
                 keys: ClientKeys | None | bool = None, keys_dir: Path | None = None) -> None:
        """keys: the pair to use; None: this user's (on loopback, the local keyring is
        made if missing); False: none at all (only for tests of refusal)."""
        self.address = address or paths.default_address()
        self.timeout = timeout
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A DEALER blocks on send while it has no peer, e.g. after a refused CurveZMQ
        # handshake; a send timeout turns that into "no daemon answered".
        self.sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        if keys is None:
            folder = keys_dir or paths.keys_dir()
            keys = (ensure_local_keys(folder) if is_local_address(self.address)
                    else load_client_keys(folder))
        if isinstance(keys, ClientKeys):
            # The server's public key is pinned: something else listening on the port
            # (another user's program, say) cannot complete the handshake, so nothing,
            # a GIMP layer included, is ever sent to it.
            self.sock.curve_publickey = keys.public
            self.sock.curve_secretkey = keys.secret
            self.sock.curve_serverkey = keys.server_public
        try:
            self.sock.connect(self.address)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise ImpastoError(BAD_OPTIONS, f"{printable(self.address)} is not a daemon address "
                               f"({e.strerror}); use tcp://HOST:PORT, e.g. tcp://127.0.0.1:5767") from None
        self._prefix = f"{os.getpid()}-{id(self) & 0xFFFF:x}"

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------
    def _new_req(self) -> str:
        return f"{self._prefix}-{next(_ids)}"

    def send(self, msg: Message) -> str:
        req = self._new_req()
        frames = encode(msg, req)
        size = sum(len(f) for f in frames)
        if size > MAX_MESSAGE_BYTES:
            # Refused here, as the daemon would: a message far over the limit is dropped by
            # the daemon's socket unanswered (protocol.MAX_FRAME_DROP_BYTES).
            raise ImpastoError(MESSAGE_TOO_LARGE, f"the message is {size:,} bytes; the "
                               f"protocol allows at most {MAX_MESSAGE_BYTES:,}")
        try:
            self.sock.send_multipart(frames, copy=False)
        except zmq.Again:
            raise DaemonUnavailable(unavailable_message(self.address, self.timeout)) from None
        return req

    def receive(self, timeout: float) -> tuple[Message, str | None] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return decode(self.sock.recv_multipart())

    def call(self, msg: Message, timeout: float | None = None) -> Message:
        """One request, one reply. Raises ImpastoError for an error reply."""
        timeout = self.timeout if timeout is None else timeout
        req = self.send(msg)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is None:
                break
            reply, rreq = got
            if rreq != req:
                continue  # a late reply to something we gave up on
            if isinstance(reply, Error):
                raise ImpastoError(reply.code, reply.message)
            return reply
        raise DaemonUnavailable(unavailable_message(self.address, timeout))

    # --- requests ----------------------------------------------------------------------
    def ping(self, timeout: float | None = None) -> Pong:
        reply = self.call(Ping(), timeout)
        assert isinstance(reply, Pong)
        return reply

    def status(self) -> Status:
        reply = self.call(StatusRequest())
        assert isinstance(reply, Status)
        return reply

    def cancel(self, job: str, keep: bool = False) -> Cancelled:
        """keep: stop a running job and have its result be the image as it stands."""
        reply = self.call(Cancel(job=job, keep=keep))
        assert isinstance(reply, Cancelled)
        return reply

    def stylize(
        self,
        request: Stylize,
        on_accepted: Callable[[Accepted], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        should_finish: Callable[[], bool] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> Result:
        """Send a job and follow it to its result. Raises ImpastoError for a job error.
        should_cancel: polled; once true the job is cancelled. should_finish: polled;
        once true the job is stopped and its result is the image as it then stands (a
        clip: the frames done). on_frame: each stylized frame of a clip, in order.

        While a job waits in the queue no events arrive; after `timeout` seconds of
        silence the daemon is asked for its status, so that a dead daemon is noticed and
        a busy one is not; and a daemon started since it accepted the job (killed and
        started again on the same address: it answers, but it never had the job) is
        noticed by its uptime, rather than waited for without end.
        """
        req = self.send(request)
        job: str | None = None
        accepted_at = 0.0
        last_heard = time.monotonic()
        ping_req: str | None = None
        cancel_sent = finish_sent = False
        while True:
            if should_cancel is not None and job is not None and not cancel_sent and should_cancel():
                self.send(Cancel(job=job))
                cancel_sent = True
            if (should_finish is not None and job is not None and not cancel_sent
                    and not finish_sent and should_finish()):
                self.send(Cancel(job=job, keep=True))
                finish_sent = True
            got = self.receive(0.2)
            now = time.monotonic()
            if got is None:
                if now - last_heard > self.timeout:
                    if ping_req is not None:
                        raise DaemonUnavailable(
                            unavailable_message(self.address, self.timeout)
                            if job is None else
                            f"the daemon at {self.address} stopped answering during job {job}")
                    ping_req = self.send(StatusRequest() if job is not None else Ping())
                    last_heard = now
                continue
            msg, rreq = got
            last_heard = now
            if rreq == ping_req:
                ping_req = None
                # Up for less time than since it accepted the job (a second's slack for
                # the two clocks): another daemon than the one that has it.
                if isinstance(msg, Status) and msg.uptime_s < now - accepted_at - 1.0:
                    raise DaemonUnavailable(
                        f"the daemon at {self.address} was restarted during job {job} "
                        f"(up {msg.uptime_s:.0f} s): the job was lost with it; send it again")
                continue
            if rreq != req:
                continue
            if isinstance(msg, Accepted):
                job = msg.job
                accepted_at = now
                if on_accepted:
                    on_accepted(msg)
            elif isinstance(msg, Progress):
                if on_progress:
                    on_progress(msg)
            elif isinstance(msg, Frame):
                if on_frame:
                    on_frame(msg)
            elif isinstance(msg, Result):
                return msg
            elif isinstance(msg, Error):
                raise ImpastoError(msg.code, msg.message)
