"""Technician routes: captured images, box labelling, frozen dataset versions, training,
evaluation and shadow runs; QA promotes and rolls back models with an e-signature."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge import taxonomy
from edge.store.safe_files import read_regular
from edge.train.line_eval import has_item_truth
from edge.train.yolo_labels import label_lines, write_labels
from edge.web.auth import Session
from edge.web.deps import MODELS_VIEW, QA, TECH, WebContext, ctx_of, esign, page, require
from edge.web.jobs import JobError, Jobs

router = APIRouter()

_DATASET_NAME = "ds-"


# --------------------------------------------------------------------------- helpers


def label_classes(ctx: WebContext) -> list[str]:
    """The detector's class list: the fixed order shared by every model (the taxonomy's)."""
    return list(taxonomy.DETECTOR_CLASSES)


def jobs_of(ctx: WebContext) -> Jobs:
    if ctx.jobs is None:
        ctx.jobs = Jobs(ctx.state_dir / "jobs")
    return ctx.jobs


def models_dir(ctx: WebContext) -> Path:
    return Path(ctx.pipeline.cfg.inference.models_dir)


def datasets_dir(ctx: WebContext) -> Path:
    d = ctx.state_dir / "datasets"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _day(s: str | None, end: bool = False) -> float | None:
    if not s:
        return None
    try:
        d = dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise HTTPException(422, "dates are YYYY-MM-DD") from None
    return (d + dt.timedelta(days=1 if end else 0)).timestamp()


def query_images(
    ctx: WebContext,
    *,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    labelled: bool | None = None,
    limit: int = 60,
) -> list[dict[str, Any]]:
    where = ["i.image_sha256 IS NOT NULL"]
    params: list[Any] = []
    if reason:
        where.append("EXISTS (SELECT 1 FROM json_each(i.reasons) WHERE value = ?)")
        params.append(reason)
    if batch:
        where.append("i.batch_id = ?")
        params.append(batch)
    if verdict in ("PASS", "REJECT"):
        where.append("i.verdict = ?")
        params.append(verdict)
    if (t := _day(date_from)) is not None:
        where.append("i.trigger_utc >= ?")
        params.append(t)
    if (t := _day(date_to, end=True)) is not None:
        where.append("i.trigger_utc < ?")
        params.append(t)
    if labelled is not None:
        where.append(
            ("" if labelled else "NOT ") + "EXISTS (SELECT 1 FROM labels l "
            "WHERE l.image_sha256 = i.image_sha256)"
        )
    sql = (
        "SELECT i.id, i.seq, i.batch_id, i.verdict, i.reasons, i.trigger_utc, i.image_sha256,"
        " (SELECT 1 FROM labels l WHERE l.image_sha256 = i.image_sha256) AS labelled"
        " FROM items i WHERE " + " AND ".join(where) + " ORDER BY i.seq DESC LIMIT ?"
    )
    rows = ctx.pipeline.db.conn.execute(sql, (*params, min(max(limit, 1), 500))).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["reasons"] = json.loads(d["reasons"])
        d["labelled"] = bool(d["labelled"])
        out.append(d)
    return out


def _image_size(ctx: WebContext, sha: str) -> tuple[int, int]:
    row = ctx.pipeline.db.conn.execute(
        "SELECT width, height FROM images WHERE sha256 = ?", (sha,)
    ).fetchone()
    if row is None:
        raise HTTPException(404, "no such image")
    return int(row[0]), int(row[1])


def suggested_boxes(ctx: WebContext, sha: str, classes: list[str]) -> list[dict[str, Any]]:
    """What the line saw on this image, as a starting point for the label."""
    row = ctx.pipeline.db.conn.execute(
        "SELECT findings, codes FROM items WHERE image_sha256 = ? ORDER BY seq DESC LIMIT 1",
        (sha,),
    ).fetchone()
    if row is None:
        return []
    boxes = []
    for f in json.loads(row["findings"]):
        cls = str(f.get("code", "")).lower()
        if f.get("bbox") and cls in classes:
            boxes.append({"cls": cls, "bbox": f["bbox"]})
    for c in json.loads(row["codes"]):
        if c.get("bbox") and "code" in classes:
            boxes.append({"cls": "code", "bbox": c["bbox"]})
    return boxes


class Box(BaseModel):
    cls: str = Field(..., min_length=1, max_length=40)
    bbox: tuple[float, float, float, float]


class Label(BaseModel):
    boxes: list[Box] = Field(default_factory=list, max_length=200)
    reason: str | None = Field(None, max_length=200)


# --------------------------------------------------------------------------- images & labels


@router.get("/tech/images")
def images_page(
    request: Request,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    _s: Session = Depends(require(*TECH)),
) -> Response:
    ctx = ctx_of(request)
    rows = query_images(
        ctx, reason=reason, batch=batch, verdict=verdict, date_from=date_from, date_to=date_to
    )
    batches = [
        r[0]
        for r in ctx.pipeline.db.conn.execute(
            "SELECT id FROM batches ORDER BY started_at DESC LIMIT 30"
        ).fetchall()
    ]
    reasons = [
        r[0]
        for r in ctx.pipeline.db.conn.execute(
            "SELECT DISTINCT value FROM items, json_each(items.reasons) "
            "WHERE items.image_sha256 IS NOT NULL LIMIT 50"
        ).fetchall()
    ]
    f = {
        "reason": reason or "",
        "batch": batch or "",
        "verdict": verdict or "",
        "date_from": date_from or "",
        "date_to": date_to or "",
    }
    return page(
        request, "tech_images.html", rows=rows, batches=batches, reasons=sorted(reasons), f=f
    )


@router.get("/api/tech/images")
def images_api(
    request: Request,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    limit: int = 60,
    _s: Session = Depends(require(*TECH)),
) -> list[dict[str, Any]]:
    return query_images(
        ctx_of(request),
        reason=reason,
        batch=batch,
        verdict=verdict,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
    )


@router.get("/tech/label/{sha}")
def label_page(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    return page(request, "tech_label.html", sha=sha, width=w, height=h, classes=label_classes(ctx))


@router.get("/api/tech/labels/{sha}")
def get_label(sha: str, request: Request, _s: Session = Depends(require(*TECH))) -> dict:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    row = ctx.pipeline.db.conn.execute(
        "SELECT * FROM labels WHERE image_sha256 = ?", (sha,)
    ).fetchone()
    classes = label_classes(ctx)
    if row:
        return {
            "sha": sha,
            "width": w,
            "height": h,
            "boxes": json.loads(row["boxes"]),
            "saved": True,
            "updated_by": row["updated_by"],
            "classes": classes,
        }
    return {
        "sha": sha,
        "width": w,
        "height": h,
        "boxes": suggested_boxes(ctx, sha, classes),
        "saved": False,
        "classes": classes,
    }


@router.put("/api/tech/labels/{sha}")
def put_label(
    sha: str, body: Label, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    w, h = _image_size(ctx, sha)
    classes = set(label_classes(ctx))
    boxes = []
    for b in body.boxes:
        if b.cls not in classes:
            raise HTTPException(422, f"unknown class {b.cls!r}")
        x, y, bw, bh = b.bbox
        x, y = max(0.0, x), max(0.0, y)
        bw, bh = min(bw, w - x), min(bh, h - y)
        if bw < 2 or bh < 2:
            raise HTTPException(422, "a box must lie on the image and be at least 2 px wide")
        boxes.append({"cls": b.cls, "bbox": [round(x, 1), round(y, 1), round(bw, 1), round(bh, 1)]})
    old = ctx.pipeline.db.conn.execute(
        "SELECT boxes FROM labels WHERE image_sha256 = ?", (sha,)
    ).fetchone()
    with ctx.pipeline.db.transaction() as c:
        c.execute(
            "INSERT INTO labels (image_sha256, boxes, updated_by, updated_utc) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(image_sha256) DO UPDATE SET boxes = excluded.boxes,"
            " updated_by = excluded.updated_by, updated_utc = excluded.updated_utc",
            (sha, json.dumps(boxes), s.username, time.time()),
        )
    ctx.audit.record(
        s.username,
        "label.save",
        target=sha,
        old=json.loads(old[0]) if old else None,
        new=boxes,
        reason=body.reason,
    )
    return {"sha": sha, "boxes": boxes}


# --------------------------------------------------------------------------- datasets


class DatasetBuild(BaseModel):
    note: str | None = Field(None, max_length=200)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)


def list_datasets(ctx: WebContext) -> list[dict[str, Any]]:
    out = []
    for d in sorted(datasets_dir(ctx).iterdir(), reverse=True):
        m = read_regular(d / "manifest.json", datasets_dir(ctx).parent)  # no planted links
        if d.name.startswith(_DATASET_NAME) and not d.is_symlink() and m is not None:
            man = json.loads(m)
            out.append(
                {
                    "version": d.name,
                    "sha256": man.get("sha256"),
                    "files": man.get("count"),
                    "images": man.get("images"),
                    "note": man.get("note"),
                    "created_by": man.get("created_by"),
                    "created_utc": man.get("created_utc"),
                }
            )
    return out


def build_dataset(ctx: WebContext, by: str, note: str | None, val_fraction: float) -> dict:
    """Every labelled image, frozen into a YOLO dataset with a manifest of SHA-256s."""
    from edge.train.dataset import prepare

    classes = label_classes(ctx)
    rows = ctx.pipeline.db.conn.execute(
        "SELECT l.image_sha256, l.boxes, i.width, i.height FROM labels l"
        " JOIN images i ON i.sha256 = l.image_sha256 ORDER BY l.image_sha256"
    ).fetchall()
    if len(rows) < 2:
        raise HTTPException(409, "label at least two images first")
    root = datasets_dir(ctx)
    staging = root / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir()
    copied = 0
    try:
        for sha, boxes, w, h in rows:
            data = ctx.pipeline.images.get(sha)  # a regular file of the store, never a link
            if data is None:
                continue
            (staging / "images" / f"{sha}.png").write_bytes(data)
            copied += 1
            lines = label_lines([(b["cls"], b["bbox"]) for b in json.loads(boxes)], classes, w, h)
            write_labels(staging / "labels" / f"{sha}.txt", lines)
        if copied < 2:
            raise HTTPException(409, "fewer than two labelled images are readable in the store")
        (staging / "data.yaml").write_text(yaml.safe_dump({"names": classes}))
        version = f"{_DATASET_NAME}{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        out = root / version
        if out.exists():
            raise HTTPException(409, f"dataset {version} exists: versions are never overwritten")
        prepare([staging], out, val_fraction=val_fraction, class_names=classes)
        from edge.train.dataset import write_manifest

        man = write_manifest(
            out,
            extra={
                "names": classes,
                "images": len(rows),
                "note": note,
                "created_by": by,
                "created_utc": time.time(),
                "version": version,
            },
        )
        _freeze(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"version": version, "sha256": man["sha256"], "images": len(rows), "files": man["count"]}


def _freeze(root: Path) -> None:
    """Read-only files: a dataset version is a record, not a working folder."""
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


@router.get("/tech/datasets")
def datasets_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    n = ctx.pipeline.db.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    return page(request, "tech_datasets.html", datasets=list_datasets(ctx), labelled=n)


@router.post("/api/tech/datasets")
def datasets_build(
    body: DatasetBuild, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    res = build_dataset(ctx, s.username, body.note, body.val_fraction)
    ctx.audit.record(s.username, "dataset.build", target=res["version"], new=res, reason=body.note)
    return res


# --------------------------------------------------------------------------- training


class TrainStart(BaseModel):
    dataset: str = Field(..., pattern=r"^ds-[0-9-]+$")
    epochs: int = Field(10, ge=1, le=300)
    imgsz: int = Field(320, ge=32, le=1280, multiple_of=32)
    batch: int = Field(8, ge=1, le=64)
    model_name: str = Field("defects", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


@router.get("/tech/train")
def train_page(request: Request, _s: Session = Depends(require(*TECH))) -> Response:
    ctx = ctx_of(request)
    return page(request, "tech_train.html", datasets=list_datasets(ctx), jobs=jobs_of(ctx).list())


@router.post("/api/tech/train")
def train_start(
    body: TrainStart, request: Request, s: Session = Depends(require(*TECH))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    ds = datasets_dir(ctx) / body.dataset
    if not (ds / "manifest.json").is_file():
        raise HTTPException(404, f"no dataset version {body.dataset}")
    args = {
        **body.model_dump(),
        "dataset": str(ds.resolve()),
        "models_dir": str(models_dir(ctx).resolve()),
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


# --------------------------------------------------------------------------- models


def _registry(ctx: WebContext):
    from edge.train.registry import ModelRegistry

    return ModelRegistry(models_dir(ctx))


@router.get("/models")
def models_page(request: Request, s: Session = Depends(require(*MODELS_VIEW))) -> Response:
    ctx = ctx_of(request)
    cards = []
    try:
        cards = [c.model_dump(mode="json") for c in _registry(ctx).list()]
    except Exception as exc:
        cards = [{"name": "?", "version": "?", "status": f"unreadable: {exc}"}]
    testsets = [
        d.name for d in datasets_dir(ctx).iterdir() if d.is_dir() and not d.name.startswith(".")
    ]
    return page(
        request,
        "models.html",
        cards=cards,
        testsets=sorted(testsets, reverse=True),
        jobs=[j for j in jobs_of(ctx).list() if j["kind"] in ("evaluate", "shadow")],
        can_sign=s.role in QA,
    )


class Compare(BaseModel):
    name: str = Field(..., pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    candidate: str = Field(..., max_length=40)
    approved: str | None = Field(None, max_length=40)
    test_set: str | None = Field(None, max_length=80)
    limit: int = Field(200, ge=1, le=5000)


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
    _registry(ctx).card(body.name, body.candidate)
    args = {
        "name": body.name,
        "candidate": body.candidate,
        "approved": body.approved or _approved_version(ctx, body.name),
        "test_dir": str(
            (test_dir / "images" / "val") if (test_dir / "images" / "val").is_dir() else test_dir
        ),
        "models_dir": str(models_dir(ctx).resolve()),
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
        "models_dir": str(models_dir(ctx).resolve()),
        "reject_classes": [c for c in label_classes(ctx) if c != "code"],
    }
    try:
        jid = jobs_of(ctx).start("shadow", args, s.username)
    except JobError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job": jid}


class Signed(BaseModel):
    password: str = Field(..., min_length=1, max_length=256)
    reason: str = Field(..., min_length=3, max_length=500)


@router.post("/api/models/{name}/{version}/approve")
def models_approve(
    name: str, version: str, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    """Promote a verified candidate. Needs an e-signature (password again, and a reason)."""
    from edge.train.registry import ModelError

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


@router.post("/api/models/{name}/rollback")
def models_rollback(
    name: str, body: Signed, request: Request, s: Session = Depends(require(*QA))
) -> dict[str, Any]:
    from edge.train.registry import ModelError

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
    from edge.train.registry import load_card, save_card

    d = reg.path(name, version)
    card = load_card(d)
    sigs = list(getattr(card, "signatures", None) or [])
    sigs.append(sig)
    card.signatures = sigs  # type: ignore[attr-defined]  # extra keys are kept by the card
    save_card(d, card)
