"""Parameters of the glass and content check (particles, cracks, scratches)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from edge.inspect.params.measure import VialParams


class GlassParams(VialParams):
    """Where to look and how strong a local anomaly must be (relative contrast, 0..1)."""

    impl: ClassVar[str] = "edge.inspect.glass:GlassTool"

    kernel_px: int = Field(13, ge=3, description="background kernel; wider than any particle")
    dark_contrast: float = Field(0.22, gt=0, lt=1, description="dark residue / background")
    bright_contrast: float = Field(0.10, gt=0, lt=1, description="bright residue / background")
    particle_contrast: float = Field(
        0.6, gt=0, lt=1, description="a particle's darkest point vs its background"
    )
    noise_floor: int = Field(
        14, ge=0, le=255, description="residues below this many grey levels are sensor noise"
    )
    min_dark_area_px: int = Field(6, ge=1)
    min_bright_area_px: int = Field(10, ge=1)
    particle_max_len_px: float = Field(14.0, gt=0, description="longer dark blobs are cracks")
    min_line_len_px: float = Field(14.0, gt=0, description="shorter bright blobs are ignored")
    max_line_slope: float = Field(
        1.0, gt=0, description="steeper bright lines (height/width) are glare, not scratches"
    )
    structure_len_px: int = Field(
        31, ge=5, description="straight lines this long belong to the vial (meniscus, walls)"
    )
    wall_margin_px: int = Field(7, ge=0, description="columns skipped inside each side wall")
    glass_above_px: int = Field(32, ge=0, description="glass rows above the meniscus to check")
    label_margin_px: int = Field(6, ge=0, description="rows skipped next to the label edges")
    bottom_margin_px: int = Field(5, ge=0, description="rows skipped above the inner bottom")
