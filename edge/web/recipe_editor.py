"""The recipe editor: technicians clone and edit recipes, preview them, QA approves.

Pages: the recipes with their versions and status (`/recipes`), and the editor of one
version (`/recipes/NAME/VERSION`): its tools' parameters as forms made from their
parameter models, regions drawn on a stored image, a preview against the approved version,
and "save draft". Opening an approved version and saving it is the clone: every save is a
new draft version (a stored version never changes), audited as the keys that changed.
Approval is QA's, with an e-signature, on the recipes page (`/api/recipes/.../approve`).

Nothing here touches the running line: a saved or approved version is what the line runs
only after the next changeover loads it, and a preview is a job process that reads the
records (`edge.recipes.preview`).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.recipes.book import RecipeBook
from edge.recipes.documents import DocumentError, Documents, diff
from edge.recipes.products import ProductMaster
from edge.store import items
from edge.web.auth import Session
from edge.web.deps import MODELS_VIEW, QA, TECH, WebContext, ctx_of, page, require
from edge.web.jobs import JobError, jobs_of
from edge.web.models import models_dir_arg
from edge.web.recipe_form import check_tools, new_tool_forms, tool_forms

router = APIRouter()

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
#: where a clone came from, kept in its version's note ("from vials v1")
FROM = re.compile(r"^from ([a-z0-9][a-z0-9_-]*) v(\d+)")
#: most images one preview judges (each twice): a few minutes at the lowest priority
MAX_PREVIEW = 2000


class Draft(BaseModel):
    """The editor's form: the whole recipe as edited (nothing is stored by a preview)."""

    name: str = Field(..., min_length=1, max_length=48)
    #: None keeps the source's description
    description: str | None = Field(None, max_length=500)
    tools: list[dict[str, Any]] = Field(..., max_length=32)
    #: the stored image the regions were drawn on (their bounds are checked against it)
    image: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class Save(Draft):
    reason: str = Field("", max_length=500)


class Preview(Draft):
    limit: int = Field(50, ge=1, le=MAX_PREVIEW)
    challenge: bool = True


def _docs(ctx: WebContext) -> Documents:
    return RecipeBook(ctx.audit.db, ctx.audit).docs


def _version(docs: Documents, name: str, version: int) -> dict[str, Any]:
    try:
        return docs.get(name, version)
    except DocumentError as exc:
        raise HTTPException(404, str(exc)) from None


def against(docs: Documents, draft_name: str, source: dict[str, Any]) -> dict[str, Any] | None:
    """The approved version a draft is compared with: its own name's, else the recipe it
    was cloned from (the source, or the origin named in the source's note)."""
    names = [draft_name, source["name"]]
    m = FROM.match(source.get("note") or "")
    if m:
        names.append(m.group(1))
    for n in names:
        doc = docs.approved(n)
        if doc is not None:
            return doc
    return None


def _content(ctx: WebContext, source: dict[str, Any], body: Draft) -> dict[str, Any]:
    """The draft's content, or 422 with each problem beside its field."""
    from edge.config import Recipe

    problems: dict[str, str] = {}
    if not NAME.match(body.name):
        problems["name"] = "use lower-case letters, digits, - and _ (start with a letter or digit)"
    size = ctx.audit.db.image_size(body.image) if body.image else None
    problems |= check_tools(body.tools, size)
    content = {
        **source["content"],
        "name": body.name,
        "description": source["content"].get("description", "")
        if body.description is None
        else body.description,
        "tools": body.tools,
    }
    if not problems:
        try:
            content = Recipe.model_validate(content).model_dump(mode="json")
        except ValueError as exc:
            problems["recipe"] = str(exc).splitlines()[-1] if str(exc) else "not a valid recipe"
    if problems:
        n = len(problems)
        raise HTTPException(
            422,
            {
                "message": f"{n} field{'s' if n > 1 else ''} to correct: see the message beside "
                + ("it" if n == 1 else "each"),
                "fields": problems,
            },
        )
    return content


def _diff_rows(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, **d} for k, d in diff(old, new).items()]


