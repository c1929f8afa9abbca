"""An item is judged against the batch (and recipe) open at its trigger, whatever MES does later.

A stop_batch and a start_batch over MQTT race items in flight (a slow tool keeps them there):
an item triggered with no batch is REJECT NO_BATCH even when a batch starts before it is
inspected; an item triggered in batch A is checked against A's lot, not B's.
"""

from __future__ import annotations

import pickle
import time

import pytest

from edge.app import Appliance
from edge.config import SimulatorSource, parse_config
from edge.domain import Verdict
from edge.sim.twin import LineSimulator

from fake_tools import ListSource, grey
from mqtt_support import PLANT_USERS, Requester, appliance_login
from services import Line, Subscriber, line_config, plant_broker  # noqa: F401

BASE = "acme/site1/packaging/line1/inspect1/inspection"
PERIOD_S = 0.2
SLOW_MS = 500  # items stay in flight this long at least (two workers: a queue builds up)


def _wait(pred, timeout=30.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.mark.integration
def test_stop_and_start_batch_racing_items_in_flight(tmp_path, plant_broker):  # noqa: F811
    sim = LineSimulator(SimulatorSource(scenario="cartons", seed=5, defect_rate=0.0))
    images = [sim.render(i)[0] for i in range(30)]
    b = sim.batch
    recipe = {
        "name": "t",
        "require_batch": True,
        "tools": [
            {"type": "behaviour", "sleep_ms": SLOW_MS},
            {"type": "barcode", "symbologies": ["DataMatrix"], "required_ais": ["01", "10"]},
        ],
    }
    cfg = line_config(
        tmp_path,
        period_s=PERIOD_S,
        gate_mm=8000,
        mqtt_port=plant_broker.port,
        mqtt=appliance_login(tmp_path),
        deadline_ms=8000,
        recipe=recipe,
    )
    line = Line(cfg, images, PERIOD_S, batch=False)
    mes = Requester(plant_broker.port)  # MES, authenticated as mes1 (allowed every command)
    line_status = Subscriber(
        plant_broker.port,
        f"{BASE}/status",
        client_id="birth-watch",
        username="mes1",
        password=PLANT_USERS["mes1"],
    )
    try:
        line.start()
        # the birth message comes after the line subscribed to its commands
        assert line_status.wait_for(lambda s: s.on("/status"), 30)
        assert line.mqtt.check.wait(60)  # the broker's identity check, before commands count
        batch_a = {"gtin": b.gtin, "lot": b.lot, "expiry": b.expiry}
        assert mes.send("start_batch", batch_a)["ok"]
        _wait(lambda: len(line.verdicts) >= 6)
        t_stop = time.monotonic()
        assert mes.send("stop_batch", {"reason": "end of batch"})["ok"]
        t_stopped = time.monotonic()
        time.sleep(3 * PERIOD_S)  # items triggered now have no batch
        t_start = time.monotonic()
        assert mes.send("start_batch", {**batch_a, "lot": b.lot + "X"})["ok"]  # another lot
        t_started = time.monotonic()
        assert line.wait(120)
    finally:
        mes.close()
        line_status.close()
        line.stop()

    items = sorted(line.verdicts, key=lambda i: i.seq)
    rows = line.rows()
    in_a = [i for i in items if i.batch and i.t_trigger < t_stop]
    no_batch = [i for i in items if i.batch is None and t_stopped < i.t_trigger < t_start]
    # the race really happened: items of batch A and items with no batch were still in
    # flight when the batch stopped and when the next one started
    assert any(i.t_final > t_stopped for i in in_a)
    assert any(i.t_final > t_started for i in no_batch)
    for i in in_a:  # batch A's packs carry A's lot: judged against A, they pass
        assert i.verdict is Verdict.PASS, (i.id, i.reasons)
        assert rows[i.id]["batch_id"] == i.batch
    for i in items:  # no batch at the trigger: REJECT NO_BATCH, always
        if i.batch is None:
            assert i.verdict is Verdict.REJECT and "NO_BATCH" in i.reasons, (i.id, i.reasons)
            assert rows[i.id]["verdict"] == "REJECT" and rows[i.id]["batch_id"] is None
    after = [i for i in items if i.t_trigger > t_started]
    assert after and all("LOT_MISMATCH" in i.reasons for i in after)  # B's lot is not printed


def test_a_recipe_change_while_items_are_in_flight_judges_each_by_its_trigger_recipe(tmp_path):
    slow = {"type": "behaviour", "sleep_ms": SLOW_MS}
    recipes = {
        "a": {"name": "a", "tools": [slow]},
        "b": {"name": "b", "tools": [{**slow, "find": "CRACK"}]},
    }
    cfg = line_config(
        tmp_path, period_s=PERIOD_S, gate_mm=8000, deadline_ms=8000, plc={"type": "none"}
    )
    cfg = cfg.model_copy(
        update={
            "recipes": {**cfg.recipes, **parse_config({"recipes": recipes}).recipes},
            "recipe": "a",
        }
    )
    app = Appliance(cfg, source=ListSource([grey(200)] * 12, PERIOD_S), components=False)
    got: list = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: got.append(it))
    app.start()
    try:
        _wait(lambda: len(got) >= 3)
        t_switch = time.monotonic()
        app.pipeline.set_recipe("b")
        assert app.pipeline.wait(60)
    finally:
        app.stop()
    before = [i for i in got if i.t_trigger < t_switch]
    assert any(i.t_final > t_switch for i in before)  # in flight at the switch
    for i in got:
        expect = ("a", Verdict.PASS) if i.t_trigger < t_switch else ("b", Verdict.REJECT)
        assert (i.recipe, i.verdict) == expect, (i.id, i.recipe, i.reasons)
    # the trigger context stays in the line: an item still travels to the web UI's process
    sent = pickle.loads(pickle.dumps(got[-1]))
    assert sent.at_trigger is None and sent.verdict is got[-1].verdict and sent.id == got[-1].id
