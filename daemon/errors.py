"""Maps exceptions from torch and the weights loader to one line for a person."""

from __future__ import annotations


def describe(e: BaseException) -> tuple[str, str | None]:
    from daemon.server import ServeError
    from daemon.weights import WeightsUnavailable

    if isinstance(e, WeightsUnavailable):
        return str(e), "no_weights"
    if isinstance(e, ServeError):
        return str(e), "serve"
    if isinstance(e, MemoryError):
        return "out of memory; use a smaller --size or the draft preset", "out_of_memory"
    return "", None
