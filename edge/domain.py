"""The nouns every stage shares: Item, Finding, Verdict, reason codes, severities.

This module imports nothing else of the project, so any stage (and any plugin)
can depend on it without pulling the rest in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Verdict(str, Enum):
    PASS = "PASS"
    REJECT = "REJECT"


class Severity(str, Enum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


class Action(str, Enum):
    """What a finding does to the item's verdict (set per finding class by the recipe)."""

    REJECT = "reject"
    WARN = "warn"  # recorded and counted, does not reject
    IGNORE = "ignore"


class Reason(str, Enum):
    """Reason codes. A REJECT always carries at least one.

    Defect and check codes are the finding classes in upper case; the pipeline's own
    codes (TIMEOUT, TOOL_ERROR, ...) say why an item could not be proven good.
    """

    # the pipeline's fail-safe codes
    TIMEOUT = "TIMEOUT"  # no final verdict by the item's deadline
    TOOL_ERROR = "TOOL_ERROR"  # a configured tool raised
    TOOL_MISSING = "TOOL_MISSING"  # a configured tool did not report (positive release)
    IMAGE_ERROR = "IMAGE_ERROR"  # unreadable or malformed frame
    NOT_INSPECTED = "NOT_INSPECTED"  # pipeline overloaded: frame could not be queued
    NO_BATCH = "NO_BATCH"  # no batch running, nothing may pass
    PLC_LINK_LOST = "PLC_LINK_LOST"  # the gate never received this item's verdict
    MODEL_ERROR = "MODEL_ERROR"
    # vials
    LOW_FILL = "LOW_FILL"
    HIGH_FILL = "HIGH_FILL"
    MISSING_CAP = "MISSING_CAP"
    CAP_TILT = "CAP_TILT"
    CRACK = "CRACK"
    PARTICLE = "PARTICLE"
    SCRATCH = "SCRATCH"
    MISSING_LABEL = "MISSING_LABEL"
    NO_PRODUCT = "NO_PRODUCT"
    # blisters
    EMPTY_POCKET = "EMPTY_POCKET"
    BROKEN_TABLET = "BROKEN_TABLET"
    FOREIGN_TABLET = "FOREIGN_TABLET"
    # codes
    NO_READ = "NO_READ"
    NOT_GS1 = "NOT_GS1"
    BAD_CHECK_DIGIT = "BAD_CHECK_DIGIT"
    MISSING_AI = "MISSING_AI"
    GTIN_MISMATCH = "GTIN_MISMATCH"
    LOT_MISMATCH = "LOT_MISMATCH"
    EXPIRY_MISMATCH = "EXPIRY_MISMATCH"
    EXPIRED = "EXPIRED"
    SERIAL_INVALID = "SERIAL_INVALID"
    DUPLICATE_SERIAL = "DUPLICATE_SERIAL"
    LOW_GRADE = "LOW_GRADE"
    # appended later (numbers are append-only)
    LIGHTING = "LIGHTING"  # the frame is too dark for a tool to vouch for it (lamp ageing)
    NOT_RECORDED = "NOT_RECORDED"  # records cannot be written: nothing unrecorded passes
    ANOMALY = "ANOMALY"  # a region scores outside what the good-only model learned
    MISSING_VIEW = "MISSING_VIEW"  # a configured camera view of the item did not arrive in time
    OCV_MISMATCH = "OCV_MISMATCH"  # a printed human-readable field reads differently
    OCV_NO_READ = "OCV_NO_READ"  # the printed block or a field of it was not found
    PRINT_QUALITY = "PRINT_QUALITY"  # print contrast, character height or stroke below limits


#: Numeric reason codes for PLC registers (stable: append only, never renumber).
REASON_NUMBERS: dict[str, int] = {r.value: i + 1 for i, r in enumerate(Reason)}


