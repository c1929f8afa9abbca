"""Prometheus metrics on the appliance's own registry.

Two feeds: a bus subscription (its own thread, so the pipeline never waits on it) for
per-item counters and latency histograms, and a collector that reads the components'
`status()` at scrape time (outbox, PLC round trip, component up/down). Status keys of
other components are read defensively: a missing key is a missing sample, not an error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.domain import Item, Verdict
from edge.ops.progress import Progress

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds; the deadline is typically 0.25 s, tools take milliseconds
_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0)
_TOOL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)


def find_number(status: Any, *keys: str) -> float | None:
    """The first numeric value under any of `keys`, searching nested dicts breadth-first."""
    queue = [status]
    while queue:
        d = queue.pop(0)
        if not isinstance(d, dict):
            continue
        for k in keys:
            v = d.get(k)
            if isinstance(v, bool):
                continue
            if isinstance(v, int | float):
                return float(v)
        queue.extend(v for v in d.values() if isinstance(v, dict))
    return None


def component(app: Any, *prefixes: str) -> Any:
    for c in getattr(app, "components", []):
        name = str(getattr(c, "name", ""))
        if any(name == p or name.startswith(p) for p in prefixes):
            return c
    return None


def safe_status(c: Any) -> dict[str, Any]:
    try:
        st = c.status()
        return st if isinstance(st, dict) else {"up": False, "detail": "bad status"}
    except Exception as exc:
        return {"up": False, "detail": f"status failed: {exc}"}


OUTBOX_DEPTH_KEYS = ("outbox_depth", "outbox", "backlog", "depth", "pending")
OUTBOX_AGE_KEYS = ("outbox_age_s", "outbox_oldest_age_s", "oldest_age_s", "age_s", "backlog_age_s")
PLC_RTT_KEYS = ("rtt_ms", "round_trip_ms", "roundtrip_ms", "last_rtt_ms", "rtt_p50_ms")


def _records(rec: Any) -> Iterator[Any]:
    """The recorder's state: what a full or slow disk does to the records."""
    if rec is None:
        return
    st = rec.status()
    for name, key, text in (
        ("edge_records_backlog", "backlog", "final items waiting for the recorder"),
        ("edge_records_not_recorded", "not_recorded", "items rejected NOT_RECORDED"),
        ("edge_records_held_rows", "pending_rows", "rows held until the database takes writes"),
        ("edge_records_images_failed", "images_failed", "evidence images that failed to write"),
        ("edge_records_images_skipped", "images_skipped", "images not kept: writer behind"),
    ):
        yield GaugeMetricFamily(name, text, value=float(st.get(key) or 0))
    if st.get("free_mb") is not None:
        yield GaugeMetricFamily(
            "edge_records_free_bytes",
            "free space under the state directory",
            value=float(st["free_mb"]) * 1024 * 1024,
        )
    yield GaugeMetricFamily(
        "edge_records_writable",
        "1 while records can be written",
        value=0.0 if st["failing"] else 1.0,
    )


