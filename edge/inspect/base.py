"""The one small protocol every inspection tool speaks: image + context in, findings out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edge.domain import CodeRead, Finding, ToolResult

log = logging.getLogger(__name__)


class ToolParams(BaseModel):
    """Base of every tool's parameter model (the recipe's keys for that tool)."""

    model_config = ConfigDict(extra="forbid")
    #: the tool these parameters configure, "module:Class", imported when the tool is built
    impl: ClassVar[str] = ""
    #: the smallest recipe entry that builds the tool, where it has required keys
    example: ClassVar[dict[str, Any]] = {}


@dataclass
class BatchState:
    """What the running batch expects of every pack."""

    lot: str | None = None
    gtin: str | None = None
    expiry: str | None = None  # YYMMDD
    id: str | None = None


@dataclass
class ToolContext:
    """Per-item context handed to each tool, in recipe order."""

    item_id: str
    seq: int
    deadline: float  # monotonic; tools with optional extra work stop before it
    batch: BatchState | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # earlier tools' outputs (e.g. detections)
    now: float = 0.0  # wall clock (epoch s) at the trigger, for expiry checks

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class Services:
    """Long-lived things tools may need (serial registry, model registry); filled by the pipeline."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)


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