@dataclass
class BatchState:
    """What the running batch expects of every pack (capture, inspection, outputs and the web
    UI all read it, so it lives with the other shared nouns)."""

    lot: str | None = None
    gtin: str | None = None
    expiry: str | None = None  # YYMMDD
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    """One box a detector found: what later tools (code finder, anomaly regions) read."""

    cls: str
    score: float
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels

    @classmethod
    def of(cls, d: dict[str, Any]) -> Detection:
        """From an inference backend's dict (`cls`, `score`, `bbox`)."""
        x, y, w, h = (float(v) for v in d["bbox"])
        return cls(str(d["cls"]), float(d["score"]), (x, y, w, h))


@dataclass(slots=True)
class Finding:
    """One observation by one tool. `code` is a reason code (or a recipe-defined class)."""

    tool: str
    code: str
    message: str = ""
    score: float | None = None
    value: float | None = None
    bbox: tuple[int, int, int, int] | None = None  # x, y, w, h in image pixels
    severity: Severity | None = None  # filled by the decision from the recipe
    action: Action | None = None
    #: tool-specific facts a person needs to judge the finding (JSON-serialisable), e.g. the
    #: OCV tool's field, expected and read text and per-character confidence
    detail: dict[str, Any] | None = None
    #: the camera view that saw it, on a station with several views (None: the only view)
    view: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tool": self.tool, "code": self.code}
        if self.view is not None:
            d["view"] = self.view
        if self.message:
            d["message"] = self.message
        for k in ("score", "value"):
            v = getattr(self, k)
            if v is not None:
                d[k] = round(float(v), 4)
        if self.bbox is not None:
            d["bbox"] = [int(v) for v in self.bbox]
        if self.severity is not None:
            d["severity"] = self.severity.value
        if self.action is not None:
            d["action"] = self.action.value
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(slots=True)
class CodeRead:
    """A decoded symbol, kept as the decoder gave it (GS separators, symbology identifier)."""

    text: str
    symbology: str  # e.g. "DataMatrix"
    symbology_id: str = ""  # e.g. "]d2"
    gs1: dict[str, str] | None = None  # AI -> value, when the content is GS1
    grade: float | None = None  # overall scan grade 0..4
    rung: str = ""  # which retry-ladder rung decoded it
    bbox: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "symbology": self.symbology}
        if self.symbology_id:
            d["symbology_id"] = self.symbology_id
        if self.gs1 is not None:
            d["gs1"] = dict(self.gs1)
        if self.grade is not None:
            d["grade"] = round(float(self.grade), 2)
        if self.rung:
            d["rung"] = self.rung
        if self.bbox is not None:
            d["bbox"] = [int(v) for v in self.bbox]
        return d


@dataclass(slots=True)
class ToolResult:
    """What one tool returned for one item: the proof it ran, and what it saw."""

    tool: str
    version: str
    findings: list[Finding] = field(default_factory=list)
    codes: list[CodeRead] = field(default_factory=list)
    model: dict[str, str] | None = None  # name, version, sha256 of a model that decided
    ms: float = 0.0
    error: str | None = None  # set when the tool raised
    # what the tool measured on this item, pass or reject (name -> value in the unit the tool
    # declares in `Tool.measures`), for process control: kept even when nothing rejects
    measurements: dict[str, float] = field(default_factory=dict)
    #: the camera view it ran on, on a station with several views (None: the only view)
    view: str | None = None


#: an encoder count is the PLC's 32-bit counter: it wraps (at 10 counts/mm, after 430 km of
#: belt, a few days of a fast line) and the gate's registers hold nothing else
ENCODER_MODULUS = 1 << 32


def encoder_count(raw: int) -> int:
    """A source's count as the PLC counts it: modulo 2**32. A camera counts its triggers from
    0 upwards without end and a count less a view's offset may fall below 0; written as it
    is, such a count reached the PLC as another number (the register wraps it) and the gate
    decision went to no unit."""
    return int(raw) % ENCODER_MODULUS


