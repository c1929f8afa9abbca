"""Model routes: evaluation and shadow runs (technician, QA), promotion and rollback (QA).

A candidate is compared with the approved model on an independent test set (evaluation)
or on recorded images (shadow, drives no rejects), each in a job process. QA promotes a
verified candidate, or rolls back, with an electronic signature that goes into the audit
trail and the model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.train.dataset_versions import evaluation_sets
from edge.train.line_eval import has_item_truth
from edge.web.auth import Session
from edge.web.datasets import datasets_dir
from edge.web.deps import MODELS_VIEW, QA, TECH, Signed, WebContext, ctx_of, esign, page, require
from edge.web.images import label_classes
from edge.web.jobs import JobError, jobs_of

router = APIRouter()


def models_dir(ctx: WebContext) -> list[Path]:
    """The registry's roots: candidates under the state directory, shipped models read-only."""
    from edge.models.registry import model_roots

    return model_roots(ctx.state_dir, ctx.pipeline.cfg.inference.models_dir)


def models_dir_arg(ctx: WebContext) -> list[str]:
    """The roots as a job's argument (absolute: the job runs in its own folder)."""
    return [str(p.resolve()) for p in models_dir(ctx)]


def _registry(ctx: WebContext):
    from edge.models.registry import ModelRegistry

    return ModelRegistry(models_dir(ctx))


@router.get("/models")
def models_page(request: Request, s: Session = Depends(require(*MODELS_VIEW))) -> Response:
    ctx = ctx_of(request)
    cards = []
    try:
        reg = _registry(ctx)
        cards = [
            {**c.model_dump(mode="json"), "writable": reg.writable(c.name, c.version)}
            for c in reg.list()
        ]
    except Exception as exc:
        cards = [{"name": "?", "version": "?", "status": f"unreadable: {exc}"}]
    testsets = evaluation_sets(datasets_dir(ctx), [c.get("dataset") or {} for c in cards])
    return page(
        request,
        "models.html",
        cards=cards,
        testsets=testsets,
        jobs=[j for j in jobs_of(ctx).list() if j["kind"] in ("evaluate", "shadow")],
        can_sign=s.role in QA,
        can_discard=s.role in TECH,
    )


