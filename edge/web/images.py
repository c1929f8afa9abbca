"""Technician routes for captured images and their box labels.

The technician finds images the line kept (by reason, batch, verdict, date), draws or
corrects the boxes of each defect on it, and saves the label; every save is an audit
entry with the boxes before and after. What the line saw on an image is offered as the
starting point. The labels are frozen into dataset versions by `datasets.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge import taxonomy
from edge.store import items, labels
from edge.web.auth import Session
from edge.web.deps import TECH, WebContext, ctx_of, page, require

router = APIRouter()


def label_classes(ctx: WebContext) -> list[str]:
    """The detector's class list: the fixed order shared by every model (the taxonomy's)."""
    return list(taxonomy.DETECTOR_CLASSES)


def _day(s: str | None, end: bool = False) -> float | None:
    if not s:
        return None
    try:
        d = dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise HTTPException(422, "dates are YYYY-MM-DD") from None
    return (d + dt.timedelta(days=1 if end else 0)).timestamp()


def query_images(
    ctx: WebContext,
    *,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    labelled: bool | None = None,
    limit: int = 60,
) -> list[dict[str, Any]]:
    """Kept images as the search form asks (dates are whole UTC days, `date_to` included)."""
    return items.search_images(
        ctx.pipeline.db,
        reason=reason,
        batch=batch,
        verdict=verdict,
        since=_day(date_from),
        until=_day(date_to, end=True),
        labelled=labelled,
        limit=limit,
    )


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
    reason: str | None = Field(None, max_length=200)


@router.get("/tech/images")
def images_page(
    request: Request,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    _s: Session = Depends(require(*TECH)),
) -> Response:
    ctx = ctx_of(request)
    rows = query_images(
        ctx, reason=reason, batch=batch, verdict=verdict, date_from=date_from, date_to=date_to
    )
    batches = [b["id"] for b in ctx.pipeline.db.recent_batches(30)]
    reasons = items.reasons_on_images(ctx.pipeline.db, 50)
    f = {
        "reason": reason or "",
        "batch": batch or "",
        "verdict": verdict or "",
        "date_from": date_from or "",
        "date_to": date_to or "",
    }
    return page(
        request, "tech_images.html", rows=rows, batches=batches, reasons=sorted(reasons), f=f
    )


@router.get("/api/tech/images")
def images_api(
    request: Request,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    limit: int = 60,
    _s: Session = Depends(require(*TECH)),
) -> list[dict[str, Any]]:
    return query_images(
        ctx_of(request),
        reason=reason,
        batch=batch,
        verdict=verdict,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
    )


@router.get("/tech/label/{sha}")
def label_page(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    return page(request, "tech_label.html", sha=sha, width=w, height=h, classes=label_classes(ctx))


@router.get("/api/tech/labels/{sha}")
def get_label(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> dict:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    saved = labels.get(ctx.pipeline.db, sha)
    classes = label_classes(ctx)
    if saved:
        return {
            "sha": sha,
            "width": w,
            "height": h,
            "boxes": saved["boxes"],
            "saved": True,
            "updated_by": saved["updated_by"],
            "classes": classes,
        }
    return {
        "sha": sha,
        "width": w,
        "height": h,
        "boxes": suggested_boxes(ctx, sha, classes),
        "saved": False,
        "classes": classes,
    }


@router.put("/api/tech/labels/{sha}")
def put_label(
    sha: str, body: Label, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    classes = set(label_classes(ctx))
    boxes = []
    for b in body.boxes:
        if b.cls not in classes:
            raise HTTPException(422, f"unknown class {b.cls!r}")
        x, y, bw, bh = b.bbox
        x, y = max(0.0, x), max(0.0, y)
        bw, bh = min(bw, w - x), min(bh, h - y)
        if bw < 2 or bh < 2:
            raise HTTPException(422, "a box must lie on the image and be at least 2 px wide")
        boxes.append({"cls": b.cls, "bbox": [round(x, 1), round(y, 1), round(bw, 1), round(bh, 1)]})
    old = labels.save(ctx.pipeline.db, sha, boxes, s.username)
    ctx.audit.record(s.username, "label.save", target=sha, old=old, new=boxes, reason=body.reason)
    return {"sha": sha, "boxes": boxes}
