"""What someone plants in the state directory is not served: a symbolic link (or a FIFO)
in the image store, a job's folder or a dataset is refused, never followed. Against the
web UI in its own process."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from edge.store.images import ImageStore

import web_support as ws

SECRET = "TOP-SECRET-not-for-the-web"


def png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((40, 60, 3), value, np.uint8))[1].tobytes()


def test_planted_links_and_fifos_in_the_state_directory_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(json.dumps({"note": SECRET, "sha256": SECRET, "id": SECRET}))
    state = tmp_path / "state"
    appl = ws.appliance(state, imgs=[])
    ws.add_users(appl)
    store: ImageStore = appl.pipeline.images
    with ws.web_process(appl) as web, ws.http(web) as t:
        t.headers["x-csrf-token"] = ws.login(t, "tom")
        shas = []
        for v in (60, 120, 180, 240, 30):
            r = t.post("/api/tech/upload", files={"file": ("x.png", png(v), "image/png")})
            assert r.status_code == 200, r.text
            shas.append(r.json()["sha"])
            label = {"boxes": [{"cls": "crack", "bbox": [5, 5, 20, 20]}], "reason": "t"}
            assert t.put(f"/api/tech/labels/{shas[-1]}", json=label).status_code == 200
        linked, fifo, moved = shas[:3]
        assert t.get(f"/images/{linked}.png").status_code == 200

        # an image file replaced by a link to another file
        store.path_for(linked).unlink()
        os.symlink(secret, store.path_for(linked))
        # an image replaced by a FIFO (reading one would hang a worker for ever)
        store.path_for(fifo).unlink()
        os.mkfifo(store.path_for(fifo))
        # an image's folder replaced by a link to a folder holding a file of that name
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.replace(store.path_for(moved), elsewhere / store.path_for(moved).name)
        folder = store.path_for(moved).parent
        if not any(folder.iterdir()):
            folder.rmdir()
            os.symlink(elsewhere, folder)
        for sha in shas[:3]:
            r = t.get(f"/images/{sha}.png")
            assert r.status_code == 404, (sha, r.status_code)
            assert SECRET not in r.text
        assert not store.verify(linked) and store.get(linked) is None

        # a dataset built from the labels copies no linked file
        r = t.post("/api/tech/datasets", json={"note": "t", "val_fraction": 0.5})
        assert r.status_code == 200, r.text
        for p in (state / "datasets").rglob("*"):
            assert not p.is_symlink(), p
            if p.is_file():
                assert SECRET.encode() not in p.read_bytes(), p

        # a planted dataset manifest and job files that are links
        planted = state / "datasets" / "ds-99999999-000000"
        planted.mkdir(parents=True)
        os.symlink(secret, planted / "manifest.json")
        job = state / "jobs" / "evaluate-20990101-000000-abcdef"
        job.mkdir(parents=True)
        (job / "job.json").write_text(json.dumps({"id": job.name, "kind": "evaluate"}))
        os.symlink(secret, job / "job.log")
        os.symlink(secret, job / "progress.jsonl")
        assert SECRET not in t.get("/tech/datasets").text
        r = t.get(f"/api/jobs/{job.name}")
        assert r.status_code == 200 and SECRET not in r.text
        assert SECRET not in t.get("/tech/train").text
