"""What the CLI leaves behind: result images (written atomically), summaries, error lines."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from PIL import Image

from impasto import events
from impasto.cli.progress import emit_event, format_losses
from impasto.errors import BAD_OPTIONS, STORAGE, ImpastoError
from impasto.fsio import unwritable, write_atomic
from impasto.protocol import printable

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF", ".bmp": "BMP"}


def format_for(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImpastoError(BAD_OPTIONS, f"cannot write {path.suffix or 'files without an extension'}"
                           f"; use one of {', '.join(sorted(FORMATS))}")
    return fmt


def save_image(img: Image.Image, path: Path) -> Path:
    path = Path(path)
    fmt = format_for(path)
    if fmt in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    extra = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        write_atomic(path, lambda f: img.save(f, format=fmt, **extra))
    except OSError as e:
        raise ImpastoError(STORAGE, f"cannot write {path}: {e.strerror or e}") from None
    return path


def check_writable(path: Path) -> None:
    """Fail before a long job, not after it, when the output cannot be written."""
    path = Path(path)
    format_for(path)
    why = unwritable(path)
    if why is not None:
        # A name that cannot be a file is a usage error (exit 2); a folder that cannot
        # take it is the system's answer (exit 1), as it always was here.
        try:
            misnamed = path.is_dir()
        except OSError:  # a name too long
            misnamed = True
        raise ImpastoError(BAD_OPTIONS if misnamed else STORAGE, why)


def check_outputs(output: Path, preview: Path | None, content: Path) -> None:
    """-o and --preview before any work; a preview written over the picture being
    stylized would replace it at the first step."""
    check_writable(output)
    if preview is None:
        return
    check_writable(preview)
    with contextlib.suppress(OSError):  # no such file: nothing to overwrite
        if os.path.samefile(preview, content):
            raise ImpastoError(BAD_OPTIONS, f"--preview {preview} is the image being "
                               "stylized; name another file")


def print_summary(done: events.Done, as_json: bool) -> None:
    if as_json:
        emit_event(done)
        return
    print(f"wrote {done.output} ({done.width}x{done.height}) in {done.elapsed_s or 0:.1f} s; "
          f"seed {done.seed}; {format_losses(done.losses or {})}")
    if done.schedule:
        print("scales: " + ", ".join(f"{s['width']}x{s['height']} ({s['evaluations']} evaluations)"
                                     for s in done.schedule))
    random_weights_note(done)


def random_weights_note(done: events.Done) -> None:
    if done.random_weights:
        print("note: made with RANDOM weights (--weights random): a demo, not art")


def fail(message: str, code: str, as_json: bool) -> None:
    if as_json:
        emit_event(events.Error(code=code, message=message))
    print(f"impasto: error: {printable(message, 4000, lines=True)}", file=sys.stderr)
