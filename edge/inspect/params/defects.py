"""Parameters of the defect detector tool (the model is named, resolved when built)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from edge.inspect.base import ToolParams


class DefectParams(ToolParams):
    impl: ClassVar[str] = "edge.inspect.defects:DefectTool"
    example: ClassVar[dict[str, Any]] = {"model": "defects"}

    model: str = Field(..., description="model name in the registry (models/<name>/)")
    version: str | None = Field(
        None, description="pin a version (must be approved); None: the approved one"
    )
    precision: Literal["int8", "fp32"] = "int8"
    conf: float | None = Field(
        None,
        gt=0,
        le=1,
        description="default score threshold (None: the model's operating threshold from "
        "its card, chosen on its validation photos; 0.25 when the card has none)",
    )
    class_conf: dict[str, float] = Field(default_factory=dict, description="threshold per class")
    classes: list[str] | None = Field(
        None, description="classes reported as findings (None: all but `code`)"
    )
    iou: float = Field(0.45, gt=0, le=1, description="NMS IoU threshold")
    light_reference: float | None = Field(
        None,
        gt=0,
        le=255,
        description="99th-percentile grey level of frames at nominal lighting; frames are "
        "scaled to it before the detector (None: no compensation)",
    )
    max_gain: float = Field(
        1.6, ge=1, description="largest compensation; a darker frame is reported as LIGHTING"
    )
