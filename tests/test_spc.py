"""Statistical process control: a drifting process is seen before it makes rejects, a stable one
raises (almost) nothing, and bad data is said, not charted."""

from __future__ import annotations

import numpy as np
import pytest

from edge.spc.charts import EwmaChart, PChart, ReferenceError, reference_limits
from edge.spc.config import MeasureSpc, ReasonSpc, SpcConfig
from edge.spc.monitor import SpcMonitor
from edge.spc.rules import RuleChecker


def _fires(rule: str, zs: list[float]) -> list[int]:
    c = RuleChecker([rule])
    return [i for i, z in enumerate(zs) if c.push(z)]


def test_each_run_rule_fires_on_its_pattern_and_not_on_a_quiet_one():
    quiet = [0.3, -0.2, 0.5, -0.4, 0.1, -0.6, 0.2, -0.1, 0.4, -0.3] * 3
    for rule in ("nelson1", "nelson2", "nelson3", "nelson5", "nelson6", "nelson8", "we4"):
        assert _fires(rule, quiet) == [], rule
    assert _fires("nelson1", [0, 0.5, 3.2]) == [2]
    assert _fires("nelson1", [0, -3.5]) == [1]
    assert _fires("nelson2", [0.1] * 9) == [8]
    assert _fires("we4", [-0.1] * 8) == [7]
    assert _fires("nelson3", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == [5]
    assert _fires("nelson5", [2.1, 0.0, 2.2]) == [2]
    assert _fires("nelson5", [2.1, 0.0, -2.2]) == []  # not on one side
    assert _fires("nelson6", [1.1, 1.2, 0.0, 1.3, 1.4]) == [4]
    assert _fires("nelson7", [0.1] * 15) == [14]
    assert _fires("nelson8", [1.5, -1.5] * 4) == [7]
    assert _fires("nelson4", [1, -1] * 7) == [13]


def test_a_reference_window_too_small_for_its_minimum_is_a_config_error():
    with pytest.raises(ValueError, match="no limits could ever be set"):
        SpcConfig(reference_items=60, min_reference=100)


def test_an_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown SPC rule"):
        RuleChecker(["nelson9"])


def test_reference_limits_skip_missing_values_and_refuse_too_few_or_constant():
    lim = reference_limits([1.0, None, 1.2, float("nan"), 0.9, 1.1] * 10, min_n=30)
    assert lim.n == 40
    assert 0.9 < lim.centre < 1.2
    with pytest.raises(ReferenceError, match="only 5 values"):
        reference_limits([1.0, 2.0, 3.0, 4.0, 5.0], min_n=30)
    with pytest.raises(ReferenceError, match="no variation"):
        reference_limits([2.5] * 100)


def test_ewma_is_quiet_on_a_stable_process_and_sees_a_slow_drift_early():
    alerts = 0
    for seed in range(5):  # 100,000 stable items, each run with its own reference window
        rng = np.random.default_rng(seed)
        chart = EwmaChart(reference_limits(rng.normal(10.0, 0.4, 500)))
        quiet = 200
        for x in rng.normal(10.0, 0.4, 20_000):  # an alert, then 200 quiet points to re-arm
            signal = bool(chart.update(x).signals)
            alerts += signal and quiet >= 200
            quiet = 0 if signal else quiet + 1
    assert alerts <= 5  # at most one per 20,000 stable items
    rng = np.random.default_rng(7)
    lim = reference_limits(rng.normal(10.0, 0.4, 500))
    chart = EwmaChart(lim)
    drift = 0.4 * 0.002  # 0.002 sigma per item: 1 sigma after 500 items
    first = next(
        i for i in range(20_000) if chart.update(10.0 + drift * i + rng.normal(0, 0.4)).signals
    )
    assert first * drift < 1.5 * 0.4  # alarmed before the mean moved 1.5 sigma


def test_p_chart_alerts_on_a_rising_reject_rate_only():
    rng = np.random.default_rng(3)
    up = PChart(rejects=5, items=1000, n=200)  # 0.5 % in the reference
    points = [up.update(bool(rng.random() < 0.005)) for _ in range(4000)]
    assert not any(p and p.signals for p in points)
    points = [up.update(bool(rng.random() < 0.05)) for _ in range(400)]
    assert any(p and p.signals for p in points)


def _cfg(**kw) -> SpcConfig:
    base = dict(
        reference_items=300,
        measures={"fill_level_mm": MeasureSpc(cause="filler dosing", action="check the pump")},
    )
    base.update(kw)
    return SpcConfig(**base)


def test_a_slow_drift_raises_one_deviation_with_its_cause_before_the_spec_limit():
    rng = np.random.default_rng(11)
    mon = SpcMonitor(_cfg(), batch="B1")
    alerts = []
    for i in range(6000):
        drift = 0.0 if i < 1000 else -(i - 1000) * 0.0005  # 0.5 mm per 1000 items from item 1000
        v = 33.0 + drift + rng.normal(0, 0.3)
        alerts += mon.observe(f"i{i}", {"fill_level_mm": v}, [])
    assert len(alerts) == 1, [a.to_dict() for a in alerts]
    a = alerts[0]
    assert a.measure == "fill_level_mm" and a.rule == "ewma" and a.batch == "B1"
    assert a.cause == "filler dosing" and a.action == "check the pump"
    assert 1000 < a.index < 4000  # spec limit 30.5 mm is reached near item 6000
    assert a.since_index <= a.index
    assert a.value < a.limits[0] < a.centre


def test_a_stable_line_raises_no_deviation():
    rng = np.random.default_rng(5)
    mon = SpcMonitor(_cfg())
    alerts = [
        a
        for i in range(20_000)
        for a in mon.observe(str(i), {"fill_level_mm": 33 + rng.normal(0, 0.3)}, [])
    ]
    assert alerts == []


def test_missing_measurements_do_not_poison_the_limits():
    rng = np.random.default_rng(2)
    mon = SpcMonitor(_cfg())
    alerts = []
    for i in range(3000):
        m = {} if i % 7 == 0 else {"fill_level_mm": 33 + rng.normal(0, 0.3)}
        alerts += mon.observe(str(i), m, ["TOOL_ERROR"] if not m else [])
    assert [a for a in alerts if a.measure == "fill_level_mm"] == []
    assert abs(mon.series["fill_level_mm"].centre - 33) < 0.1


def test_a_constant_reference_or_no_config_is_said_once_and_never_fires():
    mon = SpcMonitor(_cfg(reasons=ReasonSpc(enabled=False)))
    for i in range(1000):
        assert mon.observe(str(i), {"fill_level_mm": 33.0 if i < 300 else 20.0}, []) == []
    assert len(mon.notices) == 1 and "no variation" in mon.notices[0]
    off = SpcMonitor(None)
    assert off.observe("x", {"fill_level_mm": 1.0}, []) == []
    assert len(off.notices) == 1 and "without it" in off.notices[0]


def test_a_reject_reason_that_rises_raises_a_rate_deviation():
    rng = np.random.default_rng(9)
    cfg = _cfg(measures={}, reasons=ReasonSpc(subgroup=200, watch=["LOW_FILL"]))
    mon = SpcMonitor(cfg)
    alerts = []
    for i in range(6000):
        rate = 0.002 if i < 3000 else 0.04
        alerts += mon.observe(str(i), {}, ["LOW_FILL"] if rng.random() < rate else [])
    assert [a.measure for a in alerts] == ["rate:LOW_FILL"]
    assert alerts[0].index >= 3000 and alerts[0].chart == "p"


def test_a_defect_the_tool_rejected_is_not_a_point_of_the_process_trend():
    """Tilted caps the cap tool already rejects are counted by the reject-rate chart; they do
    not drag the capper's trend chart (one 12-degree outlier would alarm a sensitive EWMA)."""
    from edge.domain import Finding, Item, ToolResult
    from edge.spc.feed import SpcFeed

    rng = np.random.default_rng(4)
    alerts: list = []
    cfg = SpcConfig(reference_items=300, measures={"cap_tilt_deg": MeasureSpc()})
    feed = SpcFeed(cfg, alerts.append, batch="B")
    for i in range(3000):
        r = ToolResult("cap", "1.1", measurements={"cap_tilt_deg": float(rng.normal(0, 0.85))})
        if i % 97 == 0 and i > 300:  # a defective cap, rejected by the tool
            r.measurements["cap_tilt_deg"] = 12.0
            r.findings = [Finding("cap", "CAP_TILT", "tilted")]
        it = Item(id=str(i), seq=i + 1, t_trigger=0.0, deadline=1.0, results=[r])
        feed.add(it)
    assert alerts == []
