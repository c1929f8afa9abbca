"""The appliance's one YAML file, as pydantic models: pure schema, nothing heavy imported.

Sources, inference backends and PLC adapters are discriminated unions keyed by `type`;
each member is a config class that names its implementation (`impl`, see `edge.plugins`),
imported only when chosen. Backend and PLC configs live beside their implementations
(`edge.inference.config`, `edge.line.plc.config`) and are re-exported here. Tool
parameters are validated by each tool's parameter model (`edge.inspect.params`), which
imports no image or inference library, so checking a file never needs OpenCV.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.capture.genicam_config import GenICamSource
from edge.capture.simulator_config import (  # noqa: F401
    EncoderConfig,
    ProcessDrift,
    Scenario,
    SimulatorSource,
)
from edge.domain import Action, Severity
from edge.inference.config import BackendConfig, OnnxBackend, TensorRTBackend  # noqa: F401
from edge.line.plc.config import (  # noqa: F401
    GpioPLC,
    ModbusPLC,
    NoPLC,
    OpcUaPLC,
    PLCConfig,
    SimPLC,
)
from edge.ops.config import OpsConfig
from edge.publish.policy import CommandsConfig
from edge.publish.sparkplug_config import SparkplugConfig
from edge.recipes.challenge_config import ChallengeConfig
from edge.spc.config import SpcConfig
from edge.taxonomy import recipe_defaults


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- station


class StationConfig(Strict):
    """Where the appliance sits, in ISA-95 terms (also the MQTT topic prefix)."""

    id: str = "edge-01"
    enterprise: str = "acme"
    site: str = "site1"
    area: str = "packaging"
    line: str = "line1"
    cell: str = "inspect1"


# --------------------------------------------------------------------------- sources


class FolderSource(Strict):
    type: Literal["folder"] = "folder"
    impl: ClassVar[str] = "edge.capture.folder:FolderCapture"
    path: Path
    rate_per_min: float | None = Field(None, gt=0, description="None: as fast as inspected")
    loop: bool = False
    truth: Path | None = Field(None, description="truth.jsonl to attach (evaluation only)")


class OpenCVSource(Strict):
    """USB camera (index), video file, RTSP/HTTP URL."""

    type: Literal["opencv"] = "opencv"
    impl: ClassVar[str] = "edge.capture.opencv:OpenCVCapture"
    device: int | str = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    reconnect_backoff_s: tuple[float, float] = (0.5, 10.0)


class GStreamerSource(Strict):
    """Any GStreamer pipeline ending in appsink (Jetson CSI: nvarguscamerasrc ...)."""

    type: Literal["gstreamer"] = "gstreamer"
    impl: ClassVar[str] = "edge.capture.opencv:GStreamerCapture"
    pipeline: str
    reconnect_backoff_s: tuple[float, float] = (0.5, 10.0)

    @field_validator("pipeline")
    @classmethod
    def _ends_in_appsink(cls, v: str) -> str:
        if "appsink" not in v:
            raise ValueError("a GStreamer pipeline must end in an appsink element")
        return v


#: every source the `source:` section may name (a new source: its config class here)
SourceConfig = Annotated[
    Union[SimulatorSource, FolderSource, OpenCVSource, GStreamerSource, GenICamSource],
    Field(discriminator="type"),
]


class ViewConfig(Strict):
    """One camera view of a multi-view station: its source and the recipe tools it runs."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceConfig | None = Field(
        None, description="None: the station's `source` (a simulator: this view's index)"
    )
    tools: list[str] | None = Field(
        None, description="names of the active recipe's tools to run here (None: all)"
    )
    encoder_offset: int = Field(
        0, description="encoder counts from the item's trigger to this camera's trigger"
    )
    look: Literal["side", "top", "label"] = Field(
        "side",
        description="where the camera looks from: beside the item (side), down on its cap "
        "(top, the last view) or close up at its label's code and text (label, not the first "
        "view); a simulated station, and the challenge units, render each view from there",
    )


# --------------------------------------------------------------------------- pipeline


