"""Operator routes: the touchscreen page, its live event stream, batch start/stop, alarm acks."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from edge.domain import BatchState
from edge.recipes.batch_start import (
    checked_gtin,
    expiry_problem,
    gtin_problem,
    lot_problem,
    scanned,
)
from edge.recipes.book import RecipeBook
from edge.recipes.challenge import ChallengeFailed
from edge.recipes.changeover import ChangeoverRefused
from edge.recipes.products import ProductMaster
from edge.store import items
from edge.web import charts
from edge.web.auth import Session
from edge.web.deps import ALARM_ACK, LINE_CONTROL, LINE_VIEW, ctx_of, page, require

router = APIRouter()

SSE_PERIOD_S = 0.5
SSE_KEEPALIVE_S = 15.0


def _checked(problem: str | None, field: str, v: str) -> str:
    if problem:
        raise ValueError(f"{field}: {problem}")
    return v


class BatchStart(BaseModel):
    """A batch started by lot (and GTIN, expiry): the same GS1 checks as every changeover
    (`edge.recipes.batch_start`), so the touchscreen, MES and the shell refuse alike."""

    lot: str = Field(..., min_length=1, max_length=64)
    gtin: str | None = Field(None, max_length=14)
    expiry: str | None = Field(None, max_length=12, description="YYMMDD")
    reason: str | None = Field(None, max_length=200)
    source: str = Field("hmi", pattern="^(hmi|mes)$")

    @field_validator("lot")
    @classmethod
    def _lot(cls, v: str) -> str:
        return _checked(lot_problem(v.strip()), "lot", v.strip())

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        return checked_gtin(v.strip())

    @field_validator("expiry")
    @classmethod
    def _expiry(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        return _checked(expiry_problem(v.strip()), "expiry", v.strip())


class Reason(BaseModel):
    reason: str | None = Field(None, max_length=200)


@router.get("/hmi")
def hmi_page(request: Request, s: Session = Depends(require(*LINE_VIEW))) -> Response:
    ctx = ctx_of(request)
    recent = ctx.pipeline.db.recent_lots(4)
    return page(
        request,
        "hmi.html",
        recent=recent,
        can_control=s.role in LINE_CONTROL,
        can_ack=s.role in ALARM_ACK,
    )


# The two routes every panel polls are `async`: they only read cached data, and skipping the
# thread-pool hop keeps the web server's share of the interpreter lock small.
@router.get("/api/line/state")
async def line_state(request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> Response:
    _v, text = ctx_of(request).hub.snapshot_json()
    return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/api/line/events")
async def line_events(request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> Response:
    """Server-Sent Events: a snapshot whenever something changed, at most twice a second."""
    hub = ctx_of(request).hub

    async def stream():
        sent = -1
        quiet = 0.0
        yield "retry: 2000\n\n"
        while not hub.closed:
            ver, text = hub.snapshot_json()
            if ver != sent:
                sent, quiet = ver, 0.0
                yield f"event: state\ndata: {text}\n\n"
            elif quiet >= SSE_KEEPALIVE_S:
                quiet = 0.0
                yield ": keepalive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(SSE_PERIOD_S)
            quiet += SSE_PERIOD_S

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/api/line/frame/{seq}.jpg")
async def line_frame(
    seq: int, request: Request, _s: Session = Depends(require(*LINE_VIEW))
) -> Response:
    data = ctx_of(request).hub.frame_jpeg(seq)
    if data is None:
        raise HTTPException(404, "frame no longer held")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.get("/images/{sha}.png")
def image(sha: str, request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> Response:
    data = ctx_of(request).pipeline.images.get(sha.lower())
    if data is None:
        raise HTTPException(404, "no such image")
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


# ---------------------------------------------------------------------- last hour's trends

TREND_WINDOW_S = 3600.0
TREND_BUCKET_S = 60.0
TREND_CACHE_S = 5.0  # every panel polling shares one query per few seconds


class _TrendCache:
    """The HMI's last-hour charts, computed at most once per `TREND_CACHE_S` for all panels."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at = -1e9
        self.svgs: dict[str, str] = {}

    def get(self, db: Any) -> dict[str, str]:
        with self.lock:
            now = time.monotonic()
            if now - self.at >= TREND_CACHE_S:
                self.svgs = trend_svgs(db, time.time())
                self.at = now
            return self.svgs


