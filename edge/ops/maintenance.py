"""Predictive maintenance: trend what wears, alarm before it crosses its limit.

Per camera, every Nth item's image gives brightness (lamp ageing), contrast (dirt,
fogging) and sharpness (focus drift), measured on a small grey copy. From the PLC's
status come the reject gate's actuation count (valve life) and confirmation latency
(a sticky valve); from the tools, inference latency. Samples reduce to one median per
bucket; a Theil–Sen line through the last `window` buckets (robust to outliers and to
the odd bad frame) predicts when the measure reaches its limit. When that is within
the horizon, and the trend is clear (Kendall tau), a "maintenance" alarm is raised on
the bus (MQTT `alarm`, HMI), before the limit is reached, not after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.domain import Item, Verdict
from edge.ops.config import MaintenanceConfig, TrendLimit
from edge.ops.metrics import component, find_number, safe_status

log = logging.getLogger(__name__)

GATE_COUNT_KEYS = ("gate_actuations", "actuations", "reject_actuations", "rejects_fired")
GATE_CONFIRM_KEYS = ("gate_confirm_ms", "confirm_ms", "confirm_latency_ms", "confirmation_ms")


def image_measures(image: np.ndarray, width: int = 160) -> dict[str, float]:
    """Brightness (mean grey), contrast (RMS) and sharpness (variance of the Laplacian)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape[:2]
    if w > width:
        grey = cv2.resize(grey, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    mean, std = cv2.meanStdDev(grey)
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    return {
        "brightness": float(mean[0][0]),
        "contrast": float(std[0][0]),
        "sharpness": float(lap.var()),
    }


@dataclass
class Fit:
    slope: float  # units per second
    intercept: float
    tau: float  # Kendall's tau-a of the points: how clearly they move one way


def theil_sen(t: np.ndarray, y: np.ndarray) -> Fit | None:
    """Median of pairwise slopes: a line that a few wild points cannot tilt."""
    if len(t) < 3:
        return None
    i, j = np.triu_indices(len(t), 1)
    dt = t[j] - t[i]
    dy = y[j] - y[i]
    ok = dt > 0
    if not ok.any():
        return None
    slope = float(np.median(dy[ok] / dt[ok]))
    intercept = float(np.median(y - slope * t))
    tau = float(np.sum(np.sign(dy) * np.sign(dt)) / len(dt))
    return Fit(slope, intercept, tau)


@dataclass
class Prediction:
    value: float  # the fitted value now
    slope_per_h: float
    tau: float
    side: str | None  # "low" | "high": the limit it approaches or has crossed
    limit: float | None
    eta_h: float | None  # hours to the limit; 0 when already beyond
    points: int


class Trend:
    """One measure of one camera (or of the line): buckets, baseline, prediction."""

    def __init__(
        self,
        measure: str,
        camera: str | None,
        limit: TrendLimit,
        cfg: MaintenanceConfig,
        baseline: float | None = None,
    ):
        self.measure, self.camera, self.cfg = measure, camera, cfg
        self.limit_cfg = limit
        self.points: deque[tuple[float, float]] = deque(maxlen=cfg.window)
        self._bucket: list[float] = []
        self._bucket_t0: float | None = None
        self.baseline = baseline
        self.last: Prediction | None = None

    @property
    def code(self) -> str:
        parts = ["MAINT", self.measure] + ([self.camera] if self.camera else [])
        return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper())

    def limits(self) -> tuple[float | None, float | None]:
        c, b = self.limit_cfg, self.baseline
        low = c.low if c.low is not None else (b * c.low_rel if b and c.low_rel else None)
        high = c.high if c.high is not None else (b * c.high_rel if b and c.high_rel else None)
        return low, high

    def add(self, t: float, value: float) -> bool:
        """Add a sample; True when a bucket closed (time to re-predict)."""
        if not math.isfinite(value):
            return False
        if self._bucket_t0 is None:
            self._bucket_t0 = t
        self._bucket.append(value)
        if t - self._bucket_t0 < self.cfg.bucket_s:
            return False
        mid = (self._bucket_t0 + t) / 2
        self.points.append((mid, float(np.median(self._bucket))))
        self._bucket, self._bucket_t0 = [], None
        if self.baseline is None and len(self.points) >= self.cfg.min_points:
            self.baseline = float(np.median([v for _, v in self.points]))
        return True

    def predict(self) -> Prediction | None:
        if len(self.points) < self.cfg.min_points:
            return None
        arr = np.asarray(self.points, dtype=float)
        t0 = arr[0, 0]
        fit = theil_sen(arr[:, 0] - t0, arr[:, 1])
        if fit is None:
            return None
        now = arr[-1, 0] - t0
        value = fit.intercept + fit.slope * now
        low, high = self.limits()
        side = limit = eta_h = None
        latest = float(arr[-1, 1])
        if low is not None and (value <= low or latest <= low):
            side, limit, eta_h = "low", low, 0.0
        elif high is not None and (value >= high or latest >= high):
            side, limit, eta_h = "high", high, 0.0
        elif fit.slope < 0 and low is not None:
            side, limit, eta_h = "low", low, (value - low) / -fit.slope / 3600.0
        elif fit.slope > 0 and high is not None:
            side, limit, eta_h = "high", high, (high - value) / fit.slope / 3600.0
        p = Prediction(value, fit.slope * 3600.0, fit.tau, side, limit, eta_h, len(arr))
        self.last = p
        return p


