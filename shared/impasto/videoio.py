"""Video files in and out (PyAV, FFmpeg inside), and folders of frames.

A clip keeps what a person expects of it: the frame count, each frame's timestamp (so
the frame rate and duration), and its audio, copied packet for packet (not re-encoded).
Frames are decoded one at a time, so a long clip never sits in memory whole.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePath
from typing import BinaryIO

from PIL import Image

from impasto.errors import BAD_IMAGE, BAD_OPTIONS, IMAGE_TOO_LARGE, STORAGE, ImpastoError
from impasto.imagecodec import MAX_PIXELS

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
MAX_FRAMES = 100_000  # about an hour at 25 fps: a budget, as pixels are for stills
# Containers by suffix, for writing into an open file (a confined caller's) where FFmpeg
# cannot guess from a name.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
              ".webm": "webm", ".avi": "avi", ".gif": "gif"}

# A video is named by its path, or given as a file already open for reading (a watch
# folder's, opened without following links: impasto.watch.confine).
Source = Path | BinaryIO


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class ClipInfo:
    width: int
    height: int
    frames: int | None  # None where the container does not say
    rate: Fraction | None  # average frames per second
    has_audio: bool


def _label(path: Source) -> str:
    return str(path) if isinstance(path, Path) else "the file"


def _why(e: Exception) -> str:
    """FFmpeg's reason without the name it was given (for an open file, a descriptor
    number that means nothing to a person; the caller names the file)."""
    return getattr(e, "strerror", None) or str(e)


def _open(path: Source):  # noqa: ANN202 - av.container.InputContainer
    import av

    try:
        return av.open(str(path) if isinstance(path, Path) else path)
    except (av.error.FFmpegError, OSError) as e:
        raise ImpastoError(BAD_IMAGE, f"{_label(path)} is not a video impasto can read: {_why(e)}") from None


def probe(path: Source) -> ClipInfo:
    with _open(path) as c:
        if not c.streams.video:
            raise ImpastoError(BAD_IMAGE, f"{_label(path)} has no video stream")
        v = c.streams.video[0]
        w, h = v.codec_context.width, v.codec_context.height
        if w * h > MAX_PIXELS:
            raise ImpastoError(IMAGE_TOO_LARGE, f"{_label(path)}'s frames are {w}x{h}; at most "
                               f"{MAX_PIXELS / 1e6:.1f} MP a frame")
        return ClipInfo(w, h, v.frames or None, v.average_rate, bool(c.streams.audio))


def check_whole(path: Source, info: ClipInfo, packets: int) -> None:
    """Refuse a video cut short (a partial download or copy): its container declares
    more frames than the file holds packets for. Containers that declare no count
    (Matroska, WebM, GIF) cannot be told from a shorter video this way."""
    if info.frames is not None and packets < info.frames:
        raise ImpastoError(BAD_IMAGE, f"{_label(path)} is cut short or damaged: its header "
                           f"declares {info.frames} frames and the file holds {packets}")


def count_frames(path: Source, limit: int = MAX_FRAMES) -> int:
    """The video's frames as its packets count them (no decoding: quick, and what the
    decoder gives may differ by a frame or so); stops counting past `limit`."""
    import av

    with _open(path) as c:
        if not c.streams.video:
            raise ImpastoError(BAD_IMAGE, f"{_label(path)} has no video stream")
        n = 0
        try:
            for packet in c.demux(c.streams.video[0]):
                if packet.size:
                    n += 1
                    if n > limit:
                        break
        except av.error.FFmpegError as e:
            raise ImpastoError(BAD_IMAGE, f"{_label(path)} cannot be read: {_why(e)}") from None
        return n


def read_frames(path: Source) -> Iterator[tuple[Image.Image, int | None, Fraction | None]]:
    """Each frame as RGB, with its pts and time base (for writing it back at its time)."""
    import av

    with _open(path) as c:
        v = c.streams.video[0]
        size: tuple[int, int] | None = None
        try:
            for n, frame in enumerate(c.decode(v)):
                if n >= MAX_FRAMES:
                    raise ImpastoError(BAD_OPTIONS, f"{_label(path)} has more than {MAX_FRAMES} frames")
                img = upright(frame.to_image(), frame.rotation, display_matrix(frame)).convert("RGB")
                # A stream may change resolution midway (a spliced or streamed
                # recording); a clip is one size to the engine (flow, the temporal term)
                # and to the writer, so later frames are scaled to the first's, as
                # FFmpeg's own transcoding does.
                if size is None:
                    size = img.size
                elif img.size != size:
                    img = img.resize(size, Image.Resampling.LANCZOS)
                yield img, frame.pts, frame.time_base
        except av.error.FFmpegError as e:
            raise ImpastoError(BAD_IMAGE, f"{_label(path)} cannot be decoded: {_why(e)}") from None


# A phone holds a portrait clip as landscape frames and a display matrix that turns (and
# may mirror) them. Frames are stylized as they are seen, and written upright with no
# matrix, so every player shows them the same way. The rule is FFmpeg's own autorotate
# (fftools: the angle, then the matrix's signs for the flips), so impasto turns a clip
# as `ffmpeg` and ffplay do; an angle other than a quarter turn, which no camera writes,
# is left as it is.
_T = Image.Transpose
_CLOCK, _CCLOCK, _HFLIP, _VFLIP = _T.ROTATE_270, _T.ROTATE_90, _T.FLIP_LEFT_RIGHT, _T.FLIP_TOP_BOTTOM


def turns(rotation: float, matrix: tuple[int, ...] | None) -> list[Image.Transpose]:
    """What shows the frame as a player does: rotation is the display matrix's angle
    (counterclockwise, as PyAV's frame.rotation), matrix its nine 16.16 numbers."""
    m = matrix if matrix is not None and len(matrix) == 9 else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    theta = (-round(rotation)) % 360
    if theta == 90:
        return [_CLOCK] if m[3] <= 0 else [_T.TRANSPOSE]  # FFmpeg's clock / cclock_flip
    if theta == 270:
        return [_CCLOCK] if m[3] >= 0 else [_T.TRANSVERSE]  # cclock / clock_flip
    if theta == 180:
        return [op for op, flip in ((_HFLIP, m[0] < 0), (_VFLIP, m[4] < 0)) if flip]
    if theta == 0 and m[4] < 0:
        return [_VFLIP]
    return []


def display_matrix(frame) -> tuple[int, ...] | None:  # noqa: ANN001 - av.VideoFrame
    for sd in frame.side_data:
        if getattr(sd.type, "name", str(sd.type)).endswith("DISPLAYMATRIX"):
            data = bytes(sd)
            return struct.unpack("=9i", data[:36]) if len(data) >= 36 else None
    return None


def upright(img: Image.Image, rotation: float, matrix: tuple[int, ...] | None = None) -> Image.Image:
    """The frame as a player shows it."""
    for op in turns(rotation, matrix):
        img = img.transpose(op)
    return img


class VideoWriter:
    """Writes frames at the source's timestamps and copies the source's audio."""

    def __init__(self, path: PurePath, source: Source, width: int, height: int,
                 file: BinaryIO | None = None) -> None:
        """file: write into this open file (seekable) rather than to `path`, whose
        suffix still picks the container and codec."""
        import av

        self.path = path
        self.source = _open(source)
        try:
            self.out = (av.open(str(path), "w") if file is None else
                        av.open(file, "w", format=CONTAINERS.get(path.suffix.lower(), "mp4")))
        except (av.error.FFmpegError, OSError) as e:
            self.source.close()
            raise _unwritable(path, e) from None
        v_in = self.source.streams.video[0]
        gif = path.suffix.lower() == ".gif"
        codec = "gif" if gif else ("libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264")
        rate = v_in.average_rate or Fraction(25)
        self.video = self.out.add_stream(codec, rate=rate)
        self.video.width, self.video.height = width + width % 2 * (not gif), height + height % 2 * (not gif)
        self.video.pix_fmt = "rgb8" if gif else "yuv420p"
        self.video.time_base = v_in.time_base
        self.audio = None
        if self.source.streams.audio and not gif:
            a_in = self.source.streams.audio[0]
            try:
                self.audio = self.out.add_stream_from_template(a_in)
                self.audio_in = a_in
            except (ValueError, av.error.FFmpegError):
                self.audio = None  # the container cannot hold that codec: video only

    def write(self, img: Image.Image, pts: int | None) -> None:
        import av

        if img.size != (self.video.width, self.video.height):
            img = img.resize((self.video.width, self.video.height), Image.Resampling.LANCZOS)
        frame = av.VideoFrame.from_image(img.convert("RGB"))
        frame.pts = pts
        frame.time_base = self.video.time_base
        try:
            for packet in self.video.encode(frame):
                self.out.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            # PyAV opens the file at the first packet: a folder that cannot take it
            # (or a full disk) shows here, not at open.
            raise _unwritable(self.path, e) from None

    def close(self) -> None:
        import av

        try:
            for packet in self.video.encode():
                self.out.mux(packet)
            if self.audio is not None:
                for packet in self.source.demux(self.audio_in):
                    if packet.dts is None:
                        continue
                    packet.stream = self.audio
                    self.out.mux(packet)
            self.out.close()
        except (av.error.FFmpegError, OSError) as e:
            raise _unwritable(self.path, e) from None
        finally:
            self.source.close()


def _unwritable(path: Path, e: Exception) -> ImpastoError:
    return ImpastoError(STORAGE, f"cannot write the video {path}: {_why(e)}")


_NUM = re.compile(r"(\d+)")


def natural(name: str) -> list:
    """frame2 before frame10."""
    return [int(p) if p.isdigit() else p.lower() for p in _NUM.split(name)]


def frame_files(spec: str) -> list[Path]:
    """A folder of frames, or a glob of them ("shots/*.png"), in natural order."""
    p = Path(spec).expanduser()
    if p.is_dir():
        found = [f for f in p.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and f.is_file()]
    else:
        parent = p.parent if str(p.parent) else Path(".")
        found = [f for f in parent.glob(p.name) if f.is_file()]
    if not found:
        raise ImpastoError(BAD_OPTIONS, f"no frames in {spec} (a folder of images or a glob "
                           "such as 'shots/*.png')")
    if len(found) > MAX_FRAMES:
        raise ImpastoError(BAD_OPTIONS, f"{len(found)} frames in {spec}; at most {MAX_FRAMES}")
    return sorted(found, key=lambda f: natural(f.name))
