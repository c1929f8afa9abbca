"""A technician brings photos in (several at once, a folder, or from a folder on the box),
finds them in the image browser beside the line's images, labels them and marks good
ones good: on a real line and database, through the web API and the `edge` command."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_web_hmi import client_as
from typer.testing import CliRunner

from edge.web.server import create_app

import web_support as ws


@pytest.fixture
def line(tmp_path):
    appl = ws.appliance(tmp_path, imgs=ws.images(6), max_image_pixels=400 * 300)
    ws.add_users(appl)
    app = create_app(appl)
    appl.start()
    assert appl.pipeline.wait(20)
    yield appl, app
    app.state.ctx.hub.close()
    if app.state.ctx.jobs:
        app.state.ctx.jobs.close()
    appl.stop()


def photo(seed: int, w: int = 120, h: int = 90, ext: str = ".png") -> bytes:
    """A small distinct photo: its pixels (and so its SHA-256) depend on the seed."""
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)
    return cv2.imencode(ext, img)[1].tobytes()


def upload(client, product: str, *named: tuple[str, bytes]):
    files = [("files", (n, data, "application/octet-stream")) for n, data in named]
    return client.post("/api/tech/uploads", data={"product": product}, files=files)


def add_class(client, product: str, cls: str) -> None:
    """A new product labels with its own classes: the technician adds one first."""
    r = client.post(f"/api/tech/products/{product}/classes", json={"cls": cls})
    assert r.status_code == 200 and cls in r.json()["classes"]


def test_several_photos_upload_at_once_and_a_bad_one_is_named_not_fatal(line):
    appl, app = line
    t = client_as(app, "tom")
    r = upload(
        t,
        "capsules",
        ("a.png", photo(1)),
        ("b.jpg", photo(2, ext=".jpg")),
        ("notes.txt", b"not a photo at all"),
        ("huge.png", photo(3, 800, 600)),  # 480 000 px > web.max_image_pixels
        ("sub/dir/c.bmp", photo(4, ext=".bmp")),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["name"] for s in body["stored"]] == ["a.png", "b.jpg", "c.bmp"]
    assert {x["name"]: x["status"] for x in body["refused"]} == {"notes.txt": 415, "huge.png": 413}
    assert "800 x 600" in next(x["detail"] for x in body["refused"] if x["name"] == "huge.png")
    for s in body["stored"]:
        assert appl.pipeline.images.path_for(s["sha"]).is_file()
    entries = app.state.ctx.audit.entries(action="image.upload")
    assert len(entries) == 3 and all(json.loads(e["new"])["product"] == "capsules" for e in entries)
    bad = upload(t, "Capsules!", ("a.png", photo(1)))
    assert bad.status_code == 422 and "product name" in bad.json()["detail"]


def test_uploads_appear_in_the_image_browser_with_source_and_product_filters(line):
    _appl, app = line
    t = client_as(app, "tom")
    shas = [
        s["sha"]
        for s in upload(t, "capsules", ("a.png", photo(1)), ("b.png", photo(2))).json()["stored"]
    ]
    other = upload(t, "blister-x", ("c.png", photo(3))).json()["stored"][0]["sha"]
    ups = t.get("/api/tech/images", params={"source": "upload"}).json()
    assert {r["image_sha256"] for r in ups} == {*shas, other}
    assert all(r["source"] == "upload" for r in ups)
    caps = t.get("/api/tech/images", params={"source": "upload", "product": "capsules"}).json()
    assert {r["image_sha256"] for r in caps} == set(shas)
    line_only = t.get("/api/tech/images", params={"source": "line"}).json()
    assert line_only and all(r["source"] == "line" for r in line_only)
    assert not {r["image_sha256"] for r in line_only} & {*shas, other}
    everything = t.get("/api/tech/images").json()
    assert {*shas, other} <= {r["image_sha256"] for r in everything}
    assert len(everything) == len(ups) + len(line_only)
    # a line-only filter (a reason) lists line images only
    assert all(
        r["source"] == "line" for r in t.get("/api/tech/images", params={"reason": "CRACK"}).json()
    )
    assert t.get("/api/tech/images", params={"source": "camera"}).status_code == 422
    page = t.get("/tech/images", params={"source": "upload", "product": "capsules"}).text
    assert all(f'data-sha="{s}"' in page for s in shas) and f'data-sha="{other}"' not in page
    assert "webkitdirectory" in page and "multiple" in page


def test_bulk_mark_good_and_the_label_state_filters(line):
    _appl, app = line
    t = client_as(app, "tom")
    shas = [
        s["sha"]
        for s in upload(t, "capsules", *[(f"{i}.png", photo(10 + i)) for i in range(4)]).json()[
            "stored"
        ]
    ]
    q = lambda label: {  # noqa: E731
        r["image_sha256"]
        for r in t.get("/api/tech/images", params={"source": "upload", "label": label}).json()
    }
    assert q("unlabelled") == set(shas) and q("good") == set() and q("labelled") == set()
    r = t.post("/api/tech/labels/good", json={"images": shas[:2], "reason": "clean capsules"})
    assert r.status_code == 200 and r.json()["marked"] == 2
    box = {"cls": "crack", "bbox": [10, 10, 30, 20]}
    add_class(t, "capsules", "crack")
    assert t.put(f"/api/tech/labels/{shas[2]}", json={"boxes": [box]}).status_code == 200
    assert (
        q("good") == set(shas[:2]) and q("labelled") == {shas[2]} and q("unlabelled") == {shas[3]}
    )
    assert t.get(f"/api/tech/labels/{shas[0]}").json()["good"] is True
    e = app.state.ctx.audit.entries(action="label.good")
    assert len(e) == 2 and all(x["reason"] == "clean capsules" for x in e)
    assert t.post("/api/tech/labels/good", json={"images": ["0" * 64]}).status_code == 404
    assert t.get("/api/tech/images", params={"label": "maybe"}).status_code == 422


def test_good_is_explicit_and_cannot_carry_boxes(line):
    _appl, app = line
    t = client_as(app, "tom")
    sha = upload(t, "capsules", ("a.png", photo(1))).json()["stored"][0]["sha"]
    add_class(t, "capsules", "crack")
    assert t.get(f"/api/tech/labels/{sha}").json()["suggested"] is False  # nothing to suggest
    box = {"cls": "crack", "bbox": [10, 10, 30, 20]}
    r = t.put(f"/api/tech/labels/{sha}", json={"boxes": [box], "good": True})
    assert r.status_code == 422 and "good" in r.json()["detail"]
    r = t.put(f"/api/tech/labels/{sha}", json={"boxes": [], "good": True})
    assert r.status_code == 200 and r.json()["good"] is True


@pytest.mark.parametrize(
    ("drawn", "stored"),
    [
        ([-10, -20, 50, 60], [0, 0, 40, 40]),  # past the top-left: the far edges stay
        ([100, 70, 50, 50], [100, 70, 20, 20]),  # past the bottom-right of 120 x 90
        ([60, 40, -20, -10], [40, 30, 20, 10]),  # drawn right-to-left
        ([-5, -5, 200, 200], [0, 0, 120, 90]),
    ],
)
def test_a_box_past_the_edge_keeps_only_the_part_on_the_image(line, drawn, stored):
    _appl, app = line
    t = client_as(app, "tom")
    sha = upload(t, "capsules", ("a.png", photo(1))).json()["stored"][0]["sha"]
    add_class(t, "capsules", "crack")
    r = t.put(f"/api/tech/labels/{sha}", json={"boxes": [{"cls": "crack", "bbox": drawn}]})
    assert r.status_code == 200, r.text
    assert r.json()["boxes"][0]["bbox"] == stored


def test_a_box_off_the_image_is_refused_in_a_sentence(line):
    _appl, app = line
    t = client_as(app, "tom")
    sha = upload(t, "capsules", ("a.png", photo(1))).json()["stored"][0]["sha"]
    add_class(t, "capsules", "crack")
    r = t.put(
        f"/api/tech/labels/{sha}", json={"boxes": [{"cls": "crack", "bbox": [-50, 5, 40, 10]}]}
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("A box must lie on the image")


def test_edge_images_import_checks_each_photo_and_audits_it(tmp_path):
    from edge.cli import _mount_optional, app
    from edge.store import uploads
    from edge.store.db import Database

    state = tmp_path / "state"
    src = tmp_path / "photos"
    (src / "day2").mkdir(parents=True)
    (src / "001.png").write_bytes(photo(1))
    (src / "day2" / "002.jpg").write_bytes(photo(2, ext=".jpg"))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    (src / "readme.txt").write_text("not read")
    _mount_optional()
    r = CliRunner().invoke(
        app, ["images", "import", str(src), "--product", "capsules", "--state-dir", str(state)]
    )
    assert r.exit_code == 1, r.output  # one refused
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {
        "product": "capsules",
        "imported": 2,
        "refused": 1,
    }
    assert "broken.png" in r.stderr
    db = Database(state / "edge.db")
    rows = uploads.search(db, product="capsules")
    assert {x["name"] for x in rows} == {"001.png", "002.jpg"} and all(
        x["via"] == "import" for x in rows
    )
    from edge.store.audit import AuditTrail

    e = AuditTrail(db).entries(action="image.import")
    assert len(e) == 2 and all(x["user"].startswith("shell:") for x in e)
    r = CliRunner().invoke(
        app, ["images", "import", str(src), "--product", "No Good", "--state-dir", str(state)]
    )
    assert r.exit_code == 2 and "product name" in r.stderr
