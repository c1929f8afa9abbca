"""The twin's line timing: when item i is triggered, and the encoder count it carries.

Items sit `encoder.pitch_mm` apart on the belt, which runs at `rate_per_min` items a
minute; the encoder count of a trigger wobbles by a fraction of a millimetre, as a real
photo-eye's does.
"""

from __future__ import annotations

import numpy as np

from edge.config import SimulatorSource


def period_s(cfg: SimulatorSource) -> float:
    """Seconds between two triggers."""
    return 60.0 / cfg.rate_per_min


def trigger_time(cfg: SimulatorSource, i: int) -> float:
    """Seconds from item 0's trigger to item i's."""
    return i * 60.0 / cfg.rate_per_min


def encoder_count(cfg: SimulatorSource, i: int, rng: np.random.Generator) -> int:
    """The encoder count at item i's trigger (its pitch, and a 0.3 mm wobble)."""
    e = cfg.encoder
    return int(round((i * e.pitch_mm + rng.normal(0, 0.3)) * e.counts_per_mm))
