"""Product camera settings at changeover: the product's exposure and gain are sent to the
camera before its batch starts, read back into the batch record; a camera that refuses a value
fails the changeover with the reason, and the line keeps what it ran (never a batch with the
wrong exposure). The simulated camera honours exposure as brightness; the GigE Vision camera
is Aravis's fake one on loopback, as in test_genicam.py."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time

import pytest
from fake_gige import fake_gige_fixture  # noqa: F401 (fixture)
from test_challenge import close, vials_config
from test_genicam import _pipeline_cfg

from edge.app import Appliance
from edge.domain import BatchState
from edge.recipes.changeover import ChangeoverRefused
from edge.recipes.products import ProductMaster
from edge.web import batch_record
from edge.web.report_pdf import render_pdf

GTIN = "09506000134352"
DARK_GTIN = "09506000134369"


def product(gtin, recipe="vials", **camera):
    return {
        "gtin": gtin,
        "name": f"vial {gtin[-3:]}",
        "recipe": recipe,
        "scenario": "vials",
        "camera": camera,
        "challenge": [
            {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
            {"defect": None, "expect": "PASS", "count": 2},
        ],
    }


def batch_camera(state, lot):
    db = sqlite3.connect(state / "edge.db")
    row = db.execute("SELECT camera FROM batches WHERE lot = ?", (lot,)).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def test_the_simulated_camera_takes_the_products_exposure_and_the_batch_records_it(tmp_path):
    app = Appliance(vials_config(tmp_path, challenge={"at_batch_start": False}), components=False)
    master = ProductMaster(app.pipeline.db, app.audit)
    master.docs.seed(GTIN, product(GTIN, exposure_us=5000, gain=0))
    master.docs.seed(DARK_GTIN, product(DARK_GTIN, exposure_us=5_000_000))  # beyond the sensor
    src = app.pipeline.source
    try:
        before = float(src.sim.render(3)[0].mean())
        app.changeover.start(GTIN, "EXP1", "281231", by="olga")
        assert (src.cfg.exposure_us, src.cfg.gain) == (5000, 0)
        after = float(src.sim.render(3)[0].mean())
        assert after == pytest.approx(before / 2, rel=0.15), "half the exposure, half the light"
        assert batch_camera(tmp_path, "EXP1") == {"camera": {"exposure_us": 5000, "gain": 0}}
        rep = batch_record.build(
            app.pipeline.db, app.audit, app.pipeline.batch.id, station="edge-01"
        )
        assert rep["camera"] == [{"camera": "camera", "exposure_us": 5000, "gain": 0}]
        pdf = tmp_path / "record.pdf"
        pdf.write_bytes(render_pdf(rep))
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(r"camera\s+5000(\.0)?\s+0", text), "the PDF names the exposure"
        audit = app.audit.entries(user="olga")
        assert any(e["action"] == "camera.settings" for e in audit)

        with pytest.raises(ChangeoverRefused) as refused:
            app.changeover.start(DARK_GTIN, "EXP2", "281231", by="olga")
        assert refused.value.code == "camera_refused"
        assert "exposure 5e+06 us outside 20..1e+06 us" in str(refused.value)
        assert app.pipeline.batch.lot == "EXP1", "the running batch goes on as it was"
        assert src.cfg.exposure_us == 5000, "the camera keeps the running batch's exposure"
        assert app.changeover.progress["phase"] == "refused"
    finally:
        close(app)

    # a restart resumes the batch with the exposure it ran with, not the config's
    again = Appliance(
        vials_config(tmp_path, challenge={"at_batch_start": False}),
        batch=BatchState("EXP1", GTIN, "281231"),
        components=False,
    )
    try:
        assert again.pipeline.batch.lot == "EXP1"
        assert again.pipeline.source.cfg.exposure_us == 5000
        assert float(again.pipeline.source.sim.render(3)[0].mean()) == pytest.approx(
            after, rel=0.01
        )
        assert again.pipeline.camera_settings == {"camera": {"exposure_us": 5000, "gain": 0}}
    finally:
        close(again)


def test_the_challenge_sees_the_products_exposure(tmp_path):
    """The challenge units are taken through the same camera: a product set up far too dark
    fails its challenge, so its batch does not start."""
    app = Appliance(vials_config(tmp_path), components=False)
    master = ProductMaster(app.pipeline.db, app.audit)
    master.docs.seed(DARK_GTIN, product(DARK_GTIN, exposure_us=1500))
    try:
        running, stamp = app.pipeline.batch, app.pipeline.stamp
        assert running is not None  # the simulator's batch, challenged at start
        with pytest.raises(ChangeoverRefused) as refused:
            app.changeover.start(DARK_GTIN, "DARK1", "281231")
        assert refused.value.code == "challenge_failed"
        assert app.changeover.last is not None and not app.changeover.last.passed
        # the refused product left nothing behind: the running batch goes on as it was
        assert app.pipeline.batch == running and app.pipeline.stamp == stamp
        assert app.pipeline.source.cfg.exposure_us is None, "the camera's exposure is back"
        assert app.pipeline.camera_settings is None
    finally:
        close(app)


def test_a_gige_camera_takes_the_products_exposure_and_refuses_a_value_out_of_its_bounds(
    fake_gige,
    tmp_path,
):
    cfg = _pipeline_cfg(tmp_path, fake_gige.serial, items=None, exposure_us=10000, gain=0)
    cfg = cfg.model_copy(
        update={"challenge": cfg.challenge.model_copy(update={"at_batch_start": False})}
    )
    app = Appliance(cfg, components=False)
    master = ProductMaster(app.pipeline.db, app.audit)
    master.docs.seed(GTIN, {**product(GTIN, "camera-check", exposure_us=3000), "scenario": None})
    master.docs.seed(
        DARK_GTIN, {**product(DARK_GTIN, "camera-check", exposure_us=1e9), "scenario": None}
    )
    src = app.pipeline.source
    app.start()
    try:
        end = time.monotonic() + 20
        while not src.health()["connected"] and time.monotonic() < end:
            time.sleep(0.05)
        app.changeover.start(GTIN, "GIGE1", "281231", by="olga")
        assert src.poll_device()["exposure_us"] == pytest.approx(3000)
        recorded = batch_camera(tmp_path, "GIGE1")
        assert recorded[src.label]["exposure_us"] == pytest.approx(3000)

        with pytest.raises(ChangeoverRefused) as refused:
            app.changeover.start(DARK_GTIN, "GIGE2", "281231", by="olga")
        assert refused.value.code == "camera_refused"
        assert "exposure 1e+09 us outside" in str(refused.value)
        assert app.pipeline.batch.lot == "GIGE1"
        assert src.poll_device()["exposure_us"] == pytest.approx(3000)
    finally:
        app.stop()

    # a restart (the camera powered off and on with the appliance): the camera opens with the
    # resumed batch's exposure, not the config's 10 ms
    fake_gige.kill()
    fake_gige.start()
    again = Appliance(cfg, batch=BatchState("GIGE1", GTIN, "281231"), components=False)
    src = again.pipeline.source
    again.start()
    try:
        assert again.pipeline.batch.lot == "GIGE1"
        end = time.monotonic() + 20
        while not src.health()["connected"] and time.monotonic() < end:
            time.sleep(0.05)
        assert src.poll_device().get("exposure_us") == pytest.approx(3000), src.last_error
    finally:
        again.stop()
