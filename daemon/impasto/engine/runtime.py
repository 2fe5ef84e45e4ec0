"""Process-level tuning that must happen before the first big tensor."""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)
_done = False


def tune_allocator() -> None:
    """Stop glibc from mmap/munmap-ing every large activation buffer.

    Each evaluation allocates and frees the same multi-megabyte buffers; above glibc's
    mmap threshold every one is a fresh mapping with page faults on first touch.
    Keeping them on the heap made 512 px evaluations 10-25% faster here (issue 6).
    """
    global _done
    if _done or not sys.platform.startswith("linux"):
        return
    _done = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError) as e:  # not glibc (musl, ...): nothing to tune
        log.debug("mallopt unavailable: %s", e)


def load_engine(weights_spec: str, device: str, say=print,  # noqa: ANN001
                precision: str = "auto", tile_pixels: int | None = None, tile_size: int = 512):
    """Load VGG19 and build the engine, telling the person what is happening."""
    import time

    tune_allocator()
    t0 = time.perf_counter()
    say(f"loading VGG19 weights ({weights_spec})...")
    from impasto.engine import weights as weights_mod
    from impasto.engine.transfer import Engine

    w = weights_mod.load(weights_spec)
    engine = Engine(w, device, precision=precision, tile_pixels=tile_pixels,
                    tile_size=tile_size)
    threads = engine.dev.set_threads() if engine.dev.kind == "cpu" else None
    say(f"VGG19 ready on {engine.dev.describe()}"
        + (f"; {threads} threads" if threads else "") + f": {w.label} in "
        f"{time.perf_counter() - t0:.1f} s")
    if w.flavour == "random":
        say("WARNING: random weights: outputs are for tests and demos, not art")
    return engine
