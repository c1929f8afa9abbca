"""Alternating rounds for the benches that compare the line with and without a load.

The machine is shared and noisy, so a comparison is made within one run: rounds of
base and load phases in ABBA order (base, load, load, base, ...), the load frozen with
SIGSTOP during base phases, and each phase summarised from the line's own latencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

SETTLE = 1.0  # seconds after a switch before a phase is measured

Spans = list[tuple[float, float]]


def pct(v: list[float], q: float) -> float | None:
    return round(float(np.percentile(v, q)), 2) if v else None


def alternate(
    rounds: int,
    seconds: float,
    freeze: Callable[[bool], None],
    before_load: Callable[[], None] | None = None,
) -> dict[str, Spans]:
    """Run `rounds` ABBA rounds; the (start, end) monotonic spans of each condition."""
    windows: dict[str, Spans] = {"base": [], "load": []}
    for r in range(rounds):
        for cond in ("base", "load") if r % 2 == 0 else ("load", "base"):
            if cond == "load" and before_load is not None:
                before_load()
            freeze(cond == "base")
            time.sleep(SETTLE)
            t = time.monotonic()
            time.sleep(seconds)
            windows[cond].append((t, time.monotonic()))
    freeze(False)
    return windows


def phase(lat: list[tuple[float, float, bool]], spans: Spans) -> dict:
    """Items, p50/p99 and deadline misses of the line's (time, ms, missed) within `spans`."""
    sel = [(ms, miss) for t, ms, miss in lat if any(a <= t < b for a, b in spans)]
    per_round = [[ms for t, ms, _ in lat if a <= t < b] for a, b in spans]
    return {
        "items": len(sel),
        "p50_ms": pct([ms for ms, _ in sel], 50),
        "p99_ms": pct([ms for ms, _ in sel], 99),
        "p99_per_round": [pct(v, 99) for v in per_round],
        "deadline_misses": sum(1 for _, miss in sel if miss),
    }


def p99_ratio(base: dict, load: dict) -> float | None:
    if not (base["p99_ms"] and load["p99_ms"]):
        return None
    return round(load["p99_ms"] / base["p99_ms"], 3)
