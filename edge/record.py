"""The durable view of a final Item: the database row and the `result` message (schema v1)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edge.domain import Item

RESULT_SCHEMA = "edge-inspect/result"
RESULT_VERSION = 1


def utc_iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def final_wall_time(item: Item) -> float | None:
    if item.t_final is None:
        return None
    return item.wall_trigger + (item.t_final - item.t_trigger)


def item_row(item: Item, station: str) -> dict[str, Any]:
    """The items-table row for a final Item, with its result message under `message`."""
    findings = [f.to_dict() for f in item.findings]
    codes = [c.to_dict() for c in item.codes]
    tools = {r.tool: r.version for r in item.results}
    models = item.models
    final_utc = final_wall_time(item)
    latency = item.latency_ms
    row = {
        "seq": item.seq,
        "id": item.id,
        "batch_id": item.batch,
        "recipe": item.recipe,
        "recipe_version": item.recipe_version,
        "recipe_sha256": item.recipe_sha256,
        "trigger_utc": item.wall_trigger,
        "final_utc": final_utc,
        "latency_ms": round(latency, 3) if latency is not None else None,
        "encoder": item.encoder,
        "verdict": item.verdict.value,
        "reasons": list(item.reasons),
        "findings": findings,
        "codes": codes,
        "tools": tools,
        "models": models,
        "image_sha256": item.image_sha256,
        "source_name": item.frame.name if item.frame else None,
        "measurements": item.measurements,
    }
    row["message"] = {
        "schema": RESULT_SCHEMA,
        "version": RESULT_VERSION,
        "station": station,
        "id": item.id,
        "item_seq": item.seq,
        "batch": item.batch,
        "recipe": item.recipe,
        "recipe_version": item.recipe_version,
        "recipe_sha256": item.recipe_sha256,
        "trigger_time": utc_iso(item.wall_trigger),
        "final_time": utc_iso(final_utc),
        "latency_ms": row["latency_ms"],
        "encoder": item.encoder,
        "verdict": item.verdict.value,
        "reasons": list(item.reasons),
        "findings": findings,
        "codes": codes,
        "models": models,
        "image_sha256": item.image_sha256,
    }
    if row["measurements"]:
        row["message"]["measurements"] = row["measurements"]
    if item.views is not None:
        row["message"]["views"] = view_summaries(item, findings)
    return row


def view_summaries(item: Item, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A multi-view item's views in the station's order: which frame each camera gave (or
    that it gave none) and the findings on it (added within v1, optional)."""
    names = list(item.views or {})
    for f in findings:  # a view that did not arrive is in the findings, not in `views`
        v = f.get("view")
        if v is not None and v not in names:
            names.append(v)
    out = []
    for name in names:
        frame = (item.views or {}).get(name)
        d: dict[str, Any] = {"name": name, "arrived": frame is not None}
        if frame is not None:
            d["encoder"] = frame.encoder
            if frame.frame_id is not None:
                d["frame_id"] = frame.frame_id
        d["findings"] = [f for f in findings if f.get("view") == name]
        out.append(d)
    return out
