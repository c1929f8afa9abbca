"""Technician routes for training runs, and the status and cancel routes of every job.

A training run trains a candidate model on one frozen dataset version, in a low-priority
child process (`jobs.py`); the new model is registered as a candidate and drives nothing
until QA approves it on the models page.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.models.registry import NAME_PATTERN, product_model_name
from edge.store import product_classes
from edge.train.dataset import MIN_EXAMPLES
from edge.train.starts import propose, shipped_classes
from edge.web.auth import Session
from edge.web.datasets import datasets_dir, list_datasets
from edge.web.deps import MODELS_VIEW, TECH, WebContext, ctx_of, page, require
from edge.web.images import products
from edge.web.jobs import JobError, jobs_of
from edge.web.models import models_dir_arg
from edge.web.uploads import default_product

router = APIRouter()


class TrainStart(BaseModel):
    dataset: str = Field(..., pattern=r"^ds-[0-9-]+$")
    epochs: int = Field(10, ge=1, le=300)
    #: 0: proposed from the labelled box sizes (`edge.train.sizes`)
    imgsz: int = Field(0, ge=0, le=1280, multiple_of=32)
    batch: int = Field(8, ge=1, le=64)
    #: a time budget: training stops after this many minutes even before `epochs` (the
    #: best epoch so far is kept); None: every epoch is run
    minutes: float | None = Field(None, gt=0, le=600)
    #: fewer labelled boxes of a class than this refuses the run (a useless model otherwise);
    #: a technician lowers it on purpose for a trial run of the path, and the audit says so
    min_examples: int = Field(MIN_EXAMPLES, ge=1, le=1000)
    #: the product (a recipe, or a product photos were uploaded for): picks the model's
    #: name; None: the dataset's product, else the line's recipe
    product: str | None = Field(None, max_length=64)
    #: None: the product's model (`product_model_name`)
    model_name: str | None = Field(None, pattern=NAME_PATTERN)
    #: where training starts (`edge.train.starts`); None: the proposal for the dataset's
    #: classes (shipped detector for its own classes, ImageNet backbone for new ones)
    start: Literal["shipped", "imagenet"] | None = None


@router.get("/tech/train")
def train_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    known = shipped_classes(models_dir_arg(ctx))
    datasets = [
        {**d, "start": propose(list(d.get("names") or []), known)} for d in list_datasets(ctx)
    ]
    return page(
        request,
        "tech_train.html",
        datasets=datasets,
        jobs=jobs_of(ctx).list(),
        products=products(ctx),
        line_product=default_product(ctx),
    )


def _known_product(ctx: WebContext, name: str) -> bool:
    """A recipe, a product photos were uploaded for, or one given its own classes."""
    return name in products(ctx) or bool(product_classes.added(ctx.pipeline.db, name))


@router.post("/api/tech/train")
def train_start(
    body: TrainStart, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    ds = datasets_dir(ctx) / body.dataset
    if not (ds / "manifest.json").is_file():
        raise HTTPException(404, f"no dataset version {body.dataset}")
    recipes = ctx.pipeline.cfg.recipes
    of_dataset = next(
        (d.get("product") for d in list_datasets(ctx) if d["version"] == body.dataset), None
    )
    product = body.product or of_dataset or ctx.pipeline.recipe.name
    recipe = recipes.get(product) or (
        ctx.pipeline.recipe if not (body.product or of_dataset) else None
    )
    if recipe is None and not _known_product(ctx, product):
        raise HTTPException(422, f"no product (recipe) named {product!r}")
    args = {
        **body.model_dump(),
        "product": product,
        "model_name": body.model_name or product_model_name(recipe or product),
        "dataset": str(ds.resolve()),
        "models_dir": models_dir_arg(ctx),
    }
    try:
        jid = jobs_of(ctx).start("train", args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(s.username, "training.start", target=jid, new=body.model_dump())
    return {"job": jid}


@router.get("/api/jobs/{jid}")
def job_status(jid: str, request: Request, _s: Session = Depends(require(*MODELS_VIEW))) -> dict:
    try:
        return jobs_of(ctx_of(request)).status(jid)
    except JobError as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/api/jobs/{jid}/cancel")
def job_cancel(jid: str, request: Request, s: Session = Depends(require(*TECH))) -> dict:
    ctx = ctx_of(request)
    try:
        ok = jobs_of(ctx).cancel(jid)
    except JobError as exc:
        raise HTTPException(404, str(exc)) from None
    if not ok:
        raise HTTPException(409, "the job is not running")
    ctx.audit.record(s.username, "job.cancel", target=jid)
    return {"job": jid, "cancelled": True}
