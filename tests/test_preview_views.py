"""A recipe preview on a station with several cameras judges each recorded item as the line
did: each view's own kept image with that view's tools, then one decision. Judged as one
side-by-side picture with every tool, the top camera's cap tool would look at the front
camera's pixels and the fill level at three vials at once.

The station is the shipped four-camera example (front, left, right and the cap from above);
every expectation comes from what its line recorded.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.app import Appliance
from edge.config import OnnxBackend, load_config, parse_config
from edge.inspect.base import Services
from edge.recipes import preview

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 16


def _recorded(tmp_path: Path, keep_views: bool = True):
    """The four-camera station's config and state after a short simulated run."""
    cfg = load_config(ROOT / "examples" / "vials-4views.yaml").model_dump(mode="json")
    state = tmp_path / "state"
    cfg["records"].update(state_dir=str(state), sample_pass_every=1, keep_view_images=keep_views)
    # no code defects: a duplicate serial is the serial registry's finding, which a
    # preview (without the registry) cannot make
    cfg["source"].update(
        items=ITEMS, realtime=True, rate_per_min=300, defect_rate=0.4, code_defect_rate=0
    )
    cfg["pipeline"].update(deadline_ms=5000, view_wait_ms=2000)
    cfg["inference"]["models_dir"] = str(ROOT / "models")
    cfg["batch"] = {"lot": "LOTV4", "expiry": "281231"}
    appl = Appliance(parse_config(cfg), components=False)
    appl.start()
    try:
        assert appl.pipeline.wait(240), "the simulated station did not finish"
    finally:
        appl.stop()
    return appl.cfg, state


def _preview(cfg, state: Path) -> dict:
    recipe = cfg.active_recipe()
    services = Services(models_dir=str(ROOT / "models"), backend=OnnxBackend(threads=1))
    return preview.on_images(recipe, recipe, services, state, ITEMS, views=cfg.views)


def test_the_approved_recipe_judged_view_by_view_gives_the_verdicts_the_station_recorded(
    tmp_path,
):
    cfg, state = _recorded(tmp_path)
    res = _preview(cfg, state)
    db = sqlite3.connect(state / "edge.db")
    verdicts = [v for (v,) in db.execute("SELECT verdict FROM items WHERE image_sha256 NOT NULL")]
    db.close()
    # (a busy image writer may drop an evidence image: the preview judges those kept)
    assert res["images"] == len(verdicts) >= ITEMS // 2 and not res["skipped"]
    assert "REJECT" in verdicts and "PASS" in verdicts, "the run made both verdicts"
    assert res["recorded_agree"] == len(verdicts), res
    assert res["changed"] == 0  # the same recipe on both sides


def test_an_item_kept_without_its_views_images_is_skipped_saying_why(tmp_path):
    cfg, state = _recorded(tmp_path, keep_views=False)
    res = _preview(cfg, state)
    assert res["images"] == 0 and len(res["skipped"]) >= ITEMS // 2
    assert "no image of view 'front' was kept" in res["skipped"][0]["why"]
