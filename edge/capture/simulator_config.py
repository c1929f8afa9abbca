"""The `source: {type: simulator}` section: the digital twin as the line's camera.

Kept beside the source it configures (as `genicam_config.py`); `edge.config` re-exports it
and puts it in the source union. Pure schema: no image library imported.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Scenario = Literal["vials", "blisters", "cartons"]


class EncoderConfig(Strict):
    """Belt model: the simulator's encoder, and the distances tracking works in."""

    counts_per_mm: float = 10.0
    pitch_mm: float = 80.0  # distance between product centres
    gate_distance_mm: float = 600.0  # camera -> reject gate
    safety_margin_mm: float = 40.0


class ProcessDrift(Strict):
    """A process parameter of the simulated line drifting from item `start` on (see edge.sim.drift)."""

    name: Literal["fill_level", "cap_tilt", "print_contrast"]
    per_1000: float = Field(description="change per 1,000 items (mm, degrees, contrast fraction)")
    start: int = Field(0, ge=0, description="first item that drifts")


class SimulatorSource(Strict):
    type: Literal["simulator"] = "simulator"
    impl: ClassVar[str] = "edge.capture.simulator:SimulatorCapture"
    scenario: Scenario = "vials"
    rate_per_min: float = Field(600.0, gt=0)
    items: int | None = Field(None, ge=0, description="stop after N items (None: run forever)")
    seed: int = 1
    width: int = Field(640, ge=160, le=4096)
    height: int = Field(480, ge=120, le=4096)
    defect_rate: float = Field(0.1, ge=0, le=1, description="probability an item carries a defect")
    defect_weights: dict[str, float] = Field(
        default_factory=dict, description="relative weight per defect class (default: equal)"
    )
    code_defect_rate: float = Field(0.0, ge=0, le=1, description="probability of a code defect")
    drift_per_hour: float = Field(
        0.0, description="lighting drift, fraction of brightness per hour"
    )
    process_drift: list[ProcessDrift] = Field(
        default_factory=list, description="process parameters that drift (fill, cap, print)"
    )
    realtime: bool = True  # pace frames at rate_per_min; False: as fast as consumed
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    print_defect_rate: float = Field(
        0.0, ge=0, le=1, description="probability of a printed-text defect (vials, cartons)"
    )
    print_font: Literal["solid", "dotmatrix"] = "solid"
    print_date_format: str = Field("YYMMDD", description="printed expiry, e.g. MM/YYYY")
    views: int = Field(1, ge=1, le=8, description="cameras around the item's axis (edge.sim)")
    view: int = Field(0, ge=0, description="which of them this source is (0: the front)")
    top_view: bool = Field(
        False,
        description="the last of the `views` is a camera above the item looking down on its "
        "cap (vials): missing, tilted and dented caps show there; the others stand around it",
    )
    label_view: int | None = Field(
        None,
        ge=1,
        description="the label (print) camera's view: vials 3x, cartons 2x the code and text",
    )
    exposure_us: float | None = Field(
        None, gt=0, description="camera exposure; brightness follows it (None: nominal 10 ms)"
    )
    gain: float | None = Field(None, ge=0, description="camera gain in dB (None: 0 dB)")
    novel_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of a novel defect no model was trained on (fibre, dented cap, "
        "ink stain, foreign mark: the product's `novel` classes in the taxonomy); 0 leaves "
        "every image and truth as without it",
    )

    @model_validator(mode="after")
    def _views_fit(self) -> SimulatorSource:
        if self.view >= self.views:
            raise ValueError(
                f"view {self.view}: there are {self.views} views (0..{self.views - 1})"
            )
        if self.top_view and (self.views < 2 or self.scenario != "vials"):
            raise ValueError("top_view: a camera above the cap needs vials and views >= 2")
        lv = self.label_view
        if lv is not None and (lv >= self.views or self.scenario not in ("vials", "cartons")):
            raise ValueError(
                f"label_view {lv}: not one of the {self.views} views of vials or cartons"
            )
        if lv is not None and self.top_view and lv == self.views - 1:
            raise ValueError(f"label_view {lv}: that view is the top view")
        return self
