"""Technician routes for dataset versions: every label frozen at once, never overwritten.

The building itself (YOLO files, train/val split, manifest, read-only files) lives with
the other dataset code in `edge.train.dataset_versions`; this module reads the labels
and images from the store, maps a refusal to 409 and writes the audit entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.store import labels
from edge.train.dataset_versions import DatasetError, build_version, list_versions
from edge.web.auth import Session
from edge.web.deps import TECH, WebContext, ctx_of, page, require
from edge.web.images import label_classes

router = APIRouter()


def datasets_dir(ctx: WebContext) -> Path:
    d = ctx.state_dir / "datasets"
    d.mkdir(parents=True, exist_ok=True)
    return d


def list_datasets(ctx: WebContext) -> list[dict[str, Any]]:
    return list_versions(datasets_dir(ctx))


def build_dataset(ctx: WebContext, by: str, note: str | None, val_fraction: float) -> dict:
    """Every labelled image, frozen into a YOLO dataset with a manifest of SHA-256s."""
    try:
        return build_version(
            datasets_dir(ctx),
            labels.labelled_images(ctx.pipeline.db),
            ctx.pipeline.images.get,  # a regular file of the store, never a link
            label_classes(ctx),
            by=by,
            note=note,
            val_fraction=val_fraction,
        )
    except DatasetError as exc:
        raise HTTPException(409, str(exc)) from None


class DatasetBuild(BaseModel):
    note: str | None = Field(None, max_length=200)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)


@router.get("/tech/datasets")
def datasets_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    n = labels.count(ctx.pipeline.db)
    return page(request, "tech_datasets.html", datasets=list_datasets(ctx), labelled=n)


@router.post("/api/tech/datasets")
def datasets_build(
    body: DatasetBuild, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    res = build_dataset(ctx, s.username, body.note, body.val_fraction)
    ctx.audit.record(s.username, "dataset.build", target=res["version"], new=res, reason=body.note)
    return res
