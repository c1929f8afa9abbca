"""Image uploads (technician): checked by content and size before a pixel is decoded.

The browser's file name is never used; the image is stored under the SHA-256 of its
pixels. Reading the header, decoding, PNG encoding and the database writes run in a worker
thread, so neither a large image nor a crafted header stalls the panels.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from edge import untrusted_images
from edge.untrusted_images import ImageRefused
from edge.web.auth import Session
from edge.web.deps import TECH, WebContext, ctx_of, require

router = APIRouter()

MAX_UPLOAD = 10 * 1024 * 1024


def max_pixels(ctx: WebContext) -> int:
    return int(ctx.pipeline.cfg.web.max_image_pixels)


@router.post("/api/tech/upload")
async def upload(
    request: Request, file: UploadFile = File(...), s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """An image from elsewhere: PNG, JPEG or BMP by content, at most 10 MB and
    `web.max_image_pixels` pixels (413 otherwise), stored under its SHA-256."""
    ctx = ctx_of(request)
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"image larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    try:  # header first, then the decode: all of it off the event loop
        return await run_in_threadpool(_store, ctx, data, s.username)
    except ImageRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None


def _store(ctx: WebContext, data: bytes, user: str) -> dict[str, Any]:
    img = untrusted_images.decode(data, max_pixels(ctx))  # refused from its header first
    h, w = img.shape[:2]
    sha, rel = ctx.pipeline.images.put(img)
    with ctx.pipeline.db.transaction() as c:
        ctx.pipeline.db.add_image(c, sha, rel, w, h)
    ctx.audit.record(
        user, "image.upload", target=sha, new={"width": w, "height": h, "bytes": len(data)}
    )
    return {"sha": sha, "width": w, "height": h, "label": f"/tech/label/{sha}"}
