"""The intake's contract, without a daemon: a stylize request becomes a Job whose styles
each carry their weight and mask (JobStyle), and the worker's JobSpec carries them on as
the engine's StyleInput, pickled as a Ray worker gets it."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest
from PIL import Image

from impasto import imagecodec
from impasto.engine.transfer import StyleInput
from impasto.errors import CANCELLED, ImpastoError
from impasto.options import EngineOptions
from impasto.protocol import StyleRef, Stylize
from impasto.server.execute import spec_of
from impasto.server.intake import admit, decode_job
from impasto.server.jobqueue import JobStyle
from impasto.server.stylelib import StyleLibrary
from tests.helpers import gradient_image, stripes_image


def _request() -> Stylize:
    left = Image.new("L", (64, 48), 0)
    left.paste(255, (0, 0, 32, 48))
    return Stylize(content=imagecodec.to_ref(gradient_image(64, 48), "png"), styles=[
        StyleRef(name="stripes", weight=0.5),
        StyleRef(image=imagecodec.to_ref(stripes_image(40, 30), "png"), weight=2.0,
                 mask=imagecodec.to_ref(left, "png"))],
        options={"size": 64, "evaluations": [5]})


def test_each_style_travels_with_its_weight_and_mask(tmp_path: Path) -> None:
    library = StyleLibrary(tmp_path)
    library.add("stripes", stripes_image(32, 32))
    msg = _request()
    opts = admit(msg)
    job = decode_job(msg, opts, library, peer=b"p", req="r", owner="k",
                     gone=threading.Event())
    named, sent = job.styles
    assert all(isinstance(s, JobStyle) for s in job.styles)
    assert (named.label, named.weight, named.mask) == ("stripes", 0.5, None)
    assert (sent.label, sent.weight, sent.image.size) == ("image1", 2.0, (40, 30))
    assert sent.mask is not None and sent.mask.mode == "L" and sent.mask.size == (64, 48)
    # The queue's budget counts every decoded image, the mask too.
    assert job.pixels == 64 * 48 + 32 * 32 + 40 * 30 + 64 * 48
    assert job.summary("k")["styles"] == ["stripes", "image1"]

    spec = pickle.loads(pickle.dumps(spec_of(job)))  # as it goes to a Ray worker
    assert [type(s) for s in spec.styles] == [StyleInput, StyleInput]
    assert [(s.weight, s.mask is None) for s in spec.styles] == [(0.5, True), (2.0, False)]
    assert spec.styles[1].mask is not None
    assert spec.styles[1].mask.tobytes() == sent.mask.tobytes()
    assert spec.styles[0].image.tobytes() == named.image.tobytes()


def test_a_client_gone_stops_the_intake_before_any_image(tmp_path: Path) -> None:
    gone = threading.Event()
    gone.set()
    msg = _request()
    with pytest.raises(ImpastoError) as e:
        decode_job(msg, admit(msg), StyleLibrary(tmp_path), peer=b"p", req=None, owner="",
                   gone=gone)
    assert e.value.code == CANCELLED


def test_options_are_checked_before_the_images(tmp_path: Path) -> None:
    msg = _request()
    msg.content = None
    with pytest.raises(ImpastoError, match="stylize needs a content image"):
        admit(msg)
    assert admit(_request()) == EngineOptions.from_dict({"size": 64, "evaluations": [5]})
