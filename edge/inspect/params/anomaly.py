"""Parameters of the good-only anomaly tool (the model is named, resolved when built)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from edge.inspect.base import ToolParams

Rect = tuple[int, int, int, int]


class AnomalyParams(ToolParams):
    impl: ClassVar[str] = "edge.inspect.anomaly:AnomalyTool"
    example: ClassVar[dict[str, Any]] = {"model": "vial-anomaly"}

    model: str = Field(..., description="anomaly model name in the registry (models/<name>/)")
    version: str | None = Field(None, description="pin a version (must be approved)")
    precision: Literal["int8", "fp32"] = "int8"
    regions: dict[str, Rect] = Field(
        default_factory=dict,
        description="named rectangles x, y, w, h to score (empty: the model's fitted ROI)",
    )
    threshold: float | None = Field(
        None, gt=0, description="override of the card's threshold (None: the card's)"
    )
    regions_from: str | None = Field(
        None,
        description="score each box of this class found by an earlier tool (the detector's "
        "`detections`) instead of fixed rectangles; the model is then fitted on crops of it",
    )
    min_regions: int = Field(
        0, ge=0, description="with regions_from: fewer located regions than this is an ANOMALY"
    )
    ignore_codes: float | None = Field(
        None,
        ge=0,
        le=2,
        description="leave the codes an earlier tool decoded unscored, each box grown by this "
        "share of its size on every side (its quiet zone): a code differs on every unit by "
        "its serial, and the code reader judges it (None: every patch scored)",
    )

    @field_validator("regions")
    @classmethod
    def _positive(cls, v: dict[str, Rect]) -> dict[str, Rect]:
        for name, (x, y, w, h) in v.items():
            if w <= 0 or h <= 0 or x < 0 or y < 0:
                raise ValueError(f"region {name!r}: {[x, y, w, h]} is not a rectangle in the image")
        return v
