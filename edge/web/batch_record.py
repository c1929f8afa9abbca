"""The batch record: every figure, table and chart of one batch, from the database.

One home for what QA reads, so the page, the CSV, the PDF and `edge report` show the same
record. It takes the stores, not a web request, so the shell can build it without a web
server. The charts are server-side SVG (`edge/web/charts.py`): the same drawing in the page
and in the PDF, no script and no network.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from edge.store import items, signatures
from edge.store.alarm_log import AlarmLog
from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.store.deviations import Deviations
from edge.store.recipes import challenge_results
from edge.web import charts

#: Round bucket widths (s) for the trend charts: the narrowest that cuts the batch into at
#: most `MAX_BUCKETS`, so a point is "per minute" or "per 5 minutes", not per 37 seconds.
WIDTHS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
MAX_BUCKETS = 60


def deadline_ms(cfg: Any, recipe: str | None) -> float:
    """The deadline the batch's recipe ran under (its own, else the pipeline's)."""
    r = cfg.recipes.get(recipe) if recipe else None
    return (r.deadline_ms if r is not None else None) or cfg.pipeline.deadline_ms


class NoBatch(LookupError):
    """The batch id names no batch in this database."""


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _hm(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S")


def build(
    db: Database,
    audit: AuditTrail,
    batch_id: str,
    *,
    station: str,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Everything the batch record needs, computed from the database in one go."""
    b = db.batch(batch_id)
    if b is None:
        raise NoBatch(f"no batch {batch_id}")
    tot = items.batch_totals(db, batch_id)
    g = items.code_grades(db, batch_id)
    end = b["ended_at"]
    since, until = iso(b["started_at"]), iso(end) if end else None
    entries = [
        e
        for e in audit.entries(since=since, until=until)
        if e["target"] == batch_id
        or e["action"].startswith(("alarm.", "model.", "recipe.", "config.", "challenge."))
    ]
    entries += [e for e in audit.entries(target=batch_id) if e not in entries]
    entries.sort(key=lambda e: e["id"])
    alarms = [
        {**a, "raised": iso(a["raised_utc"]), "cleared": iso(a["cleared_utc"])}
        for a in AlarmLog(db).history(b["started_at"], end)
    ]
    n = int(tot["n"] or 0)
    rep: dict[str, Any] = {
        "batch": {**b, "started": iso(b["started_at"]), "ended": iso(end)},
        "counts": {
            "inspected": n,
            "good": int(tot["good"] or 0),
            "rejected": int(tot["bad"] or 0),
            "yield": round((tot["good"] or 0) / n, 4) if n else None,
            "mean_latency_ms": round(tot["lat"], 2) if tot["lat"] is not None else None,
        },
        "by_reason": items.reasons_in_batch(db, batch_id),
        "ocv_by_field": items.ocv_rejects_by_field(db, batch_id),
        "grades": {
            "reads": int(g["n"] or 0),
            "min": g["mn"],
            "mean": round(g["avg"], 2) if g["avg"] is not None else None,
            "max": g["mx"],
            "below_grade_c": int(g["below_c"] or 0),
        },
        "recipes": items.recipes_in_batch(db, batch_id),
        "models": items.models_in_batch(db, batch_id),
        "challenge": challenge_results(db, batch_id),
        "camera": [  # exposure and gain per camera as read back at changeover
            {"camera": name, **(v or {})} for name, v in json.loads(b.get("camera") or "{}").items()
        ],
        "alarms": alarms,
        "deviations": [
            {**d, "opened": iso(d["opened_utc"]), "closed": iso(d["closed_utc"])}
            for d in Deviations(db).list(batch=batch_id)
        ],
        "audit": entries,
        "signatures": signatures.for_target(db, f"batch:{batch_id}"),
        "generated": iso(dt.datetime.now(dt.timezone.utc).timestamp()),
        "station": station,
    }
    rep["trends"] = _trends(db, batch_id, tot["first"], tot["last"])
    edges, counts = items.latency_histogram(db, batch_id)
    rep["latency"] = {"edges": edges, "counts": counts, "deadline_ms": deadline}
    return rep


def _trends(db: Database, batch_id: str, first: float | None, last: float | None) -> dict:
    """Yield, rate and scan grade per time bucket across the batch's items."""
    if first is None or last is None:
        return {"t": [], "yield": [], "rate_per_min": [], "grade": [], "worst": [], "width_s": 0}
    span = last - first
    width = float(next((w for w in WIDTHS_S if span / w <= MAX_BUCKETS), span / MAX_BUCKETS))
    rows = items.time_buckets(db, batch_id, first, width)
    return {
        "t": [first + (r["b"] + 0.5) * width for r in rows],
        "yield": [r["good"] / r["n"] for r in rows],
        "rate_per_min": [r["n"] / width * 60.0 for r in rows],
        "grade": [r["grade"] for r in rows],
        "worst": [r["worst"] for r in rows],
        "width_s": width,
    }


def chart_svgs(rep: dict[str, Any], width: int = 640) -> dict[str, str]:
    """The record's charts as SVG strings, by name, in reading order."""
    tr = rep["trends"]
    b = rep["batch"]
    start = b["started_at"]
    end = b["ended_at"] or (max(tr["t"]) if tr["t"] else start)
    ends = (_hm(tr["t"][0]), _hm(tr["t"][-1])) if tr["t"] else ("", "")
    lat = rep["latency"]
    return {
        "pareto": charts.pareto_svg(
            [r["reason"] for r in rep["by_reason"]],
            [r["n"] for r in rep["by_reason"]],
            title="Rejects by reason (Pareto)",
            width=width,
        ),
        "yield": charts.line_svg(
            tr["t"],
            {"yield %": [y * 100 for y in tr["yield"]]},
            title="Yield over time",
            x_labels=ends,
            y_range=(min([*(y * 100 for y in tr["yield"]), 90.0]) // 5 * 5, 100.0),
            y_format="{:.0f}",
            width=width,
        ),
        "rate": charts.line_svg(
            tr["t"],
            {"items/min": tr["rate_per_min"]},
            title="Rate over time",
            x_labels=ends,
            y_format="{:.0f}",
            width=width,
        ),
        "grade": charts.line_svg(
            tr["t"],
            {"mean grade": tr["grade"], "worst grade": tr["worst"]},
            title="Scan grade over time (4 = A ... 0 = F)",
            x_labels=ends,
            y_range=(0.0, 4.0),
            width=width,
        ),
        "latency": charts.histogram_svg(
            lat["edges"],
            lat["counts"],
            title="Latency, trigger to verdict",
            unit="ms",
            mark=lat["deadline_ms"],
            mark_label="deadline" if lat["deadline_ms"] else "",
            width=width,
        ),
        "alarms": charts.timeline_svg(
            [(a["code"], a["raised_utc"], a["cleared_utc"], a["severity"]) for a in rep["alarms"]],
            start=start,
            end=end,
            title="Alarms during the batch",
            labels=(_hm(start), _hm(end)),
            width=width,
        ),
    }
