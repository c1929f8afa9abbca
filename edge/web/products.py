"""Product master pages: list, show, edit as a draft (technician), approve with an e-signature
(QA), YAML import and export; each product's challenge set shown with why it could not be
approved yet.

The pages read and write the shared database through `edge.recipes.products` (no line call):
an approved product is what the touchscreen and MES change over to; a draft changes nothing
until QA signs it. Saving a draft and approving go through the products API
(`POST /api/products`, `POST /api/products/{gtin}/{version}/approve`).
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import Response

from edge import taxonomy
from edge.domain import Reason
from edge.recipes.book import RecipeBook
from edge.recipes.documents import DocumentError, diff
from edge.recipes.products import Product, ProductMaster, challenge_problems
from edge.store import recipes as store
from edge.web.auth import Session
from edge.web.deps import MODELS_VIEW, QA, TECH, WebContext, ctx_of, page, require, signatures_for

router = APIRouter()

MAX_IMPORT_BYTES = 1 << 20
SCENARIOS = ("vials", "blisters", "cartons")


def _master(ctx: WebContext) -> tuple[ProductMaster, RecipeBook]:
    book = RecipeBook(ctx.audit.db, ctx.audit)
    master = ProductMaster(
        ctx.audit.db, ctx.audit, recipe_approved=lambda n: book.docs.approved(n) is not None
    )
    return master, book


def _choices(book: RecipeBook) -> dict[str, Any]:
    """What the editor offers: recipes with an approved version, scenarios, defects, reasons."""
    recipes = [
        {"name": n, "version": d["version"]}
        for n in book.docs.names()
        if (d := book.docs.approved(n)) is not None
    ]
    return {
        "recipes": recipes,
        "scenarios": SCENARIOS,
        "defects": sorted(
            set(taxonomy.DETECTOR_CLASSES + taxonomy.CODE_DEFECTS + taxonomy.PRINT_DEFECTS)
        ),
        "reasons": sorted(r.value for r in Reason),
    }


@router.get("/products")
def products_page(request: Request, s: Session = Depends(require(*MODELS_VIEW))) -> Response:
    ctx = ctx_of(request)
    master, _book = _master(ctx)
    return page(
        request,
        "tech_products.html",
        products=master.list(),
        can_edit=s.role in TECH,
    )


@router.get("/products/new")
def product_new(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    _, book = _master(ctx_of(request))
    blank = Product.model_construct(
        gtin="", name="", recipe="", scenario=None, challenge=[]
    ).model_dump(mode="json", warnings=False)
    return page(
        request,
        "tech_product.html",
        gtin=None,
        versions=[],
        doc=None,
        content={**blank, "camera": {}, "printed": {"fields": ["01", "17", "10", "21"]}},
        problems=[],
        changes={},
        signatures=[],
        runs=[],
        can_edit=True,
        can_sign=False,
        **_choices(book),
    )


@router.get("/products/{gtin}")
def product_page(
    gtin: str,
    request: Request,
    version: int | None = None,
    s: Session = Depends(require(*MODELS_VIEW)),
) -> Response:
    """One product: its versions, the chosen one's content and challenge set, what changed
    against the approved version, why it cannot be approved yet, its signatures."""
    ctx = ctx_of(request)
    master, book = _master(ctx)
    gtin = gtin.zfill(14)
    versions = master.docs.versions(gtin)
    if not versions:
        raise HTTPException(404, f"no product with GTIN {gtin}")
    try:
        doc = master.docs.get(gtin, version) if version else versions[-1]
    except DocumentError as exc:
        raise HTTPException(404, str(exc)) from None
    approved = master.docs.approved(gtin)
    problems = master.docs.check(doc["content"]) if doc["status"] == "draft" else []
    runs = [r for r in store.recent_challenge_runs(ctx.audit.db, 50) if r.get("gtin") == gtin]
    return page(
        request,
        "tech_product.html",
        gtin=gtin,
        versions=[{k: v for k, v in d.items() if k != "content"} for d in versions],
        doc={k: v for k, v in doc.items() if k != "content"},
        content=doc["content"],
        problems=problems,
        changes=diff(approved["content"], doc["content"])
        if approved and approved["version"] != doc["version"]
        else {},
        approved_version=approved["version"] if approved else None,
        signatures=signatures_for(ctx, master.docs.target(gtin, doc["version"])),
        runs=runs[:5],
        can_edit=s.role in TECH,
        can_sign=s.role in QA and doc["status"] == "draft",
        challenge_set_problems=_set_problems(doc["content"]),
        **_choices(book),
    )


def _set_problems(content: dict[str, Any]) -> list[str]:
    try:
        return challenge_problems(Product.model_validate(content))
    except ValueError as exc:
        return [str(exc)]


@router.get("/api/products/export.yaml")
def products_export(
    request: Request, gtin: str | None = None, _s: Session = Depends(require(*MODELS_VIEW))
) -> Response:
    """The approved (else latest) version of every product, or of one, as YAML `products:`
    (for moving products to another appliance, where they arrive as drafts)."""
    master, _book = _master(ctx_of(request))
    text = master.export_yaml([gtin.zfill(14)] if gtin else None)
    name = f"product-{gtin}.yaml" if gtin else "products.yaml"
    return Response(
        text,
        media_type="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/api/products/import")
async def products_import(
    request: Request, file: UploadFile = File(...), s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """A product file from another appliance: every product becomes a draft here (QA approves
    on this appliance); every problem of every product is said before anything is stored."""
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(413, "a product file is at most 1 MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "the product file is not UTF-8 text") from None
    master, _book = _master(ctx_of(request))
    try:
        stored = master.import_yaml(text, s.username)
    except yaml.YAMLError as exc:
        raise HTTPException(422, f"the product file is not valid YAML: {exc}") from None
    except ValueError as exc:  # keyed problems of the products
        raise HTTPException(422, str(exc)) from None
    return {"imported": [{"gtin": g, "version": v} for g, v in stored]}
