"""`edge model verify`: a backend running the INT8 file against the FP32 reference.

A backend (INT8 ONNX, TensorRT) and the FP32 reference run side by side on a fixed image
set; boxes, scores and item verdicts are compared. It is the check that must pass before
a model may be approved: the report goes into a candidate's card, with the SHA-256 of the
INT8 file it verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.inference.base import Backend, create_backend
from edge.inference.yolo import box_iou
from edge.models import cards
from edge.models.cards import ModelError
from edge.models.registry import ModelRegistry
from edge.train.dataset import build_manifest
from edge.train.detector_metrics import iter_images, require_defects

VERIFY_CONF = 0.25  # the line's default operating threshold


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
    try:  # a labelled set without one defect compares nothing that matters
        require_defects(images_dir, card.classes)
    except ValueError as exc:
        report = {"passed": False, "summary": f"FAILED: {exc}", "failures": [str(exc)]}
        if record and card.status == "candidate":
            card.verify = report
            cards.save_card(model_dir, card)
        return report
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