class PipelineConfig(Strict):
    workers: int = Field(2, ge=1, le=32)
    deadline_ms: float = Field(250.0, gt=0, description="trigger -> final verdict")
    queue_size: int = Field(16, ge=1)
    view_wait_ms: float | None = Field(
        None,
        gt=0,
        description="multi-view: a view not here by then is MISSING_VIEW (None: 60 % of the deadline)",
    )
    view_tolerance_counts: int = Field(
        100,
        ge=0,
        description="multi-view: encoder counts a view's frame may differ from its item's",
    )
    stall_timeout_s: float = Field(2.0, gt=0, description="no frame for this long: camera stall")
    switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Python thread switch interval: short, so inspection threads waiting for "
        "the interpreter lock are not held up by the web server (Python's default is 5 ms)",
    )


class RecordsConfig(Strict):
    state_dir: Path = Path(os.environ.get("EDGE_STATE_DIR", "var"))
    sample_pass_every: int = Field(50, ge=0, description="keep every Nth PASS image (0: none)")
    keep_reject_images: bool = True
    keep_view_images: bool = Field(
        True,
        description="several views: each view's own image kept besides the side-by-side one "
        "(a technician labels one camera's image; twice the disk per kept item)",
    )
    synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    # A full disk must fail safe (see docs/deployment.md, "When the disk fills"): evidence
    # images are given up step by step, so the database keeps its reserve.
    max_backlog: int = Field(
        200, ge=1, description="final items waiting for the recorder; beyond: REJECT NOT_RECORDED"
    )
    pass_images_min_free_mb: float = Field(
        1000, ge=0, description="free space below which pass samples are no longer kept"
    )
    reject_images_min_free_mb: float = Field(
        500, ge=0, description="free space below which reject images are no longer kept"
    )
    min_free_mb: float = Field(
        100, ge=0, description="the database's reserve: below it, a line-stop alarm, /readyz 503"
    )
    disk_hysteresis_mb: float = Field(
        20, ge=0, description="a step clears only when free space is this much above it"
    )

    @model_validator(mode="after")
    def _disk_steps_in_order(self) -> RecordsConfig:
        if not (self.pass_images_min_free_mb >= self.reject_images_min_free_mb >= self.min_free_mb):
            raise ValueError(
                "free-space steps must satisfy pass_images_min_free_mb >= "
                "reject_images_min_free_mb >= min_free_mb (pass samples are given up first)"
            )
        return self


# --------------------------------------------------------------------------- inference


def default_models_dir() -> Path:
    """`EDGE_MODELS_DIR`, else `./models`, else the models shipped beside the package."""
    env = os.environ.get("EDGE_MODELS_DIR")
    if env:
        return Path(env)
    here = Path("models")
    if here.is_dir():
        return here
    shipped = Path(__file__).resolve().parent.parent / "models"
    return shipped if shipped.is_dir() else here


class InferenceConfig(Strict):
    backend: BackendConfig = Field(default_factory=OnnxBackend)
    models_dir: Path = Field(default_factory=default_models_dir)


# --------------------------------------------------------------------------- recipes


class ClassRule(Strict):
    severity: Severity = Severity.MAJOR
    action: Action = Action.REJECT


