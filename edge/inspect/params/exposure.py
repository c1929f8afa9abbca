"""Parameters of the exposure check."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from edge.inspect.base import ToolParams

Box = tuple[int, int, int, int]


class ExposureParams(ToolParams):
    impl: ClassVar[str] = "edge.inspect.exposure:ExposureTool"

    roi: Box | None = Field(None, description="x, y, w, h; None: the whole frame")
    min_brightness: float = Field(40.0, ge=0, le=255)
    max_brightness: float = Field(215.0, ge=0, le=255)
    min_contrast: float = Field(10.0, ge=0, description="standard deviation of the grey levels")
    max_clipped: float = Field(0.05, ge=0, le=1, description="share of pixels at 0 or 255")

    @model_validator(mode="after")
    def _order(self) -> ExposureParams:
        if self.min_brightness >= self.max_brightness:
            raise ValueError("min_brightness must be below max_brightness")
        return self
