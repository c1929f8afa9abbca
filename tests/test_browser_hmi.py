"""The web UI in headless Chromium against a live simulated line: the flows people use.

Operator: log in, watch counters move, start a batch, acknowledge an alarm.
Technician: label an image with the canvas box editor, build a dataset, start a tiny
training run and watch its progress. QA: promote a model with an electronic signature.
Screenshots of the HMI at 1024x600 and 1280x800 go to test-output/.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

import web_support as ws

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("EDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUT = Path(__file__).resolve().parent.parent / "test-output"

if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium not installed at {CHROMIUM} (scripts/test.sh installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The whole appliance on the simulated vial line, web UI on a free port."""
    from edge.app import Appliance
    from edge.cli import _override
    from edge.config import load_config

    tmp = tmp_path_factory.mktemp("live")
    # the shipped registry (the default recipe runs its approved detector), in a copy the
    # technician flows below may add candidates to
    shutil.copytree(Path(__file__).resolve().parents[1] / "models", tmp / "models")
    cfg = _override(
        load_config(None),
        **{
            "records.state_dir": str(tmp),
            "records.sample_pass_every": 5,
            "source.rate_per_min": 300,
            "web.port": 0,
            "web.host": "127.0.0.1",
            "inference.models_dir": str(tmp / "models"),
        },
    )
    appl = Appliance(cfg)
    ws.add_users(appl)
    appl.start()
    web = next(c for c in appl.components if c.name == "web")
    assert web.status()["up"], web.status()
    yield appl, web.url
    appl.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def login(page, url, user):
    page.goto(url + "/login")
    page.fill("#username", user)
    page.fill("#password", ws.PASSWORDS[user][2])
    page.click("#login")


def count(page, sel) -> int:
    return int(page.inner_text(sel) or 0)


def test_operator_logs_in_sees_the_line_move_starts_a_batch_and_acks_an_alarm(live, browser):
    appl, url = live
    OUT.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1024, "height": 600})
    page = ctx.new_page()
    login(page, url, "olga")
    page.wait_for_url("**/hmi")
    page.wait_for_function("() => +document.getElementById('c-items').textContent > 0")
    first = count(page, "#c-items")
    page.wait_for_function(f"() => +document.getElementById('c-items').textContent > {first}")

    page.click("#btn-start")
    page.fill("#in-lot", "WEB42")
    page.fill("#in-gtin", "09506000134352")
    page.fill("#in-expiry", "281231")
    page.click("#do-start")
    page.wait_for_function("() => document.getElementById('lot').textContent === 'WEB42'")
    assert appl.pipeline.batch.lot == "WEB42"

    appl.pipeline.alarms.raise_("BIN_FULL", "reject bin full", "major")
    page.click("#alarms [data-code=BIN_FULL] .ack")
    page.wait_for_selector("#alarms [data-code=BIN_FULL].acked")
    assert appl.pipeline.alarms.active()[0].acked_by == "olga"
    assert [e["action"] for e in appl.audit.entries(user="olga")][-2:] == [
        "batch.start",
        "alarm.ack",
    ]

    page.wait_for_selector("#rejects figure")
    page.wait_for_timeout(600)  # let the frame canvas draw before the picture is taken
    page.screenshot(path=str(OUT / "hmi-1024x600.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(600)
    page.screenshot(path=str(OUT / "hmi-1280x800.png"))
    # nothing on the page needs hover or scrolling at either size: the controls are visible
    for sel in ("#btn-start", "#btn-stop", "#c-items", "#alarms", "#rejects"):
        assert page.is_visible(sel)
    box = page.locator("#btn-stop").bounding_box()
    assert box["height"] >= 48 and box["y"] + box["height"] <= 800
    ctx.close()


def test_technician_labels_images_builds_a_dataset_and_watches_a_training_run(live, browser):
    appl, url = live
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    login(page, url, "tom")
    page.wait_for_url("**/tech/images")
    for i in range(2):
        page.goto(url + "/tech/images")
        tiles = page.locator("#images a.tile:not(:has(.tag))")
        tiles.first.click()
        page.wait_for_url("**/tech/label/*")
        page.wait_for_function("() => document.getElementById('saved').textContent !== ''")
        cv = page.locator("#canvas").bounding_box()
        page.select_option("#cls", "crack")
        page.mouse.move(cv["x"] + cv["width"] * 0.3, cv["y"] + cv["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(cv["x"] + cv["width"] * 0.5, cv["y"] + cv["height"] * 0.6, steps=5)
        page.mouse.up()
        page.click("#save")
        page.wait_for_function(
            "() => document.getElementById('saved').textContent.startsWith('Saved')"
        )
        if i == 0:
            page.screenshot(path=str(OUT / "label-editor.png"))
    n = appl.pipeline.db.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    assert n == 2

    page.goto(url + "/tech/datasets")
    page.fill("input[name=note]", "browser test")
    page.click("#do-build")
    page.wait_for_selector("#datasets td.mono")

    if importlib.util.find_spec("ultralytics") is None:
        ctx.close()
        pytest.skip("ultralytics (the train extra) is not installed: training not exercised")
    page.goto(url + "/tech/train")
    page.fill("input[name=epochs]", "1")
    page.fill("input[name=imgsz]", "64")
    page.fill("input[name=batch]", "2")
    page.click("#do-train")
    page.wait_for_selector("#job:not([hidden])")
    t0 = time.monotonic()
    page.wait_for_function(
        "() => document.getElementById('job-epoch').textContent.startsWith('Epoch 1')"
        " || ['failed', 'finished'].includes(document.getElementById('job-state').textContent)",
        timeout=120_000,
    )
    state = page.inner_text("#job-state")
    assert state != "failed", page.inner_text("#job-log")
    assert page.inner_text("#job-epoch").startswith("Epoch 1 / 1"), (
        f"after {time.monotonic() - t0:.0f} s"
    )
    if state == "running":
        page.click("#job-cancel")
        page.wait_for_function(
            "() => document.getElementById('job-state').textContent === 'cancelled'"
        )
    ctx.close()


def test_qa_promotes_a_verified_candidate_with_an_electronic_signature(live, browser):
    from test_web_hmi import make_candidate

    from edge.models.registry import ModelRegistry, model_roots

    appl, url = live
    models = Path(appl.cfg.inference.models_dir)
    make_candidate(models, name="defects", version="7")
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    login(page, url, "quinn")
    page.goto(url + "/models")
    page.click("tr[data-version='7'] [data-act=approve]")
    page.fill("#sign-password", "wrong password")
    page.fill("#sign-reason", "validated on the independent test set")
    page.click("#do-sign")
    page.wait_for_function(
        "() => document.getElementById('sign-error').textContent.includes('refused')"
    )
    roots = model_roots(appl.cfg.records.state_dir, models)  # cards change in the state dir
    assert ModelRegistry(roots).card("defects", "7").status == "candidate"
    page.fill("#sign-password", ws.PASSWORDS["quinn"][2])
    page.click("#do-sign")
    page.wait_for_selector("tr[data-version='7'][data-status=approved]")
    assert "Quinn Quality" in page.inner_text("tr[data-version='7']")
    card = ModelRegistry(roots).card("defects", "7").model_dump()
    assert card["status"] == "approved" and card["signatures"][0]["username"] == "quinn"
    assert appl.audit.verify()[0]
    ctx.close()
