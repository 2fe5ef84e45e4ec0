"""Clip jobs over real sockets to a real daemon: frames in, one `frame` event per
stylized frame in order, chunks that continue each other exactly, stop-and-keep,
cancel, and every mistake a clear error with the daemon still serving."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from benchmarks.video import clip
from impasto import imagecodec
from impasto.client import Client
from impasto.clipjobs import ClipFrame, chunk_length, send_clip
from impasto.errors import ImpastoError
from impasto.protocol import (
    MAX_CLIP_FRAMES,
    MAX_REQUEST_PIXELS,
    Frame,
    ImageRef,
    Progress,
    StyleRef,
    Stylize,
)
from tests.helpers import DaemonProcess, stripes_image

STYLE = [StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))]
FAST = {"size": 64, "scales": 1, "iterations": 6, "seed": 3}


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def run_clip(address: str, frames: list[Image.Image], **kw) -> tuple[list[ClipFrame], object]:
    got: list[ClipFrame] = []
    with Client(address, timeout=60) as c:
        outcome = send_clip(c, frames, STYLE, kw.pop("options", FAST), got.append, **kw)
    return got, outcome


def test_a_clip_comes_back_frame_by_frame_in_order(daemon: DaemonProcess) -> None:
    frames, _ = clip(64, 4)
    events: list[Frame] = []
    progress: list[Progress] = []
    req = Stylize(frames=[imagecodec.to_ref(f) for f in frames], styles=STYLE, options=FAST,
                  preview={"max_side": 32, "interval_s": 0.1})
    with Client(daemon.address, timeout=60) as c:
        result = c.stylize(req, on_frame=events.append, on_progress=progress.append)
        assert c.ping().protocol == 1
    assert result.frames == 4 and result.image is None and result.seed == 3
    assert [e.index for e in events] == [0, 1, 2, 3] and {e.frames for e in events} == {4}
    w, h = imagecodec.long_side_size(*frames[0].size, 64)
    for e in events:
        assert e.image is not None
        assert imagecodec.decode_pil(e.image).size == (w, h)
        assert e.seed == 3 and e.losses["total"] > 0
    # Progress names the frame; within a frame step never goes back.
    assert progress[0].stage == "prepare" and progress[0].frames == 4
    optimize = [p for p in progress if p.stage == "optimize"]
    assert [p.frame for p in optimize] == sorted(p.frame for p in optimize)
    assert {p.frame for p in optimize} == {0, 1, 2, 3}
    # The current frame's preview, from the first frame on.
    previews = [p for p in optimize if p.preview is not None]
    assert previews and previews[0].frame == 0
    assert all(max(imagecodec.decode_pil(p.preview).size) <= 32 for p in previews)
    for k in range(4):
        steps = [p.step for p in optimize if p.frame == k]
        assert steps == sorted(steps) and steps[-1] == [p.total for p in optimize if p.frame == k][-1]


def test_chunks_continue_each_other_exactly(daemon: DaemonProcess) -> None:
    """A clip sent as requests of 2 frames, each continuing the last (previous_frame,
    previous_result), is the clip sent as one request, pixel for pixel; without the
    continuation the first frame of each later chunk starts over and differs."""
    frames, _ = clip(64, 5)
    whole, one = run_clip(daemon.address, frames, chunk=5)
    chunked, many = run_clip(daemon.address, frames, chunk=2)
    assert len(one.jobs) == 1 and len(many.jobs) == 3
    assert [f.index for f in chunked] == [0, 1, 2, 3, 4]
    for a, b in zip(whole, chunked):
        assert np.array_equal(pixels(a.image), pixels(b.image)), a.index
    # The continuation matters: frames 2.. sent on their own start over at frame 2.
    restart, _ = run_clip(daemon.address, frames[2:], chunk=5)
    assert np.abs(pixels(restart[0].image) - pixels(whole[2].image)).mean() > 1.0
    # Resuming at frame 2 with frame 1 and its result is the whole clip again.
    resumed, _ = run_clip(daemon.address, frames[2:], chunk=5, start=2,
                          previous=(frames[1], whole[1].image))
    assert [f.index for f in resumed] == [2, 3, 4]
    for a, b in zip(whole[2:], resumed):
        assert np.array_equal(pixels(a.image), pixels(b.image)), a.index


def test_chunks_continue_exactly_at_the_frames_own_size(daemon: DaemonProcess) -> None:
    """With match_content_size (the GIMP plug-in's and the watch folder's clips) frames
    come back at the frames' size and each holds to the one before at that size: a
    continuation's previous_result is taken at that size too, not the working size (it
    was, and a chunked clip then drifted from the whole one from its second request)."""
    frames, _ = clip(96, 3)
    opts = {**FAST, "match_content_size": True}
    whole, _ = run_clip(daemon.address, frames, chunk=3, options=opts)
    chunked, many = run_clip(daemon.address, frames, chunk=2, options=dict(opts))
    assert len(many.jobs) == 2
    for a, b in zip(whole, chunked, strict=True):
        assert a.image.size == frames[0].size
        assert np.array_equal(pixels(a.image), pixels(b.image)), a.index


def test_one_seed_for_the_whole_clip_when_none_is_given(daemon: DaemonProcess) -> None:
    frames, _ = clip(64, 3)
    got, outcome = run_clip(daemon.address, frames, chunk=1,
                            options={"size": 64, "scales": 1, "iterations": 3})
    assert len(outcome.jobs) == 3
    assert len({f.event.seed for f in got}) == 1 and outcome.seed == got[0].event.seed


def test_stop_and_keep_ends_with_the_frames_done(daemon: DaemonProcess) -> None:
    frames, _ = clip(64, 6)
    got: list[ClipFrame] = []
    stop = threading.Event()

    def on_frame(f: ClipFrame) -> None:
        got.append(f)
        if f.index == 1:
            stop.set()

    slow = {"size": 64, "scales": 1, "iterations": 400, "tolerance": 0.0, "seed": 1}
    with Client(daemon.address, timeout=60) as c:
        outcome = send_clip(c, frames, STYLE, slow, on_frame, should_finish=stop.is_set)
        assert c.ping()
    assert outcome.stopped and outcome.frames == len(got)
    assert 2 <= len(got) < 6 and [f.index for f in got] == list(range(len(got)))


def test_cancel_ends_a_clip_with_cancelled(daemon: DaemonProcess) -> None:
    frames, _ = clip(64, 4)
    got: list[ClipFrame] = []
    slow = {"size": 64, "scales": 1, "iterations": 400, "tolerance": 0.0, "seed": 1}
    with Client(daemon.address, timeout=60) as c:
        with pytest.raises(ImpastoError) as e:
            send_clip(c, frames, STYLE, slow, got.append, should_cancel=lambda: len(got) >= 1)
        assert e.value.code == "cancelled"
        assert c.ping()
    assert 1 <= len(got) < 4


def _raw(address: str, **fields) -> str:
    with Client(address, timeout=30) as c:
        try:
            c.stylize(Stylize(styles=STYLE, options=FAST, **fields))
        except ImpastoError as e:
            return f"{e.code}: {e.message}"
        finally:
            c.ping()  # still serving
    return "accepted"


def test_clip_mistakes_are_clear_errors(daemon: DaemonProcess) -> None:
    a, b = (imagecodec.to_ref(Image.new("RGB", s, "gray")) for s in ((64, 48), (48, 64)))
    frame = lambda: imagecodec.to_ref(Image.new("RGB", (64, 48), "gray"))  # noqa: E731
    cases = {
        "content and frames": dict(content=frame(), frames=[frame()]),
        "neither": dict(),
        "sizes differ": dict(frames=[a, b]),
        "half a continuation": dict(frames=[frame()], previous_frame=frame()),
        "continuation of a still": dict(content=frame(), previous_frame=frame(),
                                        previous_result=frame()),
        "previous_frame size": dict(frames=[frame()], previous_frame=b, previous_result=frame()),
        "previous_result shape": dict(frames=[frame()], previous_frame=frame(), previous_result=b),
        "corrupt frame": dict(frames=[frame(), ImageRef(b"\x89PNG\r\n\x1a\nnope", "png")]),
        "empty frame": dict(frames=[frame(), ImageRef(b"", "png")]),
        "raw frame short": dict(frames=[frame(), frame(), ImageRef(b"\0" * 10, "rgba8", 64, 48)]),
        "no frames": dict(frames=[]),
        "too many frames": dict(frames=[imagecodec.to_ref(Image.new("RGB", (2, 2)))
                                        for _ in range(MAX_CLIP_FRAMES + 1)]),
        "over the pixel budget": dict(frames=[imagecodec.to_ref(Image.new("RGB", (4096, 4096)))
                                              for _ in range(3)]),
    }
    want = {
        "content and frames": ("bad_message", "content image or a clip's frames, not both"),
        "neither": ("bad_message", "needs a content image"),
        "sizes differ": ("bad_options", "frame 2 is 48x64"),
        "half a continuation": ("bad_message", "go together"),
        "continuation of a still": ("bad_message", "needs frames"),
        "previous_frame size": ("bad_options", "previous_frame is 48x64"),
        "previous_result shape": ("bad_options", "previous_result is 48x64"),
        "corrupt frame": ("bad_image", "frame 2"),
        "empty frame": ("bad_image", "frames[1]: image is empty"),
        "raw frame short": ("bad_image", "frames[2]: rgba8 image of 64x48 needs"),
        "no frames": ("bad_message", "(frames is empty)"),
        "too many frames": ("bad_options", f"at most {MAX_CLIP_FRAMES}"),
        "over the pixel budget": ("image_too_large", f"{MAX_REQUEST_PIXELS:,}"),
    }
    for name, fields in cases.items():
        said = _raw(daemon.address, **fields)
        code, text = want[name]
        assert said.startswith(code + ":") and text in said, (name, said)
    with Client(daemon.address, timeout=30) as c:
        st = c.status()
    assert st.jobs_done == 0 and st.running is None


def test_chunks_fit_the_request_budget() -> None:
    assert chunk_length((64, 48), STYLE, 32) == 32
    big = chunk_length((3840, 2160), STYLE, 32)
    assert big >= 1 and big * 3840 * 2160 <= MAX_REQUEST_PIXELS
    assert chunk_length((4096, 4096), STYLE, 32) == 1  # never zero: one frame still goes
    assert chunk_length((2048, 2048), STYLE, 32) == 6  # bytes: 5 a pixel, half the message
    tall = [StyleRef(image=imagecodec.to_ref(Image.new("RGB", (64, 4096))))] * 16
    assert chunk_length((2048, 2048), tall, 32) == 6  # 4.2 MP of styles leave room for 7
    huge = [StyleRef(image=imagecodec.to_ref(Image.new("RGB", (4096, 4096))))] * 2
    assert chunk_length((2048, 2048), huge, 32) == 1  # the styles fill the pixel budget


def test_a_clip_of_the_largest_frames_continues(daemon: DaemonProcess) -> None:
    """One 4096x4096 frame with its continuation (three such images) is accepted: the
    continuation is outside the request's pixel total."""
    big = imagecodec.to_ref(Image.new("RGB", (4096, 4096), "gray"))
    req = Stylize(frames=[big], styles=STYLE, options={"size": 64, "scales": 1, "iterations": 1},
                  previous_frame=imagecodec.to_ref(Image.new("RGB", (4096, 4096), "gray")),
                  previous_result=imagecodec.to_ref(Image.new("RGB", (64, 64), "gray")))
    with Client(daemon.address, timeout=60) as c:
        result = c.stylize(req)
    assert result.frames == 1