class _StatusCollector(Collector):
    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self) -> Iterator[Any]:
        app = self.m.app
        up = GaugeMetricFamily(
            "edge_component_up", "1 when the component reports up", labels=["component"]
        )
        outbox_depth = outbox_age = plc_rtt = None
        commands: dict[str, Any] | None = None
        for c in getattr(app, "components", []):
            st = safe_status(c)
            name = str(getattr(c, "name", "?"))
            up.add_metric([name], 1.0 if st.get("up") else 0.0)
            # the JSON publisher, else the Sparkplug node (`mqtt.encoding: sparkplug`)
            if name.startswith(("mqtt", "publish", "sparkplug")) and outbox_depth is None:
                outbox_depth = find_number(st, *OUTBOX_DEPTH_KEYS)
                outbox_age = find_number(st, *OUTBOX_AGE_KEYS)
                commands = st.get("commands") if isinstance(st.get("commands"), dict) else None
            if name.startswith("plc"):
                plc_rtt = find_number(st, *PLC_RTT_KEYS)
        yield up
        spc = component(app, "spc")
        if spc is not None:
            st = safe_status(spc)
            dev = CounterMetricFamily(
                "edge_spc_deviations",
                "process-control deviation alerts in this batch, by measurement",
                labels=["measure"],
            )
            for measure, n in sorted((st.get("by_measure") or {}).items()):
                dev.add_metric([measure], n)
            yield dev
        if commands is not None:
            yield from _command_metrics(commands)
        db_depth, db_age = self.m.outbox_from_db()
        outbox_depth = db_depth if db_depth is not None else outbox_depth
        outbox_age = db_age if db_depth is not None else outbox_age
        if outbox_depth is not None:
            yield GaugeMetricFamily(
                "edge_outbox_depth",
                "messages recorded but not yet acknowledged by the broker",
                value=outbox_depth,
            )
        if outbox_age is not None:
            yield GaugeMetricFamily(
                "edge_outbox_oldest_age_seconds",
                "age of the oldest unacknowledged message",
                value=outbox_age,
            )
        if plc_rtt is not None:
            yield GaugeMetricFamily(
                "edge_plc_round_trip_seconds",
                "last PLC request/response round trip",
                value=plc_rtt / 1000.0,
            )
        pipeline = self.m.pipeline
        alarms = GaugeMetricFamily("edge_alarms_active", "active alarms", labels=["severity"])
        counts: dict[str, int] = {}
        for a in pipeline.alarms.active():
            counts[a.severity] = counts.get(a.severity, 0) + 1
        for sev in ("critical", "major", "minor", "maintenance"):
            alarms.add_metric([sev], counts.pop(sev, 0))
        for sev, n in counts.items():
            alarms.add_metric([sev], n)
        yield alarms
        yield GaugeMetricFamily(
            "edge_camera_fps", "frames per second over the last 10 s", value=self.m.camera_fps()
        )
        yield GaugeMetricFamily(
            "edge_seconds_since_last_frame",
            "time since the camera delivered a frame",
            value=max(0.0, time.monotonic() - getattr(pipeline, "last_frame_at", time.monotonic())),
        )
        yield GaugeMetricFamily(
            "edge_inflight_items",
            "items registered and not yet final",
            value=pipeline.tracker.in_flight() if hasattr(pipeline, "tracker") else 0,
        )
        yield from _records(getattr(pipeline, "recorder", None))
        dropped = GaugeMetricFamily(
            "edge_bus_dropped_events", "events a slow subscriber had to drop", labels=["subscriber"]
        )
        for sub in pipeline.bus.subscriptions():
            dropped.add_metric([sub.name], sub.dropped)
        yield dropped
        info = InfoMetricFamily("edge_model", "models that decided items", labels=["tool"])
        for tool, model in sorted(self.m.models.items()):
            info.add_metric(
                [tool],
                {k: str(model.get(k, "")) for k in ("name", "version", "sha256")},
            )
        yield info
        trends = self.m.trend_samples()
        if trends:
            val = GaugeMetricFamily(
                "edge_maintenance_value", "latest trended value", labels=["measure", "camera"]
            )
            eta = GaugeMetricFamily(
                "edge_maintenance_hours_to_limit",
                "predicted hours until the measure crosses its limit (absent: not approaching)",
                labels=["measure", "camera"],
            )
            for t in trends:
                labels = [t["measure"], t["camera"]]
                val.add_metric(labels, t["value"])
                if t.get("eta_h") is not None:
                    eta.add_metric(labels, t["eta_h"])
            yield val
            yield eta


def _command_metrics(st: dict[str, Any]) -> Iterator[Any]:
    """MES commands over MQTT: what was applied, refused (by code), only counted, ignored."""
    for key, name, doc in (
        ("accepted", "edge_mqtt_commands_accepted_total", "MES commands applied"),
        (
            "refusals_not_audited",
            "edge_mqtt_command_refusals_not_audited_total",
            "refused commands beyond the per-interval audit quota (in the summary row only)",
        ),
        (
            "retained_ignored",
            "edge_mqtt_retained_commands_ignored_total",
            "retained commands ignored (never applied)",
        ),
        ("dropped", "edge_mqtt_commands_dropped_total", "commands dropped: queue full"),
    ):
        yield CounterMetricFamily(name, doc, value=float(st.get(key) or 0))
    refused = CounterMetricFamily(
        "edge_mqtt_commands_refused_total", "MES commands refused, by code", labels=["code"]
    )
    for code, n in sorted((st.get("refused") or {}).items()):
        refused.add_metric([str(code)], float(n))
    yield refused


