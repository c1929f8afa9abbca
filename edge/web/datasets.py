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

from edge.store import labels, uploads
from edge.train.dataset import GOOD_VAL_FRACTION
from edge.train.dataset_versions import DatasetError, build_version, list_versions
from edge.web.auth import Session
from edge.web.classes import label_classes, line_products
from edge.web.deps import TECH, WebContext, ctx_of, page, require
from edge.web.images import products

router = APIRouter()


def datasets_dir(ctx: WebContext) -> Path:
    d = ctx.state_dir / "datasets"
    d.mkdir(parents=True, exist_ok=True)
    return d


def list_datasets(ctx: WebContext) -> list[dict[str, Any]]:
    return list_versions(datasets_dir(ctx))


def product_images(ctx: WebContext, product: str | None) -> list[labels.LabelledImage]:
    """The labelled images of a product: its uploads, and for a line product (or None) the
    line's own images too. Another product's photos never enter (their classes differ)."""
    line = line_products(ctx)
    out = []
    for im in labels.labelled_images(ctx.pipeline.db):
        of = uploads.product_of(ctx.pipeline.db, im.sha256)
        if (
            of == product
            or (of is None and product in (None, *line))
            or (product is None and of in line)
        ):
            out.append(im)
    return out


def build_dataset(
    ctx: WebContext,
    by: str,
    note: str | None,
    val_fraction: float,
    product: str | None = None,
    good_val_fraction: float = GOOD_VAL_FRACTION,
) -> dict:
    """Every labelled image of a product (None: the line's), frozen into a YOLO dataset
    with the product's class list and a manifest of SHA-256s."""
    classes = label_classes(ctx, product)
    if not classes:
        raise HTTPException(
            409, f"Product {product} has no defect classes yet: add one on a photo's label page."
        )
    try:
        return build_version(
            datasets_dir(ctx),
            product_images(ctx, product),
            ctx.pipeline.images.get,  # a regular file of the store, never a link
            classes,
            by=by,
            note=note,
            val_fraction=val_fraction,
            product=product,
            good_val_fraction=good_val_fraction,
        )
    except DatasetError as exc:
        raise HTTPException(409, str(exc)) from None


class DatasetBuild(BaseModel):
    note: str | None = Field(None, max_length=200)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    #: the good photos' share of validation (the operating threshold is set on them)
    good_val_fraction: float = Field(GOOD_VAL_FRACTION, gt=0, lt=0.9)
    #: None: the line's own images with the line's classes
    product: str | None = Field(None, max_length=40)


@router.get("/tech/datasets")
def datasets_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    n = labels.count(ctx.pipeline.db)
    return page(
        request,
        "tech_datasets.html",
        datasets=list_datasets(ctx),
        labelled=n,
        products=products(ctx),
    )


@router.post("/api/tech/datasets")
def datasets_build(
    body: DatasetBuild, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    product = None
    if body.product:
        try:
            product = uploads.check_product(body.product)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    res = build_dataset(
        ctx, s.username, body.note, body.val_fraction, product, body.good_val_fraction
    )
    ctx.audit.record(s.username, "dataset.build", target=res["version"], new=res, reason=body.note)
    return res
