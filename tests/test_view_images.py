"""Each camera's own image is kept for a multi-view item, named in the records, and the
technician's image browser opens it: a label is drawn on what one camera saw, in its pixels.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from test_web_hmi import client_as

from edge.app import Appliance
from edge.config import parse_config
from edge.store import items as item_rows
from edge.store.verify import verify
from edge.web.server import create_app

import web_support as ws


def _station(tmp_path, keep_views: bool = True) -> Appliance:
    cfg = ws.config(tmp_path).model_dump(mode="json")
    cfg["records"].update(sample_pass_every=1, keep_view_images=keep_views)
    cfg["source"] = {"type": "simulator", "scenario": "vials", "items": 4, "realtime": False}
    cfg["views"] = [{"name": "front"}, {"name": "side"}]
    cfg["pipeline"]["view_wait_ms"] = 900
    return Appliance(parse_config(cfg), components=False)


def _linked(appl: Appliance, n: int) -> list:
    """The item rows once the image writer has linked every kept image."""
    db = appl.pipeline.db
    end = time.monotonic() + 20
    while time.monotonic() < end:
        rows = db.conn.execute("SELECT seq, image_sha256 FROM items ORDER BY seq").fetchall()
        shots = db.conn.execute("SELECT COUNT(*) FROM item_view_images").fetchone()[0]
        if len(rows) == n and all(r[1] for r in rows) and shots == 2 * n:
            return rows
        time.sleep(0.05)
    raise AssertionError("images not linked in time")


def test_each_view_is_kept_as_its_own_file_named_in_the_record(tmp_path):
    appl = _station(tmp_path)
    appl.start()
    assert appl.pipeline.wait(60)
    rows = _linked(appl, 4)
    views = item_rows.view_images(appl.pipeline.db.conn, [r[0] for r in rows])
    store = appl.pipeline.images
    for seq, composite_sha in rows:
        assert list(views[seq]) == ["front", "side"]
        composite = cv2.imread(str(store.path_for(composite_sha)))
        front = cv2.imread(str(store.path_for(views[seq]["front"])))
        side = cv2.imread(str(store.path_for(views[seq]["side"])))
        w = front.shape[1]
        assert np.array_equal(composite[:, :w], front), "the front camera's own pixels"
        assert np.array_equal(composite[:, w:], side), "the side camera's own pixels"
        assert views[seq]["front"] != views[seq]["side"]
    # a label on the side camera's image starts from what the side camera found, in its pixels
    seq = rows[0][0]
    found = [
        {"tool": "glass", "code": "CRACK", "bbox": [5, 6, 7, 8], "view": "side"},
        {"tool": "fill_level", "code": "LOW_FILL", "bbox": [1, 2, 3, 4], "view": "front"},
    ]
    db = appl.pipeline.db
    with db.transaction(db.conn) as c:
        c.execute("UPDATE items SET findings = ? WHERE seq = ?", (json.dumps(found), seq))
    marks = item_rows.latest_marks(db, views[seq]["side"])
    assert marks == ([found[0]], [])
    appl.stop()
    problems, counts = verify(tmp_path)
    assert problems == [], problems
    assert counts["images"] == 4 * 3


def test_the_image_browser_opens_each_camera_of_an_item(tmp_path):
    appl = _station(tmp_path)
    ws.add_users(appl)
    app = create_app(appl)
    appl.start()
    try:
        assert appl.pipeline.wait(60)
        _linked(appl, 4)
        t = client_as(app, "tom")
        rows = t.get("/api/tech/images", params={"source": "line"}).json()
        assert len(rows) == 4 and all(list(r["views"]) == ["front", "side"] for r in rows)
        page = t.get("/tech/images").text
        side = rows[0]["views"]["side"]
        assert f'href="/tech/label/{side}" data-view="side"' in page
        opened = t.get(f"/tech/label/{side}")
        assert opened.status_code == 200
        label = t.get(f"/api/tech/labels/{side}").json()
        assert (label["width"], label["height"]) == (640, 480), "one camera's frame"
    finally:
        app.state.ctx.hub.close()
        if app.state.ctx.jobs:
            app.state.ctx.jobs.close()
        appl.stop()


def test_a_station_may_keep_only_the_side_by_side_image(tmp_path):
    appl = _station(tmp_path, keep_views=False)
    appl.start()
    assert appl.pipeline.wait(60)
    db = appl.pipeline.db
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if all(r[0] for r in db.conn.execute("SELECT image_sha256 FROM items").fetchall()):
            break
        time.sleep(0.05)
    try:
        assert db.conn.execute("SELECT COUNT(*) FROM item_view_images").fetchone()[0] == 0
    finally:
        appl.stop()