class Metrics:
    """The appliance's metrics. One per appliance: `Metrics.of(app)`."""

    name = "metrics"

    def __init__(self, app: Any):
        self.app = app
        self.pipeline = getattr(app, "pipeline", app)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "edge_item_latency_seconds",
            "trigger to final verdict",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_latency = Histogram(
            "edge_tool_latency_seconds",
            "time one tool took on one item",
            ["tool"],
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self.items = Counter("edge_items", "final verdicts", ["verdict"], registry=r)
        self.rejects = Counter("edge_rejects", "rejects by reason code", ["reason"], registry=r)
        self.deadline_misses = Counter(
            "edge_deadline_misses", "items rejected because no verdict came in time", registry=r
        )
        self.camera_stalls = Counter("edge_camera_stalls", "camera stall alarms raised", registry=r)
        self.alarms_raised = Counter(
            "edge_alarms_raised", "alarms raised", ["code", "severity"], registry=r
        )
        self.up_since = Gauge("edge_start_time_seconds", "process start (unix time)", registry=r)
        self.up_since.set(time.time())
        for v in Verdict:
            self.items.labels(v.value)
        self.models: dict[str, dict[str, str]] = {}
        self._frames: deque[float] = deque(maxlen=4096)
        self._trends: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.progress = Progress.of(app)
        r.register(_StatusCollector(self))
        bus = self.pipeline.bus
        self.subscription = bus.subscribe(
            ["verdict", "alarm", "trend"], self._on_event, name="metrics"
        )

    @classmethod
    def of(cls, app: Any) -> Metrics:
        with _ATTACH:
            m = getattr(app, "_ops_metrics", None)
            if m is None:
                m = cls(app)
                app._ops_metrics = m
        return m

    # component protocol: it runs on its bus subscription, nothing to start
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"up": True, "dropped": self.subscription.dropped}

    # ------------------------------------------------------------------ feed

    def _on_event(self, topic: str, event: Any) -> None:
        if topic == "verdict":
            self.observe(event)
        elif topic == "alarm" and isinstance(event, dict) and event.get("event") == "raised":
            self.alarms_raised.labels(str(event.get("code")), str(event.get("severity"))).inc()
            if event.get("code") == "CAMERA_STALL":
                self.camera_stalls.inc()
        elif topic == "trend" and isinstance(event, dict):
            with self._lock:
                self._trends[(str(event.get("measure")), str(event.get("camera")))] = event

    def observe(self, item: Item) -> None:
        self.items.labels(item.verdict.value).inc()
        if item.verdict is Verdict.REJECT:
            for reason in item.reasons:
                self.rejects.labels(reason).inc()
        if item.timed_out:
            self.deadline_misses.inc()
        lat = item.latency_ms
        if lat is not None:
            self.latency.observe(lat / 1000.0)
        for r in item.results:
            self.tool_latency.labels(r.tool).observe(r.ms / 1000.0)
            if r.model:
                self.models[r.tool] = r.model
        with self._lock:
            self._frames.append(item.t_trigger)

    def outbox_from_db(self) -> tuple[float | None, float | None]:
        """Depth and oldest age of the outbox table (rows leave it when the broker acks)."""
        cfg = getattr(self.app, "cfg", None)
        db = getattr(self.pipeline, "db", None)
        if db is None or cfg is None or not cfg.mqtt.enabled:
            return None, None
        try:
            n, oldest = db.conn.execute("SELECT COUNT(*), MIN(created_utc) FROM outbox").fetchone()
        except Exception:
            return None, None
        return float(n), (max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    def camera_fps(self, horizon_s: float = 10.0) -> float:
        now = time.monotonic()
        with self._lock:
            times = [t for t in self._frames if now - t <= horizon_s]
        if len(times) < 2:
            return 0.0
        span = max(now - min(times), 1e-6)
        return len(times) / min(span, horizon_s)

    def trend_samples(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._trends.values())

    def render(self) -> bytes:
        return generate_latest(self.registry)


_ATTACH = threading.Lock()


def build(app: Any) -> Metrics:
    return Metrics.of(app)
