"""The recipe editor in headless Chromium against a live simulated vial line.

Technician: open the approved vials recipe, get a message beside a field for an invalid
parameter, draw a region on a stored image and move it, tighten the fill-level tolerance,
preview it on the last stored images (the changed verdicts listed image by image) and save
the draft. QA: approve it with the electronic signature. The line keeps running the approved
version it ran. A screenshot of the editor goes to test-output/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import browser_support as bs
from browser_support import OUT, login, sign

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STORED = 20  # images the preview judges


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The appliance on the simulated vial line, every image kept, web UI on a free port."""
    tmp = tmp_path_factory.mktemp("live-recipes")
    with bs.live_line(tmp, **{"records.sample_pass_every": 1}) as line:
        yield line


@pytest.fixture(scope="module")
def browser():
    with bs.chromium() as b:
        yield b


def field(key: str) -> str:
    return f'[id="{key}"]'


def region(page) -> list[int]:
    """The fill-level tool's region as its four inputs hold it (x, y, w, h)."""
    keys = ["tools.0.roi"] + [f"tools.0.roi.{j}" for j in range(1, 4)]
    return [int(page.input_value(field(k))) for k in keys]


def test_technician_edits_previews_and_saves_a_draft_and_qa_approves_it(live, browser):
    appl, url = live
    db = appl.pipeline.db
    deadline = time.monotonic() + 120
    while (
        db.conn.execute(
            "SELECT COUNT(*) FROM items WHERE recipe = 'vials' AND image_sha256 IS NOT NULL"
        ).fetchone()[0]
        < STORED
    ):
        assert time.monotonic() < deadline, "the line kept too few images"
        time.sleep(0.5)
    OUT.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    login(page, url, "tom")
    page.wait_for_url("**/tech/images")
    page.goto(url + "/recipes")
    page.click('tr[data-name="vials"][data-status="approved"] a')
    page.wait_for_url("**/recipes/vials/1")

    # an invalid parameter: the message appears beside that field, nothing is saved
    page.fill(field("tools.0.inner_diameter_mm"), "0")
    page.click("#save-draft")
    err = page.locator('[data-error-for="tools.0.inner_diameter_mm"]')
    err.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('[data-error-for=\"tools.0.inner_diameter_mm\"]')"
        ".textContent.length > 0"
    )
    assert err.inner_text() == "must be more than 0"
    assert [d["version"] for d in appl.pipeline.recipe_book.docs.versions("vials")] == [1]
    page.fill(field("tools.0.inner_diameter_mm"), "22")

    # a region drawn on the stored image, then moved by dragging inside it
    page.wait_for_selector("#roi-canvas[data-loaded]")
    page.click('[data-draw="tools.0.roi"]')
    cv = page.locator("#roi-canvas").bounding_box()
    page.mouse.move(cv["x"] + cv["width"] * 0.2, cv["y"] + cv["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(cv["x"] + cv["width"] * 0.5, cv["y"] + cv["height"] * 0.6, steps=5)
    page.mouse.up()
    roi = region(page)
    assert roi[2] > 0 and roi[3] > 0
    page.mouse.move(cv["x"] + cv["width"] * 0.3, cv["y"] + cv["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(cv["x"] + cv["width"] * 0.4, cv["y"] + cv["height"] * 0.3, steps=5)
    page.mouse.up()
    moved = region(page)
    assert moved[0] > roi[0] and moved[1:] == roi[1:]
    page.screenshot(path=str(OUT / "recipe-editor.png"))
    page.click('[data-clear="tools.0.roi"]')  # the whole image again for the preview

    # tighter fill tolerance, previewed against the approved version
    page.fill(field("tools.0.min_level_mm"), "32.5")
    page.fill("#preview-n", str(STORED))
    page.uncheck("#preview-challenge")
    page.click("#do-preview")
    page.wait_for_function(
        "() => document.getElementById('preview-summary').textContent.length > 0"
        " || document.getElementById('preview-error').textContent.length > 0",
        timeout=600_000,  # idle priority on a shared machine
    )
    assert page.inner_text("#preview-error") == ""
    jid = page.get_attribute("#preview", "data-job")
    res = appl_job_result(appl, jid)
    assert res["images"] == STORED
    rows = page.locator('#preview-rows tr[data-change="verdict"]')
    assert rows.count() == res["verdict_changes"] >= 1
    first = rows.first.locator("td")
    assert first.nth(1).inner_text() == "PASS" and first.nth(2).inner_text() == "REJECT LOW_FILL"
    # the thumbnail loads after the row is drawn: wait for it, then it must be an image
    loaded = (
        "i => i.complete ? i.naturalWidth : new Promise(r => { i.onload = () => "
        "r(i.naturalWidth); i.onerror = () => r(0); })"
    )
    assert rows.first.locator("img").evaluate(loaded) > 0

    page.fill("#save-reason", "tighter fill tolerance")
    page.click("#save-draft")
    page.wait_for_function(
        "() => document.getElementById('save-result').textContent.startsWith('Saved as vials v2')"
    )
    ctx.close()

    # QA approves with the electronic signature; the line keeps its recipe until changeover
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    login(page, url, "quinn")
    page.wait_for_url("**/qa/audit")
    page.goto(url + "/recipes")
    draft = page.locator('tr[data-name="vials"][data-version="2"]')
    assert "tools.0.min_level_mm" in draft.inner_text()
    draft.locator("[data-act=approve]").click()
    sign(page, "quinn", "preview reviewed")
    page.wait_for_selector('tr[data-name="vials"][data-version="2"][data-status="approved"]')
    assert appl.pipeline.stamp.version == 1
    ctx.close()


def appl_job_result(appl, jid: str) -> dict:
    """The preview job's result as the web process wrote it (its folder in the state dir)."""
    from edge.web.jobs import Jobs

    return Jobs(Path(appl.cfg.records.state_dir) / "jobs").status(jid)["result"]


def test_technician_adds_a_tool_and_removes_one_and_each_message_lands_beside_its_own_field(
    live, browser
):
    """A tool added in the editor gets its type's form with the defaults; with a tool removed
    before it, a bad value's message still appears beside the added tool's field (the server
    counts places in the list it was sent, the page maps them back)."""
    appl, url = live
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    login(page, url, "tom")
    page.wait_for_url("**/tech/images")
    page.goto(url + "/recipes/vials/1")
    before = [
        t["type"] for t in appl.pipeline.recipe_book.docs.approved("vials")["content"]["tools"]
    ]
    glass = before.index("glass")
    page.locator(f'fieldset.tool[data-i="{glass}"] .remove-tool').check()
    page.select_option("#add-tool-type", "exposure")
    page.click("#add-tool")
    added = len(before)  # the new form's place among the forms (the removed one still shown)
    page.wait_for_selector(f'fieldset.tool.new-tool[data-i="{added}"][data-type="exposure"]')
    key = f"tools.{added}.max_brightness"
    assert page.input_value(field(key)) == "215.0"  # the parameter model's default
    page.fill(field(key), "300")
    page.fill("#name", "vials-exposure")
    page.fill("#save-reason", "check the lighting on every vial")
    page.click("#save-draft")
    page.wait_for_function(
        f"() => document.querySelector('[data-error-for=\"{key}\"]').textContent.length > 0"
    )
    assert page.inner_text(f'[data-error-for="{key}"]') == "must be at most 255"
    assert page.locator(".field.bad").count() == 1  # nothing beside another tool's field
    page.fill(field(key), "230")
    page.click("#save-draft")
    page.wait_for_function(
        "() => document.getElementById('save-result').textContent.startsWith('Saved as')"
    )
    saved = appl.pipeline.recipe_book.docs.versions("vials-exposure")[-1]["content"]["tools"]
    assert [t["type"] for t in saved] == [t for t in before if t != "glass"] + ["exposure"]
    assert saved[-1]["max_brightness"] == 230
    ctx.close()
