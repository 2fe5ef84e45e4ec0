"""How a job's events reach the loop: inproc endpoints and `emit` (torch-free, so the
socket loop can name the endpoints without loading the engine)."""

from __future__ import annotations

import logging

import zmq

from impasto.errors import INTERNAL
from impasto.protocol import Error, Message, encode
from impasto.server.jobqueue import Job

log = logging.getLogger(__name__)

EVENTS_ENDPOINT = "inproc://impasto-events"
WAKE_ENDPOINT = "inproc://impasto-wake"  # the intake thread's "a request is ready"


def emit(sock: zmq.Socket, job: Job, msg: Message) -> None:
    """Send one of a job's events to its client, through the loop's events socket."""
    try:
        frames = encode(msg, job.req)
    except ValueError as e:  # a non-finite number: never on the wire
        log.error("job %s: cannot send %s: %s", job.id, msg.TYPE, e)
        frames = encode(Error(INTERNAL, f"internal error: {msg.TYPE} held a non-finite "
                              "number", job.id), job.req)
    sock.send_multipart([job.peer] + frames, copy=False)
