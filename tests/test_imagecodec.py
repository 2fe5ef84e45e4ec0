"""Only the listed decoders run, whatever the bytes claim; sizes are checked from headers."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import EpsImagePlugin, Image

from impasto import errors, imagecodec
from impasto.errors import ImpastoError
from impasto.protocol import ImageRef

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto showpage\n"


def png_header(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("declared", ["png", "jpeg", "encoded"])
def test_postscript_never_reaches_its_decoder(declared: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EPS file would run Ghostscript on its PostScript: its plug-in must not even be
    asked to open it, under any label."""
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open",
                        lambda self: opened.append(1) or (_ for _ in ()).throw(SyntaxError("x")))
    with pytest.raises(ImpastoError) as e:
        imagecodec.decode(ImageRef(EPS, declared))
    assert e.value.code == errors.BAD_IMAGE
    assert opened == []


@pytest.mark.parametrize(("data", "declared", "ok"), [
    (encoded("PNG"), "png", True), (encoded("JPEG"), "jpeg", True),
    (encoded("JPEG"), "png", False), (encoded("PNG"), "jpeg", False),
    (encoded("WEBP"), "encoded", True), (encoded("TIFF"), "encoded", True),
    (encoded("BMP"), "encoded", True), (encoded("GIF"), "encoded", False),
    (encoded("PPM"), "encoded", False), (encoded("ICO"), "encoded", False),
])
def test_declared_format_must_match_the_bytes(data: bytes, declared: str, ok: bool) -> None:
    if ok:
        assert imagecodec.decode(ImageRef(data, declared)).size == (4, 4)
        return
    with pytest.raises(ImpastoError) as e:
        imagecodec.decode(ImageRef(data, declared))
    assert e.value.code == errors.BAD_IMAGE


@pytest.mark.parametrize("side", [5000, 100_000])
def test_a_header_claiming_too_many_pixels_is_too_large(side: int) -> None:
    with pytest.raises(ImpastoError) as e:
        imagecodec.decode(ImageRef(png_header(side, side), "png"))
    assert e.value.code == errors.IMAGE_TOO_LARGE


def test_files_use_the_same_decoders(tmp_path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(EPS)
    with pytest.raises(ImpastoError) as e:
        imagecodec.read_file(p)
    assert e.value.code == errors.BAD_IMAGE and "PNG, JPEG, WebP, TIFF, BMP" in e.value.message
