"""Recipes and products over HTTP: technicians save drafts, QA approves with an e-signature.

The web process reads and writes the shared database through `edge.recipes` (no line call):
a draft or an approval changes what the line runs only at the next changeover, when the line
loads the approved version. These are the API the editor's pages (`recipe_editor.py`) and
other tools use.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from edge.recipes.book import RecipeBook
from edge.recipes.documents import DocumentError, Documents
from edge.recipes.products import Product, ProductMaster
from edge.web.auth import Session
from edge.web.deps import MODELS_VIEW, QA, TECH, Signed, WebContext, ctx_of, esign, require

router = APIRouter()


def _book(ctx: WebContext) -> RecipeBook:
    return RecipeBook(ctx.audit.db, ctx.audit)


def _products(ctx: WebContext) -> ProductMaster:
    book = _book(ctx)
    return ProductMaster(ctx.audit.db, ctx.audit, lambda n: book.docs.approved(n) is not None)


def _rows(docs: Documents, name: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "content"} for d in docs.versions(name)]


def _approve(
    ctx: WebContext, s: Session, docs: Documents, name: str, version: int, body: Signed
) -> dict[str, Any]:
    try:
        doc = docs.get(name, version)
    except DocumentError as exc:
        raise HTTPException(404, str(exc)) from None
    problems = docs.check(doc["content"])
    if problems:  # refused before the signature is taken
        raise HTTPException(409, f"cannot approve {name} v{version}: " + "; ".join(problems))
    sig = esign(ctx, s, body.password, body.reason, "approved", docs.target(name, version))
    try:
        done = docs.approve(name, version, sig)
    except DocumentError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"name": name, "version": version, "status": done["status"], "signature": sig}


@router.get("/api/recipes")
def recipes_list(request: Request, _s: Session = Depends(require(*MODELS_VIEW))) -> dict:
    docs = _book(ctx_of(request)).docs
    return {n: _rows(docs, n) for n in docs.names()}


@router.get("/api/recipes/{name}/{a}/diff/{b}")
def recipes_diff(
    name: str, a: int, b: int, request: Request, _s: Session = Depends(require(*MODELS_VIEW))
) -> dict:
    try:
        return _book(ctx_of(request)).docs.diff(name, a, b)
    except DocumentError as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/api/recipes/{name}/{version}/approve")
def recipes_approve(
    name: str, version: int, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict:
    ctx = ctx_of(request)
    return _approve(ctx, s, _book(ctx).docs, name, version, body)


@router.get("/api/products")
def products_list(request: Request, _s: Session = Depends(require(*MODELS_VIEW))) -> list:
    return _products(ctx_of(request)).list()


@router.post("/api/products")
def products_draft(
    body: dict[str, Any], request: Request, s: Session = Depends(require(*TECH))
) -> dict:
    """A technician's edit: a new draft version of the product (validated, keyed errors)."""
    try:
        product = Product.model_validate(body)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(x) for x in e["loc"]) or "(root)", "error": e["msg"]}
            for e in exc.errors()
        ]
        raise HTTPException(422, errors) from None
    v = _products(ctx_of(request)).save_draft(product, s.username)
    return {"gtin": product.gtin, "version": v}


@router.post("/api/products/{gtin}/{version}/approve")
def products_approve(
    gtin: str, version: int, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict:
    ctx = ctx_of(request)
    return _approve(ctx, s, _products(ctx).docs, gtin.zfill(14), version, body)
