"""Evidence of an ANOMALY reject: its heat map is kept with the reject and shown over the image.

The shipped, approved vial anomaly model judges simulated vials on a real appliance and
database; the technician's image browser finds anomaly rejects by their score.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge.anomaly.evidence import AT_THRESHOLD, decode, encode, heats_of, overlay
from edge.app import Appliance
from edge.config import SimulatorSource, parse_config
from edge.sim.twin import LineSimulator
from edge.web.server import create_app

import web_support as ws
from fake_tools import ListSource

MODELS = Path(__file__).resolve().parent.parent / "models"


def vials(n: int, seed: int = 31) -> list[np.ndarray]:
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=seed, realtime=False, defect_rate=0))
    return [sim.render(i)[0] for i in range(n)]


def stained(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    cv2.circle(out, (320, 300), 30, (20, 20, 120), -1)
    return out


def test_the_heat_map_is_small_keeps_its_hottest_patch_and_reads_back_as_threshold_shares():
    heat = np.full((60, 40), 10.0, np.float32)
    heat[37, 21] = 40.0  # one hot patch: the pooling must not lose it
    d = encode(heat, threshold=20.0, rect=(160, 0, 320, 480), bbox=(300, 290, 20, 20))
    assert (d["rows"], d["cols"]) == (30, 20) and len(d["cells"]) <= 800
    share = decode(d)
    assert share.max() == pytest.approx(255 / AT_THRESHOLD)  # twice the threshold, clipped
    assert np.unravel_index(share.argmax(), share.shape) == (18, 10)
    assert share.min() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        decode({**d, "rows": 31})


def test_the_overlay_colours_the_anomalous_region_and_leaves_the_rest_of_the_image():
    img = np.full((480, 640, 3), 200, np.uint8)
    heat = np.zeros((60, 40), np.float32)
    heat[30:34, 18:22] = 30.0  # 1.5 x the threshold, at x 160 + 18*8 .. , y 30*8 ..
    out = overlay(img, [encode(heat, 20.0, (160, 0, 320, 480))])
    changed = np.any(out != img, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.any()
    assert xs.min() >= 304 and xs.max() < 336 and ys.min() >= 240 and ys.max() < 272
    b, _g, r = (int(v) for v in out[250, 320])
    assert r > b  # red at and above the threshold


@pytest.fixture
def line(tmp_path):
    good = vials(4)
    imgs = [good[0], stained(good[1]), good[2], stained(good[3])]
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 1},
            "pipeline": {"workers": 1, "deadline_ms": 20000},
            "recipe": "v",
            "recipes": {
                "v": {
                    "name": "v",
                    "tools": [{"type": "anomaly", "model": "vial-anomaly"}],
                    "classes": {"ANOMALY": {"severity": "critical", "action": "reject"}},
                }
            },
            "web": {"port": 0},
            "inference": {"models_dir": str(MODELS)},
        }
    )
    appl = Appliance(cfg, source=ListSource(imgs, paced=False), components=False)
    ws.add_users(appl)
    app = create_app(appl)
    appl.start()
    assert appl.pipeline.wait(120)
    deadline = time.monotonic() + 30
    while True:  # every item recorded, and its kept image written (after the commit)
        rows = appl.pipeline.db.items("1 = 1", limit=10)
        shas = [r["image_sha256"] for r in rows]
        if len(rows) == 4 and all(s and appl.pipeline.images.get(s) for s in shas):
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    yield appl, app
    app.state.ctx.hub.close()
    appl.stop()


def client_as(app, user):
    c = TestClient(app)
    c.headers["x-csrf-token"] = ws.login(c, user)
    return c


def test_an_anomaly_reject_keeps_its_heat_map_with_its_image_and_the_hmi_gets_it(line):
    appl, app = line
    rows = appl.pipeline.db.items("1 = 1", limit=10)
    assert [r["verdict"] for r in sorted(rows, key=lambda r: r["seq"])] == [
        "PASS",
        "REJECT",
        "PASS",
        "REJECT",
    ]
    reject = next(r for r in rows if r["verdict"] == "REJECT")
    heats = heats_of(reject["findings"])
    assert len(heats) == 1 and heats[0]["rect"] == [160, 0, 320, 480]
    share = decode(heats[0])
    r, c = np.unravel_index(share.argmax(), share.shape)
    cy = (r + 0.5) * 480 / heats[0]["rows"]
    cx = 160 + (c + 0.5) * 320 / heats[0]["cols"]
    assert abs(cx - 320) < 48 and abs(cy - 300) < 48  # the hottest cell is on the stain

    olga = client_as(app, "olga")  # the operator's HMI draws it over the frame
    state = olga.get("/api/line/state").json()
    assert any(heats_of(rej["findings"]) for rej in state["rejects"])
    assert "/static/hmi_heat.js" in olga.get("/hmi").text
    assert "EIHeat" in olga.get("/static/hmi_heat.js").text
    png = olga.get(f"/images/{reject['image_sha256']}/heat.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), png.text[:300]
    shown = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR)
    kept = cv2.imdecode(
        np.frombuffer(appl.pipeline.images.get(reject["image_sha256"]), np.uint8),
        cv2.IMREAD_COLOR,
    )
    assert shown.shape == kept.shape and np.any(shown[300, 320] != kept[300, 320])
    assert np.array_equal(shown[:, :100], kept[:, :100])  # outside the region: untouched
    good = next(r for r in rows if r["verdict"] == "PASS")
    assert olga.get(f"/images/{good['image_sha256']}/heat.png").status_code == 404


def test_the_image_browser_filters_by_anomaly_score_as_a_share_of_the_threshold(line):
    _appl, app = line
    tom = client_as(app, "tom")
    hot = tom.get("/api/tech/images", params={"min_anomaly": 1.0}).json()
    assert len(hot) == 2 and all(r["verdict"] == "REJECT" for r in hot)
    assert all(r["anomaly"] > 1.0 and "ANOMALY" in r["reasons"] for r in hot)
    every = tom.get("/api/tech/images", params={"min_anomaly": 0.0}).json()
    assert len(every) == 4  # passed items carry their score too (`anomaly_score_max`)
    assert all(0 < r["anomaly"] <= 1.0 for r in every if r["verdict"] == "PASS")
    page = tom.get("/tech/images", params={"min_anomaly": "1"}).text
    assert page.count('class="tile"') == 2 and "heat map" in page
