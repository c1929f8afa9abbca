"""Parameters of the cap check from above (a camera looking down on a vial's cap)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from edge.inspect.base import ToolParams

Box = tuple[int, int, int, int]


class CapTopParams(ToolParams):
    impl: ClassVar[str] = "edge.inspect.cap_top:CapTopTool"

    roi: Box | None = Field(None, description="x, y, w, h search window (None: whole image)")
    cap_hue: tuple[int, int] = Field((95, 130), description="flip-off cap colour, OpenCV hue")
    cap_min_saturation: int = Field(80, ge=0, le=255)
    min_value: int = Field(35, ge=0, le=255, description="darker pixels are not cap colour")
    min_cap_area_px: int = Field(
        6000, ge=1, description="the disc's area from above, below this: MISSING_CAP"
    )
    rim_px: int = Field(6, ge=0, description="the disc's rim left out of the dent check")
    dent_contrast: float = Field(
        0.2, gt=0, lt=1, description="darker than its ring of the disc by this share: a dent"
    )
    min_dent_area_px: int = Field(30, ge=1, description="smaller dark spots are noise")
