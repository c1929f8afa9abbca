"""The reject path of the whole appliance: encoder tracking, the PLC gate, line-stop conditions."""

from __future__ import annotations

import time

import pytest

from edge.config import EncoderConfig
from edge.domain import Item
from edge.line.gate import BeltSpeed, GateTracker

from services import Line, dark_every, line_config


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def run_line(tmp_path):
    lines = []

    def make(images, period_s, first_count=0, **cfg_kw):
        cfg = line_config(tmp_path, period_s=period_s, **cfg_kw)
        line = Line(cfg, images, period_s, first_count=first_count)
        lines.append(line)
        return line.start()

    yield make
    for line in lines:
        line.stop()


def gated_as_reported(line):
    """Items whose recorded verdict differs from what the gate physically did."""
    line.sim.conveyor.wait_idle()
    return [
        r["id"]
        for r in line.rows().values()
        if (r["verdict"] == "PASS") != (line.sim.conveyor.outcome(r["encoder"]) == "accepted")
    ]


def test_gate_deadline_follows_the_belt_speed():
    enc = EncoderConfig(counts_per_mm=10, pitch_mm=80, gate_distance_mm=600, safety_margin_mm=40)
    gate = GateTracker(enc, write_budget_ms=5)
    first = Item(id="a", seq=1, t_trigger=100.0, deadline=101.0, encoder=0)
    assert gate(first) is None  # speed not known yet: the pipeline's own deadline stands
    # 800 counts in 0.1 s: 8000 counts/s; the gate is 6000 counts away, the margin 400
    d = gate(Item(id="b", seq=2, t_trigger=100.1, deadline=101.1, encoder=800))
    assert d == pytest.approx(100.1 + (6000 - 400) / 8000 - 0.005)
    assert gate.slot("b").t_gate == pytest.approx(100.1 + 6000 / 8000)


def test_every_reject_is_gated_and_every_pass_let_through(run_line):
    line = run_line(dark_every(150, 5), 0.02)
    assert line.wait(60)
    assert gated_as_reported(line) == []
    rows = line.rows().values()
    assert sum(r["verdict"] == "REJECT" for r in rows) == 30
    assert line.sim.conveyor.counts.confirmed == 30
    assert line.plc.status()["unconfirmed_rejects"] == 0


def test_the_belt_speed_is_measured_across_the_counter_wrap():
    speed = BeltSpeed()
    speed.observe(10.0, (1 << 32) - 400)
    speed.observe(10.1, 400)  # 800 counts later, past the wrap
    assert speed.counts_per_s() == pytest.approx(8000)


@pytest.mark.parametrize(
    "first_count",
    [-1600, (1 << 32) - 4000],
    ids=["counts-below-zero", "counter-wraps-at-2^32"],
)
def test_every_unit_is_gated_as_reported_when_the_counter_wraps(run_line, first_count):
    """The PLC counts in 32 bits: a count below 0 (a camera's first trigger less a wobble or a
    view's offset) or past 2**32 must reach the gate as the count the PLC has for that unit,
    and the belt speed must be measured across the wrap."""
    line = run_line(dark_every(20, 4), 0.02, first_count=first_count)
    assert line.wait(60)
    assert gated_as_reported(line) == []
    rows = line.rows().values()
    assert all(0 <= r["encoder"] < 1 << 32 for r in rows)
    assert sum(r["verdict"] == "PASS" for r in rows) == 15
    assert line.sim.conveyor.counts.unmatched_results == 0


def test_a_verdict_too_late_for_the_gate_is_rejected_by_the_encoder_deadline(run_line):
    # gate 100 mm downstream at 4 m/s: 25 ms to the gate, 15 ms with the margin; tools take 40 ms
    tools = [{"type": "behaviour", "sleep_ms": 40}]
    line = run_line(
        dark_every(10, 0), 0.02, gate_mm=100, deadline_ms=1000, recipe={"name": "t", "tools": tools}
    )
    assert line.wait(30)
    rows = line.rows().values()
    assert all(r["verdict"] == "REJECT" and r["reasons"] == ["TIMEOUT"] for r in rows)
    assert gated_as_reported(line) == []


def test_killing_the_plc_stops_the_line_within_a_pitch_and_no_unreceived_item_passes(run_line):
    pitch = 0.1  # 600 items/min
    line = run_line(dark_every(60, 4), pitch)
    assert wait_until(lambda: len(line.verdicts) >= 20, 20)
    killed = time.time()
    line.sim.kill()
    assert wait_until(lambda: line.pipeline.alarms.is_active("PLC_LINK_LOST"), 2)
    alarm = next(a for a in line.pipeline.alarms.active() if a.code == "PLC_LINK_LOST")
    assert alarm.line_stop
    assert alarm.raised_utc - killed <= pitch
    assert line.wait(30)
    # nothing is reported PASS unless the PLC latched its ACCEPT
    received = line.sim.conveyor.accepts_received
    passed = [r for r in line.rows().values() if r["verdict"] == "PASS"]
    assert passed and all(r["seq"] in received for r in passed)
    late = [r for r in line.rows().values() if r["trigger_utc"] > killed + pitch]
    assert late and all(r["verdict"] == "REJECT" for r in late)
    assert "PLC_LINK_LOST" in {x for r in late for x in r["reasons"]}
    assert not line.plc.status()["up"]
    # the PLC comes back: the link is restored and the line-stop request is on the PLC
    line.sim.start()
    assert wait_until(lambda: line.plc.status()["up"], 10)
    assert wait_until(lambda: line.sim.line_stop, 2)
    assert not line.pipeline.alarms.is_active("PLC_LINK_LOST")


def test_a_reject_the_gate_does_not_confirm_stops_the_line(run_line):
    line = run_line(dark_every(20, 2), 0.02)
    line.sim.conveyor.confirm_rejects = False
    assert line.wait(30)
    assert wait_until(lambda: line.pipeline.alarms.is_active("REJECT_NOT_CONFIRMED"), 5)
    assert wait_until(lambda: line.sim.line_stop, 2)
    assert line.packml.machine.state.value == "Held"


def test_bin_full_and_air_pressure_low_stop_the_line_until_reset(run_line):
    line = run_line(dark_every(5, 0), 0.02)
    assert line.wait(30)
    alarms = line.pipeline.alarms
    line.sim.conveyor.bin_full = True
    line.sim.conveyor.air_low = True
    assert wait_until(
        lambda: alarms.is_active("BIN_FULL") and alarms.is_active("AIR_PRESSURE_LOW"), 5
    )
    assert wait_until(lambda: line.sim.line_stop, 2)
    assert line.packml.machine.state.value == "Held"
    assert not line.plc.reset_line_stop()  # the bin is still full
    line.sim.conveyor.bin_full = False
    line.sim.conveyor.air_low = False
    assert wait_until(
        lambda: not alarms.is_active("BIN_FULL") and not alarms.is_active("AIR_PRESSURE_LOW"), 5
    )
    line.packml.command("unhold")
    assert wait_until(lambda: not line.sim.line_stop, 2)
    assert line.packml.machine.state.value == "Execute"


def test_n_consecutive_rejects_stop_the_line(run_line):
    recipe = {
        "name": "t",
        "consecutive_rejects_stop": 3,
        "tools": [{"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}],
    }
    line = run_line(dark_every(6, 1), 0.02, recipe=recipe)
    assert line.wait(30)
    assert wait_until(lambda: line.pipeline.alarms.is_active("CONSECUTIVE_REJECTS"), 5)
    assert wait_until(lambda: line.sim.line_stop, 2)