class Compare(BaseModel):
    name: str = Field(..., pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    candidate: str = Field(..., max_length=40)
    approved: str | None = Field(None, max_length=40)
    test_set: str | None = Field(None, max_length=80)
    limit: int = Field(200, ge=1, le=5000)


def _check_independent(ctx: WebContext, body: Compare, test_dir: Path) -> None:
    """Refuse, in plain words, what cannot judge the candidate: a failed job's leftover,
    a set the candidate (or the approved model) was trained on, a set with no defects."""
    from edge.models.cards import ModelError
    from edge.train.detector_metrics import require_defects

    reg = _registry(ctx)
    try:
        card = reg.card(body.name, body.candidate)
    except ModelError as exc:
        raise HTTPException(404, str(exc)) from None
    if card.status == "failed":
        raise HTTPException(
            409, f"{body.name} {body.candidate} comes from a failed job: discard it and train again"
        )
    approved = reg.approved(body.name)
    trained = [c.dataset for c in (card, approved) if c is not None]
    if body.test_set not in evaluation_sets(test_dir.parent, trained):
        raise HTTPException(
            409,
            f"{body.test_set} was used to train this model: pick a set it has never seen",
        )
    images = test_dir / "images" / "val" if (test_dir / "images" / "val").is_dir() else test_dir
    try:
        require_defects(images, card.classes)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None


def _approved_version(ctx: WebContext, name: str) -> str | None:
    card = _registry(ctx).approved(name)
    return card.version if card else None


@router.post("/api/models/evaluate")
def models_evaluate(
    body: Compare, request: Request, s: Session = Depends(require(*MODELS_VIEW))
) -> dict[str, Any]:
    """Candidate vs approved on an independent test set, in a job process."""
    ctx = ctx_of(request)
    if not body.test_set or "/" in body.test_set or body.test_set.startswith("."):
        raise HTTPException(422, "pick a test set")
    test_dir = datasets_dir(ctx) / body.test_set
    if not test_dir.is_dir():
        raise HTTPException(404, f"no test set {body.test_set}")
    _check_independent(ctx, body, test_dir)
    args = {
        "name": body.name,
        "candidate": body.candidate,
        "approved": body.approved or _approved_version(ctx, body.name),
        "test_dir": str(
            (test_dir / "images" / "val") if (test_dir / "images" / "val").is_dir() else test_dir
        ),
        "models_dir": models_dir_arg(ctx),
    }
    if has_item_truth(test_dir):  # an `edge sim` export: item-level rates through the recipe
        args |= {
            "line_dir": str(test_dir),
            "recipe": ctx.pipeline.recipe.model_dump(mode="json"),
            "limit": body.limit,
        }
    try:
        jid = jobs_of(ctx).start("evaluate", args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job": jid}


@router.post("/api/models/shadow")
def models_shadow(
    body: Compare, request: Request, s: Session = Depends(require(*MODELS_VIEW))
) -> dict[str, Any]:
    """Candidate beside the approved model on recorded images (drives no rejects)."""
    ctx = ctx_of(request)
    approved = body.approved or _approved_version(ctx, body.name)
    if approved is None:
        raise HTTPException(409, f"model {body.name} has no approved version to compare with")
    _registry(ctx).card(body.name, body.candidate)
    args = {
        "name": body.name,
        "candidate": body.candidate,
        "approved": approved,
        "limit": body.limit,
        "state_dir": str(ctx.state_dir.resolve()),
        "models_dir": models_dir_arg(ctx),
        "reject_classes": [c for c in label_classes(ctx) if c != "code"],
        "recipe": ctx.pipeline.recipe.model_dump(mode="json"),  # judged as the line judges
    }
    try:
        jid = jobs_of(ctx).start("shadow", args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job": jid}


@router.post("/api/models/{name}/{version}/approve")
def models_approve(
    name: str, version: str, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    """Promote a verified candidate. Needs an e-signature (password again, and a reason)."""
    from edge.models.cards import ModelError

    ctx = ctx_of(request)
    reg = _registry(ctx)
    try:
        card = reg.card(name, version)
    except ModelError as exc:
        raise HTTPException(404, str(exc)) from None
    target = f"model:{name}/{version}"
    sig = esign(
        ctx, s, body.password, body.reason, "approval: release model for production", target
    )
    try:
        card = reg.approve(
            name,
            version,
            by=s.username,
            reason=body.reason,
            audit=ctx.audit.hook(s.username, body.reason, target),
        )
    except ModelError as exc:
        ctx.audit.record(s.username, "model.approve.refused", target=target, reason=str(exc))
        raise HTTPException(409, str(exc)) from None
    _attach_signature(reg, name, version, sig)
    return {"name": name, "version": version, "status": card.status, "signature": sig}


class Discard(BaseModel):
    reason: str = Field("", max_length=500)


@router.post("/api/models/{name}/{version}/discard")
def models_discard(
    name: str, version: str, body: Discard, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """Remove a candidate or a failed job's leftover (audited); approved, retired and
    shipped versions stay."""
    from edge.models.cards import ModelError

    ctx = ctx_of(request)
    reg = _registry(ctx)
    target = f"model:{name}/{version}"
    try:
        reg.card(name, version)
    except ModelError as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        reg.discard(
            name,
            version,
            by=s.username,
            reason=body.reason,
            audit=ctx.audit.hook(s.username, body.reason, target),
        )
    except ModelError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"name": name, "version": version, "discarded": True}


@router.post("/api/models/{name}/rollback")
def models_rollback(
    name: str, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    from edge.models.cards import ModelError

    ctx = ctx_of(request)
    reg = _registry(ctx)
    target = f"model:{name}"
    sig = esign(ctx, s, body.password, body.reason, "approval: roll back production model", target)
    try:
        card = reg.rollback(
            name,
            by=s.username,
            reason=body.reason,
            audit=ctx.audit.hook(s.username, body.reason, target),
        )
    except ModelError as exc:
        ctx.audit.record(s.username, "model.rollback.refused", target=target, reason=str(exc))
        raise HTTPException(409, str(exc)) from None
    _attach_signature(reg, name, card.version, sig)
    return {"name": name, "version": card.version, "status": card.status, "signature": sig}


def _attach_signature(reg: Any, name: str, version: str, sig: dict[str, Any]) -> None:
    """The signature (name, time, meaning, reason) goes into the model card's record too."""
    card = reg.card(name, version)
    sigs = list(getattr(card, "signatures", None) or [])
    sigs.append(sig)
    card.signatures = sigs  # type: ignore[attr-defined]  # extra keys are kept by the card
    reg.save(card)  # a shipped version's card goes to the state directory, not the install
