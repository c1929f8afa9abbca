"""A recipe's SPC settings (the `spc` key of a recipe), as pydantic models.

Kept apart from the monitor so that validating a recipe imports only this schema.
Defaults are chosen for a line judged item by item at hundreds of items per minute: an EWMA
with a small weight and wide limits (well under one false deviation per 20,000 stable items
per measurement), limits from the first 500 items of the batch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.spc.rules import RuleName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeasureSpc(_Strict):
    """How one measurement is charted."""

    chart: Literal["ewma", "cusum", "individuals"] = "ewma"
    lam: float = Field(0.05, gt=0, le=1, description="EWMA weight of the newest item")
    L: float = Field(4.5, gt=0, description="EWMA limit width in sigma of the EWMA statistic")
    k: float = Field(0.5, ge=0, description="CUSUM allowance in sigma")
    h: float = Field(8.0, gt=0, description="CUSUM decision interval in sigma")
    rules: list[RuleName] = Field(
        default_factory=lambda: ["we1"], description="run rules (individuals chart only)"
    )
    cause: str = Field("", description="likely cause shown with the alert")
    action: str = Field("", description="corrective action shown with the alert")


class ReasonSpc(_Strict):
    """How reject reasons' rates are charted (a p-chart per reason)."""

    enabled: bool = True
    subgroup: int = Field(500, ge=20, description="items per p-chart point")
    alpha: float = Field(0.001, gt=0, lt=0.5, description="false-alarm probability per point")
    rules: list[RuleName] = Field(
        default_factory=list, description="run rules on subgroup rates, beside the limit"
    )
    watch: list[str] = Field(
        default_factory=list,
        description="reject reasons whose rate is charted (those a process drift makes)",
    )


class SpcConfig(_Strict):
    """A recipe's (product's) statistical process control."""

    reference_items: int = Field(
        500, ge=30, description="items after the batch start (and challenge) that set the limits"
    )
    min_reference: int = Field(100, ge=10, description="fewest values that make limits")
    rearm_items: int = Field(200, ge=1, description="points back inside before the same alert")
    baseline: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="validated centre and sigma per measurement, instead of the reference window",
    )
    measures: dict[str, MeasureSpc] = Field(
        default_factory=dict, description="measurements to chart, by name (e.g. fill_level_mm)"
    )
    reasons: ReasonSpc = Field(default_factory=ReasonSpc)

    @model_validator(mode="after")
    def _window_holds_enough(self) -> SpcConfig:
        if self.min_reference > self.reference_items:
            raise ValueError(
                f"min_reference {self.min_reference} is more than the reference window "
                f"({self.reference_items} items): no limits could ever be set"
            )
        return self
