"""Video frames that hold still where the scene does (engine/temporal.py, video.py).

Judged on benchmarks/video.py's synthetic clip with known motion: the temporal error
(frame t against frame t-1 moved by the TRUE motion) is independent of the flow the
engine estimates, and the style distance is benchmarks/quality.py's measure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.video import DX, clip, measure
from impasto.engine.temporal import consistency, optical_flow, sample


def test_flow_finds_the_pan_and_the_mask_marks_what_cannot_be_trusted() -> None:
    frames, _ = clip(96, 2)
    backward = optical_flow(frames[1], frames[0])  # frame 1 -> frame 0
    forward = optical_flow(frames[0], frames[1])
    h, w = backward.shape[:2]
    # The scene moved DX px left, so a pixel of frame 1 was DX px further right in frame
    # 0, away from the disc and the strip that entered on the right.
    core = backward[h // 4:3 * h // 4, w // 2:w - 8]
    assert np.median(core[..., 0]) == pytest.approx(DX, abs=0.5)
    assert np.median(np.abs(core[..., 1])) < 0.5
    c = consistency(forward, backward)
    assert c[h // 4:3 * h // 4, w // 2:w - 8].mean() > 0.8  # the pan: trusted
    # A disocclusion: flows that disagree (forward 0, backward a shift) are not trusted.
    shift = np.zeros((h, w, 2), np.float32)
    shift[..., 0] = 5.0
    assert consistency(np.zeros_like(shift), shift).max() == 0.0
    moved = sample(np.asarray(frames[0], np.float32), backward)
    err = np.abs(moved - np.asarray(frames[1], np.float32))[h // 4:3 * h // 4, w // 2:w - 8]
    assert err.mean() < 6.0  # warping frame 0 by the flow gives frame 1 there


@pytest.mark.slow
def test_temporal_consistency_on_a_short_clip(tmp_path: Path) -> None:
    row = measure(96, 5, tmp_path)
    assert row["error_ratio"] <= 0.3, row
    # Holding still costs no style: the temporal frames' style distance is at most 10% over
    # the independent frames' (below 1 they are the more stylized).
    assert row["style_ratio"] <= 1.1, row
    # (time per frame is the benchmark's to report, not a test's to guess)
    # a static clip: far stiller than independent frames of a moving one
    assert row["temporal"]["static_error"] < 0.3 * row["independent"]["temporal_error"], row
