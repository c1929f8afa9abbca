"""Parameters of the printed-text check (OCV): the printed lines and print-quality limits."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.inspect.base import ToolParams
from edge.inspect.ocr import DEFAULT_ALPHABET, missing
from edge.inspect.ocv_fields import FieldSpec, check_date_format


class FieldParams(BaseModel):
    """One printed line of the block."""

    model_config = ConfigDict(extra="forbid")

    field: Literal["gtin", "expiry", "lot", "serial"]
    prefix: str = Field("", description='printed before the value, e.g. "(17)" or "EXP "')
    charset: str | None = Field(
        None, description="characters the value may hold (default: digits for GTIN and dates)"
    )
    format: str | None = Field(None, description="expiry only: e.g. MM/YYYY, YYYY-MM, YYMMDD")

    @model_validator(mode="after")
    def _format_for_dates(self) -> FieldParams:
        if self.field == "expiry":
            if not self.format:
                raise ValueError("the expiry field needs its printed date format (e.g. 'MM/YYYY')")
            check_date_format(self.format)
        elif self.format is not None:
            raise ValueError(f"'format' applies to the expiry field only, not {self.field!r}")
        return self

    def spec(self) -> FieldSpec:
        return FieldSpec(self.field, self.prefix, self.format)

    def alphabet(self, default: str) -> str:
        """What this line may read as: its prefix, and its value's characters."""
        if self.charset:
            value = self.charset
        elif self.field == "gtin":
            value = "0123456789"
        elif self.field == "expiry":
            value = "0123456789" + re.sub(r"YYYY|YY|MMM|MM|DD", "", self.format or "")
            if "MMM" in (self.format or ""):
                value += "ABCDEFGJLMNOPRSTUVY"
        else:
            value = default
        return "".join(sorted(set(self.prefix + value) - {" "}))


class OcvParams(ToolParams):
    impl: ClassVar[str] = "edge.inspect.ocv:OcvTool"
    example: ClassVar[dict[str, Any]] = {"fields": [{"field": "lot"}]}

    fields: list[FieldParams] = Field(min_length=1, description="the printed lines, in order")
    engine: Literal["paddle", "tesseract"] = "paddle"
    block: tuple[float, float, float, float] = Field(
        (1.05, -0.15, 1.6, 1.5),
        description="x, y, w, h of the printed block in code sides from the code's top-left",
    )
    region: tuple[int, int, int, int] | None = Field(
        None, description="x, y, w, h image pixels of the block when no code was decoded"
    )
    px_per_code: int = Field(200, ge=40, le=800, description="scale of the cut-out block")
    first_line: float = Field(0.12, description="expected centre of line 1, code sides")
    line_pitch: float = Field(0.24, gt=0, description="expected line pitch, code sides")
    text_left: float = Field(1.12, description="expected left edge of the text, code sides")
    max_shift: float = Field(0.1, ge=0, description="print position tolerance, code sides")
    char_height: tuple[float, float] = Field(
        (0.06, 0.2), description="allowed line height (ink), code sides"
    )
    min_contrast: float = Field(0.2, ge=0, le=1, description="(paper - ink) / paper")
    min_support: float = Field(
        0.01, ge=0, le=1, description="least probability of each expected character"
    )
    count_support: float = Field(
        0.1,
        ge=0,
        le=1,
        description="when the reading has another length: least support of each character",
    )
    min_char_conf: float = Field(
        0.5, ge=0, le=1, description="engines without step probabilities: PRINT_QUALITY"
    )
    min_glyph: float = Field(
        0.7, ge=0, le=1, description="shortest glyph / line height below this: broken"
    )
    max_ink: float = Field(
        0.9, gt=0, le=1, description="ink share of a character cell above this: a blot"
    )
    threads: int = Field(1, ge=1, le=8, description="OCR threads per inference")
    ocr_height: int = Field(
        48, ge=16, le=64, description="rows of a line as the recogniser takes it (fewer: faster)"
    )
    stretch: float = Field(
        1.0,
        ge=0.5,
        le=2.0,
        description="widen each line before reading: 1.4 for condensed inkjet (dot) fonts",
    )
    runs: Literal["lines", "batch", "concat"] = Field(
        "lines",
        description="the item's lines through the recognition network: one run per line, "
        "one batch padded to the widest, or side by side in one run (bench/ocv_speed.py)",
    )
    dots: bool = Field(
        False, description="printed in a dot (inkjet) font: dots joined before glyphs are measured"
    )
    side_margin: float = Field(
        0.5,
        ge=0,
        le=2,
        description="paper added before and after each line, in line heights, before reading",
    )
    alphabet: str = DEFAULT_ALPHABET

    @model_validator(mode="after")
    def _alphabet_covers_prefixes(self) -> OcvParams:
        allowed = set(self.alphabet) | {" "}
        for f in self.fields:
            extra = set(f.prefix + (f.format or "")) - allowed - set("YMD")
            if extra:
                raise ValueError(f"{f.field}: characters {sorted(extra)} not in the alphabet")
        seen = [f.field for f in self.fields]
        if len(seen) != len(set(seen)):
            raise ValueError("a field is listed twice")
        why = missing(self.engine)  # refused at recipe load, not at the first item
        if why:
            raise ValueError(why)
        return self
