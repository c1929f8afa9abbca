"""Parameters of the classic measurement tools: fill level, cap, label (vials), pockets."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from edge.inspect.base import ToolParams

Box = tuple[int, int, int, int]


class VialParams(ToolParams):
    """How to find a vial: by its liquid's colour (hue is unmoved by lighting drift)."""

    roi: Box | None = Field(None, description="x, y, w, h search window (None: whole image)")
    liquid_hue: tuple[int, int] = Field((8, 30), description="OpenCV hue range 0..180")
    liquid_min_saturation: int = Field(80, ge=0, le=255)
    min_value: int = Field(35, ge=0, le=255, description="darker pixels are ignored (noise)")
    min_width_px: int = Field(80, ge=4, description="narrowest liquid column that counts as a vial")
    row_fraction: float = Field(0.5, gt=0, lt=1, description="share of a row that must be liquid")
    scale: float = Field(0.5, gt=0.1, le=1.0, description="analysis resolution")


class FillParams(VialParams):
    impl: ClassVar[str] = "edge.inspect.measure:FillLevelTool"

    inner_diameter_mm: float = Field(22.0, gt=0, description="scale: liquid width in mm")
    min_level_mm: float = Field(30.5, description="fill height below this: LOW_FILL")
    max_level_mm: float = Field(35.5, description="fill height above this: HIGH_FILL")


class CapParams(VialParams):
    impl: ClassVar[str] = "edge.inspect.measure:CapTool"

    cap_hue: tuple[int, int] = Field((95, 130), description="flip-off cap colour, OpenCV hue")
    cap_min_saturation: int = Field(80, ge=0, le=255)
    min_cap_area_px: int = Field(1500, ge=1, description="full-resolution pixels")
    max_tilt_deg: float = Field(4.0, gt=0)
    search_above_px: int = Field(200, gt=0, description="how far above the meniscus to look")


class LabelParams(VialParams):
    impl: ClassVar[str] = "edge.inspect.measure:LabelTool"

    min_coverage: float = Field(0.3, gt=0, lt=1, description="share of the liquid column covered")
    margin_px: int = Field(
        6, ge=0, description="rows skipped below the meniscus and above the bottom"
    )


class PocketParams(ToolParams):
    """Blister geometry in card pixels at nominal scale (the card is found and straightened)."""

    impl: ClassVar[str] = "edge.inspect.measure:PocketTool"

    roi: Box | None = None
    card_size: tuple[int, int] = Field((590, 270), description="card width, height")
    rows: int = Field(2, ge=1)
    cols: int = Field(5, ge=1)
    first_pocket: tuple[float, float] = Field((55, 72), description="centre of the top-left pocket")
    pitch: tuple[float, float] = Field((84, 126), description="pocket spacing x, y")
    pocket_radius: float = Field(35, gt=0)
    tablet_diameter: float = Field(52, gt=0)
    aspect_tolerance: float = Field(0.15, gt=0, description="allowed card aspect deviation")
    brightness_ratio: float = Field(1.2, gt=1, description="tablet vs card brightness")
    max_saturation: int = Field(55, ge=0, le=255, description="tablets are white: above is foreign")
    empty_ratio: float = Field(0.3, gt=0, description="tablet area share below this: EMPTY_POCKET")
    broken_ratio: float = Field(0.85, gt=0, description="below this: BROKEN_TABLET")
    oversize_ratio: float = Field(1.3, gt=1, description="above this: FOREIGN_TABLET")
    max_aspect: float = Field(1.3, ge=1, description="elongation above this: FOREIGN_TABLET")
    scale: float = Field(0.5, gt=0.1, le=1.0, description="analysis resolution of the card")
