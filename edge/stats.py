"""Live counters for the console, the HMI and metrics: rate, yield, latency percentiles."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from edge.domain import Item, Verdict

RATE_WINDOW_S = 300.0  # the longest horizon a rate is asked for: memory stays flat


class Stats:
    def __init__(self, window: int = 5000):
        self._lock = threading.Lock()
        self.inspected = 0
        self.passed = 0
        self.rejected = 0
        self.deadline_misses = 0
        self.late_verdicts = 0
        self.by_reason: Counter[str] = Counter()
        self.escapes = 0  # truth known (simulator): expected REJECT, got PASS
        self.false_rejects = 0  # expected PASS, got REJECT
        self._latency: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque()  # verdict times of the last RATE_WINDOW_S
        self.started = time.monotonic()

    def update(self, item: Item) -> None:
        with self._lock:
            self.inspected += 1
            if item.verdict is Verdict.PASS:
                self.passed += 1
            else:
                self.rejected += 1
                self.by_reason.update(item.reasons)
            if item.timed_out:
                self.deadline_misses += 1
            lat = item.latency_ms
            if lat is not None:
                self._latency.append(lat)
            now = time.monotonic()
            self._times.append(now)
            while now - self._times[0] > RATE_WINDOW_S:
                self._times.popleft()
            truth = item.frame.truth if item.frame else None
            if truth and "expected" in truth:
                if truth["expected"] == "REJECT" and item.verdict is Verdict.PASS:
                    self.escapes += 1
                elif truth["expected"] == "PASS" and item.verdict is Verdict.REJECT:
                    self.false_rejects += 1

    def rate_per_min(self, horizon_s: float = 60.0) -> float:
        horizon_s = min(horizon_s, RATE_WINDOW_S)
        now = time.monotonic()
        with self._lock:
            n = sum(1 for t in reversed(self._times) if now - t <= horizon_s)
        span = min(horizon_s, max(now - self.started, 1e-6))
        return n * 60.0 / span

    def percentiles(self) -> dict[str, float | None]:
        with self._lock:
            lat = np.fromiter(self._latency, float) if self._latency else None
        if lat is None:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None}
        return {
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
        }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            d = {
                "items": self.inspected,
                "passed": self.passed,
                "rejected": self.rejected,
                "by_reason": dict(self.by_reason.most_common()),
                "deadline_misses": self.deadline_misses,
                "late_verdicts": self.late_verdicts,
                "escapes": self.escapes,
                "false_rejects": self.false_rejects,
            }
        d["yield"] = round(d["passed"] / d["items"], 4) if d["items"] else None
        d["rate_per_min"] = round(self.rate_per_min(), 1)
        d.update(self.percentiles())
        return d
