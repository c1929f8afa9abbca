"""What the edge node reports in Sparkplug metrics, and which of them changed.

Node (the appliance): `bdSeq`, `Node Control/Rebirth`, `Properties/*`, `Outbox/Held`.
Device (the inspection station): counters (per reason code too), rate, latency, yield,
the last result (its outbox seq, item, verdict, reasons, and the whole v1 result message
as JSON for a host that wants every field), batch, recipe (name and a digest of its
configuration, so a changed recipe under the same name is seen), models (name and
version of the last result's), PackML state and alarms.

Every metric a DATA message may carry is in the birth (tck-id-topics-nbirth-metric-reqs);
reason codes are the fixed list of `edge.domain.Reason`, so a new reason never needs a
rebirth. Data messages are report by exception: only the metrics that changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from edge import __version__
from edge.domain import REASON_NUMBERS
from edge.publish.sparkplug_payload import DataType, Metric, iso_ms

D = DataType
SEVERITIES = ("critical", "major", "minor", "maintenance")

#: the last result's metrics, in the order a host sees them (all in every result DDATA)
RESULT_METRICS: tuple[tuple[str, DataType], ...] = (
    ("Last Result/Seq", D.UInt64),
    ("Last Result/Item ID", D.String),
    ("Last Result/Item Seq", D.UInt64),
    ("Last Result/Verdict", D.String),
    ("Last Result/Reasons", D.String),
    ("Last Result/Trigger Time", D.DateTime),
    ("Last Result/Latency ms", D.Double),
    ("Last Result/Models", D.String),
    ("Last Result/Message", D.String),
)


def node_birth(bdseq: int, station: str, path: str, held: int) -> list[Metric]:
    return [
        Metric("bdSeq", D.Int64, bdseq),
        Metric("Node Control/Rebirth", D.Boolean, False),
        Metric("Properties/Software", D.String, f"edge-inspect {__version__}"),
        Metric("Properties/Station", D.String, station),
        Metric("Properties/ISA-95 Path", D.String, path),
        Metric("Outbox/Held", D.UInt64, held),
    ]


def result_metrics(seq: int, msg: dict[str, Any], historical: bool) -> list[Metric]:
    """One recorded result as metrics, timestamped when its verdict became final."""
    ts = iso_ms(msg.get("final_time")) or iso_ms(msg.get("trigger_time"))
    models = ", ".join(f"{m.get('name')} {m.get('version')}" for m in msg.get("models") or [])
    values = (
        seq,
        msg.get("id"),
        msg.get("item_seq"),
        msg.get("verdict"),
        ",".join(msg.get("reasons") or []),
        iso_ms(msg.get("trigger_time")),
        msg.get("latency_ms"),
        models,
        json.dumps({**msg, "seq": seq}, separators=(",", ":"), ensure_ascii=False),
    )
    return [
        Metric(name, dt, v, ts, historical)
        for (name, dt), v in zip(RESULT_METRICS, values, strict=True)
    ]


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def recipe_digest(recipe: Any) -> str:
    """12 hex digits of the recipe's configuration: its version as the line runs it."""
    text = recipe.model_dump_json() if hasattr(recipe, "model_dump_json") else repr(recipe)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class DeviceView:
    """The device's current values, and what changed since they were last published."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[DataType, Any]] = {}
        self.last_result: list[Metric] | None = None

    @staticmethod
    def values(
        stats: dict[str, Any],
        batch: Any,
        recipe: Any,
        state: str | None,
        alarms: list[Any],
    ) -> dict[str, tuple[DataType, Any]]:
        by_reason = stats.get("by_reason") or {}
        y = stats.get("yield")
        active = sorted(alarms, key=lambda a: (_rank(a.severity), a.code))
        v: dict[str, tuple[DataType, Any]] = {
            "Counters/Inspected": (D.UInt64, stats.get("items", 0)),
            "Counters/Passed": (D.UInt64, stats.get("passed", 0)),
            "Counters/Rejected": (D.UInt64, stats.get("rejected", 0)),
            "Counters/Deadline Misses": (D.UInt64, stats.get("deadline_misses", 0)),
            "Rates/Items Per Minute": (D.Double, stats.get("rate_per_min")),
            "Latency/P50 ms": (D.Double, stats.get("p50_ms")),
            "Latency/P99 ms": (D.Double, stats.get("p99_ms")),
            "Yield/Percent": (D.Double, None if y is None else round(100.0 * y, 2)),
            "Batch/ID": (D.String, getattr(batch, "id", None)),
            "Batch/Lot": (D.String, getattr(batch, "lot", None)),
            "Batch/GTIN": (D.String, getattr(batch, "gtin", None)),
            "Batch/Expiry": (D.String, getattr(batch, "expiry", None)),
            "Recipe/Name": (D.String, getattr(recipe, "name", None)),
            "Recipe/Digest": (D.String, recipe_digest(recipe) if recipe is not None else None),
            "State/PackML": (D.String, state),
            "Alarms/Active Count": (D.Int32, len(active)),
            "Alarms/Active Codes": (D.String, ",".join(a.code for a in active)),
            "Alarms/Highest Severity": (D.String, active[0].severity if active else None),
        }
        for code in REASON_NUMBERS:
            v[f"Counters/Rejected/{code}"] = (D.UInt64, by_reason.get(code, 0))
        return v

    def birth(self, values: dict[str, tuple[DataType, Any]]) -> list[Metric]:
        """Every device metric with its current value (the last result's too, null before one)."""
        self.sent = dict(values)
        out = [Metric(k, dt, v) for k, (dt, v) in values.items()]
        if self.last_result is not None:
            out += [Metric(m.name, m.datatype, m.value, m.timestamp_ms) for m in self.last_result]
        else:
            out += [Metric(name, dt, None) for name, dt in RESULT_METRICS]
        return out

    def changes(self, values: dict[str, tuple[DataType, Any]]) -> list[Metric]:
        out = [Metric(k, dt, v) for k, (dt, v) in values.items() if self.sent.get(k) != (dt, v)]
        self.sent.update(values)
        return out
