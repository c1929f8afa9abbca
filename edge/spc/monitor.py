"""One SPC monitor per batch: reference window, then a chart per measurement and reject reason.

Fed every final item in line order (its measurements and its reject reasons), it returns the
deviation alerts that item raised. It never changes a verdict. Bad data is handled the way a
quality engineer would want it said, not hidden:

- a measurement missing for an item (the tool raised, or did not apply) is skipped: it neither
  enters the reference nor moves a chart;
- a reference window with too few values or no variation leaves that measurement unmonitored,
  and says so once (`notices`);
- a recipe with no `spc` section runs without SPC and says so once.

An alert is raised once per excursion: the same measurement and rule alert again only after
the statistic has been back inside its limits for `rearm_items` points.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.spc.charts import (
    CusumChart,
    EwmaChart,
    IndividualsChart,
    Limits,
    PChart,
    Point,
    ReferenceError,
    reference_limits,
)
from edge.spc.config import MeasureSpc, SpcConfig
from edge.spc.rules import RULE_TEXT

_ids = itertools.count(1)


@dataclass
class Deviation:
    """A deviation alert: which measurement, which rule, since which item, the values."""

    measure: str
    rule: str
    index: int  # item index (0-based, in line order) that raised it
    item_id: str
    since_index: int  # where the excursion began
    value: float  # the charted statistic
    limits: tuple[float, float]
    centre: float
    chart: str
    text: str = ""
    cause: str = ""
    action: str = ""
    batch: str | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["limits"] = [round(v, 6) for v in self.limits]
        d["value"] = round(self.value, 6)
        d["centre"] = round(self.centre, 6)
        return d


class _Series:
    """One measurement's reference, chart and alert state."""

    def __init__(self, name: str, cfg: MeasureSpc):
        self.name, self.cfg = name, cfg
        self.ref: list[float] = []
        self.chart: EwmaChart | CusumChart | IndividualsChart | None = None
        self.centre = 0.0
        self.armed = True
        self.inside_run = 0
        self.since = 0
        self.side = 0

    def start(self, lim: Limits) -> None:
        c = self.cfg
        self.centre = lim.centre
        if c.chart == "ewma":
            self.chart = EwmaChart(lim, c.lam, c.L)
        elif c.chart == "cusum":
            self.chart = CusumChart(lim, c.k, c.h)
        else:
            self.chart = IndividualsChart(lim, c.rules)


class SpcMonitor:
    """Feed items in line order with `observe`; read `notices` for what could not be charted."""

    def __init__(self, cfg: SpcConfig | None, *, batch: str | None = None):
        self.cfg = cfg
        self.batch = batch
        self.notices: list[str] = []
        self.index = -1
        self.series = {n: _Series(n, m) for n, m in (cfg.measures if cfg else {}).items()}
        self.reason_ref: dict[str, int] = {}
        self.reason_charts: dict[str, PChart] = {}
        self.reason_state: dict[str, _Series] = {}
        self.ref_done = False
        if cfg is None or (not cfg.measures and not cfg.reasons.enabled):
            self.notices.append("no SPC configured for this recipe: the line runs without it")
        elif cfg:
            for name, (centre, sigma) in cfg.baseline.items():
                if name in self.series:
                    self.series[name].start(Limits(centre, sigma, 0))

    @property
    def enabled(self) -> bool:
        return bool(self.cfg and (self.cfg.measures or self.cfg.reasons.enabled))

    def observe(
        self, item_id: str, measurements: dict[str, float], reasons: list[str]
    ) -> list[Deviation]:
        """The deviation alerts this item raises (its verdict is never changed here)."""
        if not self.enabled:
            return []
        assert self.cfg is not None
        self.index += 1
        if not self.ref_done:
            self._collect(measurements, reasons)
            if self.index + 1 >= self.cfg.reference_items:
                self._close_reference()
            return []
        out: list[Deviation] = []
        for name, s in self.series.items():
            v = measurements.get(name)
            if s.chart is None or v is None:
                continue
            out += self._judge(s, s.chart.update(float(v)), item_id)
        for reason, chart in self.reason_charts.items():
            p = chart.update(reason in reasons)
            if p is not None:
                out += self._judge(self.reason_state[reason], p, item_id)
        return out

    # ------------------------------------------------------------------ reference window

    def _collect(self, measurements: dict[str, float], reasons: list[str]) -> None:
        for name, s in self.series.items():
            v = measurements.get(name)
            if v is not None and s.chart is None:
                s.ref.append(float(v))
        for r in set(reasons):
            self.reason_ref[r] = self.reason_ref.get(r, 0) + 1

    def _close_reference(self) -> None:
        assert self.cfg is not None
        self.ref_done = True
        items = self.index + 1
        for name, s in self.series.items():
            if s.chart is not None:  # a validated baseline
                continue
            try:
                s.start(reference_limits(s.ref, min_n=self.cfg.min_reference))
            except ReferenceError as exc:
                self.notices.append(f"{name}: not monitored: {exc}")
            s.ref = []
        rc = self.cfg.reasons
        if rc.enabled:
            for reason in self._reasons_to_chart():
                chart = PChart(
                    self.reason_ref.get(reason, 0), items, rc.subgroup, rc.rules, rc.alpha
                )
                state = _Series(f"rate:{reason}", MeasureSpc(chart="individuals", rules=rc.rules))
                state.centre = chart.p
                self.reason_charts[reason] = chart
                self.reason_state[reason] = state

    def _reasons_to_chart(self) -> list[str]:
        """The reasons the recipe watches: a rate estimated from a few hundred items is too
        rough for the rarest reasons (one seen or not in the reference decides their limit),
        so only the reasons a process drift makes are charted, by choice."""
        return sorted(set(self.cfg.reasons.watch if self.cfg else []))

    # ------------------------------------------------------------------ alerts

    def _judge(self, s: _Series, p: Point, item_id: str) -> list[Deviation]:
        side = 1 if p.stat > s.centre else -1 if p.stat < s.centre else 0
        if side != s.side:
            s.since, s.side = self.index, side
        if p.inside and not p.signals:
            s.inside_run += 1
            if s.inside_run >= (self.cfg.rearm_items if self.cfg else 1):
                s.armed = True
            return []
        s.inside_run = 0
        if not p.signals or not s.armed:
            return []
        s.armed = False
        rule = p.signals[0]
        return [
            Deviation(
                measure=s.name,
                rule=rule,
                index=self.index,
                item_id=item_id,
                since_index=s.since,
                value=p.stat,
                limits=(p.lcl, p.ucl),
                centre=s.centre,
                chart="p" if s.name.startswith("rate:") else s.cfg.chart,
                text=RULE_TEXT.get(rule, rule),
                cause=s.cfg.cause,
                action=s.cfg.action,
                batch=self.batch,
            )
        ]
