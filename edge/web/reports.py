"""Batch reports (HTML, CSV) signed by QA, and the QA view of the audit trail."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.batch_ids import is_safe, lot_slug
from edge.store import csv_safe, items
from edge.store.alarm_log import AlarmLog
from edge.store.deviations import Deviations
from edge.web.auth import Session
from edge.web.deps import QA, REPORTS_VIEW, WebContext, ctx_of, esign, page, require, signatures_for

router = APIRouter()


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def batch_report(ctx: WebContext, batch_id: str) -> dict[str, Any]:
    """Everything the batch record needs, computed from the database in one go."""
    db = ctx.pipeline.db
    b = db.batch(batch_id)
    if b is None:
        raise HTTPException(404, f"no batch {batch_id}")
    tot = items.batch_totals(db, batch_id)
    by_reason = items.reasons_in_batch(db, batch_id)
    ocv_by_field = items.ocv_rejects_by_field(db, batch_id)
    g = items.code_grades(db, batch_id)
    models = items.models_in_batch(db, batch_id)
    end = b["ended_at"]
    since, until = _iso(b["started_at"]), _iso(end) if end else None
    entries = [
        e
        for e in ctx.audit.entries(since=since, until=until)
        if e["target"] == batch_id
        or e["action"].startswith(("alarm.", "model.", "recipe.", "config."))
    ]
    entries += [e for e in ctx.audit.entries(target=batch_id) if e not in entries]
    entries.sort(key=lambda e: e["id"])
    alarms = [
        {**a, "raised": _iso(a["raised_utc"]), "cleared": _iso(a["cleared_utc"])}
        for a in AlarmLog(ctx.pipeline.db).history(b["started_at"], end)
    ]
    n = int(tot["n"] or 0)
    return {
        "batch": {**b, "started": _iso(b["started_at"]), "ended": _iso(end)},
        "counts": {
            "inspected": n,
            "good": int(tot["good"] or 0),
            "rejected": int(tot["bad"] or 0),
            "yield": round((tot["good"] or 0) / n, 4) if n else None,
            "mean_latency_ms": round(tot["lat"], 2) if tot["lat"] is not None else None,
        },
        "by_reason": by_reason,
        "ocv_by_field": ocv_by_field,
        "grades": {
            "reads": int(g["n"] or 0),
            "min": g["mn"],
            "mean": round(g["avg"], 2) if g["avg"] is not None else None,
            "max": g["mx"],
            "below_grade_c": int(g["below_c"] or 0),
        },
        "models": models,
        "alarms": alarms,
        "deviations": [
            {**d, "opened": _iso(d["opened_utc"]), "closed": _iso(d["closed_utc"])}
            for d in Deviations(ctx.pipeline.db).list(batch=batch_id)
        ],
        "audit": entries,
        "signatures": signatures_for(ctx, f"batch:{batch_id}"),
        "generated": _iso(dt.datetime.now(dt.timezone.utc).timestamp()),
        "station": ctx.pipeline.cfg.station.id,
    }


def report_csv(rep: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv_safe.Writer(buf)
    b = rep["batch"]
    w.writerow(["section", "key", "value"])
    for k in (
        "id",
        "lot",
        "gtin",
        "expiry",
        "recipe",
        "started",
        "started_by",
        "ended",
        "ended_by",
    ):
        w.writerow(["batch", k, b.get(k)])
    for k, v in rep["counts"].items():
        w.writerow(["counts", k, v])
    for r in rep["by_reason"]:
        w.writerow(["reject_reason", r["reason"], r["n"]])
    for k, v in rep["grades"].items():
        w.writerow(["scan_grade", k, v])
    for m in rep["models"]:
        w.writerow(["model", m.get("name"), f"{m.get('version')} {m.get('sha256', '')}".strip()])
    for a in rep["alarms"]:
        w.writerow(
            [
                "alarm",
                a["code"],
                f"{a['raised']} {a['message']} cleared={a['cleared']} acked_by={a['acked_by']}",
            ]
        )
    for d in rep.get("deviations", []):
        w.writerow(
            [
                "deviation",
                d["measure"],
                f"{d['opened']} {d['rule']} item={d['item_id']} state={d['state']} "
                f"root_cause={d['root_cause'] or ''} closed_by={d['closed_by'] or ''}",
            ]
        )
    for e in rep["audit"]:
        w.writerow(
            [
                "audit",
                e["action"],
                f"{e['ts_utc']} {e['user']} {e['target']} {e['new'] or ''} "
                f"reason={e['reason'] or ''} hash={e['hash'][:16]}",
            ]
        )
    for s in rep["signatures"]:
        w.writerow(
            ["signature", s["full_name"], f"{s['ts_utc']} {s['meaning']} reason={s['reason']}"]
        )
    return buf.getvalue()


@router.get("/reports")
def reports_page(request: Request, _s: Session = Depends(require(*REPORTS_VIEW))) -> Response:
    ctx = ctx_of(request)
    rows = ctx.pipeline.db.recent_batches(50)
    for r in rows:
        r["started"], r["ended"] = _iso(r["started_at"]), _iso(r["ended_at"])
    return page(request, "reports.html", batches=rows)


@router.get("/reports/{batch_id}")
def report_html(
    batch_id: str, request: Request, s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    rep = batch_report(ctx_of(request), batch_id)
    return page(request, "report.html", r=rep, can_sign=s.role in QA)


@router.get("/reports/{batch_id}/report.csv")
def report_csv_route(
    batch_id: str, request: Request, _s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    rep = batch_report(ctx_of(request), batch_id)
    name = batch_id if is_safe(batch_id) else lot_slug(batch_id)  # ids from older versions
    return Response(
        report_csv(rep),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="batch-{name}.csv"'},
    )


@router.get("/api/reports/{batch_id}")
def report_json(
    batch_id: str, request: Request, _s: Session = Depends(require(*REPORTS_VIEW))
) -> dict[str, Any]:
    return batch_report(ctx_of(request), batch_id)


class Sign(BaseModel):
    password: str = Field(..., min_length=1, max_length=256)
    reason: str = Field(..., min_length=3, max_length=500)


@router.post("/api/reports/{batch_id}/sign")
def report_sign(
    batch_id: str, body: Sign, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    rep = batch_report(ctx, batch_id)
    if rep["batch"]["ended_at"] is None:
        raise HTTPException(409, "the batch is still running: sign it after it ends")
    return esign(
        ctx,
        s,
        body.password,
        body.reason,
        "review: batch record reviewed and released",
        f"batch:{batch_id}",
    )


# --------------------------------------------------------------------------- audit (QA)


@router.get("/qa/audit")
def audit_page(
    request: Request,
    user: str | None = None,
    action: str | None = None,
    _s: Session = Depends(require(*QA)),
) -> Response:
    ctx = ctx_of(request)
    rows = ctx.audit.entries(user=user or None, action=action or None, limit=300, newest_first=True)
    ok, problems = ctx.audit.verify()
    return page(
        request,
        "qa_audit.html",
        rows=rows,
        ok=ok,
        problems=problems,
        f={"user": user or "", "action": action or ""},
    )


@router.get("/api/qa/audit/verify")
def audit_verify(request: Request, _s: Session = Depends(require(*QA))) -> dict[str, Any]:
    ok, problems = ctx_of(request).audit.verify()
    return {"ok": ok, "problems": problems}


@router.get("/api/qa/audit.csv")
def audit_csv(request: Request, _s: Session = Depends(require(*QA))) -> Response:
    return Response(
        ctx_of(request).audit.export_csv(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/api/qa/audit.json")
def audit_json(request: Request, _s: Session = Depends(require(*QA))) -> Response:
    return Response(
        ctx_of(request).audit.export_json(),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="audit.json"'},
    )
