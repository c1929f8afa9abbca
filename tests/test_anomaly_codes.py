"""A carton's code differs on every unit by its serial: the anomaly tool can leave it to the
code reader (`ignore_codes`), and still finds what is wrong anywhere else."""

from __future__ import annotations

import numpy as np

from edge.inspect.anomaly import cool_codes
from edge.inspect.base import LocatedCode


def _code(x: int, y: int, w: int, h: int) -> LocatedCode:
    return LocatedCode({"21": "SERIAL"}, None, (x, y, w, h))


def test_a_hot_code_is_not_the_regions_score_but_a_hot_spot_beside_it_is():
    heat = np.ones((32, 48), np.float32)
    rect = (100, 50, 480, 320)  # 10 px per patch
    heat[10:13, 20:23] = 9.0  # under the code at x 300..330, y 150..180
    cooled = cool_codes(heat, rect, [_code(300, 150, 30, 30)], 0.25)
    assert cooled.max() == 1.0 and cooled.shape == heat.shape
    heat[25, 40] = 5.0  # a stain elsewhere on the face
    assert cool_codes(heat, rect, [_code(300, 150, 30, 30)], 0.25).max() == 5.0


def test_no_code_read_leaves_every_patch_scored():
    heat = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    assert cool_codes(heat, (0, 0, 160, 160), [], 0.5) is heat
    assert cool_codes(heat, (0, 0, 160, 160), [_code(500, 500, 20, 20)], 0.5) is heat
