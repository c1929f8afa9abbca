"""Batch reports (HTML, CSV) signed by QA, and the QA view of the audit trail."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from edge.batch_ids import is_safe, lot_slug
from edge.store import csv_safe
from edge.web import batch_record
from edge.web.auth import Session
from edge.web.deps import QA, REPORTS_VIEW, Signed, WebContext, ctx_of, esign, page, require

router = APIRouter()


def batch_report(ctx: WebContext, batch_id: str) -> dict[str, Any]:
    """The batch record (`edge/web/batch_record.py`); an unknown batch is a 404."""
    p = ctx.pipeline
    b = p.db.batch(batch_id)
    try:
        return batch_record.build(
            p.db,
            ctx.audit,
            batch_id,
            station=p.cfg.station.id,
            deadline=batch_record.deadline_ms(p.cfg, b["recipe"] if b else None),
        )
    except batch_record.NoBatch as exc:
        raise HTTPException(404, str(exc)) from None


def _file_name(batch_id: str) -> str:
    return batch_id if is_safe(batch_id) else lot_slug(batch_id)  # ids from older versions


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
    for r in rep["recipes"]:
        w.writerow(
            [
                "recipe",
                r["recipe"],
                f"{r.get('recipe_version', '')} {r.get('recipe_sha256', '')} items={r['n']}",
            ]
        )
    for m in rep["models"]:
        w.writerow(["model", m.get("name"), f"{m.get('version')} {m.get('sha256', '')}".strip()])
    ch = rep["challenge"]
    w.writerow(["challenge", "status", ch["status"]])
    for run in ch["runs"]:
        w.writerow(["challenge", "run", " ".join(f"{k}={v}" for k, v in run.items())])
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
        r["started"], r["ended"] = (
            batch_record.iso(r["started_at"]),
            batch_record.iso(r["ended_at"]),
        )
    return page(request, "reports.html", batches=rows)


@router.get("/reports/{batch_id}")
def report_html(
    batch_id: str, request: Request, s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    rep = batch_report(ctx_of(request), batch_id)
    svgs = batch_record.chart_svgs(rep)
    return page(request, "report.html", r=rep, charts=svgs, can_sign=s.role in QA)


@router.get("/reports/{batch_id}/report.csv")
def report_csv_route(
    batch_id: str, request: Request, _s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    rep = batch_report(ctx_of(request), batch_id)
    return Response(
        report_csv(rep),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="batch-{_file_name(batch_id)}.csv"'},
    )


@router.get("/reports/{batch_id}/report.pdf")
def report_pdf_route(
    batch_id: str, request: Request, _s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    """The batch record as a PDF (fpdf2 on the server: no browser, no network)."""
    from edge.web.report_pdf import render_pdf

    rep = batch_report(ctx_of(request), batch_id)
    return Response(
        render_pdf(rep),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="batch-{_file_name(batch_id)}.pdf"'},
    )


@router.get("/api/reports/{batch_id}")
def report_json(
    batch_id: str, request: Request, _s: Session = Depends(require(*REPORTS_VIEW))
) -> dict[str, Any]:
    return batch_report(ctx_of(request), batch_id)


@router.post("/api/reports/{batch_id}/sign")
def report_sign(
    batch_id: str, body: Signed, request: Request, s: Session = Depends(require(*QA))
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
