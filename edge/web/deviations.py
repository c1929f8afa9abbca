"""Deviation records in the web UI: seen by everyone at the line, acknowledged by the operator,
investigated by a technician or QA, closed by QA with an electronic signature, exported for
the plant's quality system."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.record import utc_iso
from edge.store import items
from edge.store.deviations import DeviationError, Deviations
from edge.web.auth import Session
from edge.web.charts import control_chart_svg
from edge.web.deps import (
    ALARM_ACK,
    LINE_VIEW,
    MODELS_VIEW,
    QA,
    REPORTS_VIEW,
    Signed,
    ctx_of,
    esign,
    page,
    require,
)

router = APIRouter()


def _store(request: Request) -> Deviations:
    ctx = ctx_of(request)
    return Deviations(ctx.pipeline.db, ctx.audit)


def _do(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except DeviationError as exc:  # a step out of order, or a record that does not exist
        code = 404 if str(exc).startswith("no deviation") else 409
        raise HTTPException(code, str(exc)) from None


@router.get("/deviations")
def deviations_page(
    request: Request, batch: str | None = None, s: Session = Depends(require(*REPORTS_VIEW))
) -> Response:
    rows = [
        {**d, "opened": utc_iso(d["opened_utc"]), "closed": utc_iso(d["closed_utc"])}
        for d in reversed(_store(request).list(batch=batch))
    ]
    return page(request, "deviations.html", deviations=rows[:200], role=s.role)


@router.get("/api/line/deviations")
def deviations_list(
    request: Request,
    batch: str | None = None,
    state: str | None = None,
    _s: Session = Depends(require(*LINE_VIEW)),
) -> list[dict[str, Any]]:
    return _store(request).list(batch=batch, state=state)


@router.get("/api/line/deviations/{rid}/chart.svg")
def deviation_chart(
    rid: int, request: Request, _s: Session = Depends(require(*LINE_VIEW))
) -> Response:
    """The control chart of the measurement that raised the deviation, up to the alert."""
    d = _do(_store(request).get, rid)
    series = items.measurement_series(ctx_of(request).pipeline.db, d["batch_id"], d["measure"])
    vals = [(i, float(v)) for i, v in enumerate(series) if v is not None]
    vals = [(i, v) for i, v in vals if i <= d["item_index"] + 50][-600:]
    xs, ys = [i for i, _ in vals], [v for _, v in vals]
    ewma, z = [], d["centre"]
    for v in ys:  # the EWMA the monitor charts (its default weight), for the eye
        z = 0.05 * v + 0.95 * z
        ewma.append(z)
    svg = control_chart_svg(
        xs,
        ys,
        stat=ewma if d["rule"] == "ewma" else None,
        centre=d["centre"],
        lcl=d["lcl"],
        ucl=d["ucl"],
        mark=d["item_index"],
        since=d["since_index"],
        title=f"{d['measure']}: {d['rule']} (deviation #{rid})",
    )
    return Response(svg, media_type="image/svg+xml")


@router.post("/api/line/deviations/{rid}/ack")
def deviation_ack(
    rid: int, request: Request, s: Session = Depends(require(*ALARM_ACK))
) -> dict[str, Any]:
    return _do(_store(request).acknowledge, rid, s.username)


class Investigation(BaseModel):
    root_cause: str = Field(..., min_length=3, max_length=2000)
    corrective_action: str = Field(..., min_length=3, max_length=2000)


@router.post("/api/deviations/{rid}/investigate")
def deviation_investigate(
    rid: int, body: Investigation, request: Request, s: Session = Depends(require(*MODELS_VIEW))
) -> dict[str, Any]:
    return _do(
        _store(request).investigate, rid, s.username, body.root_cause, body.corrective_action
    )


@router.post("/api/qa/deviations/{rid}/close")
def deviation_close(
    rid: int, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    store = _store(request)
    rec = _do(store.get, rid)
    if rec["state"] != "investigated":
        raise HTTPException(409, f"deviation {rid} is {rec['state']}: investigate it first")
    sig = esign(
        ctx_of(request),
        s,
        body.password,
        body.reason,
        "approval: deviation investigated and closed",
        f"deviation:{rid}",
    )
    return {**_do(store.close, rid, s.username), "signature": sig}


@router.get("/api/qa/deviations.csv")
def deviations_csv(
    request: Request, batch: str | None = None, _s: Session = Depends(require(*QA))
) -> Response:
    rows = _store(request).list(batch=batch)
    return Response(
        Deviations.export_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="deviations.csv"'},
    )


@router.get("/api/qa/deviations.json")
def deviations_json(
    request: Request, batch: str | None = None, _s: Session = Depends(require(*QA))
) -> Response:
    rows = _store(request).list(batch=batch)
    return Response(Deviations.export_json(rows), media_type="application/json")
