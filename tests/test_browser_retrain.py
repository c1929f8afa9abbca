"""The technician's walk with real photos, in headless Chromium against a live vial line.

A new product, capsules: the technician uploads real capsule photos (VisA) several at once,
finds them in the image browser (filter: uploaded), adds the product's own defect class on
a photo's label page, draws a box round each defect on the canvas (where the photo's mask
says the defect is), marks the other photos good with the explicit bulk action, freezes a
dataset version of the product, trains with a short time budget on the training page and
waits for the job. The candidate's card on the models page says verify passed and names its
operating threshold; QA approves it with an e-signature. The vial line's approved `defects`
model is still the approved one afterwards (registry and models page), and the line still
judges with it.

The photos are read where they lie (`EDGE_CAPSULES`, else `../shared/data/defects/
visa_capsules/capsules` beside the repository), never copied into the project; without them
the test is skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

import browser_support as bs
from browser_support import OUT, login, sign

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CAPSULES = Path(
    os.environ.get("EDGE_CAPSULES")
    or ROOT.parent / "shared" / "data" / "defects" / "visa_capsules" / "capsules"
)
PRODUCT = "capsules"
CLASS = "capsule_defect"
N_BAD, N_GOOD = 8, 6
#: mask regions smaller than this (pixels, either side) are specks, not a defect to box
SPECK = 12
#: defects at least this large: a one-minute run on two cores can learn these
LARGE = 60

if not (CAPSULES / "Data" / "Images" / "Anomaly").is_dir():
    pytest.skip(
        f"the capsule photos are not at {CAPSULES} (set EDGE_CAPSULES to the VisA capsules folder)",
        allow_module_level=True,
    )
if importlib.util.find_spec("ultralytics") is None:
    pytest.skip("ultralytics (the train extra) is not installed", allow_module_level=True)


def mask_boxes(mask_png: Path) -> list[tuple[int, int, int, int]]:
    """One box (x, y, w, h in image pixels) per connected defect region of a VisA mask."""
    import cv2

    m = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)
    n, _lab, stats, _c = cv2.connectedComponentsWithStats((m > 0).astype("uint8"))
    return [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h, _a in stats[1:n]
        if w >= SPECK and h >= SPECK
    ]


def pick_photos() -> tuple[dict[Path, list[tuple[int, int, int, int]]], list[Path]]:
    """The first defect photos (by name) whose defects are all large, with their boxes; the
    first good photos."""
    bad: dict[Path, list] = {}
    for p in sorted((CAPSULES / "Data" / "Images" / "Anomaly").glob("*.JPG")):
        boxes = mask_boxes(CAPSULES / "Data" / "Masks" / "Anomaly" / (p.stem + ".png"))
        if boxes and all(min(w, h) >= LARGE for _x, _y, w, h in boxes):
            bad[p] = boxes
        if len(bad) == N_BAD:
            break
    good = sorted((CAPSULES / "Data" / "Images" / "Normal").glob("*.JPG"))[:N_GOOD]
    assert len(bad) == N_BAD and len(good) == N_GOOD, "fewer capsule photos than the walk needs"
    return bad, good


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The vial line at a modest rate (training shares two cores with it)."""
    with bs.live_line(tmp_path_factory.mktemp("retrain"), **{"source.rate_per_min": 120}) as line:
        yield line


@pytest.fixture(scope="module")
def browser():
    with bs.chromium() as b:
        yield b


def _defects_models(appl) -> dict[str, str]:
    """The approved version of each model, read from the appliance's registry."""
    from edge.models.registry import ModelRegistry, model_roots

    reg = ModelRegistry(model_roots(appl.cfg.records.state_dir, appl.cfg.inference.models_dir))
    return {c.name: c.version for c in reg.list() if c.status == "approved"}


