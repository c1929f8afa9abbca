"""A restart mid-batch forgets nothing the line relies on: serials, sequence, batch."""

from __future__ import annotations

from edge.app import Appliance
from edge.config import SimulatorSource, parse_config
from edge.domain import Verdict
from edge.sim.twin import LineSimulator

from fake_tools import ListSource


def _appliance(state, images, batch=None):
    cfg = parse_config(
        {
            "batch": batch,
            "records": {"state_dir": str(state)},
            "recipe": "cartons",
            "pipeline": {"deadline_ms": 2000},
            "web": {"enabled": False},
        }
    )
    return Appliance(cfg, source=ListSource(images, paced=False), components=False)


def _run(app):
    got = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
    app.start()
    app.pipeline.wait(60)
    app.stop()
    return sorted(got, key=lambda i: i.seq)


def test_a_duplicate_serial_is_caught_across_a_restart_and_both_items_are_traceable(tmp_path):
    sim = LineSimulator(SimulatorSource(scenario="cartons", seed=3, defect_rate=0.0))
    first_img, truth = sim.render(0)
    second_img, _ = sim.render(1)
    assert truth["expected"] == "PASS"

    b = sim.batch
    app = _appliance(
        tmp_path, [first_img, second_img], {"lot": b.lot, "gtin": b.gtin, "expiry": b.expiry}
    )
    batch_id = app.pipeline.batch.id if app.pipeline.batch else None
    first = _run(app)
    assert [i.verdict for i in first] == [Verdict.PASS, Verdict.PASS]

    # the appliance restarts mid-batch, and the same pack shows up again
    app2 = _appliance(tmp_path, [first_img])
    assert app2.pipeline.batch is not None and app2.pipeline.batch.id == batch_id
    again = _run(app2)
    assert again[0].verdict is Verdict.REJECT
    assert again[0].reasons == ["DUPLICATE_SERIAL"]
    assert first[0].id in again[0].findings[0].message  # points at the first holder
    assert again[0].seq == first[-1].seq + 1  # the sequence went on, gap-free
