"""The appliance: the pipeline plus the components config turns on (PLC, MQTT, web UI, ...).

Each component is built by a factory listed in COMPONENTS (imported lazily) that
returns an object with `start()`, `stop()` and `status() -> dict`, or None when the
config leaves it off. A new output is a new module plus one line here.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any, Protocol

from edge import plugins
from edge.capture.base import Source, open_source
from edge.config import AppConfig
from edge.domain import BatchState
from edge.inspect.base import Services
from edge.inspect.grade import GradeTrend
from edge.pipeline import Pipeline
from edge.recipes.challenge import ChallengeFailed
from edge.recipes.changeover import Changeover
from edge.sim.serialisation import SerialCursor
from edge.store.restarts import audit_start, audit_stop
from edge.store.serials import SerialRegistry

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


#: Factories `build(app) -> Component | None`, in start order (outputs before the web UI).
COMPONENTS: list[str] = [
    "edge.line.plc.component:build",
    "edge.publish.mqtt:build",
    "edge.publish.sparkplug:build",
    "edge.line.packml:build",
    "edge.spc.component:build",
    "edge.recipes.component:build",
    "edge.ops.metrics:build",
    "edge.ops.maintenance:build",
    "edge.ops.camera_health:build",
    "edge.ops.logs:build",
    "edge.ops.watchdog:build",
    "edge.web.isolated:build",
]


def simulator_batch(source: Source) -> BatchState | None:
    sim = getattr(source, "sim", None)
    return getattr(sim, "batch", None)


class Appliance:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        source: Source | None = None,
        batch: BatchState | None = None,
        components: bool = True,
    ):
        self.cfg = cfg
        state = Path(cfg.records.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if batch is None and cfg.batch is not None:
            batch = BatchState(cfg.batch.lot, cfg.batch.gtin, cfg.batch.expiry)
        if source is None:
            source = (
                open_source(cfg.source, batch=batch)
                if cfg.source.type == "simulator"
                else open_source(cfg.source)
            )
        if batch is None:
            batch = simulator_batch(source)
        if hasattr(source, "continue_serials"):  # a restart prints new serials, never old ones
            source.continue_serials(SerialCursor(state / "serialisation.json"))
        self.services = Services(
            serials=_serial_registry(state, cfg.records.synchronous), grade_trend=GradeTrend()
        )
        self.pipeline = Pipeline(cfg, source=source, services=self.services)
        self.audit = _audit_trail(self.pipeline.db)
        # changeover by GTIN, and the challenge every batch start must pass
        self.changeover = Changeover(self.pipeline, self.audit, cfg.challenge.at_batch_start)
        self.pipeline.before_batch = self.changeover.gate
        found = self.pipeline.batch  # open in the records: a restart resumes it
        ended, started = None, None
        if batch is not None and (found is None or found.lot != batch.lot):
            try:
                started = self.pipeline.start_batch(batch, by="config")
                ended = found
            except ChallengeFailed as exc:  # raised as an alarm; the line runs without batch
                log.error("the batch of the config did not start: %s", exc)
        if found is not None and started is None:  # a resumed batch: its product's exposure
            self.changeover.resume_camera()
        if self.audit is not None:  # never silent: the restart and the resumed batch
            _audited(
                audit_start, self.audit, self.pipeline, found=found, ended=ended, started=started
            )
        self.components: list[Any] = []
        if components:
            for target in COMPONENTS:
                factory = plugins.load("component", {target: target}, target)
                comp = factory(self)
                if comp is not None:
                    self.components.append(comp)

    def start(self) -> None:
        sys.setswitchinterval(self.cfg.pipeline.switch_interval_ms / 1000.0)
        for c in self.components:
            c.start()
        self.pipeline.start()

    def stop(self) -> None:
        self.pipeline.stop()
        for c in reversed(self.components):
            try:
                c.stop()
            except Exception:
                log.exception("stopping %s", getattr(c, "name", c))
        self.services.serials.close()
        if self.audit is not None:
            _audited(audit_stop, self.audit, self.pipeline)

    def status(self) -> dict[str, Any]:
        out = {"pipeline": self.pipeline.stats.snapshot()}
        for c in self.components:
            try:
                out[c.name] = c.status()
            except Exception as exc:
                out[getattr(c, "name", "?")] = {"up": False, "error": str(exc)}
        return out


def _audited(fn: Any, *args: Any, **kw: Any) -> None:
    """A start or stop entry that cannot be written (disk full, read-only) is logged and raised
    as an alarm; it does not keep the line from starting or stopping."""
    try:
        fn(*args, **kw)
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot write the audit trail: %s", exc)
        args[1].alarms.raise_("AUDIT_FAILED", f"cannot write the audit trail: {exc}", "major")


def _serial_registry(state: Path, synchronous: str) -> SerialRegistry:
    return SerialRegistry(state / "serials.db", synchronous=synchronous)


def _audit_trail(db: Any) -> Any:
    """The hash-chained audit trail (edge.store.audit), or None before it exists."""
    try:
        from edge.store.audit import AuditTrail
    except ImportError:
        return None
    return AuditTrail(db)
