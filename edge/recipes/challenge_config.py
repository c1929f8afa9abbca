"""The `challenge:` section of the config: when the challenge test runs.

Kept beside the challenge it configures (pydantic only, so checking a config file imports
nothing of the line); `edge.config` puts it in the app config.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChallengeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_batch_start: bool = Field(
        True,
        description="a batch starts only when its challenge units are judged right "
        "(the product's challenge set, else the scenario's standard set)",
    )
    every_min: float | None = Field(
        None, gt=0, description="run it again every N minutes while a batch runs (None: off)"
    )
    shifts: list[str] = Field(
        default_factory=list,
        description='shift start times, HH:MM local time (e.g. ["06:00", "14:00", '
        '"22:00"]): the challenge runs again at the first item after each',
    )

    @field_validator("shifts")
    @classmethod
    def _shifts(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", s)]
        if bad:
            raise ValueError(f"shift start times are HH:MM, 00:00 to 23:59 (got {bad})")
        if len(set(v)) != len(v):
            raise ValueError("a shift start time is given twice")
        return sorted(v)
