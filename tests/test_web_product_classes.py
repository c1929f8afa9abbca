"""A new product labels with its own classes: the technician adds a class (e.g.
`capsule_defect`) for the product, the labeller offers exactly that list, a dataset of the
product freezes it, and the training run is named for the product, so the candidate that
QA approves carries the class list and never replaces the line's vial model."""

from __future__ import annotations

import json

from test_web_hmi import client_as
from test_web_images import line, photo, upload  # noqa: F401  (the fixture)

from edge import taxonomy


def test_a_new_product_labels_with_the_classes_added_for_it(line):  # noqa: F811
    _appl, app = line
    t = client_as(app, "tom")
    shas = [s["sha"] for s in upload(t, "capsules", ("a.png", photo(1))).json()["stored"]]
    lab = t.get(f"/api/tech/labels/{shas[0]}").json()
    assert lab["product"] == "capsules" and lab["classes"] == []  # nothing from the vials
    box = {"cls": "capsule_defect", "bbox": [10, 10, 30, 20]}
    r = t.put(f"/api/tech/labels/{shas[0]}", json={"boxes": [box]})
    assert r.status_code == 422
    assert "add it to the product's classes first" in r.json()["detail"]
    bad = t.post("/api/tech/products/capsules/classes", json={"cls": "Capsule Defect!"})
    assert bad.status_code == 422 and "A class name is 1 to 32 characters" in bad.json()["detail"]
    r = t.post(
        "/api/tech/products/capsules/classes", json={"cls": "capsule_defect", "reason": "new"}
    )
    assert r.status_code == 200 and r.json()["classes"] == ["capsule_defect"]
    page = t.get(f"/tech/label/{shas[0]}").text
    assert "<option>capsule_defect</option>" in page and "<option>crack</option>" not in page
    assert t.put(f"/api/tech/labels/{shas[0]}", json={"boxes": [box]}).status_code == 200
    entry = app.state.ctx.audit.entries(action="product.class.add")[-1]
    assert entry["user"] == "tom" and entry["target"] == "product:capsules"
    assert json.loads(entry["new"]) == ["capsule_defect"] and json.loads(entry["old"]) == []
    # adding it again changes nothing and writes no second entry
    t.post("/api/tech/products/capsules/classes", json={"cls": "capsule_defect"})
    assert len(app.state.ctx.audit.entries(action="product.class.add")) == 1
    # the line's own images keep the taxonomy's classes
    line_sha = next(r for r in t.get("/api/tech/images", params={"source": "line"}).json())
    classes = t.get(f"/api/tech/labels/{line_sha['image_sha256']}").json()["classes"]
    assert classes == list(taxonomy.DETECTOR_CLASSES)


def test_a_products_dataset_holds_its_photos_and_classes_and_training_is_named_for_it(line):  # noqa: F811
    _appl, app = line
    t = client_as(app, "tom")
    shas = [
        s["sha"]
        for s in upload(t, "capsules", *[(f"{i}.png", photo(20 + i)) for i in range(3)]).json()[
            "stored"
        ]
    ]
    t.post("/api/tech/products/capsules/classes", json={"cls": "capsule_defect"})
    box = {"cls": "capsule_defect", "bbox": [10, 10, 30, 20]}
    assert t.put(f"/api/tech/labels/{shas[0]}", json={"boxes": [box]}).status_code == 200
    t.post("/api/tech/labels/good", json={"images": shas[1:]})
    line_sha = t.get("/api/tech/images", params={"source": "line"}).json()[0]["image_sha256"]
    crack = {"cls": "crack", "bbox": [5, 5, 20, 20]}
    assert t.put(f"/api/tech/labels/{line_sha}", json={"boxes": [crack]}).status_code == 200
    r = t.post("/api/tech/datasets", json={"product": "capsules", "note": "capsules"})
    assert r.status_code == 200, r.text
    ds = r.json()
    assert ds["product"] == "capsules" and ds["classes"] == ["capsule_defect"]
    assert ds["images"] == 3  # its three photos, not the line image
    listed = t.get("/tech/datasets").text
    assert ds["version"] in listed and "capsule_defect" in listed
    r = t.post("/api/tech/train", json={"dataset": ds["version"], "epochs": 1, "minutes": 0})
    assert r.status_code == 422 and "minutes" in r.json()["detail"]  # a budget of nothing
    r = t.post("/api/tech/train", json={"dataset": ds["version"], "epochs": 1, "minutes": 2.5})
    assert r.status_code == 200, r.text
    jid = r.json()["job"]
    app.state.ctx.jobs.cancel(jid)
    args = json.loads((app.state.ctx.jobs.root / jid / "job.json").read_text())["args"]
    assert args["product"] == "capsules" and args["model_name"] == "capsules"
    assert args["minutes"] == 2.5  # the training page's time budget reaches the job
    assert "capsules" in t.get("/tech/train").text  # the product picker offers it
    # a class the shipped detector never learnt: the page proposes the ImageNet backbone
    # (the job takes the proposal unless the technician chooses a start)
    assert args["start"] is None
    page = t.get("/tech/train").text
    assert 'data-start="imagenet"' in page and 'id="train-start"' in page, page[-3000:]
    assert 'data-why="classes the shipped detector never learnt: capsule_defect"' in page or (
        'data-why="no approved shipped detector to start from"' in page  # a bare test line
    )
    r = t.post("/api/tech/train", json={"dataset": ds["version"], "start": "resnet"})
    assert r.status_code == 422
    # a product with no classes cannot build a dataset, in a sentence
    upload(t, "tablets", ("t.png", photo(40)))
    r = t.post("/api/tech/datasets", json={"product": "tablets"})
    assert r.status_code == 409 and "has no defect classes yet" in r.json()["detail"]
