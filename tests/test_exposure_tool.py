"""The exposure tool: a frame the other tools cannot vouch for is a LIGHTING reject."""

from __future__ import annotations

import numpy as np
import pytest

from edge.inspect.base import Services, ToolContext
from edge.inspect.exposure import ExposureParams, ExposureTool


def run(image, **params):
    tool = ExposureTool("exposure", ExposureParams(**params), Services())
    r = tool.run(image, ToolContext(item_id="x", seq=1, deadline=1e18))
    assert r.error is None
    return [f.code for f in r.findings], [f.message for f in r.findings]


def ramp(scale: float = 1.0) -> np.ndarray:
    """The fake GigE Vision camera's picture: a diagonal grey ramp."""
    y, x = np.mgrid[0:128, 0:128]
    grey = np.clip(((x + y) % 255) * scale, 0, 255).astype(np.uint8)
    return np.dstack([grey] * 3)


def test_a_well_exposed_ramp_passes():
    assert run(ramp(), min_brightness=90, max_brightness=170, min_contrast=40) == ([], [])


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (ramp(0.4), "too dark"),
        (np.full((64, 64, 3), 230, np.uint8), "too bright"),
        (np.full((64, 64, 3), 128, np.uint8), "contrast"),
        (ramp(3.0), "clipped"),
    ],
)
def test_dark_bright_flat_or_clipped_frames_reject_as_lighting(image, words):
    codes, messages = run(image, min_brightness=90, max_brightness=170, min_contrast=20)
    assert "LIGHTING" in codes and any(words in m for m in messages)


def test_a_region_outside_the_frame_is_an_image_error():
    codes, _ = run(ramp(), roi=(500, 500, 10, 10))
    assert codes == ["IMAGE_ERROR"]


def test_limits_in_the_wrong_order_are_a_config_error():
    with pytest.raises(ValueError, match="min_brightness must be below max_brightness"):
        ExposureParams(min_brightness=200, max_brightness=100)
