"""Technician routes for images and their box labels.

The technician finds images (the line's kept images and the photos uploaded or imported
for a product; by source, label state, product, reason, batch, verdict, score, date),
draws or corrects the boxes of each defect on it, or marks it good (no defects, one image
or many at once), and saves the label; every save is an audit entry with the boxes before
and after. What the line saw on an image is offered as the starting point when it saw
something. The labels are frozen into dataset versions by `datasets.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.store import items, labels, uploads
from edge.web.auth import Session
from edge.web.classes import label_classes
from edge.web.deps import TECH, WebContext, ctx_of, page, require
from edge.web.uploads import default_product

router = APIRouter()


def _day(s: str | None, end: bool = False) -> float | None:
    if not s:
        return None
    try:
        d = dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise HTTPException(422, "dates are YYYY-MM-DD") from None
    return (d + dt.timedelta(days=1 if end else 0)).timestamp()


SOURCES = ("line", "upload")


def query_images(
    ctx: WebContext,
    *,
    source: str | None = None,
    label: str | None = None,
    product: str | None = None,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    min_score: float | None = None,
    min_anomaly: float | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    labelled: bool | None = None,
    limit: int = 60,
) -> list[dict[str, Any]]:
    """Images as the search form asks, newest first (dates are whole UTC days, `date_to`
    included). Uploads have no line verdict, reason, batch or score: a filter on one of
    those lists line images only."""
    if source and source not in SOURCES:
        raise HTTPException(422, "The source is 'line' or 'upload'.")
    if label and label not in labels.LABEL_STATES:
        raise HTTPException(422, "The label filter is 'labelled', 'good' or 'unlabelled'.")
    if labelled is not None and not label:
        label = "labelled" if labelled else "unlabelled"
    since, until = _day(date_from), _day(date_to, end=True)
    db = ctx.pipeline.db
    rows: list[dict[str, Any]] = []
    if source in (None, "line"):
        rows += items.search_images(
            db,
            reason=reason,
            batch=batch,
            verdict=verdict,
            since=since,
            until=until,
            label_state=label,
            product=product,
            min_score=min_score,
            min_anomaly=min_anomaly,
            limit=limit,
        )
    line_only = reason or batch or verdict or min_score is not None or min_anomaly is not None
    if source in (None, "upload") and not line_only:
        rows += uploads.search(
            db, product=product, label_state=label, since=since, until=until, limit=limit
        )
    rows.sort(key=lambda r: r["when"] or 0.0, reverse=True)
    return rows[: min(max(limit, 1), 500)]


def products(ctx: WebContext) -> list[str]:
    """Products to filter by: the recipes' names and the products uploads were made for."""
    names = set(ctx.pipeline.cfg.recipes) | set(uploads.products(ctx.pipeline.db))
    return sorted(names)


def _image_size(ctx: WebContext, sha: str) -> tuple[int, int]:
    size = ctx.pipeline.db.image_size(sha)
    if size is None:
        raise HTTPException(404, "no such image")
    return size


def suggested_boxes(ctx: WebContext, sha: str, classes: list[str]) -> list[dict[str, Any]]:
    """What the line saw on this image, as a starting point for the label."""
    marks = items.latest_marks(ctx.pipeline.db, sha)
    if marks is None:
        return []
    findings, codes = marks
    boxes = []
    for f in findings:
        cls = str(f.get("code", "")).lower()
        if f.get("bbox") and cls in classes:
            boxes.append({"cls": cls, "bbox": f["bbox"]})
    for c in codes:
        if c.get("bbox") and "code" in classes:
            boxes.append({"cls": "code", "bbox": c["bbox"]})
    return boxes


class Box(BaseModel):
    cls: str = Field(..., min_length=1, max_length=40)
    bbox: tuple[float, float, float, float]


class Label(BaseModel):
    boxes: list[Box] = Field(default_factory=list, max_length=200)
    #: the explicit "good, no defects" statement (a saved label with no boxes)
    good: bool = False
    reason: str | None = Field(None, max_length=200)


class MarkGood(BaseModel):
    images: list[str] = Field(..., min_length=1, max_length=500)
    reason: str | None = Field(None, max_length=200)


def clamp_box(bbox: tuple[float, float, float, float], w: int, h: int) -> list[float] | None:
    """The part of a box (x, y, width, height) that lies on a w x h image, or None when
    less than 2 px of it does. Both corners are clamped, so a box drawn past the top or
    left edge keeps its right and bottom edges where they were drawn."""
    x, y, bw, bh = bbox
    if bw < 0:
        x, bw = x + bw, -bw
    if bh < 0:
        y, bh = y + bh, -bh
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]


