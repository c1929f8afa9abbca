"""The HMI's heat-map overlay, drawn by the real script in headless Chromium.

An ANOMALY finding as the line records it (`edge.anomaly.evidence.encode`) is drawn over
a frame on the HMI's canvas: the anomalous cells are coloured (red at and above the
threshold), the rest of the frame is left as it was, and a box moved by a multi-view
picture moves its map with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.anomaly.evidence import encode

import browser_support as bs

pytestmark = pytest.mark.browser

SCRIPT = Path(__file__).resolve().parent.parent / "edge" / "web" / "static" / "hmi_heat.js"


def finding(dx: int = 0) -> dict:
    heat = np.zeros((60, 40), np.float32)
    heat[30:34, 18:22] = 30.0  # 1.5 x the threshold: image x 304..336, y 240..272
    heat[10:12, 5:7] = 10.0  # half the threshold: not drawn
    box = (304, 240, 32, 32)
    return {
        "code": "ANOMALY",
        "bbox": [box[0] + dx, *box[1:]],
        "detail": {"heat": encode(heat, 20.0, (160, 0, 320, 480), box)},
    }


DRAW = """([findings]) => {
  const c = document.createElement("canvas"); c.width = 1280; c.height = 480;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "rgb(200,200,200)"; ctx.fillRect(0, 0, 1280, 480);
  EIHeat.draw(ctx, findings, 0, 0, 1);
  const px = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  return {hot: px(320, 256), cold: px(206, 86), outside: px(100, 100), moved: px(960, 256)};
}"""


def test_the_hmi_draws_an_anomaly_heat_map_over_the_frame_where_it_is_hot():
    with bs.chromium() as b:
        page = b.new_page()
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=SCRIPT.read_text())
        one = page.evaluate(DRAW, [[finding()]])
        moved = page.evaluate(DRAW, [[finding(dx=640)]])  # second view, side by side
        none = page.evaluate(DRAW, [[{"code": "CRACK", "bbox": [1, 1, 5, 5]}]])
    r, g, bl = one["hot"]
    assert r > 150 and r > g + 50 and r > bl + 50, json.dumps(one)  # red: above threshold
    assert one["cold"] == [200, 200, 200] and one["outside"] == [200, 200, 200]
    assert moved["moved"][0] > moved["moved"][2] + 50 and moved["hot"] == [200, 200, 200]
    assert none["hot"] == [200, 200, 200]  # findings without a map draw nothing
