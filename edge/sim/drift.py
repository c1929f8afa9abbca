"""Process drift in the digital twin: a filler dosing low, a capper losing torque, a printer
head wearing out, so that process control can be measured against ground truth.

A drift is `NAME:PER_1000_ITEMS:START_ITEM` (`edge sim --drift`, repeatable): from item START
on, the parameter moves by PER_1000_ITEMS for every 1,000 items. The amount at item i is
written to `truth.jsonl` (`drift`), so the first item a drift pushes out of spec is known.

- `fill_level` in mm of liquid height (negative: the filler doses low);
- `cap_tilt` in degrees of cap tilt on good units (the capper's torque falling off);
- `print_contrast` as a fraction of the print's contrast (negative: ink running out).

The lamp ages too (`drift_per_hour`, a fraction of brightness per hour), and the camera's
exposure and gain scale the light (`edge.sim.camera`): `lighting`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edge.config import ProcessDrift, SimulatorSource
from edge.sim.camera import brightness


def parse_drift(text: str) -> ProcessDrift:
    """`fill_level:-0.5:1000` -> ProcessDrift; a clear error for anything else."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"drift {text!r}: expected NAME:PER_1000_ITEMS[:START_ITEM]")
    try:
        per = float(parts[1])
        start = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise ValueError(
            f"drift {text!r}: PER_1000_ITEMS is a number, START_ITEM an integer"
        ) from None
    return ProcessDrift(name=parts[0], per_1000=per, start=start)  # type: ignore[arg-type]


def drift_at(drifts: Iterable[ProcessDrift], i: int) -> dict[str, float]:
    """The amount of every configured drift at item i (0 before its start)."""
    out: dict[str, float] = {}
    for d in drifts:
        out[d.name] = out.get(d.name, 0.0) + d.per_1000 * max(0, i - d.start) / 1000.0
    return out


def contrast_factor(drift: dict[str, float]) -> float:
    """What remains of the print's contrast (1: nominal, 0: no print left)."""
    return min(1.0, max(0.0, 1.0 + drift.get("print_contrast", 0.0)))


def lighting(cfg: SimulatorSource, i: int, rng: np.random.Generator) -> float:
    """The light level of item i: the lamp ageing by `drift_per_hour`, and a little flicker."""
    hours = i / cfg.rate_per_min / 60.0
    drift = max(0.3, 1.0 - cfg.drift_per_hour * hours)
    return float(drift * rng.uniform(0.97, 1.03)) * brightness(cfg.exposure_us, cfg.gain)
