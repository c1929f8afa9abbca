"""The one small protocol every inspection tool speaks: image + context in, findings out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edge.domain import BatchState, CodeRead, Detection, Finding, ToolResult

if TYPE_CHECKING:
    from edge.inspect.grade import GradeTrend
    from edge.store.serials import SerialRegistry

log = logging.getLogger(__name__)


class ToolParams(BaseModel):
    """Base of every tool's parameter model (the recipe's keys for that tool)."""

    model_config = ConfigDict(extra="forbid")
    #: the tool these parameters configure, "module:Class", imported when the tool is built
    impl: ClassVar[str] = ""
    #: the smallest recipe entry that builds the tool, where it has required keys
    example: ClassVar[dict[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class LocatedCode:
    """A code an earlier tool read, where it lies: the printed-text check places its block
    from the corners and compares the printed fields with the GS1 content."""

    gs1: dict[str, str] | None
    corners: Any  # 4x2 points, zxing's order (top-left, top-right, bottom-right, bottom-left)
    bbox: tuple[int, int, int, int] | None


@dataclass(frozen=True, slots=True)
class AnomalyMap:
    """One scored region of the anomaly tool: kept as evidence with a reject."""

    tool: str
    region: str
    rect: tuple[int, int, int, int]  # x, y, w, h in image pixels
    heat: np.ndarray  # patch scores over the region
    score: float


@dataclass
class ToolContext:
    """Per-item context handed to each tool, in recipe order.

    What a tool leaves for later tools is a typed field here, never a loose dict: a later
    tool reads exactly what an earlier one wrote, and a rename breaks loudly."""

    item_id: str
    seq: int
    deadline: float  # monotonic; tools with optional extra work stop before it
    batch: BatchState | None = None
    now: float = 0.0  # wall clock (epoch s) at the trigger, for expiry checks
    detections: list[Detection] = field(default_factory=list)  # by the defect detector
    codes: list[LocatedCode] = field(default_factory=list)  # by the code reader
    anomaly_maps: list[AnomalyMap] = field(default_factory=list)  # by the anomaly tool

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class Services:
    """Long-lived things tools may need, built once by whoever builds the tools (the
    appliance, the config check, an evaluation) and shared by every tool of a recipe."""

    serials: SerialRegistry | None = None  # serials seen, for the duplicate-serial check
    grade_trend: GradeTrend | None = None  # scan grades per batch
    #: the model registry's folder, or its writable folder then read-only ones
    models_dir: Path | str | list[Path] = "models"
    backend: Any = None  # the inference backend's config (ONNX Runtime or TensorRT)
    state_dir: Path | None = None
    #: only an evaluation that decides nothing sets it: the model tools may then open a named
    #: candidate; the line never does
    allow_unapproved_models: bool = False


class Tool:
    """Base class for inspection tools.

    Subclasses set `type_key`, `version`, `Params`, and implement `inspect`. A tool must
    be safe to call from several worker threads at once (or guard its own state).
    """

    type_key: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    Params: ClassVar[type[ToolParams]] = ToolParams
    #: what the tool measures on every item it can measure: name -> unit (for SPC and historians)
    measures: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str, params: ToolParams, services: Services):
        self.name = name
        self.params = params
        self.services = services

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        raise NotImplementedError

    def run(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        """`inspect`, timed; a tool that raises gives an error result, and the item rejects."""
        t0 = time.perf_counter()
        try:
            r = self.inspect(image, ctx)
        except Exception as exc:
            log.warning("tool %s raised on %s: %s", self.name, ctx.item_id, exc)
            r = ToolResult(
                tool=self.name, version=self.version, error=f"{type(exc).__name__}: {exc}"
            )
        r.ms = (time.perf_counter() - t0) * 1000.0
        return r

    def result(
        self,
        findings: list[Finding] | None = None,
        codes: list[CodeRead] | None = None,
        model: dict[str, str] | None = None,
    ) -> ToolResult:
        return ToolResult(
            tool=self.name,
            version=self.version,
            findings=findings or [],
            codes=codes or [],
            model=model,
        )

    def finding(self, code: str, message: str = "", **kw: Any) -> Finding:
        return Finding(tool=self.name, code=code, message=message, **kw)

    def close(self) -> None:
        """Release resources (models, sessions)."""