def trend_svgs(db: Any, now: float) -> dict[str, str]:
    """Yield and the top three reject reasons per minute over the last hour, as small SVGs."""
    since = now - TREND_WINDOW_S
    t = items.recent_trend(db, since, TREND_BUCKET_S, top=3)
    n = int(TREND_WINDOW_S // TREND_BUCKET_S)
    xs = list(range(n))
    by_b = {r["b"]: r for r in t["buckets"]}
    yields = [by_b[b]["good"] / by_b[b]["n"] * 100 if b in by_b else None for b in xs]
    lo = min([y for y in yields if y is not None] + [90.0]) // 10 * 10
    small = {"width": 240, "height": 96, "pad": (30, 6, 18, 14), "x_labels": ("-60 min", "now")}
    reasons = {
        r: [float(per.get(b, 0)) if b in by_b else None for b in xs]
        for r, per in t["reasons"].items()
    }
    return {
        "yield": charts.line_svg(
            xs, {"yield %": yields}, y_range=(lo, 100.0), y_format="{:.0f}", **small
        ),
        "reasons": charts.line_svg(
            xs,
            reasons or {"no rejects": [0.0 if b in by_b else None for b in xs]},
            y_format="{:.0f}",
            **small,
        ),
    }


@router.get("/api/line/trend/{name}.svg")
def line_trend(name: str, request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> Response:
    """A small chart of the last hour (`yield` or `reasons`), cached a few seconds."""
    if name not in ("yield", "reasons"):
        raise HTTPException(404, "trend charts: yield, reasons")
    state = request.app.state
    cache = getattr(state, "hmi_trend", None)
    if cache is None:
        cache = state.hmi_trend = _TrendCache()
    svg = cache.get(ctx_of(request).pipeline.db)[name]
    return Response(
        svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=5"}
    )


@router.get("/api/line/recipe")
def line_recipe(request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> dict[str, Any]:
    """The recipe the line runs now: the approved version from the database (name, version,
    content hash) and its content as stored under that hash (not the config file's copy)."""
    p = ctx_of(request).pipeline
    stamp = p.stamp
    doc = RecipeBook(p.db).docs.get(stamp.name, stamp.version)
    return {
        "name": stamp.name,
        "version": stamp.version,
        "sha256": stamp.sha256,
        "status": doc["status"],
        "content": doc["content"],
    }


@router.get("/api/line/products")
def line_products(request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> list:
    """The products the operator may change over to: approved, with an approved recipe
    (a draft is never offered at the touchscreen)."""
    db = ctx_of(request).pipeline.db
    book = RecipeBook(db)
    master = ProductMaster(db)
    out = []
    for row in master.list():
        product = master.approved(row["gtin"]) if row["approved_version"] else None
        recipe = book.docs.approved(product.recipe) if product else None
        if product is None or recipe is None:
            continue
        out.append(
            {
                "gtin": product.gtin,
                "name": product.name,
                "version": row["approved_version"],
                "recipe": product.recipe,
                "recipe_version": recipe["version"],
                "camera": product.camera.model_dump(exclude_none=True),
                "challenge_units": sum(u.count for u in product.challenge),
            }
        )
    return sorted(out, key=lambda p: p["name"])


class BatchCheck(BaseModel):
    gtin: str | None = Field(None, max_length=64)
    lot: str | None = Field(None, max_length=64)
    expiry: str | None = Field(None, max_length=64)
    scan: str | None = Field(None, max_length=200, description="a scanned GS1 element string")


@router.post("/api/line/batch/check")
def batch_check(
    body: BatchCheck, request: Request, _s: Session = Depends(require(*LINE_CONTROL))
) -> dict[str, Any]:
    """Each field's problem in plain words, checked as the changeover checks it (nothing
    starts): the touchscreen shows it beside the field while the operator types or scans."""
    values = {k: v.strip() for k, v in body.model_dump().items() if v and k != "scan"}
    problems: dict[str, str] = {}
    if body.scan:
        try:
            read, problem = scanned(body.scan)
            values.update(read)
            if problem:
                problems["scan"] = problem
        except ValueError as exc:
            problems["scan"] = str(exc)
    for field, rule in (("gtin", gtin_problem), ("lot", lot_problem), ("expiry", expiry_problem)):
        if values.get(field) and (problem := rule(values[field])):
            problems[field] = problem
    return {"values": values, "problems": problems}


class Changeover(BaseModel):
    gtin: str = Field(..., min_length=8, max_length=14)
    lot: str = Field(..., min_length=1, max_length=40)
    expiry: str = Field(..., max_length=12, description="YYMMDD, GS1 AI (17)")


@router.post("/api/line/batch/changeover")
def batch_changeover(
    body: Changeover, request: Request, s: Session = Depends(require(*LINE_CONTROL))
) -> dict[str, Any]:
    """The operator's changeover: the product by GTIN, lot and expiry checked as GS1, the
    product's approved recipe, the challenge, then the batch (the MES `start_batch` twin)."""
    ctx = ctx_of(request)
    try:
        bid = ctx.appliance.changeover.start(
            body.gtin.strip(), body.lot.strip(), body.expiry.strip(), by=s.username, source="hmi"
        )
    except ChangeoverRefused as exc:
        raise HTTPException(422 if exc.code == "invalid" else 409, str(exc)) from None
    p = ctx.pipeline
    stamp = p.stamp
    ctx.audit.record(
        s.username,
        "batch.changeover",
        target=bid,
        new={
            "gtin": body.gtin,
            "lot": body.lot,
            "expiry": body.expiry,
            "recipe": stamp.name,
            "recipe_version": stamp.version,
        },
    )
    ctx.hub.touch()
    return {"batch": bid, "recipe": stamp.name, "recipe_version": stamp.version}


@router.post("/api/line/batch/start")
def batch_start(
    body: BatchStart, request: Request, s: Session = Depends(require(*LINE_CONTROL))
) -> dict[str, Any]:
    """A batch by lot. A GTIN of an approved product makes it that product's changeover (its
    recipe, camera settings and challenge), as MES `start_batch` does: never a product's
    batch on another product's recipe."""
    ctx = ctx_of(request)
    p = ctx.pipeline
    if body.gtin and ProductMaster(p.db).approved(body.gtin) is not None:
        if not body.expiry:
            raise HTTPException(422, "expiry: a product's batch needs its expiry (YYMMDD)")
        co = Changeover(gtin=body.gtin, lot=body.lot, expiry=body.expiry)
        return batch_changeover(co, request, s)
    old = p.batch
    try:
        bid = p.start_batch(
            BatchState(body.lot, body.gtin, body.expiry), by=s.username, source=body.source
        )
    except ChallengeFailed as exc:  # the batch does not start: say which unit and why
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(
        s.username,
        "batch.start",
        target=bid,
        old={"batch": old.id, "lot": old.lot} if old else None,
        new={
            "lot": body.lot,
            "gtin": body.gtin,
            "expiry": body.expiry,
            "source": body.source,
            "recipe": p.recipe.name,
        },
        reason=body.reason,
    )
    ctx.hub.touch()
    return {"batch": bid}


@router.post("/api/line/batch/stop")
def batch_stop(
    body: Reason, request: Request, s: Session = Depends(require(*LINE_CONTROL))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    p = ctx.pipeline
    if p.batch is None:
        raise HTTPException(409, "no batch is running")
    old = p.batch
    bid = p.stop_batch(by=s.username)
    ctx.audit.record(
        s.username,
        "batch.stop",
        target=bid,
        old={"lot": old.lot, "state": "running"},
        new={"state": "ended"},
        reason=body.reason,
    )
    ctx.hub.touch()
    return {"batch": bid, "report": f"/reports/{bid}"}


@router.post("/api/line/alarms/{code}/ack")
def alarm_ack(
    code: str, body: Reason, request: Request, s: Session = Depends(require(*ALARM_ACK))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    before = next((a for a in ctx.pipeline.alarms.active() if a.code == code), None)
    if before is None:
        raise HTTPException(404, f"no active alarm {code}")
    old = {"acked_by": before.acked_by}
    a = ctx.pipeline.alarms.ack(code, s.username)
    if a is None:
        raise HTTPException(404, f"alarm {code} cleared meanwhile")
    ctx.audit.record(
        s.username,
        "alarm.ack",
        target=code,
        old=old,
        new={"acked_by": s.username, "message": a.message, "severity": a.severity},
        reason=body.reason,
    )
    ctx.hub.touch()
    return a.to_dict()
