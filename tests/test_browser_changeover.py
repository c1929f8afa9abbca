"""Changeover at the touchscreen, in headless Chromium at 1024x600 against a live simulated
vial line: the operator picks the vials product (approved products only), enters a bad
expiry and reads why beside the field, then a good lot and expiry; the line lets the items
in flight finish, the challenge runs unit by unit and passes, and the batch enters EXECUTE.
The header then names the product and the recipe version the line runs."""

from __future__ import annotations

import pytest

import browser_support as bs
from browser_support import OUT, login, sign

pytestmark = pytest.mark.browser

GTIN = "09506000134352"
DRAFT_GTIN = "09506000134369"
VIALS = {
    "gtin": GTIN,
    "name": "Amber vial 10 ml",
    "recipe": "vials",
    "scenario": "vials",
    "challenge": [
        {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
        {"defect": "missing_cap", "expect": "REJECT", "reason": "MISSING_CAP"},
        {"defect": None, "expect": "PASS", "count": 2},
    ],
}


def _products(appl):
    from edge.recipes.products import ProductMaster

    master = ProductMaster(appl.pipeline.db, appl.audit)
    master.docs.seed(GTIN, VIALS)  # approved (QA's approval: test_web_products.py)
    master.docs.add_draft(DRAFT_GTIN, {**VIALS, "gtin": DRAFT_GTIN, "name": "Draft vial"}, "tom")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with bs.live_line(tmp_path_factory.mktemp("changeover"), setup=_products) as line:
        yield line


@pytest.fixture(scope="module")
def browser():
    with bs.chromium() as b:
        yield b


NEW_GTIN = "09506000134376"


def test_technician_drafts_a_product_on_its_page_and_qa_approves_it_with_an_e_signature(
    live, browser
):
    appl, url = live
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    login(page, url, "tom")
    page.goto(url + "/products")
    page.click("#new-product")
    page.fill("[name=gtin]", "123")
    page.fill("[name=name]", "Clear vial 5 ml")
    page.select_option("[name=recipe]", "vials")
    page.select_option("[name=scenario]", "vials")
    page.fill("[name=exposure_us]", "10000")
    page.click("#add-unit")
    page.fill("#challenge tr.unit >> nth=0 >> .u-defect", "low_fill")
    page.click("#add-unit")
    page.select_option("#challenge tr.unit >> nth=1 >> .u-expect", "PASS")
    page.click("#save-draft")
    page.wait_for_function("() => document.querySelector('[data-error=gtin]').textContent")
    assert "check digit" in page.inner_text("[data-error=gtin]")
    assert "bad" in page.get_attribute("[name=gtin]", "class")

    page.fill("[name=gtin]", NEW_GTIN)
    page.click("#save-draft")
    page.wait_for_url(f"**/products/{NEW_GTIN}?version=1")
    assert "a known-bad unit needs its expected reason" in page.inner_text("#problems")
    page.fill("#challenge tr.unit >> nth=0 >> .u-reason", "LOW_FILL")
    page.click("#save-draft")
    page.wait_for_url(f"**/products/{NEW_GTIN}?version=2")
    assert page.locator("#problems").count() == 0
    ctx.close()

    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    login(page, url, "quinn")
    page.goto(url + f"/products/{NEW_GTIN}")
    assert page.locator("#challenge tr.unit").count() == 2
    page.click("#btn-approve")
    sign(page, "quinn", "challenge set and camera reviewed")
    page.wait_for_function("() => document.getElementById('doc-status').textContent === 'approved'")
    assert "Quinn Quality" in page.inner_text("#signatures")
    page.screenshot(path=str(OUT / "product-approved-1280x800.png"), full_page=True)
    ctx.close()
    from edge.recipes.products import ProductMaster

    assert ProductMaster(appl.pipeline.db).approved(NEW_GTIN).camera.exposure_us == 10000


def test_operator_changes_over_to_the_vials_product_and_the_batch_enters_execute(live, browser):
    appl, url = live
    OUT.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1024, "height": 600})
    page = ctx.new_page()
    login(page, url, "olga")
    page.wait_for_url("**/hmi")
    page.wait_for_function("() => +document.getElementById('c-items').textContent > 0")

    page.click("#btn-changeover")
    page.wait_for_selector(f"#co-products .product[data-gtin='{GTIN}']")
    assert page.locator(f"#co-products .product[data-gtin='{DRAFT_GTIN}']").count() == 0
    page.click(f"#co-products .product[data-gtin='{GTIN}']")
    page.fill("#co-lot", "CO42")
    page.fill("#co-expiry", "281331")  # month 13
    page.wait_for_function(
        "() => document.getElementById('co-expiry-error').textContent.includes('month')"
    )
    assert "expiry month must be 01 to 12" in page.inner_text("#co-expiry-error")
    page.fill("#co-lot", "CO 42")  # a space is not in the GS1 character set 82
    page.wait_for_function(
        "() => document.getElementById('co-lot-error').textContent.includes('character set')"
    )
    page.screenshot(path=str(OUT / "hmi-changeover-1024x600.png"))
    for sel in ("#co-start", "#co-lot", "#co-expiry", f"[data-gtin='{GTIN}']"):
        box = page.locator(sel).bounding_box()
        assert box["height"] >= 48 and box["y"] + box["height"] <= 600, sel

    page.fill("#co-lot", "CO42")
    page.fill("#co-expiry", "281231")
    page.wait_for_function(
        "() => !document.getElementById('co-expiry-error').textContent"
        " && !document.getElementById('co-lot-error').textContent"
    )
    page.click("#co-start")
    page.wait_for_function(
        "() => document.getElementById('co-phase').textContent.startsWith('Challenge')"
    )
    page.wait_for_function(
        "() => document.getElementById('co-result').className === 'ok'", timeout=120_000
    )
    assert "EXECUTE" in page.inner_text("#co-result")
    assert page.inner_text("#co-phase") == "Challenge passed: 4 units judged right."
    assert page.locator("#co-failures li").count() == 0
    page.screenshot(path=str(OUT / "hmi-changeover-done-1024x600.png"))

    assert appl.pipeline.batch.lot == "CO42" and appl.pipeline.batch.gtin == GTIN
    assert appl.changeover.last.passed and appl.changeover.last.units == 4
    packml = next(c for c in appl.components if c.name == "packml")
    assert packml.machine.state.value == "Execute"
    page.click("#co-close")
    page.wait_for_function("() => document.getElementById('lot').textContent === 'CO42'")
    assert page.inner_text("#product") == "Amber vial 10 ml"
    assert page.inner_text("#recipe") == "vials v1"
    assert page.inner_text("#state").lower() == "execute"
    actions = [e["action"] for e in appl.audit.entries(user="olga")]
    assert "batch.changeover" in actions
    ctx.close()
