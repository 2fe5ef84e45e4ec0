"""Inputs at the edges: any size from 1x1, flat images, schedules that cannot run."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.options import EngineOptions
from tests.helpers import gradient_image, stripes_image, test_device


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(random_weights(0), test_device())


@pytest.mark.parametrize("size", [(1, 1), (300, 30), (64, 8), (1, 200), (17, 3), (2, 2)])
def test_any_content_size_works(engine: Engine, size: tuple[int, int]) -> None:
    """Thinner than VGG19's 16 px minimum (4 poolings before relu5_1): padded, cropped
    back, and the result has the content's size and moved off the start."""
    content = gradient_image(*size)
    opts = EngineOptions(size=max(64, max(size)), evaluations=[4], seed=0,
                         match_content_size=True)
    out = engine.run(content, [StyleInput(stripes_image())], opts)
    assert out.image.size == size
    assert all(math.isfinite(v) for v in out.losses.values())
    assert out.history[-1] < out.history[0]
    assert [(s.width, s.height, s.evaluations) for s in out.schedule] == [
        (max(1, round(size[0] * opts.resolved_size() / max(size))),
         max(1, round(size[1] * opts.resolved_size() / max(size))), 4)]


@pytest.mark.parametrize("style_size", [(1, 1), (200, 3)])
def test_tiny_and_thin_styles_work(engine: Engine, style_size: tuple[int, int]) -> None:
    out = engine.run(gradient_image(80, 60), [StyleInput(stripes_image(*style_size))],
                     EngineOptions(size=80, evaluations=[3], seed=0))
    assert out.image.size == (80, 60) and all(math.isfinite(v) for v in out.losses.values())


def test_flat_content_and_flat_style_give_a_sound_result(engine: Engine) -> None:
    """Nothing to optimise: the gradient vanishes and the run stops with the content."""
    flat = Image.new("RGB", (64, 64), (90, 90, 90))
    out = engine.run(flat, [StyleInput(flat)], EngineOptions(size=64, evaluations=[10], seed=0))
    assert out.image.size == (64, 64)
    assert all(math.isfinite(v) for v in out.losses.values())
    assert out.evaluations < 10  # stopped, not 10 steps of nothing
    assert out.image.getextrema() == ((90, 90),) * 3


def test_flat_style_on_a_picture(engine: Engine) -> None:
    black = Image.new("RGB", (40, 40))
    out = engine.run(gradient_image(64, 48), [StyleInput(black)],
                     EngineOptions(size=64, evaluations=[5], seed=0))
    assert all(math.isfinite(v) for v in out.losses.values())


@pytest.mark.parametrize(("opts", "why"), [
    ({"size": 80, "scales": 2}, "size 80 allows at most 1"),
    ({"size": 200, "scales": 3}, "size 200 allows at most 2"),
    ({"size": 80, "evaluations": [1, 1, 1]}, "size 80 allows at most 1"),
    ({"size": 256, "scales": 2, "evaluations": [5, 5, 5]}, "disagree"),
    ({"size": 256, "iterations": 7, "evaluations": [5, 5]}, "disagree"),
])
def test_schedules_that_cannot_run_are_refused(opts: dict, why: str) -> None:
    with pytest.raises(ImpastoError) as e:
        EngineOptions.from_dict(opts)
    assert e.value.code == BAD_OPTIONS and why in e.value.message


def test_the_schedule_that_ran_is_reported(engine: Engine) -> None:
    """The preset's 3 scales shrink to 2 at 128 px (the coarsest must be 64 px): the
    outcome says so, scale by scale, and the progress events agree."""
    steps = []
    opts = EngineOptions(size=128, preset="draft", seed=0, tolerance=0.0)
    out = engine.run(gradient_image(128, 96), [StyleInput(stripes_image())], opts,
                     on_step=steps.append)
    assert [(s.size, s.width, s.height, s.evaluations) for s in out.schedule] == [
        (64, 64, 48, 20), (128, 128, 96, 8)]
    assert {(s.scale, s.scales, s.size) for s in steps} == {(0, 2, 64), (1, 2, 128)}
    assert steps[-1].step == steps[-1].total == 28
