"""Technician routes for a product's defect classes: the labeller's class list.

A line product (one of the configured recipes, and the line's own images) labels with the
taxonomy's detector classes, the ones its model already finds; any other product (photos
uploaded for a new product) starts with none. The technician adds a product's classes here
(audited); the labeller offers exactly that list, a dataset version of the product freezes
it, and the candidate trained on it carries it on its card for QA to approve with the model.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from edge import taxonomy
from edge.store import product_classes, uploads
from edge.web.auth import Session
from edge.web.deps import TECH, WebContext, ctx_of, require
from edge.web.uploads import default_product

router = APIRouter()


def line_products(ctx: WebContext) -> set[str]:
    """The products the line makes: the recipes' names, and the name its images go by."""
    return set(ctx.pipeline.cfg.recipes) | {default_product(ctx)}


def label_classes(ctx: WebContext, product: str | None = None) -> list[str]:
    """The classes a label of `product` may use (None: the line's own images): the taxonomy's
    detector classes for a line product, then the classes added for the product."""
    base = list(taxonomy.DETECTOR_CLASSES) if product in (None, *line_products(ctx)) else []
    extra = product_classes.added(ctx.pipeline.db, product) if product else []
    return base + [c for c in extra if c not in base]


def _product(product: str) -> str:
    try:
        return uploads.check_product(product)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/api/tech/products/{product}/classes")
def get_classes(
    product: str, request: Request, _s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    product = _product(product)
    return {"product": product, "classes": label_classes(ctx, product)}


class NewClass(BaseModel):
    cls: str = Field(..., min_length=1, max_length=40)
    reason: str | None = Field(None, max_length=200)


@router.post("/api/tech/products/{product}/classes")
def add_class(
    product: str, body: NewClass, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """Add a defect class to a product's list (audited); adding one it has is a no-op."""
    ctx = ctx_of(request)
    product = _product(product)
    try:
        cls = product_classes.check_class(body.cls)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    old = label_classes(ctx, product)
    if cls not in old:
        product_classes.add(ctx.pipeline.db, product, cls, s.username)
        ctx.audit.record(
            s.username,
            "product.class.add",
            target=f"product:{product}",
            old=old,
            new=label_classes(ctx, product),
            reason=body.reason,
        )
    return {"product": product, "classes": label_classes(ctx, product)}
