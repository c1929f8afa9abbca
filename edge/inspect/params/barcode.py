"""Parameters of the barcode tool: symbologies, retry ladder, GS1 checks, grade."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from edge.inspect import gs1
from edge.inspect.base import ToolParams

DEFAULT_SYMBOLOGIES = [
    "DataMatrix",
    "QRCode",
    "Code128",
    "EAN13",
    "EAN8",
    "UPCA",
    "DataBar",
    "DataBarExpanded",
]
ALL_RUNGS = ("histogram", "sharpen", "clahe", "adaptive", "zbar", "upscale", "mirror")


class BarcodeParams(ToolParams):
    """What the barcode tool reads, how hard it tries, and what it checks the code against."""

    impl: ClassVar[str] = "edge.inspect.barcode:BarcodeTool"

    symbologies: list[str] = Field(default_factory=lambda: list(DEFAULT_SYMBOLOGIES))
    roi: tuple[int, int, int, int] | None = Field(None, description="x, y, w, h")
    expected_count: int = Field(1, ge=1, le=16, description="codes per item")
    try_inverted: bool = True
    try_mirrored: bool = True
    try_rotated: bool = True
    retry_ladder: bool = True
    rungs: list[str] | None = Field(None, description="ladder rungs in order (None: all)")
    second_decoder: bool = Field(True, description="zbar as a second opinion on 1D codes")
    required_ais: list[str] = Field(default_factory=lambda: ["01", "17", "10", "21"])
    min_grade: float = Field(1.5, ge=0, le=4, description="scan grade below this rejects")
    check_batch: bool = True
    check_serial: bool = True
    check_expiry: bool = True
    use_detections: bool = True
    detection_class: str = "code"
    detection_min_score: float = Field(0.25, ge=0, le=1)
    crop_margin: float = Field(0.2, ge=0, le=2, description="crop margin, share of box")
    reserve_ms: float = Field(
        40.0, ge=0, description="time kept after the ladder for the decision and record"
    )
    max_pixels: int = Field(40_000_000, gt=0)

    @field_validator("symbologies")
    @classmethod
    def _known_symbologies(cls, v: list[str]) -> list[str]:
        """Names as zxing-cpp spells them (its aliases and spellings are its own, so it is
        asked rather than copied). Where zxing-cpp is not installed the names cannot be
        checked here: the barcode tool cannot be built here either, and building it (`edge
        config check`, the line's start) says so."""
        if not v:
            raise ValueError("at least one symbology")
        try:
            import zxingcpp
        except ImportError:
            return v
        for name in v:
            try:
                zxingcpp.barcode_format_from_str(name)
            except ValueError:
                raise ValueError(f"unknown symbology {name!r}") from None
        return v

    @field_validator("required_ais")
    @classmethod
    def _known_ais(cls, v: list[str]) -> list[str]:
        for ai in v:
            if not gs1.known_ai(ai):
                raise ValueError(f"unknown GS1 application identifier {ai!r}")
        return v

    @field_validator("rungs")
    @classmethod
    def _known_rungs(cls, v: list[str] | None) -> list[str] | None:
        for r in v or []:
            if r not in ALL_RUNGS:
                raise ValueError(f"unknown rung {r!r} (known: {', '.join(ALL_RUNGS)})")
        return v