@router.get("/tech/images")
def images_page(
    request: Request,
    source: str | None = None,
    label: str | None = None,
    product: str | None = None,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    min_score: str | None = None,
    min_anomaly: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    _s: Session = Depends(require(*TECH)),
) -> Response:
    ctx = ctx_of(request)
    try:
        score = float(min_score) if min_score else None
        anomaly = float(min_anomaly) if min_anomaly else None
    except ValueError:
        raise HTTPException(422, "The score is a number, such as 0.5.") from None
    rows = query_images(
        ctx,
        source=source or None,
        label=label or None,
        product=product or None,
        reason=reason or None,
        batch=batch or None,
        verdict=verdict or None,
        min_score=score,
        min_anomaly=anomaly,
        date_from=date_from,
        date_to=date_to,
    )
    batches = [b["id"] for b in ctx.pipeline.db.recent_batches(30)]
    reasons = items.reasons_on_images(ctx.pipeline.db, 50)
    f = {
        "source": source or "",
        "label": label or "",
        "product": product or "",
        "reason": reason or "",
        "batch": batch or "",
        "verdict": verdict or "",
        "min_score": min_score or "",
        "min_anomaly": min_anomaly or "",
        "date_from": date_from or "",
        "date_to": date_to or "",
    }
    return page(
        request,
        "tech_images.html",
        rows=rows,
        batches=batches,
        reasons=sorted(reasons),
        products=products(ctx),
        default_product=default_product(ctx),
        f=f,
    )


@router.get("/api/tech/images")
def images_api(
    request: Request,
    source: str | None = None,
    label: str | None = None,
    product: str | None = None,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    min_score: float | None = None,
    min_anomaly: float | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    limit: int = 60,
    _s: Session = Depends(require(*TECH)),
) -> list[dict[str, Any]]:
    return query_images(
        ctx_of(request),
        source=source,
        label=label,
        product=product,
        reason=reason,
        batch=batch,
        verdict=verdict,
        min_score=min_score,
        min_anomaly=min_anomaly,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
    )


@router.get("/tech/label/{sha}")
def label_page(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    product = uploads.product_of(ctx.pipeline.db, sha)
    return page(
        request,
        "tech_label.html",
        sha=sha,
        width=w,
        height=h,
        product=product,
        classes=label_classes(ctx, product),
    )


@router.get("/api/tech/labels/{sha}")
def get_label(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> dict:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    saved = labels.get(ctx.pipeline.db, sha)
    product = uploads.product_of(ctx.pipeline.db, sha)
    classes = label_classes(ctx, product)
    common = {"sha": sha, "width": w, "height": h, "classes": classes, "product": product}
    if saved:
        return {
            **common,
            "boxes": saved["boxes"],
            "saved": True,
            "good": not saved["boxes"],
            "updated_by": saved["updated_by"],
            "suggested": False,
        }
    suggestions = suggested_boxes(ctx, sha, classes)
    return {
        **common,
        "boxes": suggestions,
        "saved": False,
        "good": False,
        "suggested": bool(suggestions),
    }


@router.put("/api/tech/labels/{sha}")
def put_label(
    sha: str, body: Label, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    product = uploads.product_of(ctx.pipeline.db, sha)
    classes = set(label_classes(ctx, product))
    if body.good and body.boxes:
        raise HTTPException(
            422,
            "An image marked good has no defect boxes: delete the boxes or do not mark it good.",
        )
    boxes = []
    for b in body.boxes:
        if b.cls not in classes:
            whose = f"product {product}'s" if product else "the line's"
            raise HTTPException(
                422,
                f"{b.cls!r} is not one of {whose} classes ({', '.join(sorted(classes)) or 'none'}):"
                " add it to the product's classes first.",
            )
        bbox = clamp_box(b.bbox, w, h)
        if bbox is None:
            raise HTTPException(422, "A box must lie on the image and be at least 2 px wide.")
        boxes.append({"cls": b.cls, "bbox": bbox})
    old = labels.save(ctx.pipeline.db, sha, boxes, s.username)
    ctx.audit.record(s.username, "label.save", target=sha, old=old, new=boxes, reason=body.reason)
    return {"sha": sha, "boxes": boxes, "good": not boxes}


@router.post("/api/tech/labels/good")
def mark_good(
    body: MarkGood, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """Mark several images good (no defects) at once: each one audited with what it had."""
    ctx = ctx_of(request)
    shas = list(dict.fromkeys(body.images))
    missing = [sha for sha in shas if ctx.pipeline.db.image_size(sha) is None]
    if missing:
        raise HTTPException(404, f"{len(missing)} of the chosen images are not on the appliance.")
    old = labels.mark_good(ctx.pipeline.db, shas, s.username)
    for sha in shas:
        ctx.audit.record(
            s.username, "label.good", target=sha, old=old[sha], new=[], reason=body.reason
        )
    return {"marked": len(shas)}
