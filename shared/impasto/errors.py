"""Error codes, and the one exception hierarchy every part of impasto raises.

Every expected failure is an `ImpastoError` carrying a code: the daemon sends it to
the client as an `error` message, the CLI prints its message and exits by its code, the
bridge hands it to GIMP. Subclasses exist where a caller catches one kind on purpose.
Only the GIMP plug-in file has its own exception: it runs in GIMP's Python, which
cannot import impasto.
"""

from __future__ import annotations

# --- codes on the wire (docs/protocol.md lists them) ---------------------------------
BAD_MESSAGE = "bad_message"  # frames or JSON header malformed
BAD_VERSION = "bad_version"  # protocol version not spoken by this daemon
UNKNOWN_TYPE = "unknown_type"
BAD_OPTIONS = "bad_options"
BAD_IMAGE = "bad_image"  # undecodable, empty, wrong raw size
IMAGE_TOO_LARGE = "image_too_large"
MESSAGE_TOO_LARGE = "message_too_large"
UNKNOWN_STYLE = "unknown_style"
UNKNOWN_JOB = "unknown_job"
NOT_OWNER = "not_owner"  # styles.add/remove of a style another client key added
CANCELLED = "cancelled"
SHUTDOWN = "shutdown"
OUT_OF_MEMORY = "out_of_memory"
QUEUE_FULL = "queue_full"
STORAGE = "storage"  # disk full or unwritable library
INTERNAL = "internal"
WORKER_LOST = "worker_lost"  # cluster: the job's worker died on every try

ALL_CODES = (
    BAD_MESSAGE, BAD_VERSION, UNKNOWN_TYPE, BAD_OPTIONS, BAD_IMAGE, IMAGE_TOO_LARGE,
    MESSAGE_TOO_LARGE, UNKNOWN_STYLE, UNKNOWN_JOB, NOT_OWNER, CANCELLED, SHUTDOWN, OUT_OF_MEMORY,
    QUEUE_FULL, STORAGE, INTERNAL, WORKER_LOST,
)

# --- codes that never travel: this process's own failures ----------------------------
UNAVAILABLE = "unavailable"  # no daemon answered
NO_WEIGHTS = "no_weights"  # VGG19 weights missing or unusable
SERVE = "serve"  # the daemon cannot start or keep running

# Codes that mean "the input was wrong" rather than "something failed".
USAGE_CODES = frozenset({BAD_OPTIONS, BAD_IMAGE, UNKNOWN_STYLE, IMAGE_TOO_LARGE, MESSAGE_TOO_LARGE})


class ImpastoError(Exception):
    """An error with a code; its message is meant for a person."""

    code: str = INTERNAL

    def __init__(self, code: str | None = None, message: str = "") -> None:
        super().__init__(message)
        self.code = code or type(self).code
        self.message = message

    def __str__(self) -> str:
        return self.message


class _FixedCode(ImpastoError):
    """An ImpastoError whose subclass fixes the code: raised with a message alone."""

    def __init__(self, message: str = "") -> None:
        super().__init__(type(self).code, message or type(self).code)


class DaemonUnavailable(_FixedCode):
    """No daemon answered in time. The message says where we looked and what to do."""

    code = UNAVAILABLE


class ServeError(_FixedCode):
    """The daemon cannot start or keep running; the message says why and what to do."""

    code = SERVE


class WeightsUnavailable(_FixedCode):
    """No usable VGG19 weights; the message says how to get them."""

    code = NO_WEIGHTS


class JobCancelled(_FixedCode):
    """A job was stopped on request (or because the daemon is stopping)."""

    code = CANCELLED
