"""Image uploads (technician): checked by content and size before a pixel is decoded.

The browser's file name is never used to name a file; the image is stored under the
SHA-256 of its pixels and recorded with its product (`edge/store/uploads.py`, which the
shell's `edge images import` goes through too). Several files (a selection or a whole
folder) come in one request; each is checked on its own, so one bad file is reported by
name and the rest are kept. Reading the header, decoding, PNG encoding and the database
writes run in a worker thread, so neither a large image nor a crafted header stalls the
panels.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from edge.store import uploads
from edge.untrusted_images import ImageRefused
from edge.web.auth import Session
from edge.web.deps import TECH, WebContext, ctx_of, require

router = APIRouter()

MAX_UPLOAD = 10 * 1024 * 1024
#: files in one request: a folder of a few hundred photos is sent in several requests
MAX_FILES = 100
TOO_LARGE = f"The image is larger than {MAX_UPLOAD // (1024 * 1024)} MB."


def max_pixels(ctx: WebContext) -> int:
    return int(ctx.pipeline.cfg.web.max_image_pixels)


def default_product(ctx: WebContext) -> str:
    """Until the technician names one: the active recipe's name, made a product name."""
    name = str(ctx.pipeline.cfg.recipe or "line").lower()
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40] or "line"


def _product(ctx: WebContext, product: str | None) -> str:
    try:
        return uploads.check_product(product or default_product(ctx))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/api/tech/upload")
async def upload(
    request: Request,
    file: UploadFile = File(...),
    product: str | None = Form(None),
    s: Session = Depends(require(*TECH)),
) -> dict[str, Any]:
    """One image from elsewhere: PNG, JPEG or BMP by content, at most 10 MB and
    `web.max_image_pixels` pixels (413 otherwise), stored under its SHA-256."""
    ctx = ctx_of(request)
    prod = _product(ctx, product)
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, TOO_LARGE)
    try:  # header first, then the decode: all of it off the event loop
        r = await run_in_threadpool(_store, ctx, data, s.username, prod, file.filename or "")
    except ImageRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return {**r, "label": f"/tech/label/{r['sha']}"}


@router.post("/api/tech/uploads")
async def upload_many(
    request: Request,
    files: list[UploadFile] = File(...),
    product: str | None = Form(None),
    s: Session = Depends(require(*TECH)),
) -> dict[str, Any]:
    """Several images (a selection or a folder) for one product: each checked as a single
    upload is; the answer lists what was stored and what was refused, with why."""
    ctx = ctx_of(request)
    prod = _product(ctx, product)
    if len(files) > MAX_FILES:
        raise HTTPException(413, f"At most {MAX_FILES} files at once; send the rest after.")
    stored: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for f in files:
        name = f.filename or ""
        data = await f.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            refused.append({"name": name, "status": 413, "detail": TOO_LARGE})
            continue
        try:
            stored.append(await run_in_threadpool(_store, ctx, data, s.username, prod, name))
        except ImageRefused as exc:
            refused.append({"name": name, "status": exc.status, "detail": str(exc)})
    return {"product": prod, "stored": stored, "refused": refused}


def _store(ctx: WebContext, data: bytes, user: str, product: str, name: str) -> dict[str, Any]:
    return uploads.ingest(
        ctx.pipeline.db,
        ctx.pipeline.images,
        ctx.audit,
        data,
        user=user,
        product=product,
        name=name,
        via="web",
        max_pixels=max_pixels(ctx),
    )