class Maintenance:
    """The component: samples items from the bus and the PLC status, raises alarms."""

    name = "maintenance"

    def __init__(self, app: Any, cfg: MaintenanceConfig, state_dir: Path | None = None):
        self.app = app
        self.pipeline = getattr(app, "pipeline", app)
        self.cfg = cfg
        self.trends: dict[tuple[str, str | None], Trend] = {}
        self.state_file = (state_dir / "maintenance.json") if state_dir else None
        self._baselines = self._load_baselines()
        self._n = 0
        self._rejects = 0  # REJECT verdicts seen by this process
        self._rejects_before: float | None = None  # recorded before it started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.subscription = self.pipeline.bus.subscribe(
            "verdict", self._on_verdict, name="maintenance", maxsize=1000
        )

    # ------------------------------------------------------------------ component

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_plc, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._save_baselines()

    def status(self) -> dict[str, Any]:
        out = {}
        with self._lock:
            trends = list(self.trends.values())
        for tr in trends:
            p = tr.last
            key = tr.measure + (f"@{tr.camera}" if tr.camera else "")
            out[key] = (
                None
                if p is None
                else {
                    "value": round(p.value, 3),
                    "slope_per_h": round(p.slope_per_h, 4),
                    "eta_h": None if p.eta_h is None else round(p.eta_h, 2),
                    "limit": p.limit,
                }
            )
        return {"up": True, "samples": self.samples, "trends": out}

    # ------------------------------------------------------------------ feeds

    def _on_verdict(self, _topic: str, item: Item) -> None:
        self._n += 1
        if item.verdict is Verdict.REJECT:
            self._rejects += 1
        if self._n % self.cfg.sample_every:
            return
        frame = item.frame
        # several views: each camera's own image, trended under its view's name (the lamp
        # of one camera ageing must not hide in the average of the others)
        shots = dict(item.views) if item.views else {None: frame}
        for view, shot in shots.items():
            camera = view or (shot.source if shot and shot.source else None) or "camera"
            if shot is not None and isinstance(shot.image, np.ndarray) and shot.image.size:
                for measure, value in image_measures(shot.image).items():
                    self.add(measure, camera, item.t_trigger, value)
        model_ms = [r.ms for r in item.results if r.model]
        if model_ms:
            self.add("inference_ms", None, item.t_trigger, float(sum(model_ms)))
        self.samples += 1

    def _poll_plc(self) -> None:
        period = min(max(self.cfg.bucket_s / 4, 0.5), 10.0)
        while not self._stop.wait(period):
            c = component(self.app, "plc")
            if c is None:
                continue
            st = safe_status(c)
            now = time.monotonic()
            count = find_number(st, *GATE_COUNT_KEYS)
            if count is None:  # every reject fires the gate once: count them, lifetime
                count = self._lifetime_rejects()
            if count is not None:
                self.add("gate_actuations", None, now, count)
            confirm = find_number(st, *GATE_CONFIRM_KEYS)
            if confirm is not None:
                self.add("gate_confirm_ms", None, now, confirm)

    def _lifetime_rejects(self) -> float | None:
        if self._rejects_before is None:
            try:
                row = self.pipeline.db.conn.execute(
                    "SELECT COUNT(*) FROM items WHERE verdict = 'REJECT'"
                ).fetchone()
            except Exception as exc:
                log.warning("cannot count rejects for the gate trend: %s", exc)
                return None
            # the rows include the rejects this process has already seen
            self._rejects_before = float(row[0]) - self._rejects
        return self._rejects_before + self._rejects

    # ------------------------------------------------------------------ trends

    def trend(self, measure: str, camera: str | None) -> Trend | None:
        key = (measure, camera)
        with self._lock:
            tr = self.trends.get(key)
            if tr is None:
                limit = self.cfg.limits.get(measure)
                if limit is None:
                    return None
                base = self._baselines.get(f"{camera or '-'}/{measure}")
                tr = self.trends[key] = Trend(measure, camera, limit, self.cfg, base)
        return tr

    def add(self, measure: str, camera: str | None, t: float, value: float) -> None:
        tr = self.trend(measure, camera)
        if tr is None or not tr.add(t, value):
            return
        had_baseline = tr.baseline
        p = tr.predict()
        if p is None:
            return
        if had_baseline is None and tr.baseline is not None:
            self._save_baselines()
        self.pipeline.bus.publish(
            "trend",
            {
                "measure": measure,
                "camera": camera or "",
                "value": p.value,
                "slope_per_h": p.slope_per_h,
                "eta_h": p.eta_h,
                "limit": p.limit,
                "tau": p.tau,
                "t": time.time(),
            },
        )
        self._judge(tr, p)

    def _judge(self, tr: Trend, p: Prediction) -> None:
        alarms = self.pipeline.alarms
        active = alarms.is_active(tr.code)
        horizon = self.cfg.horizon_h
        where = f" ({tr.camera})" if tr.camera else ""
        if p.eta_h == 0.0:
            alarms.raise_(
                tr.code,
                f"{tr.measure}{where} {p.value:.4g} is beyond its {p.side} limit {p.limit:.4g}",
                "maintenance",
            )
        elif p.eta_h is not None and p.eta_h <= horizon and abs(p.tau) >= self.cfg.min_tau:
            direction = "falling" if p.slope_per_h < 0 else "rising"
            alarms.raise_(
                tr.code,
                f"{tr.measure}{where} {p.value:.4g} {direction} {abs(p.slope_per_h):.3g}/h: "
                f"reaches its {p.side} limit {p.limit:.4g} in about {_hours(p.eta_h)}",
                "maintenance",
            )
        elif active and (p.eta_h is None or p.eta_h > 1.5 * horizon):
            alarms.clear(tr.code)

    # ------------------------------------------------------------------ baselines

    def _load_baselines(self) -> dict[str, float]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
            return {str(k): float(v) for k, v in data.get("baselines", {}).items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.state_file, exc)
            return {}

    def _save_baselines(self) -> None:
        """Relative limits compare with the commissioning baseline, kept across restarts."""
        if self.state_file is None:
            return
        with self._lock:
            for (measure, camera), tr in self.trends.items():
                if tr.baseline is not None:
                    self._baselines.setdefault(f"{camera or '-'}/{measure}", tr.baseline)
            data = {"baselines": dict(self._baselines)}
        tmp = self.state_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.state_file)
        except OSError as exc:
            with contextlib.suppress(OSError):  # a full disk leaves no half-written file
                tmp.unlink(missing_ok=True)
            log.warning("cannot save maintenance baselines: %s", exc)


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.0f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} days"


def build(app: Any) -> Maintenance | None:
    cfg = app.cfg.ops.maintenance
    if not cfg.enabled:
        return None
    return Maintenance(app, cfg, Path(app.cfg.records.state_dir))