def count_delta(later: int, earlier: int) -> int:
    """Counts from `earlier` to `later` on the wrapping counter (negative: `later` is behind)."""
    d = (int(later) - int(earlier)) % ENCODER_MODULUS
    return d - ENCODER_MODULUS if d >= ENCODER_MODULUS // 2 else d


@dataclass(slots=True)
class Frame:
    """A captured image with the trigger that produced it."""

    image: np.ndarray | None
    t_trigger: float  # time.monotonic() at the trigger
    encoder: int = 0  # encoder count at the trigger
    source: str = ""
    name: str = ""  # file name or simulator id, for traceability
    truth: dict[str, Any] | None = None  # simulator ground truth, never used to decide
    error: str | None = None  # set when the frame could not be read
    reason: str | None = None  # reject code when image is None (default IMAGE_ERROR)
    frame_id: int | None = None  # the camera's frame (block) id, for traceability
    device_ts_ns: int | None = None  # the camera's own timestamp of the exposure
    #: the source's counts are comparable only within one epoch: a camera reopened while
    #: the encoder pulsed its input missed triggers it cannot know of (edge.line.views
    #: re-anchors such a view's counts against the other views' before it is trusted again)
    count_epoch: int = 0


@dataclass(slots=True)
class Item:
    """One product on the line, from trigger to final verdict.

    Registered as REJECT-unless-proven-good; stages only add to it.
    """

    id: str
    seq: int
    t_trigger: float  # monotonic
    deadline: float  # monotonic
    wall_trigger: float = field(default_factory=time.time)  # UTC epoch seconds
    encoder: int = 0  # the trigger's count as the PLC counts it (`encoder_count`)
    frame: Frame | None = None
    batch: str | None = None
    recipe: str = ""
    recipe_version: int | None = None  # the approved version judged it
    recipe_sha256: str | None = None  # that version's content hash
    # what the line expected at the trigger (the pipeline's batch, recipe and tools), so a
    # batch or recipe change while the item is in flight never changes how it is judged
    at_trigger: Any = None
    results: list[ToolResult] = field(default_factory=list)
    verdict: Verdict = Verdict.REJECT
    reasons: list[str] = field(default_factory=lambda: [Reason.TIMEOUT.value])
    t_final: float | None = None  # monotonic time the verdict became final
    image_sha256: str | None = None
    #: a multi-view station's frames by view name, matched by encoder count (None: one view,
    #: `frame` is it); `frame` is then the first view's frame, for traceability
    views: dict[str, Frame] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (the web UI) without the line's live trigger context
        (its tools hold sessions and locks, and no other process judges the item)."""
        state = {f: getattr(self, f) for f in self.__dataclass_fields__}
        state["at_trigger"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def codes(self) -> list[CodeRead]:
        return [c for r in self.results for c in r.codes]

    @property
    def measurements(self) -> dict[str, float]:
        """Every tool's measurements; a name two tools share is kept per tool (`tool.name`)."""
        return self.measured()

    def measured(self, *, in_spec_only: bool = False) -> dict[str, float]:
        """The measurements; with `in_spec_only`, only those of tools that found nothing.

        Process control charts the process inside its spec: a tilted cap the cap tool already
        rejected is a defect (counted by the reject-rate chart), not a point of the capper's
        trend, and one such outlier would move a sensitive chart on its own.
        """
        out: dict[str, float] = {}
        seen: dict[str, int] = {}
        for r in self.results:
            for k in r.measurements:
                seen[k] = seen.get(k, 0) + 1
        for r in self.results:
            if in_spec_only and (r.findings or r.error):
                continue
            for k, v in r.measurements.items():
                out[k if seen[k] == 1 else f"{r.tool}.{k}"] = v
        return out

    @property
    def models(self) -> list[dict[str, str]]:
        return [r.model for r in self.results if r.model]

    @property
    def latency_ms(self) -> float | None:
        if self.t_final is None:
            return None
        return (self.t_final - self.t_trigger) * 1000.0

    @property
    def timed_out(self) -> bool:
        return Reason.TIMEOUT.value in self.reasons
