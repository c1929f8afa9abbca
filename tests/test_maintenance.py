"""Predictive maintenance warns before a measure leaves its limit, not after."""

from __future__ import annotations

import numpy as np
import pytest

from edge.capture.simulator import SimulatorCapture
from edge.config import SimulatorSource, parse_config
from edge.ops.config import MaintenanceConfig, TrendLimit
from edge.ops.maintenance import Maintenance, Trend, image_measures, theil_sen
from edge.pipeline import Pipeline

LIMIT = 130.0  # grey level; the simulated vial line starts near 185


def drifting_line(tmp_path, drift_per_hour: float, items: int):
    """The real simulator, unpaced, with a lamp that fades `drift_per_hour` per simulated hour."""
    sim = SimulatorSource(
        scenario="vials", realtime=False, items=items, drift_per_hour=drift_per_hour, seed=5
    )
    cfg = parse_config(
        {
            "records": {
                "state_dir": str(tmp_path),
                "sample_pass_every": 0,
                "keep_reject_images": False,
            },
            "recipe": "t",
            "recipes": {"t": {"name": "t", "tools": [{"type": "behaviour"}]}},
            "ops": {
                "maintenance": {
                    "sample_every": 1,
                    "bucket_s": 0,
                    "window": 40,
                    "min_points": 15,
                    "horizon_h": 1,
                    "limits": {"brightness": {"low": LIMIT}},
                }
            },
        }
    )
    p = Pipeline(cfg, source=SimulatorCapture(sim))
    m = Maintenance(p, cfg.ops.maintenance, tmp_path)
    events: list[tuple[dict, list[float]]] = []
    trend_key = ("brightness", "simulator")

    def on_alarm(_topic, ev):
        if ev["code"] == "MAINT_BRIGHTNESS_SIMULATOR":
            # runs on the maintenance thread: the brightness measured so far, at this moment
            seen = [v for _, v in m.trends[trend_key].points]
            events.append((ev, seen))

    p.bus.subscribe_sync("alarm", on_alarm)
    return p, m, events


def run(p: Pipeline, m: Maintenance) -> None:
    m.start()
    p.run(timeout=60)
    m.subscription.close()  # the maintenance thread has processed every verdict
    m.stop()


def test_lighting_drift_raises_a_maintenance_alarm_before_brightness_leaves_its_limit(tmp_path):
    p, m, events = drifting_line(tmp_path, drift_per_hour=60.0, items=260)
    run(p, m)
    raised = [(ev, seen) for ev, seen in events if ev["event"] == "raised"]
    assert raised, "no maintenance alarm while the lamp faded"
    ev, seen_before = raised[0]
    assert ev["severity"] == "maintenance"
    assert ev["line_stop"] is False  # a warning for the technician, not a line stop
    assert "falling" in ev["message"] and f"low limit {LIMIT:.4g}" in ev["message"]
    # the alarm came while every brightness measured so far was still inside the limit...
    assert min(seen_before) > LIMIT
    # ...and the prediction was right: the lamp then did fade below the limit
    final = [v for _, v in m.trends[("brightness", "simulator")].points]
    assert min(final) < LIMIT
    # the alarm went out on the bus (MQTT `alarm` and the HMI subscribe there) and stays active
    assert p.alarms.is_active("MAINT_BRIGHTNESS_SIMULATOR")


def test_a_steady_lamp_raises_no_maintenance_alarm(tmp_path):
    p, m, events = drifting_line(tmp_path, drift_per_hour=0.0, items=120)
    run(p, m)
    assert m.samples == 120
    assert events == []
    assert not [a for a in p.alarms.active() if a.severity == "maintenance"]


def test_theil_sen_ignores_a_few_wild_points():
    t = np.arange(30, dtype=float)
    y = 100.0 - 0.5 * t
    y[[3, 11, 20]] = [0.0, 255.0, 0.0]  # a dropped frame, a glare, a covered lens
    fit = theil_sen(t, y)
    assert fit.slope == pytest.approx(-0.5, abs=0.02)
    assert fit.tau < -0.7


def test_relative_limits_follow_the_commissioning_baseline():
    cfg = MaintenanceConfig(bucket_s=0, window=20, min_points=5)
    tr = Trend("sharpness", "cam1", TrendLimit(low_rel=0.6), cfg)
    for i in range(5):
        tr.add(float(i), 1000.0)
    assert tr.baseline == 1000.0
    assert tr.limits() == (600.0, None)


def test_gate_actuation_count_warns_before_the_valve_reaches_its_rated_life(tmp_path):
    cfg = MaintenanceConfig(bucket_s=0, window=30, min_points=10, horizon_h=72)

    class Line:  # the bus and alarms of a pipeline are all maintenance needs
        def __init__(self):
            from edge.alarms import Alarms
            from edge.bus import Bus

            self.bus = Bus()
            self.alarms = Alarms(self.bus)

    line = Line()
    m = Maintenance(
        line,
        cfg.model_copy(
            update={"limits": {**cfg.limits, "gate_actuations": TrendLimit(high=1_000_000)}}
        ),
    )
    # one sample an hour: 9 400 actuations an hour, 400 000 done: the limit is ~64 h away
    for h in range(20):
        m.add("gate_actuations", None, h * 3600.0, 400_000 + 9_400 * h)
    alarm = line.alarms.active()[0]
    assert alarm.code == "MAINT_GATE_ACTUATIONS"
    assert alarm.severity == "maintenance"
    assert "rising" in alarm.message
    m.subscription.close()
    line.bus.close()


def test_image_measures_see_dimmer_and_blurred_images():
    rng = np.random.default_rng(0)
    img = (rng.random((120, 160)) * 200).astype(np.uint8)
    base = image_measures(img)
    dim = image_measures((img * 0.5).astype(np.uint8))
    blurred = image_measures(
        np.ascontiguousarray(np.asarray(__import__("cv2").GaussianBlur(img, (9, 9), 3)))
    )
    assert dim["brightness"] == pytest.approx(base["brightness"] * 0.5, rel=0.02)
    assert blurred["sharpness"] < base["sharpness"] * 0.2