@router.get("/recipes")
def recipes_page(request: Request, s: Session = Depends(require(*MODELS_VIEW))) -> Response:
    docs = _docs(ctx_of(request))
    recipes = []
    for name in docs.names():
        versions = docs.versions(name)
        approved = next((v for v in versions if v["status"] == "approved"), None)
        rows = []
        for v in reversed(versions):  # a draft against what it would replace (or its origin)
            base = against(docs, name, v) if v["status"] == "draft" else None
            rows.append(
                {
                    **{k: v[k] for k in ("version", "status", "created_by", "note")},
                    "created": v["created_utc"],
                    "approved_by": v.get("approved_by"),
                    "changes": _diff_rows(base and base["content"], v["content"]) if base else [],
                }
            )
        recipes.append(
            {"name": name, "approved": approved and approved["version"], "versions": rows}
        )
    return page(
        request,
        "tech_recipes.html",
        recipes=recipes,
        can_edit=s.role in TECH,
        can_sign=s.role in QA,
        meaning="approved",
    )


@router.get("/recipes/{name}/{version}")
def editor_page(
    name: str, version: int, request: Request, s: Session = Depends(require(*MODELS_VIEW))
) -> Response:
    ctx = ctx_of(request)
    docs = _docs(ctx)
    doc = _version(docs, name, version)
    base = against(docs, name, doc)
    refs = items.search_images(ctx.audit.db, product=(base or doc)["name"], limit=12)
    return page(
        request,
        "tech_recipe.html",
        doc=doc,
        content=doc["content"],
        tools=tool_forms(doc["content"].get("tools") or []),
        new_tools=new_tool_forms() if s.role in TECH else [],
        against=base and {"name": base["name"], "version": base["version"]},
        images=[r["image_sha256"] for r in refs],
        can_edit=s.role in TECH,
    )


@router.post("/api/tech/recipes/{name}/{version}/draft")
def save_draft(
    name: str, version: int, body: Save, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    """Save the edited recipe as a new draft version of `body.name` (a clone when the
    source is approved or another recipe); unchanged content is no new version."""
    ctx = ctx_of(request)
    docs = _docs(ctx)
    source = _version(docs, name, version)
    content = _content(ctx, source, body)
    m = FROM.match(source.get("note") or "")
    origin = m.group(0) if m and source["status"] == "draft" else f"from {name} v{version}"
    reason = body.reason.strip() or f"edited in the recipe editor, {origin}"
    known = {d["version"] for d in docs.versions(body.name)}
    v = docs.add_draft(body.name, content, s.username, reason, note=origin)
    doc = docs.get(body.name, v)
    base = docs.approved(body.name)
    return {
        "name": body.name,
        "version": v,
        "status": doc["status"],
        "new": v not in known,
        "changes": _diff_rows(base and base["content"], content),
    }


@router.post("/api/recipes/{name}/{version}/preview")
def start_preview(
    name: str,
    version: int,
    body: Preview,
    request: Request,
    s: Session = Depends(require(*MODELS_VIEW)),
) -> dict[str, Any]:
    """The edited recipe (saved or not) beside the approved version, in a job process."""
    ctx = ctx_of(request)
    docs = _docs(ctx)
    source = _version(docs, name, version)
    content = _content(ctx, source, body)
    base = against(docs, body.name, source)
    if base is None:
        raise HTTPException(409, f"recipe {body.name!r} has no approved version to compare with")
    cfg = ctx.pipeline.cfg
    product = _product_of(ctx, base["name"])
    args = {
        "approved": base["content"],
        "approved_version": base["version"],
        "draft": content,
        "limit": body.limit,
        "state_dir": str(ctx.state_dir.resolve()),
        "models_dir": models_dir_arg(ctx),
        "views": [v.model_dump(mode="json") for v in cfg.views],
        "challenge": {
            "product": product,
            "source": cfg.source.model_dump(mode="json")
            if cfg.source.type == "simulator"
            else None,
        }
        if body.challenge
        else None,
    }
    try:
        jid = jobs_of(ctx).start("preview", args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(
        s.username,
        "recipe.preview",
        target=f"recipe:{body.name}",
        new={"job": jid, "against": f"v{base['version']}", "images": body.limit},
    )
    return {"job": jid, "against": {"name": base["name"], "version": base["version"]}}


def _product_of(ctx: WebContext, recipe: str) -> dict[str, Any] | None:
    """The approved product that runs `recipe` (its challenge set), if there is one."""
    pm = ProductMaster(ctx.audit.db, ctx.audit)
    for gtin in pm.docs.names():
        p = pm.approved(gtin)
        if p is not None and p.recipe == recipe:
            return p.model_dump(mode="json")
    return None
