"""Image bytes <-> Pillow images, with the size and sanity checks both sides need."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from impasto.errors import BAD_IMAGE, BAD_OPTIONS, IMAGE_TOO_LARGE, ImpastoError
from impasto.protocol import MAX_PIXELS, ImageRef, check_pixels

# Pillow's own bomb guard warns at 89 MP and raises at twice that; our limit is lower and
# is checked from the header before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 2


# The only decoders impasto lets Pillow use, whatever the bytes claim to be. Pillow can
# read dozens of formats, some through external programs (EPS runs Ghostscript on the
# file's PostScript); none of those is reachable from the wire or a watch folder.
DECODERS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
# What a declared wire format admits.
DECLARED = {"png": ("PNG",), "jpeg": ("JPEG",), "encoded": DECODERS}


def long_side_size(w: int, h: int, long_side: int) -> tuple[int, int]:
    """(w, h) scaled so that the longer side is long_side: the engine's size rule, here
    so that the daemon's socket side (no torch) can tell a clip's output size."""
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


class FloatImage:
    """RGB pixels as float32 (H, W, 3), sRGB-encoded, nominally in [0, 1]: what an
    editor at 16 or 32 bits sends (`rgb32f`). Offers the few Pillow calls the engine
    makes on a content image (size, resize, convert("RGB")), so it goes where a Pillow
    image goes without being rounded to 8 bits on the way."""

    mode = "RGB"

    def __init__(self, pixels: np.ndarray) -> None:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.float32:
            raise ValueError("FloatImage needs float32 pixels of shape (H, W, 3)")
        self.pixels = pixels

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def convert(self, mode: str) -> FloatImage | Image.Image:
        if mode == "RGB":
            return self
        return self.to_pil().convert(mode)

    def resize(self, size: tuple[int, int], resample: int = Image.Resampling.LANCZOS) -> FloatImage:
        """Each channel resized as a Pillow float ("F") image: the same filter as 8-bit
        images get, without the rounding."""
        if size == self.size:
            return self
        chans = [np.asarray(Image.fromarray(np.ascontiguousarray(self.pixels[..., i]), "F")
                            .resize(size, resample), dtype=np.float32) for i in range(3)]
        return FloatImage(np.stack(chans, axis=2))

    def to_pil(self) -> Image.Image:
        return Image.fromarray((self.pixels.clip(0, 1) * 255.0).round().astype(np.uint8), "RGB")

    def tobytes(self) -> bytes:
        return np.ascontiguousarray(self.pixels, dtype="<f4").tobytes()


def decode(ref: ImageRef, what: str = "image") -> Image.Image | FloatImage:
    """Decode to an RGB or RGBA image (alpha kept when present), or a FloatImage for
    `rgb32f`. Raises ImpastoError; `what` names the image in its message ("the content
    image", "style 2")."""
    try:
        ref.check()
    except ImpastoError as e:
        # One of a clip's thousand frames, or a style among several: say which.
        raise ImpastoError(e.code, f"{what}: {e.message}") from None
    if ref.format == "rgb32f":
        assert ref.width is not None and ref.height is not None
        arr = np.frombuffer(ref.data, dtype="<f4").reshape(ref.height, ref.width, 3)
        if not np.isfinite(arr).all():
            raise ImpastoError(BAD_IMAGE, f"{what} (rgb32f) holds NaN or infinite values")
        return FloatImage(arr.astype(np.float32))
    if ref.format == "rgba8":
        assert ref.width is not None and ref.height is not None
        return Image.frombytes("RGBA", (ref.width, ref.height), ref.data)
    return decode_bytes(ref.data, what, formats=DECLARED[ref.format], declared=ref.format)


def decode_pil(ref: ImageRef, what: str = "image") -> Image.Image:
    """decode(), always as a Pillow image (float pixels rounded to 8 bits): for style
    images and the style library, where 8 bits carry all the network can use."""
    img = decode(ref, what)
    return img.to_pil() if isinstance(img, FloatImage) else img


def grey_of(img: Image.Image | FloatImage, what: str) -> Image.Image:
    """An image as a mask's grey, "L" (8 bits) or "F" (float in [0, 1], for 16-bit and
    float sources, whose depth 8 bits would lose): colour by its luminance, times its
    alpha where it has one (transparent is outside)."""
    if isinstance(img, FloatImage):
        lum = img.pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return Image.fromarray(np.clip(lum, 0.0, 1.0).astype(np.float32), "F")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImpastoError(BAD_IMAGE, f"{what} holds NaN or infinite values")
        if img.mode != "F":
            arr = arr / 65535.0
        return Image.fromarray(np.clip(arr, 0.0, 1.0).astype(np.float32), "F")
    if img.mode == "L":
        return img
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        # A mask painted on a transparent layer, or exported from a selection, marks its
        # area by alpha as much as by grey.
        rgba = img.convert("RGBA")
        return ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A"))
    return img.convert("L")


def decode_mask(ref: ImageRef, what: str) -> Image.Image:
    """A mask from the wire, at the depth it was sent in (grey_of)."""
    if ref.format in ("rgba8", "rgb32f"):
        return grey_of(decode(ref, what), what)
    ref.check()
    return grey_of(open_image(ref.data, what, DECLARED[ref.format], ref.format), what)


def read_mask(path: Path) -> Image.Image:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImpastoError(BAD_IMAGE, f"cannot read {path}: {e.strerror or e}") from None
    return grey_of(open_image(data, what=str(path)), str(path))


def as_mask(mask: Image.Image, size: tuple[int, int], i: int) -> Image.Image:
    """Style i's region mask (grey_of's "L" or "F"), checked: of the content's size (a
    mask stretched to fit would put the region elsewhere), and not black everywhere (a
    style that would paint nothing is a mistake, not a request)."""
    if mask.size != tuple(size):
        raise ImpastoError(BAD_OPTIONS, f"the mask of style {i + 1} is {mask.width}x{mask.height}; "
                           f"it must have the content's size, {size[0]}x{size[1]}")
    if not mask.getextrema()[1] > 0:
        raise ImpastoError(BAD_OPTIONS, f"the mask of style {i + 1} is black everywhere: that "
                           "style would paint nothing (white marks where it goes)")
    return mask


def pixels(ref: ImageRef) -> int:
    """How many pixels decoding `ref` would make, read from its header alone (0 when the
    header is unreadable: decoding then fails with the reason)."""
    if ref.format in ("rgba8", "rgb32f"):
        return (ref.width or 0) * (ref.height or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(ref.data), formats=list(DECLARED.get(ref.format, ()))) as img:
                return img.width * img.height
    except Exception:  # noqa: BLE001 - the decoder says what is wrong, later
        return 0


def open_image(data: bytes, what: str = "image", formats: tuple[str, ...] = DECODERS,
               declared: str = "encoded") -> Image.Image:
    """Decode with the allowed decoders only (the bytes must be one of `formats`), within
    the pixel limit; the image in its own mode, upright."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(formats))
            check_pixels(*img.size)
            img.load()
            return ImageOps.exif_transpose(img)
    except ImpastoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The header claims more pixels than Pillow's own guard allows: too large, said
        # as such, before a byte of pixel data is decoded.
        raise ImpastoError(IMAGE_TOO_LARGE, f"{what} claims more pixels than the limit of "
                           f"{MAX_PIXELS / 1e6:.1f} MP; scale it down first") from None
    except UnidentifiedImageError:
        if declared != "encoded":
            raise ImpastoError(BAD_IMAGE, f"{what} is declared {declared} but its bytes are "
                               f"not {declared.upper()}") from None
        raise ImpastoError(BAD_IMAGE, f"{what} is not an image in a format impasto reads "
                           "(PNG, JPEG, WebP, TIFF, BMP)") from None
    except Exception as e:  # Pillow raises many types for corrupt input
        raise ImpastoError(BAD_IMAGE, f"{what} cannot be decoded (truncated or corrupt?): {e}") from None


def decode_bytes(data: bytes, what: str = "image", formats: tuple[str, ...] = DECODERS,
                 declared: str = "encoded") -> Image.Image:
    """An encoded image as 8-bit RGB, or RGBA where it has alpha."""
    img = open_image(data, what, formats, declared)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale (PNG, TIFF): Pillow's convert() clips at 255 instead of
        # scaling, which turns mid-grey white. Scale to 8 bits first.
        img = Image.fromarray((np.asarray(img, dtype=np.uint32).clip(0, 65535) >> 8)
                              .astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    return img.convert("RGBA" if has_alpha else "RGB")


def read_file(path: Path) -> Image.Image:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImpastoError(BAD_IMAGE, f"cannot read {path}: {e.strerror or e}") from None
    return decode_bytes(data, what=str(path))


def encode_png(img: Image.Image, compress_level: int = 1) -> bytes:
    # Level 1: PNG's higher levels cost seconds on large images and save little on photos.
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def to_ref(img: Image.Image | FloatImage, fmt: str = "png") -> ImageRef:
    if fmt == "rgb32f":
        f = img if isinstance(img, FloatImage) else FloatImage(
            np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
        return ImageRef(f.tobytes(), "rgb32f", f.width, f.height)
    if isinstance(img, FloatImage):
        img = img.to_pil()
    if fmt == "rgba8":
        rgba = img.convert("RGBA")
        return ImageRef(rgba.tobytes(), "rgba8", rgba.width, rgba.height)
    return ImageRef(encode_png(img), "png")


def file_ref(path: Path) -> ImageRef:
    """An ImageRef for a file as it is on disk; the receiver decodes it."""
    try:
        return ImageRef(Path(path).read_bytes(), "encoded")
    except OSError as e:
        raise ImpastoError(BAD_IMAGE, f"cannot read {path}: {e.strerror or e}") from None
