"""The daemon's ZeroMQ front: one ROUTER socket, requests in, replies and events out.

Data flows one way: frames -> protocol.decode -> job queue -> worker/engine -> events
-> this loop -> the client that asked.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from impasto import imagecodec
from impasto.errors import (
    BAD_MESSAGE,
    CANCELLED,
    INTERNAL,
    MESSAGE_TOO_LARGE,
    QUEUE_FULL,
    SHUTDOWN,
    UNKNOWN_JOB,
    UNKNOWN_TYPE,
    ImpastoError,
    ServeError,
)
from impasto.keys import (
    LOCAL_KEY_FILE,
    AuthorizedKeys,
    check_private,
    ensure_local_keys,
    other_clients,
)
from impasto.netaddr import is_local_address
from impasto.portable.process import stop_signals
from impasto.protocol import (
    MAX_FRAME_DROP_BYTES,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    CancelledFrom,
    DaemonState,
    Done,
    Error,
    Message,
    Ping,
    Pong,
    Status,
    StatusRequest,
    Styles,
    StylesAdd,
    StylesList,
    StylesRemove,
    Stylize,
    decode,
    encode,
)
from impasto.server.connections import Connections
from impasto.server.events import EVENTS_ENDPOINT, WAKE_ENDPOINT
from impasto.server.intake import IntakeThread, admit, decode_job
from impasto.server.interface import Backend
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.stylelib import StyleLibrary
from impasto.version import __version__

log = logging.getLogger(__name__)

# How often open connections are checked against authorized/ (a stat of each file), so
# that a deleted key's connection is closed within about this long.
KEY_CHECK_S = 1.0


@dataclass
class ServerConfig:
    bind: str
    styles_dir: Path
    keys_dir: Path
    curve: bool = True  # always: kept so old configs that say `curve = true` still load
    cache_bytes: int = 512 * 1024 * 1024
    batch_every: int = 3
    watch_status: Callable[[], list[dict]] | None = field(default=None, repr=False)
    # Stop after this many seconds with no request, no job and nothing queued (None:
    # never). A daemon that an editor started on demand sets it, so that it does not
    # outlive the editor by days.
    idle_exit_s: float | None = None
    # Called once as shutdown begins, before the queue closes (watch folders cancel
    # their jobs while the socket still answers).
    on_stopping: Callable[[], None] | None = field(default=None, repr=False)


def _server_keys(keys_dir: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(keys_dir / "server.key_secret")
    except (OSError, ValueError):
        raise ServeError(
            f"CurveZMQ keys are needed but {keys_dir / 'server.key_secret'} is missing; "
            "create them with `impasto keys init`") from None
    if secret is None:
        raise ServeError(f"{keys_dir / 'server.key_secret'} holds no secret key")
    return public, secret


# Makes the back end from the server's queue and events context (for `--cluster`).
BackendFactory = Callable[[JobQueue, zmq.Context], Backend]


class Server:
    _handlers: ClassVar[dict[type[Message], Handler]]  # message type -> handler, below
    def __init__(self, config: ServerConfig, backend_factory: BackendFactory) -> None:
        self.config = config
        self.library = StyleLibrary(config.styles_dir)
        self.queue = JobQueue(batch_every=config.batch_every)
        self.started = time.monotonic()  # uptime: no wall-clock step may shorten it
        self.stopping = threading.Event()
        self.ctx = zmq.Context()
        # The loop knows only the back-end interface: no engine, no torch here.
        self.backend: Backend = backend_factory(self.queue, self.ctx)
        self.auth: ThreadAuthenticator | None = None
        self.router: zmq.Socket | None = None
        self.events: zmq.Socket | None = None
        self.wake: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        # A connection's end (the monitor's EVENT_DISCONNECTED names the fd) cancels the
        # jobs it submitted, and the requests it has in the intake: their events could
        # reach no one.
        self.conns = Connections()
        self.authorized: AuthorizedKeys | None = None
        self.intake = IntakeThread(self.ctx)
        self.rejected = 0  # stylize requests refused at acceptance
        # Jobs that ended before they ran: cancelled while queued (by their owner, their
        # client's disconnect or a shutdown) or while their images were decoded. Those
        # cancelled while running are the back end's.
        self.cancelled = 0

    # --- life cycle --------------------------------------------------------------------
    def bind(self) -> None:
        cfg = self.config
        # CurveZMQ on every address, loopback too: on loopback any local user can connect
        # to a TCP port, and only keys tell this user's clients from theirs. The local
        # keyring is made on first start (by any impasto program); a public address
        # also needs a key made on purpose for another machine, since this machine's
        # own key alone would let no other machine in: such a bind is a mistake.
        if is_local_address(cfg.bind):
            ensure_local_keys(cfg.keys_dir)
        elif not (cfg.keys_dir / "server.key_secret").exists() or not other_clients(cfg.keys_dir):
            raise ServeError(
                f"refusing to listen on {cfg.bind}: it is reachable from other machines, and "
                f"no other machine's key is authorised in {cfg.keys_dir / 'authorized'}. "
                "Authorise each client machine with `impasto keys add-client NAME` (or "
                "`impasto keys authorize FILE.key`), or bind to 127.0.0.1.")
        check_private(cfg.keys_dir)
        public, secret = _server_keys(cfg.keys_dir)
        authorized = cfg.keys_dir / "authorized"
        authorized.mkdir(parents=True, exist_ok=True, mode=0o700)
        auth_log = logging.getLogger("impasto.auth")
        self.auth = ThreadAuthenticator(self.ctx, log=auth_log)
        self.auth.start()
        # The folder as it is at each handshake, not as it was at start: keys added or
        # removed (`impasto keys add-client`) count without a restart.
        self.authorized = AuthorizedKeys(authorized, auth_log)
        self.auth.configure_curve_callback(domain="*", credentials_provider=self.authorized)
        self.library.make_private()
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.SNDHWM, 100_000)
        router.setsockopt(zmq.RCVHWM, 10_000)
        # ZeroMQ checks MAXMSGSIZE per frame and drops the whole connection on a bigger
        # one, with no reply: the client would wait in vain. So the cap sits far above the
        # protocol's limit (a message up to it is read and answered message_too_large by
        # _handle) and only stops a frame big enough to hurt the host's memory.
        router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_DROP_BYTES)
        router.curve_secretkey = secret
        router.curve_publickey = public
        router.curve_server = True
        try:
            router.bind(cfg.bind)
        except zmq.ZMQError as e:
            router.close(0)
            raise ServeError(f"cannot listen on {cfg.bind}: {e.strerror}"
                             " (is another daemon running there?)") from None
        self.router = router
        # libzmq's ROUTER_NOTIFY is a draft API, absent from released builds: the socket
        # monitor's disconnect events (by fd) stand in for it.
        self.monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED)
        self.events = self.ctx.socket(zmq.PULL)
        self.events.bind(EVENTS_ENDPOINT)
        self.wake = self.ctx.socket(zmq.PULL)
        self.wake.bind(WAKE_ENDPOINT)
        log.info("listening on %s (CurveZMQ; clients authorised in %s)", cfg.bind,
                 authorized)

    @property
    def load_error(self) -> BaseException | None:
        return self.backend.load_error

    def serve_forever(self, install_signals: bool = True) -> None:
        assert self.router is not None and self.events is not None
        if install_signals:
            for sig in stop_signals():
                signal.signal(sig, lambda *_: self.stopping.set())
        self.backend.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        last_active = last_keys = time.monotonic()
        try:
            while not self.stopping.is_set():
                ready = dict(poller.poll(100))
                now = time.monotonic()
                if ready or self._busy():
                    last_active = now
                elif (self.config.idle_exit_s is not None
                        and now - last_active > self.config.idle_exit_s):
                    log.info("idle for %.0f s (idle_exit): stopping", now - last_active)
                    break
                if self.wake in ready:
                    self._finish_offloaded()
                if self.events in ready:
                    self._forward_events()
                if self.monitor in ready:
                    self._disconnects()
                if now - last_keys >= KEY_CHECK_S:
                    last_keys = now
                    self._cut_revoked()
                if self.router in ready:
                    for _ in range(100):  # bounded, so events are forwarded in between
                        try:
                            frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        # A closed connection's fd may be reused by the next one: its
                        # disconnect is read before any message that may come on the reuse.
                        self._disconnects()
                        self._handle(frames)
                if self.load_error is not None:
                    break
        finally:
            self._shutdown()
        if self.load_error is not None:
            raise ServeError(str(self.load_error)) from self.load_error

    def _busy(self) -> bool:
        """A job runs, waits, or is still being decoded (or the model still loads)."""
        if not self.backend.ready() or self.backend.running():
            return True
        return len(self.queue) > 0 or self.intake.has_finished()

    def _shutdown(self) -> None:
        assert self.router is not None and self.events is not None
        self.stopping.set()
        if self.config.on_stopping is not None:
            try:
                self.config.on_stopping()
            except Exception:  # noqa: BLE001 - shutting down goes on regardless
                log.exception("on_stopping failed")
        self.intake.shutdown()
        self._finish_offloaded()  # requests decoded meanwhile are answered "shutdown"
        queued = self.queue.close()
        reason = str(self.load_error) if self.load_error else "the daemon is shutting down"
        for job in queued:
            self.cancelled += 1
            self._send(job.peer, Error(SHUTDOWN, f"{reason}; job {job.id} was not run", job.id), job.req)
        self.backend.stop()
        deadline = time.monotonic() + 30
        while self.backend.busy() and time.monotonic() < deadline:
            if self.events.poll(100):
                self._forward_events()
        self._forward_events()
        self.backend.close()
        if self.auth is not None:
            self.auth.stop()
        self.events.close(0)
        self.wake.close(0)
        if self.monitor is not None:
            self.router.disable_monitor()
            self.monitor.close(0)
        self.router.close(linger=1000)
        self.ctx.term()
        log.info("stopped after %d jobs", self.backend.done)

    # --- work off the socket loop: the intake thread's requests, finished here --------
    def _finish_offloaded(self) -> None:
        assert self.wake is not None
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        for peer, req, finish, gone in self.intake.finished():
            if gone is not None:
                self.conns.intake_done(peer, gone)
                if gone.is_set():
                    # Its client left while its images were decoded: no job is queued,
                    # as one queued then would be cancelled by the same disconnect.
                    self.cancelled += 1
                    log.info("request %s dropped: its client disconnected while its images "
                             "were decoded", req or "?")
                    continue
            try:
                reply = finish()
            except ImpastoError as e:
                reply = Error(e.code, e.message)
                if gone is not None:
                    self._count_rejected(e)
            self._send(peer, reply, req)

    # --- connections that end -----------------------------------------------------------
    def _disconnects(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self.conns.accepted(int(event["value"]))
                continue
            if event["event"] != zmq.EVENT_DISCONNECTED:
                continue
            for peer in self.conns.closed(int(event["value"])):
                self._cancel_peer(peer)

    def _cut_revoked(self) -> None:
        """Close the connections of keys deleted from authorized/ since they connected,
        so that revoking a key takes effect on connections already open too."""
        if self.authorized is None:
            return
        self._disconnects()  # a closed connection's fd is forgotten before any is cut
        for key in self.conns.cut_keys_not_in(self.authorized.keys()):
            log.warning("closed a connection of client key %s...: it is no longer authorised",
                        key[:8])

    def _cancel_peer(self, peer: bytes) -> None:
        """The connection that submitted these jobs is gone (client killed, closed, or
        reconnected with a new routing id): no one can get their events, so they stop
        and make way for the jobs behind them."""
        for job in self.queue.snapshot():
            if job.peer == peer and self.queue.remove(job.id) is not None:
                self.cancelled += 1
                log.info("job %s cancelled: its client disconnected while it waited", job.id)
        for job in self.backend.running():
            if job.peer == peer and self.backend.cancel_running(job.id) is not None:
                log.info("job %s cancelled: its client disconnected while it ran", job.id)

    def _forward_events(self) -> None:
        assert self.events is not None and self.router is not None
        while True:
            try:
                frames = self.events.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.router.send_multipart(frames, copy=False)

    def _send(self, peer: bytes, msg: Message, req: str | None) -> None:
        assert self.router is not None
        self.router.send_multipart([peer] + encode(msg, req), copy=False)

    def _handle(self, frames: list[zmq.Frame]) -> None:
        peer, body = frames[0].bytes, [f.bytes for f in frames[1:]]
        # Who sent it: the client's CurveZMQ public key, as the authenticator vouched.
        # Jobs belong to it; only it may cancel them or see what they are.
        user = frames[-1].get("User-Id") or "" if len(frames) > 1 else ""
        self.conns.note(frames[0], user)
        current = self.authorized.keys() if self.authorized is not None else None
        if current is not None and user.encode() not in current:
            # The handshake vouched for the key when the connection was made; a key
            # revoked since (a connection that stayed silent is not known to the
            # once-a-second check until it speaks) gets nothing done: no answer, as at a
            # refused handshake, and its connection is closed now.
            log.warning("dropped a request of client key %s...: it is no longer authorised",
                        user[:8])
            self._cut_revoked()
            return
        size = sum(len(f) for f in body)
        if size > MAX_MESSAGE_BYTES or (body and len(body[0]) > MAX_HEADER_BYTES):
            # Not parsed, not even for its req id, and nothing of it echoed: a 200 MiB
            # header would otherwise cost its size again in memory and in the reply.
            self._send(peer, Error(MESSAGE_TOO_LARGE, f"message of {size} bytes dropped unread; "
                                   f"the limits are {MAX_MESSAGE_BYTES} bytes in all and "
                                   f"{MAX_HEADER_BYTES} for the header"), None)
            return
        req = _best_effort_req(body)
        msg = None
        try:
            msg, req = decode(body)
            reply = self._dispatch(peer, user, msg, req)
        except ImpastoError as e:
            reply = Error(e.code, e.message)
            if isinstance(msg, Stylize):
                self._count_rejected(e)
        except Exception as e:  # a bad request must never take the daemon down
            log.exception("request failed")
            reply = Error(INTERNAL, f"internal error ({type(e).__name__}); the daemon's log has the details")
        if reply is not None:
            self._send(peer, reply, req)

    def _dispatch(self, peer: bytes, user: str, msg: Message, req: str | None) -> Message | None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            # A reply or event type sent to the daemon: the protocol's "not one of the requests".
            raise ImpastoError(UNKNOWN_TYPE, f"{msg.TYPE} is not a request")
        return handler(self, peer, user, msg, req)

    # One handler per request type, each (peer, user, msg, req) -> reply or None (the
    # reply comes later, from the intake thread). The table is filled below the class.
    def _ping(self, peer: bytes, user: str, msg: Ping, req: str | None) -> Message:
        return Pong(version=__version__, protocol=PROTOCOL_VERSION)

    def _status_request(self, peer: bytes, user: str, msg: StatusRequest,
                        req: str | None) -> Message:
        return self._status(user)

    def _cancel_request(self, peer: bytes, user: str, msg: Cancel, req: str | None) -> Message:
        return self._cancel(msg.job, user, msg.keep)

    def _styles_list(self, peer: bytes, user: str, msg: StylesList, req: str | None) -> Message:
        return Styles(styles=self.library.list(user, self.local_user))

    def _styles_add(self, peer: bytes, user: str, msg: StylesAdd, req: str | None) -> None:
        image = msg.image
        if image is None:
            raise ImpastoError(BAD_MESSAGE, "styles.add needs an image")

        def add() -> Callable[[], Message]:
            # Styles belong to the key that added them, as jobs do: others may use and
            # list them, not replace them (the local user's key may, as on disk).
            info = self.library.add(msg.name, imagecodec.decode_pil(image, "the style image"),
                                    user, self.local_user)
            return lambda: Done(detail=json.dumps(info))

        self.intake.submit(peer, req, add)
        return None

    def _styles_remove(self, peer: bytes, user: str, msg: StylesRemove,
                       req: str | None) -> Message:
        self.library.remove(msg.name, user, self.local_user)
        return Done(detail=f"removed {msg.name}")

    def _stylize(self, peer: bytes, user: str, msg: Stylize, req: str | None) -> None:
        if self.stopping.is_set():
            raise ImpastoError(SHUTDOWN, "the daemon is shutting down")
        opts = admit(msg)  # checks from the headers; the pixels are decoded off this loop
        gone = self.conns.intake(peer)

        def decode() -> Callable[[], Message]:
            job = decode_job(msg, opts, self.library, peer=peer, req=req, owner=user, gone=gone)
            return lambda: self._accept(job)

        self.intake.submit(peer, req, decode, gone)
        return None

    def _count_rejected(self, e: ImpastoError) -> None:
        # A job refused at the door (undecodable image, unknown style, bad options) is a
        # failed job like one that fails while running; a full queue or a shutdown is
        # the daemon's state, which the client retries, not a failure of the job; a
        # malformed message (a stylize with neither content nor frames) never was one.
        if e.code not in (QUEUE_FULL, SHUTDOWN, BAD_MESSAGE):
            self.rejected += 1

    def _accept(self, job: Job) -> Message:
        if self.stopping.is_set():
            raise ImpastoError(SHUTDOWN, "the daemon is shutting down")
        position = self.queue.put(job)
        log.info("job %s accepted (%s, %s, position %d)", job.id, job.client or "?",
                 job.priority, position)
        return Accepted(job=job.id, position=position)

    def _cancel(self, job_id: str, user: str, keep: bool = False) -> Message:
        # Another client's job is answered as if it did not exist: ids are guessable.
        job = self.queue.remove(job_id, owner=user)
        if job is not None:
            self.cancelled += 1
            self._send(job.peer, Error(CANCELLED, f"job {job.id} was cancelled", job.id), job.req)
            return Cancelled(job=job_id, was=CancelledFrom.QUEUED)
        if self.backend.cancel_running(job_id, owner=user, keep=keep) is not None:
            return Cancelled(job=job_id, was=CancelledFrom.RUNNING)
        raise ImpastoError(UNKNOWN_JOB, f"no queued or running job {job_id!r}")

    @property
    def local_user(self) -> str:
        """This machine's own client (the local keyring's key, authorized/client.key): it
        may see server paths. As the file is now: a replaced key counts at once."""
        return self.authorized.named(LOCAL_KEY_FILE) if self.authorized is not None else ""

    def _status(self, user: str) -> Status:
        local = bool(user) and user == self.local_user
        backend = self.backend
        # Only what the back end already holds: status never waits on a worker.
        info = backend.info(user, local)
        running = backend.running()
        state = (DaemonState.STOPPING if self.stopping.is_set() else
                 DaemonState.READY if backend.ready() else DaemonState.LOADING)
        return Status(
            state=state,
            version=__version__,
            protocol=PROTOCOL_VERSION,
            device=info["device"],
            device_detail=info.get("device_detail", ""),
            weights=info["weights"],
            memory_bytes=info["memory_bytes"],
            uptime_s=round(time.monotonic() - self.started, 3),
            jobs_done=backend.done,
            jobs_failed=backend.failed + self.rejected,
            jobs_cancelled=backend.cancelled + self.cancelled,
            cache_hits=info["cache_hits"],
            cache_misses=info["cache_misses"],
            running=running[0].summary(user) if running else None,
            workers=info["workers"],
            queue=[j.summary(user) for j in self.queue.snapshot()],
            watch=[w if local else {**w, "folder": Path(w["folder"]).name}
                   for w in (self.config.watch_status() if self.config.watch_status else [])],
        )



Handler = Callable[[Server, bytes, str, Any, "str | None"], "Message | None"]
Server._handlers: dict[type[Message], Handler] = {
    Ping: Server._ping,
    StatusRequest: Server._status_request,
    Stylize: Server._stylize,
    Cancel: Server._cancel_request,
    StylesList: Server._styles_list,
    StylesAdd: Server._styles_add,
    StylesRemove: Server._styles_remove,
}

def _best_effort_req(body: list[bytes]) -> str | None:
    """The req id of a message that may not decode, so its error still finds its caller."""
    try:
        req = json.loads(bytes(body[0])).get("req")
        return req if isinstance(req, str) else None
    except Exception:
        return None