class ToolSpec(BaseModel):
    """One tool in a recipe: `type` picks the tool, the other keys are its parameters."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Acceptance(Strict):
    """What a model change must show, item by item through the whole recipe, before approval."""

    max_critical_escape_rate: float = Field(0.001, ge=0, le=1)
    max_false_reject_rate: float = Field(0.003, ge=0, le=1)


class Recipe(Strict):
    name: str
    scenario: Scenario | None = None
    description: str = ""
    tools: list[ToolSpec] = Field(default_factory=list)
    classes: dict[str, ClassRule] = Field(default_factory=dict)
    require_batch: bool = False
    deadline_ms: float | None = Field(None, gt=0, description="overrides pipeline.deadline_ms")
    consecutive_rejects_stop: int = Field(0, ge=0, description="line-stop after N rejects in a row")
    acceptance: Acceptance = Field(default_factory=Acceptance)
    spc: SpcConfig | None = Field(
        None, description="statistical process control of this product (None: off, said once)"
    )

    @model_validator(mode="after")
    def _tools_valid(self) -> Recipe:
        from edge.inspect.registry import validate_tool_spec

        names = set()
        problems: list[tuple[str, str]] = []  # every bad tool, not only the first
        for i, spec in enumerate(self.tools):
            n = spec.name or spec.type
            try:
                validate_tool_spec(spec)
            except ValueError as exc:
                problems.append((f"tools.{i} ({n})", str(exc).removeprefix(f"tool {n!r}: ")))
            if n in names:
                problems.append((f"tools.{i} ({n})", "two tools of this name: give one a `name`"))
            names.add(n)
        if problems:
            raise KeyedErrors(problems)
        return self

    def rule(self, code: str) -> ClassRule:
        """Unknown classes reject as major: a code nobody configured is doubt, not a pass."""
        return self.classes.get(code, ClassRule())


class BatchConfig(Strict):
    lot: str
    gtin: str | None = None
    expiry: str | None = Field(None, description="YYMMDD as printed in AI (17)")
    recipe: str | None = None
    operator: str | None = None


# --------------------------------------------------------------------------- outputs


class TLSConfig(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


class MqttConfig(Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = Field(None, description="secret read from a file, never inline")
    tls: TLSConfig | None = None
    keepalive_s: int = 10
    replay_rate_per_s: float = Field(200.0, gt=0, description="backlog replay rate after an outage")
    encoding: Literal["json", "sparkplug", "both"] = Field(
        "json", description="ISA-95 JSON topics, Sparkplug B 3.0 (`sparkplug`), or both at once"
    )
    max_inflight: int = Field(200, ge=1, description="results handed to the client, not yet acked")
    max_command_bytes: int = Field(16384, ge=256, description="larger commands are refused")
    counters_interval_s: float = Field(5.0, gt=0)
    commands: CommandsConfig = Field(
        default_factory=CommandsConfig, description="who may send MES commands (deny by default)"
    )
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)


class TrackingConfig(Strict):
    """Encoder tracking to the reject gate: a verdict must reach the PLC before the item does."""

    encoder: EncoderConfig | None = Field(
        None,
        description="belt geometry; None: the simulator source's encoder, else no gate deadline",
    )
    belt_mm_s: float | None = Field(
        None, gt=0, description="belt speed; None: measured from the triggers' encoder counts"
    )
    write_budget_ms: float = Field(5.0, ge=0, description="time kept for the PLC write itself")
    confirm_grace_ms: float = Field(
        250.0, ge=0, description="a reject not confirmed this long after the gate: line stop"
    )


class WebConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    session_key_file: Path | None = Field(
        None,
        description="secret (32+ characters) that signs the login form's CSRF token; relative "
        "paths are read from $CREDENTIALS_DIRECTORY. None: a random key per start of the web "
        "process (an open login page then needs a reload after a restart)",
    )
    session_timeout_min: int = 30
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto",
        description="`Secure` flag on the session and login cookies. auto: when the request "
        "came over TLS (directly, or as a trusted proxy's X-Forwarded-Proto says); always: "
        "TLS is terminated somewhere that does not say so",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto "
        "headers are believed (the client's address for login limits, TLS for cookies); "
        "empty: no forwarded header is believed",
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        le=64 * 1024 * 1024,  # untrusted_images.LARGEST
        description="largest image (width x height) the web UI decodes from an upload; "
        "checked in the file's header before decoding (3 bytes a pixel once decoded)",
    )
    isolated: bool = Field(
        True,
        description="serve the web UI from its own process, so its requests never hold the "
        "interpreter lock the inspection threads need (off: a thread of the line's process)",
    )
    nice: int = Field(12, ge=0, le=19, description="CPU priority of the web process below the line")
    sched_idle: bool = Field(
        False,
        description="run the web process under SCHED_IDLE (Linux) instead of `nice`. Both keep "
        "the line's p99 within 10 % with 50 panels and a training run (bench/web_load.py); "
        "off by default because under SCHED_IDLE the panels get no CPU at all while the line "
        "keeps both cores busy, and `nice` still gives them a small share",
    )


# --------------------------------------------------------------------------- root


class AppConfig(Strict):
    station: StationConfig = Field(default_factory=StationConfig)
    source: SourceConfig = Field(default_factory=SimulatorSource)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    records: RecordsConfig = Field(default_factory=RecordsConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    recipe: str | None = Field(
        None, description="active recipe; None: the source scenario's default"
    )
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    batch: BatchConfig | None = None
    challenge: ChallengeConfig = Field(default_factory=ChallengeConfig)
    plc: PLCConfig = Field(default_factory=NoPLC)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    views: list[ViewConfig] = Field(
        default_factory=list, description="several cameras per item (empty: the one `source`)"
    )

    @model_validator(mode="after")
    def _merge_default_recipes(self) -> AppConfig:
        merged = {**default_recipes(), **self.recipes}
        self.recipes = merged
        if self.recipe is not None and self.recipe not in merged:
            raise ValueError(f"recipe {self.recipe!r} is not defined (known: {sorted(merged)})")
        if self.batch and self.batch.recipe and self.batch.recipe not in merged:
            raise ValueError(f"batch.recipe {self.batch.recipe!r} is not defined")
        if self.mqtt.enabled and self.mqtt.encoding != "json":
            self.mqtt.sparkplug.ids(self.station)  # ids derived from the station: valid ones
        be = self.inference.backend
        if be.type == "tensorrt":
            if be.cache_dir is None:  # the state dir is writable; the models folder is not
                be.cache_dir = Path(self.records.state_dir) / "engines"
            problems = _tensorrt_precision_conflicts(be.int8, merged)
            if problems:
                raise ValueError("\n  ".join(problems))
        if self.views:
            from edge.line.views import check_views

            check_views(self.views, self.active_recipe())
            if self.source.type != "simulator" and any(v.source is None for v in self.views):
                raise ValueError("views: each view needs its own `source` (one camera per view)")
            counting = any(v.source is not None and v.source.type == "genicam" for v in self.views)
            if counting and self.pipeline.view_tolerance_counts != 0:
                raise ValueError(  # a camera's encoder value counts triggers: 1 per item
                    "pipeline.view_tolerance_counts: must be 0 with GenICam views "
                    "(their frames carry trigger counts, one per item)"
                )
        return self

    def active_recipe(self) -> Recipe:
        name = (self.batch.recipe if self.batch and self.batch.recipe else None) or self.recipe
        if name is None:
            name = getattr(self.source, "scenario", None) or "vials"
        return self.recipes[name]


def _tensorrt_precision_conflicts(int8: bool, recipes: dict[str, Recipe]) -> list[str]:
    """The detector tools' `precision` picks the file (int8: the Q/DQ file, fp32: the
    reference); the TensorRT backend's `int8` must say the same, or the engine build fails
    on the line instead of here."""
    want = "int8" if int8 else "fp32"
    out = []
    for rname, recipe in recipes.items():
        for i, tool in enumerate(recipe.tools):
            if tool.type != "defects":
                continue
            prec = tool.params.get("precision", "int8")
            if prec != want:
                out.append(
                    f"recipes.{rname}.tools.{i}.precision: {prec!r} contradicts "
                    f"inference.backend.int8: {str(int8).lower()} (TensorRT builds "
                    f"{'only from the INT8 Q/DQ file' if int8 else 'the FP32 file'}); "
                    f"set precision: {want} or int8: {str(prec == 'int8').lower()}"
                )
    return out


# --------------------------------------------------------------------------- loading

_DEFAULTS = resources.files("edge") / "defaults"


def default_recipes() -> dict[str, Recipe]:
    """The recipes shipped in the package, one per simulator scenario.

    Their class tables and detector classes come from the taxonomy where the YAML is silent.
    """
    out: dict[str, Recipe] = {}
    for entry in sorted(_DEFAULTS.joinpath("recipes").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = recipe_defaults(yaml.safe_load(entry.read_text()))
            out[data["name"]] = Recipe.model_validate(data)
    return out


class KeyedErrors(ValueError):
    """Several problems inside one value, each with its key path below it."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))


class ConfigError(Exception):
    """A config that must not start the line; `errors` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for e in exc.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(root)"
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, KeyedErrors):
            lines.extend(f"{path}.{k}: {m}" for k, m in inner.problems)
        else:
            lines.append(f"{path}: {e['msg']}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> AppConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(root): the config must be a mapping of keys to values"])
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(exc)) from None


def load_config(path: str | Path | None = None) -> AppConfig:
    """Load a YAML config; None gives the embedded simulator demo."""
    if path is None:
        text = _DEFAULTS.joinpath("demo.yaml").read_text()
        return parse_config(yaml.safe_load(text), "embedded demo config")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(p), [f"(yaml): {where}{getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, str(p))
