"""Technician routes: teach a product from good images (a good-only anomaly model).

The technician picks good images in the image store (ticked in the image browser, or
every image of a product marked good, uploads included), names the model, and starts the
fit as a low-priority job (`jobs.py`, `edge.anomaly.job`). The pick is checked here
before anything runs (enough images, one size, a region inside them), so a refusal comes
at once. The job's page shows the distribution of the good images' held-out scores with
the proposed threshold, the held-back (unseen) good images' scores, and names any good
image that scored far out. The candidate then goes through QA approval with an
e-signature on the models page, like a detector.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.anomaly.teach_set import TeachSetError, split
from edge.models.registry import NAME_PATTERN
from edge.web.auth import Session
from edge.web.charts import histogram_svg
from edge.web.deps import MODELS_VIEW, TECH, WebContext, ctx_of, page, require
from edge.web.images import products, query_images
from edge.web.jobs import JobError, jobs_of
from edge.web.models import models_dir, models_dir_arg

router = APIRouter()

KIND = "anomaly_fit"
#: most images one fit takes (the image browser's largest page)
MAX_IMAGES = 500


class FitStart(BaseModel):
    name: str = Field(..., pattern=NAME_PATTERN)
    version: str | None = Field(None, pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")
    #: the good images by SHA-256 (ticked in the image browser) ...
    images: list[str] = Field(default_factory=list, max_length=MAX_IMAGES)
    #: ... or every image of this product marked good (line images and uploads)
    product: str | None = Field(None, max_length=64)
    roi: tuple[int, int, int, int] | None = None
    input: str = Field("768x512", pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$")
    memory: int = Field(2000, ge=100, le=20000)
    target_frr: float = Field(0.01, gt=0, lt=0.5)
    hold_every: int = Field(5, ge=2, le=20)


def good_of_product(ctx: WebContext, product: str) -> list[str]:
    """Every image of a product marked good, oldest first (a stable pick: which images are
    held back must not change between two looks at the same set)."""
    rows = query_images(ctx, product=product, label="good", limit=MAX_IMAGES)
    rows.sort(key=lambda r: (r["when"] or 0.0, r["image_sha256"]))
    return [r["image_sha256"] for r in rows]


def _checked_pick(ctx: WebContext, body: FitStart) -> tuple[list[str], tuple[int, int]]:
    """The pick, refused in plain words when a fit could not use it."""
    if body.images and body.product:
        raise HTTPException(422, "Pick images or a product, not both.")
    shas = list(dict.fromkeys(s.lower() for s in body.images))
    if body.product:
        shas = good_of_product(ctx, body.product)
    if not shas:
        raise HTTPException(
            422,
            "No good images picked: tick them in the image browser, or "
            "name a product whose images are marked good.",
        )
    try:
        split(shas, body.hold_every)
    except TeachSetError as exc:
        raise HTTPException(422, str(exc)) from None
    sizes: dict[tuple[int, int], int] = {}
    for sha in shas:
        size = ctx.pipeline.db.image_size(sha)
        if size is None or not ctx.pipeline.images.path_for(sha).is_file():
            raise HTTPException(404, f"image {sha[:12]}… is not on the appliance")
        sizes[tuple(size)] = sizes.get(tuple(size), 0) + 1
    if len(sizes) > 1:
        detail = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.items())
        raise HTTPException(
            422, f"The images are of mixed sizes ({detail}): one camera set-up per model."
        )
    (w, h) = next(iter(sizes))
    if body.roi is not None:
        x, y, rw, rh = body.roi
        if rw <= 0 or rh <= 0 or x < 0 or y < 0 or x + rw > w or y + rh > h:
            raise HTTPException(
                422, f"The region {list(body.roi)} lies outside the {w}x{h} images."
            )
    return shas, (w, h)


@router.post("/api/tech/anomaly/fit")
def fit_start(body: FitStart, request: Request, s: Session = Depends(require(*TECH))) -> dict:
    """Start fitting a candidate anomaly model on good images, as a low-priority job."""
    from edge.models.registry import ModelRegistry

    ctx = ctx_of(request)
    shas, size = _checked_pick(ctx, body)
    version = body.version or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if version in ModelRegistry(models_dir(ctx)).versions(body.name):
        raise HTTPException(409, f"{body.name} {version} exists: versions are never overwritten")
    args = {
        **body.model_dump(exclude={"images"}),
        "version": version,
        "images": {sha: str(ctx.pipeline.images.path_for(sha).resolve()) for sha in shas},
        "image_size": list(size),
        "models_dir": models_dir_arg(ctx),
    }
    try:
        jid = jobs_of(ctx).start(KIND, args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    audit = {**body.model_dump(exclude={"images"}), "version": version, "images": len(shas)}
    ctx.audit.record(s.username, "anomaly.fit.start", target=jid, new=audit)
    return {"job": jid, "name": body.name, "version": version, "images": len(shas)}


@router.get("/tech/anomaly")
def fit_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    jobs = [j for j in jobs_of(ctx).list() if j["kind"] == KIND]
    counts = {p: len(good_of_product(ctx, p)) for p in products(ctx)}
    return page(request, "tech_anomaly.html", jobs=jobs, products=counts)


def score_histogram(scores: list[float], threshold: float, title: str) -> str:
    """Good scores in bins up to a little past the threshold, the threshold marked."""
    if not scores:
        return histogram_svg([0.0, 1.0], [], title=title)
    lo = min(min(scores), threshold) * 0.98
    hi = max(max(scores), threshold) * 1.02
    n = max(8, min(40, len(scores) // 3))
    edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
    counts = [0] * n
    for v in scores:
        counts[min(n - 1, int((v - lo) / (hi - lo) * n))] += 1
    return histogram_svg(
        edges, counts, title=title, unit="", mark=threshold, mark_label="threshold"
    )


def fit_view(ctx: WebContext, job: dict[str, Any]) -> dict[str, Any]:
    """What the result page shows: the card's held-out scores, the job's unseen scores."""
    from edge.models.cards import ModelError
    from edge.models.registry import ModelRegistry

    res = job.get("result") or {}
    view: dict[str, Any] = {"result": res}
    if not res.get("version"):
        return view
    try:
        card = ModelRegistry(models_dir(ctx)).card(res["name"], res["version"])
    except ModelError as exc:  # discarded since
        view["missing"] = str(exc)
        return view
    spec = (card.model_extra or {}).get("anomaly") or {}
    held = (spec.get("held_out") or {}).get("scores") or []
    t = float(spec.get("threshold") or res["threshold"])
    unseen = res.get("unseen") or {}
    view.update(
        card=card,
        spec=spec,
        threshold=t,
        held_svg=score_histogram(held, t, f"held-out scores of the {len(held)} fitted images"),
        unseen_svg=score_histogram(
            list(unseen.values()), t, f"scores of the {len(unseen)} held-back good images"
        ),
        unseen_rows=sorted(unseen.items(), key=lambda kv: -kv[1]),
        above=[k for k, v in unseen.items() if v > t],
    )
    return view


@router.get("/tech/anomaly/{jid}")
def fit_result(jid: str, request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    try:
        job = jobs_of(ctx).status(jid, log_tail=3000)
    except JobError as exc:
        raise HTTPException(404, str(exc)) from None
    if job.get("kind") != KIND:
        raise HTTPException(404, f"{jid} is not a fit job")
    return page(request, "tech_anomaly_job.html", job=job, **fit_view(ctx, job))


@router.get("/models/{name}/{version}/scores.svg")
def model_scores(
    name: str, version: str, request: Request, _s: Session = Depends(require(*MODELS_VIEW))
) -> Response:
    """An anomaly model's held-out good scores and its threshold, from its card: what QA
    looks at on the models page before signing."""
    from edge.models.cards import ModelError
    from edge.models.registry import ModelRegistry

    try:
        card = ModelRegistry(models_dir(ctx_of(request))).card(name, version)
    except ModelError as exc:
        raise HTTPException(404, str(exc)) from None
    spec = (card.model_extra or {}).get("anomaly") or {}
    if card.task != "anomaly" or not spec.get("threshold"):
        raise HTTPException(404, f"{name} {version} is not an anomaly model")
    held = (spec.get("held_out") or {}).get("scores") or []
    svg = score_histogram(
        held, float(spec["threshold"]), f"held-out scores of the {len(held)} good images"
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
