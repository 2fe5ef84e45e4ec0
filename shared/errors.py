"""Error codes that travel on the wire, and the exception that carries one."""

from __future__ import annotations

# One code per thing a caller can act on differently; docs/protocol.md lists them.
BAD_MESSAGE = "bad_message"  # frames or JSON header malformed
BAD_VERSION = "bad_version"  # protocol version not spoken by this daemon
UNKNOWN_TYPE = "unknown_type"
BAD_OPTIONS = "bad_options"
BAD_IMAGE = "bad_image"  # undecodable, empty, wrong raw size
IMAGE_TOO_LARGE = "image_too_large"
MESSAGE_TOO_LARGE = "message_too_large"
UNKNOWN_STYLE = "unknown_style"
UNKNOWN_JOB = "unknown_job"
CANCELLED = "cancelled"
SHUTDOWN = "shutdown"
OUT_OF_MEMORY = "out_of_memory"
QUEUE_FULL = "queue_full"
STORAGE = "storage"  # disk full or unwritable library
INTERNAL = "internal"

ALL_CODES = (
    BAD_MESSAGE, BAD_VERSION, UNKNOWN_TYPE, BAD_OPTIONS, BAD_IMAGE, IMAGE_TOO_LARGE,
    MESSAGE_TOO_LARGE, UNKNOWN_STYLE, UNKNOWN_JOB, CANCELLED, SHUTDOWN, OUT_OF_MEMORY,
    QUEUE_FULL, STORAGE, INTERNAL,
)


class ImpastoError(Exception):
    """An error with a wire code; its message is meant for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message