def test_a_clip_in_parts_joins_by_cross_fading(daemon: DaemonProcess) -> None:
    """Two parts side by side (two connections): frames arrive in order; the first
    part's frames before the join are the one-run clip's; frames after the cross-fade
    are the second part's own run (from its first frame, same seed); the overlap frames
    are blends, neither part's alone."""
    from impasto.clipjobs import part_ranges, send_clip_parts

    frames, _ = clip(64, 8)
    whole, _ = run_clip(daemon.address, frames, chunk=8)
    (_, _, _), (first, own, _) = part_ranges(8, 2, 2)
    assert (first, own) == (2, 4)
    later, _ = run_clip(daemon.address, frames[first:], chunk=8)
    got: list[ClipFrame] = []
    outcome = send_clip_parts(lambda: Client(daemon.address, timeout=60), frames, STYLE, FAST,
                              got.append, parts=2, overlap=2)
    assert [f.index for f in got] == list(range(8)) and outcome.frames == 8
    assert len(outcome.jobs) == 2 and outcome.seed == FAST["seed"]
    for i in range(first):
        assert np.array_equal(pixels(got[i].image), pixels(whole[i].image)), i
    for i in range(own, 8):
        assert np.array_equal(pixels(got[i].image), pixels(later[i - first].image)), i
    for i in range(first, own):
        a, b = pixels(whole[i].image), pixels(later[i - first].image)
        w = (i - first + 1) / 3
        assert np.abs(pixels(got[i].image) - ((1 - w) * a + w * b)).max() <= 1, i
        assert not np.array_equal(pixels(got[i].image), a) and not np.array_equal(
            pixels(got[i].image), b)