def _models_of_items_since(appl, seq: int) -> list[list]:
    rows = appl.pipeline.db.conn.execute(
        "SELECT models FROM items WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    return [json.loads(r[0] or "[]") for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_technician_trains_a_capsule_model_from_real_photos_and_qa_approves_it(live, browser):
    from edge.store import labels, uploads

    appl, url = live
    OUT.mkdir(exist_ok=True)
    approved_before = _defects_models(appl)
    vial_model = approved_before["defects"]
    bad, good = pick_photos()

    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    login(page, url, "tom")
    page.wait_for_url("**/tech/images")

    # several photos at once, for a product the line has never made
    bs.open_upload(page)
    page.fill("#upload-product", PRODUCT)
    page.set_input_files("#upload-files", [str(p) for p in [*bad, *good]])
    page.click("#upload button[type=submit]")
    page.wait_for_url(f"**/tech/images?source=upload&product={PRODUCT}", timeout=120_000)
    tiles = page.locator("#images .tile[data-source=upload]")
    assert tiles.count() == N_BAD + N_GOOD
    assert page.locator("#images .tile[data-source=line]").count() == 0
    shas = {
        r["name"]: r["image_sha256"]
        for r in uploads.search(appl.pipeline.db, product=PRODUCT, limit=100)
    }
    assert set(shas) == {p.name for p in [*bad, *good]}

    # the product's own class, added on the first defect photo's label page
    first = next(iter(bad))
    page.locator(f"#images .tile[data-sha='{shas[first.name]}'] a").click()
    page.wait_for_url("**/tech/label/*")
    page.wait_for_function("() => document.getElementById('saved').textContent !== ''")
    assert page.locator("#cls option").count() == 0 and page.is_visible("#no-classes")
    page.fill("#new-cls", CLASS)
    page.click("#do-add-class")
    page.wait_for_function(f"() => document.getElementById('cls').value === '{CLASS}'")

    # a box round each defect, where the photo's mask puts it
    for n, (photo, boxes) in enumerate(bad.items()):
        sha = shas[photo.name]
        if n:
            page.goto(f"{url}/tech/label/{sha}")
            page.wait_for_function("() => document.getElementById('saved').textContent !== ''")
            assert page.input_value("#cls") == CLASS  # the last class, remembered
        w, h = appl.pipeline.db.image_size(sha)
        cv = page.locator("#canvas").bounding_box()
        sx, sy = cv["width"] / w, cv["height"] / h
        for x, y, bw, bh in boxes:
            page.mouse.move(cv["x"] + x * sx, cv["y"] + y * sy)
            page.mouse.down()
            page.mouse.move(cv["x"] + (x + bw) * sx, cv["y"] + (y + bh) * sy, steps=4)
            page.mouse.up()
        assert page.locator("#boxes li").count() == len(boxes)
        page.click("#save")
        page.wait_for_function(
            f"() => document.getElementById('saved').textContent === 'Saved {len(boxes)} box(es).'"
        )
        if n == 0:
            page.screenshot(path=str(OUT / "label-capsule.png"))
        stored = labels.get(appl.pipeline.db, sha)["boxes"]
        for got, (x, y, bw, bh) in zip(stored, boxes, strict=True):
            assert got["cls"] == CLASS
            gx, gy, gw, gh = got["bbox"]  # drawn to the screen's pixel: within a few
            tol = 2 / sx + 1
            assert abs(gx - x) <= tol and abs(gy - y) <= tol, (got, (x, y, bw, bh))
            assert abs(gw - bw) <= tol and abs(gh - bh) <= tol, (got, (x, y, bw, bh))

    # the rest are good: the explicit action, on every photo still unlabelled
    page.goto(f"{url}/tech/images?source=upload&product={PRODUCT}&label=unlabelled")
    assert page.locator("#images .tile").count() == N_GOOD
    page.click("#select-all")
    assert page.inner_text("#selected-count") == f"{N_GOOD} selected"
    page.click("#mark-good")
    page.wait_for_function("() => document.querySelectorAll('#images .tile').length === 0")
    page.goto(f"{url}/tech/images?source=upload&product={PRODUCT}&label=good")
    assert page.locator("#images .tile .tag").all_inner_texts() == ["good"] * N_GOOD

    # a frozen dataset version of the product
    page.goto(url + "/tech/datasets")
    page.select_option("#dataset-product", PRODUCT)
    page.fill("input[name=note]", "capsules: first labelled photos")
    page.click("#do-build")
    row = page.locator("#datasets tr", has_text=PRODUCT)
    row.wait_for()
    assert CLASS in row.inner_text()
    version = row.locator("td").first.inner_text()

    # training through the training page: a new product's class, so the page proposes the
    # ImageNet start (a head trained on the frozen backbone's features, a minute here)
    page.goto(url + "/tech/train")
    page.select_option("#train-dataset", version)
    assert page.get_attribute(f'#train-dataset option[value="{version}"]', "data-start") == (
        "imagenet"
    )
    assert "ImageNet" in page.inner_text("#train-start-why")
    # fixed epochs, not a time budget: a budget sets the epochs by the machine's speed, and
    # the job runs at idle priority (on a busy machine a budget leaves too few to learn)
    page.fill("input[name=epochs]", "14")
    page.fill("input[name=imgsz]", "640")
    page.fill("input[name=batch]", "8")
    page.fill("input[name=min_examples]", "4")  # a short trial: fewer boxes than a real run
    page.click("#do-train")
    page.wait_for_selector("#job:not([hidden])")
    t0 = time.monotonic()
    page.wait_for_function(
        "() => ['failed', 'finished', 'cancelled']"
        ".includes(document.getElementById('job-state').textContent)",
        timeout=1_200_000,  # idle priority: the job waits while the machine is busy
    )
    state = page.inner_text("#job-state")
    assert state == "finished", page.inner_text("#job-log")[-3000:]
    print(f"training job: {time.monotonic() - t0:.0f} s")
    page.wait_for_selector("#job-outcome:not([hidden])")
    assert "verify passed" in page.inner_text("#job-outcome"), page.inner_text("#job-outcome")
    ctx.close()

    # QA reads the candidate's card and approves it with an e-signature
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    login(page, url, "quinn")
    page.goto(url + "/models")
    cand = page.locator(f"#models tr[data-name={PRODUCT}][data-status=candidate]")
    assert cand.count() == 1
    assert cand.locator("td.classes").inner_text() == CLASS
    page.screenshot(path=str(OUT / "models-capsule-candidate.png"), full_page=True)
    verify = cand.locator("td.verify")
    assert verify.get_attribute("data-verify") == "passed", verify.inner_text()
    assert "Verify passed" in verify.inner_text()
    assert "runs at score ≥" in cand.locator(".threshold").inner_text()
    cand_version = cand.get_attribute("data-version")
    # the evaluation picker never offers the photos the candidate learned from
    assert version not in page.locator("#testset option").all_inner_texts()
    assert page.is_visible("#no-testset")  # and says why it offers none
    cand.locator("[data-act=approve]").click()
    sign(page, "quinn", "capsule model verified on its validation photos")
    page.wait_for_selector(
        f"#models tr[data-name={PRODUCT}][data-version='{cand_version}'][data-status=approved]"
    )
    assert "Quinn Quality" in page.inner_text(
        f"#models tr[data-name={PRODUCT}][data-version='{cand_version}']"
    )

    # the vial model is untouched: still approved, on the page and in the registry
    vial_row = page.locator(f"#models tr[data-name=defects][data-version='{vial_model}']")
    assert vial_row.get_attribute("data-status") == "approved"
    assert page.locator("#models tr[data-name=defects][data-status=approved]").count() == 1
    ctx.close()
    approved_after = _defects_models(appl)
    assert approved_after == {**approved_before, PRODUCT: cand_version}

    # and the line still judges with it
    seq = appl.pipeline.db.conn.execute("SELECT MAX(seq) FROM items").fetchone()[0] or 0
    t0 = time.monotonic()
    while len(_models_of_items_since(appl, seq)) < 5 and time.monotonic() - t0 < 30:
        time.sleep(0.5)
    recent = _models_of_items_since(appl, seq)
    assert len(recent) >= 5, "the line stopped judging"
    used = {(m.get("name"), m.get("version")) for ms in recent for m in ms}
    assert ("defects", vial_model) in used, used
    assert not any(name == PRODUCT for name, _v in used), used
