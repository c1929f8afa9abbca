"""Model evaluation (AP50 per class on a labelled test set) and backend verification.

`evaluate` scores a model file on a YOLO-format folder generated with a seed not used
in training. `verify` runs a backend (INT8 ONNX, TensorRT) and the FP32 reference side
by side on a fixed image set and compares boxes, scores and item verdicts: the check
that must pass before a model may be approved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.inference.base import Backend, create_backend
from edge.inference.yolo import box_iou
from edge.models import cards
from edge.models.cards import ModelError
from edge.models.registry import ModelRegistry
from edge.train.dataset import IMAGE_EXT, build_manifest

EVAL_CONF = 0.01  # low threshold: AP integrates over the whole score range
VERIFY_CONF = 0.25  # the line's default operating threshold


def iter_images(folder: str | Path) -> Iterator[Path]:
    root = Path(folder)
    base = root / "images" if (root / "images").is_dir() else root
    yield from sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_EXT)


def read_labels(image_path: Path, width: int, height: int) -> list[tuple[int, list[float]]]:
    """YOLO label file beside an image (…/images/x.png -> …/labels/x.txt) in pixel xywh."""
    parts = list(image_path.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    lbl = Path(*parts).with_suffix(".txt")
    out = []
    if lbl.is_file():
        for line in lbl.read_text().splitlines():
            f = line.split()
            if len(f) < 5:
                continue
            c, cx, cy, w, h = int(f[0]), *(float(v) for v in f[1:5])
            out.append((c, [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]))
    return out


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+ / COCO style) from scored matches."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match(dets: list[dict], gts: list[tuple[int, list[float]]], names: list[str], thr: float = 0.5):
    """Greedy per-class matching by score; yields (class index, score, is_true_positive)."""
    out = []
    by_cls: dict[int, list[list[float]]] = {}
    for c, b in gts:
        by_cls.setdefault(c, []).append(b)
    used: dict[int, set[int]] = {c: set() for c in by_cls}
    index = {n: i for i, n in enumerate(names)}
    for d in sorted(dets, key=lambda d: -d["score"]):
        c = index[d["cls"]]
        best, best_j = 0.0, -1
        for j, g in enumerate(by_cls.get(c, [])):
            if j in used[c]:
                continue
            iou = box_iou(d["bbox"], g)
            if iou > best:
                best, best_j = iou, j
        ok = best >= thr and best_j >= 0
        if ok:
            used[c].add(best_j)
        out.append((c, d["score"], ok))
    return out


def evaluate_backend(
    backend: Backend, folder: str | Path, limit: int | None = None, conf: float = EVAL_CONF
) -> dict[str, Any]:
    """AP50 per class and mAP50 of one loaded backend over a labelled folder."""
    names = backend.class_names
    records: list[tuple[int, float, bool]] = []
    n_gt = np.zeros(len(names), dtype=np.int64)
    n = 0
    for p in iter_images(folder):
        if limit and n >= limit:
            break
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable test image {p}")
        gts = read_labels(p, img.shape[1], img.shape[0])
        for c, _ in gts:
            n_gt[c] += 1
        records += match(backend.infer(img, conf=conf, max_det=300), gts, names)
        n += 1
    if n == 0:
        raise ValueError(f"no images in {folder}")
    ap = {}
    for c, name in enumerate(names):
        sc = np.array([r[1] for r in records if r[0] == c], dtype=np.float64)
        tp = np.array([r[2] for r in records if r[0] == c], dtype=bool)
        v = average_precision(sc, tp, int(n_gt[c]))
        if not np.isnan(v):
            ap[name] = round(v, 4)
    return {
        "images": n,
        "instances": {names[c]: int(n_gt[c]) for c in range(len(names)) if n_gt[c]},
        "ap50": ap,
        "map50": round(float(np.mean(list(ap.values()))), 4) if ap else 0.0,
    }


def evaluate(
    model_dir: str | Path,
    test_dir: str | Path,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    limit: int | None = None,
    backend_config: Any = None,
) -> dict[str, Any]:
    """`edge model eval`: AP50 per class, FP32 and INT8, of one registry version.

    Each file is opened as the line would open it (`open_model`: checked against the card),
    a candidate too: an evaluation decides nothing. A precision whose file the version does
    not have (a candidate not yet quantised) is left out.
    """
    model_dir = Path(model_dir)
    card = cards.load_card(model_dir)
    reg = ModelRegistry(model_dir.parent.parent)
    out: dict[str, Any] = {"test_set": str(test_dir)}
    man_path = Path(test_dir) / "manifest.json"
    if man_path.is_file():
        import json

        out["test_manifest_sha256"] = json.loads(man_path.read_text()).get("sha256")
    for prec in precisions:
        if not (model_dir / (cards.INT8 if prec == "int8" else cards.FP32)).is_file():
            continue
        opened = reg.open_model(card.name, card.version, allow_unapproved=True, precision=prec)
        be = opened.load_detector(backend_config)
        try:
            out[prec] = evaluate_backend(be, test_dir, limit=limit)
        finally:
            be.close()
    return out


# --------------------------------------------------------------------------- verify


def verify_backends(
    reference: Backend,
    candidate: Backend,
    images: list[Path],
    reject_classes: set[str] | None = None,
    conf: float = VERIFY_CONF,
    min_iou: float = 0.8,
    max_score_delta: float = 0.15,
    max_verdict_mismatch: int = 0,
) -> dict[str, Any]:
    """Compare a backend with the FP32 reference image by image.

    An item's verdict here is "reject" when any detection of a reject class is present.
    Fails on: a verdict that differs (beyond `max_verdict_mismatch`), a matched box
    whose IoU falls below `min_iou` on average, a score delta above `max_score_delta`
    at the 95th percentile.
    """
    names = reference.class_names
    reject = reject_classes if reject_classes is not None else {n for n in names if n != "code"}
    ious: list[float] = []
    deltas: list[float] = []
    unmatched = 0
    verdict_diff: list[str] = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image {p}")
        a = reference.infer(img, conf=conf)
        b = candidate.infer(img, conf=conf)
        if any(d["cls"] in reject for d in a) != any(d["cls"] in reject for d in b):
            verdict_diff.append(p.name)
        free = list(range(len(b)))
        for d in a:
            best, bj = 0.0, -1
            for j in free:
                if b[j]["cls"] == d["cls"]:
                    iou = box_iou(d["bbox"], b[j]["bbox"])
                    if iou > best:
                        best, bj = iou, j
            if bj >= 0 and best >= 0.5:
                free.remove(bj)
                ious.append(best)
                deltas.append(abs(d["score"] - b[bj]["score"]))
            else:
                unmatched += 1
        unmatched += len(free)
    n_det = len(ious) + unmatched
    mean_iou = float(np.mean(ious)) if ious else 1.0
    p95_delta = float(np.percentile(deltas, 95)) if deltas else 0.0
    failures = []
    if len(verdict_diff) > max_verdict_mismatch:
        failures.append(
            f"item verdict differs on {len(verdict_diff)}/{len(images)} images "
            f"(allowed {max_verdict_mismatch}): {', '.join(verdict_diff[:5])}"
        )
    if mean_iou < min_iou:
        failures.append(f"mean box IoU {mean_iou:.3f} < {min_iou}")
    if p95_delta > max_score_delta:
        failures.append(f"p95 score delta {p95_delta:.3f} > {max_score_delta}")
    if n_det == 0:
        failures.append(
            "the FP32 reference detects nothing on this image set: nothing was compared"
        )
    if n_det and unmatched / n_det > 0.1:
        failures.append(f"{unmatched}/{n_det} detections without a counterpart")
    summary = (
        f"{len(images)} images, {len(images) - len(verdict_diff)} identical verdicts, "
        f"mean IoU {mean_iou:.3f}, p95 score delta {p95_delta:.3f}, {unmatched} unmatched"
    )
    return {
        "passed": not failures,
        "summary": summary if not failures else "FAILED: " + "; ".join(failures),
        "images": len(images),
        "verdict_mismatches": len(verdict_diff),
        "mean_iou": round(mean_iou, 4),
        "p95_score_delta": round(p95_delta, 4),
        "unmatched": unmatched,
        "failures": failures,
    }


def verify(
    model_dir: str | Path,
    images_dir: str | Path,
    backend_config: Any = None,
    limit: int | None = 200,
    record: bool = True,
) -> dict[str, Any]:
    """`edge model verify`: the backend running the INT8 artefact against the FP32 reference.

    Files are checked against the card first. With `record`, the result goes into the
    card of a candidate (approval reads it); approved cards are never rewritten.
    """
    from edge.config import OnnxBackend

    model_dir = Path(model_dir)
    card = cards.load_card(model_dir)
    try:  # both files it runs, against the card (a candidate is verified before approval)
        opened = ModelRegistry(model_dir.parent.parent).open_model(
            card.name, card.version, allow_unapproved=True, with_files=(cards.FP32,)
        )
    except ModelError as exc:
        return {"passed": False, "summary": f"FAILED: {exc}", "failures": [str(exc)]}
    from edge.inference.base import BackendError
    from edge.inference.qdq_check import check_qdq_model

    try:  # the one INT8 file every runtime loads: TensorRT must be able to import it too
        check_qdq_model(opened.path, require_qdq=False)
    except BackendError as exc:
        return {"passed": False, "summary": f"FAILED: {exc}", "failures": [str(exc)]}
    images = list(iter_images(images_dir))[: limit or None]
    if not images:
        raise ValueError(f"no images in {images_dir}")
    ref = create_backend(OnnxBackend()).load(opened.file(cards.FP32), card.input_size, card.classes)
    try:
        cand = opened.load_detector(backend_config)
    except Exception as exc:
        ref.close()
        msg = f"{type(exc).__name__}: {exc}"
        return {"passed": False, "summary": "FAILED: " + msg, "failures": [msg]}
    try:
        report = verify_backends(ref, cand, images)
    finally:
        ref.close()
        cand.close()
    report["backend"] = cand.describe()["type"]
    report["providers"] = list(cand.providers)
    report["int8_sha256"] = card.files.get(cards.INT8)
    report["images_manifest_sha256"] = build_manifest(images_dir)["sha256"]
    report["at"] = cards.now_iso()
    if record and card.status == "candidate":
        card.verify = report
        cards.save_card(model_dir, card)
    return report
