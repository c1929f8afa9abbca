"""Evidence images: a kept reject image with the anomaly tool's heat map drawn over it.

The heat map is recorded in the ANOMALY finding (`edge.anomaly.evidence`) of the item
row that names the image, so the overlay is drawn on request from what was recorded:
nothing besides the reject image is stored, and what is shown is what decided.
"""

from __future__ import annotations

import re

import cv2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from edge import untrusted_images
from edge.anomaly.evidence import heats_of, overlay
from edge.store import items
from edge.web.auth import Session
from edge.web.deps import LINE_VIEW, ctx_of, require

router = APIRouter()

SHA = re.compile(r"^[0-9a-f]{64}$")


@router.get("/images/{sha}/heat.png")
def heat_image(sha: str, request: Request, _s: Session = Depends(require(*LINE_VIEW))) -> Response:
    """The reject image with its recorded heat map(s) over the anomalous region(s)."""
    sha = sha.lower()
    if not SHA.match(sha):
        raise HTTPException(404, "no such image")
    ctx = ctx_of(request)
    marks = items.latest_marks(ctx.pipeline.db, sha)
    heats = heats_of(marks[0]) if marks else []
    if not heats:
        raise HTTPException(404, "no anomaly heat map was recorded with this image")
    data = ctx.pipeline.images.get(sha)
    if data is None:
        raise HTTPException(404, "no such image")
    try:
        img = untrusted_images.decode(data, untrusted_images.LARGEST)
    except untrusted_images.ImageRefused as exc:
        raise HTTPException(422, str(exc)) from None
    ok, buf = cv2.imencode(".png", overlay(img, heats), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise HTTPException(500, "the overlay could not be encoded")
    return Response(
        buf.tobytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )
