"""`edge model verify`: a backend running the INT8 file against the FP32 reference.

A backend (INT8 ONNX, TensorRT) and the FP32 reference run side by side on a fixed image
set; boxes, scores and item verdicts are compared. It is the check that must pass before
a model may be approved: the report goes into a candidate's card, with the SHA-256 of the
INT8 file it verified.

Two rules, the card's report says which (`rule`):
- `decisions at the operating threshold` (`verify_decisions`), for a model whose card
  records the threshold chosen on its validation photos: the image-level decision and the
  boxes above that threshold must agree, with a band around it where rounding may tip a
  score either way, and a score tolerance that widens when only a few boxes are compared.
  A model made from tens of photos scores its defects near its threshold and makes few
  detections: a percentile of five score differences, or one box at 0.26 against 0.24,
  says nothing about whether the INT8 file decides as the FP32 one does.
- `boxes at 0.25` (`verify_backends`): every box above the default threshold, for the
  models made before (the shipped ones: their recorded report stays reproducible).
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

VERIFY_CONF = cards.DEFAULT_CONF  # the line's default operating threshold
#: half-width of the band around the operating threshold where a score may tip either way
BAND = 0.05
#: boxes at which the p95 score tolerance is the plain `max_score_delta`; with fewer it
#: widens as 1/sqrt(n) (a percentile of a few differences is mostly its largest one), to
#: twice at most
FULL_TOLERANCE_AT = 20


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


def score_tolerance(n: int, max_score_delta: float = 0.15) -> float:
    """The p95 score-difference tolerance for `n` compared boxes."""
    return round(max_score_delta * min(2.0, max(1.0, (FULL_TOLERANCE_AT / max(n, 1)) ** 0.5)), 4)


def _pairs(a: list[dict], b: list[dict]) -> tuple[list[tuple[dict, dict, float]], list, list]:
    """Greedy same-class matching at IoU >= 0.5, highest reference scores first:
    (matched pairs with their IoU, reference boxes left, candidate boxes left)."""
    free = list(range(len(b)))
    pairs, left = [], []
    for d in sorted(a, key=lambda d: -d["score"]):
        best, bj = 0.0, -1
        for j in free:
            if b[j]["cls"] == d["cls"]:
                iou = box_iou(d["bbox"], b[j]["bbox"])
                if iou > best:
                    best, bj = iou, j
        if bj >= 0 and best >= 0.5:
            free.remove(bj)
            pairs.append((d, b[bj], best))
        else:
            left.append(d)
    return pairs, left, [b[j] for j in free]


def verify_decisions(
    reference: Backend,
    candidate: Backend,
    images: list[Path],
    conf: float,
    reject_classes: set[str] | None = None,
    band: float = BAND,
    min_iou: float = 0.8,
    max_score_delta: float = 0.15,
    max_unmatched: float = 0.1,
    max_borderline_flips: float = 0.1,
) -> dict[str, Any]:
    """Compare a backend with the FP32 reference on the decisions made at `conf`.

    Fails on: an image flagged by one and not the other where the reference's highest
    score is outside `conf` +- `band` (a decisive flip); more than `max_borderline_flips`
    of the images flipping inside the band; more than `max_unmatched` of the boxes above
    `conf` without a counterpart above `conf - band` (boxes inside the band are reported,
    not counted); a mean IoU of matched boxes below `min_iou`; a p95 score difference of
    matched boxes above `score_tolerance(n)`; a reference that finds nothing above `conf`.
    """
    names = reference.class_names
    reject = reject_classes if reject_classes is not None else {n for n in names if n != "code"}
    low = max(conf - band, 0.01)
    ious: list[float] = []
    deltas: list[float] = []
    unmatched = borderline_unmatched = 0
    flips: list[str] = []
    borderline_flips: list[str] = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image {p}")
        a = [d for d in reference.infer(img, conf=low) if d["cls"] in reject]
        b = [d for d in candidate.infer(img, conf=low) if d["cls"] in reject]
        top_a = max((d["score"] for d in a), default=0.0)
        top_b = max((d["score"] for d in b), default=0.0)
        if (top_a >= conf) != (top_b >= conf):
            (borderline_flips if abs(top_a - conf) <= band else flips).append(p.name)
        pairs, left_a, left_b = _pairs(a, b)
        for da, db, iou in pairs:
            if max(da["score"], db["score"]) >= conf:
                ious.append(iou)
                deltas.append(abs(da["score"] - db["score"]))
        for d in left_a + left_b:
            if d["score"] >= conf + band:
                unmatched += 1
            elif d["score"] >= conf:
                borderline_unmatched += 1
    n = len(ious) + unmatched + borderline_unmatched
    mean_iou = float(np.mean(ious)) if ious else 1.0
    p95_delta = float(np.percentile(deltas, 95)) if deltas else 0.0
    tol = score_tolerance(len(deltas), max_score_delta)
    allowed_borderline = int(max_borderline_flips * len(images))
    failures = []
    if flips:
        failures.append(
            f"the image decision differs on {len(flips)}/{len(images)} images where the "
            f"FP32 score is clear of the threshold {conf:.2f}: {', '.join(flips[:5])}"
        )
    if len(borderline_flips) > allowed_borderline:
        failures.append(
            f"the image decision tips on {len(borderline_flips)}/{len(images)} images near "
            f"the threshold (allowed {allowed_borderline})"
        )
    if mean_iou < min_iou:
        failures.append(f"mean box IoU {mean_iou:.3f} < {min_iou}")
    if p95_delta > tol:
        failures.append(f"p95 score delta {p95_delta:.3f} > {tol} ({len(deltas)} boxes)")
    if n == 0:
        failures.append(
            f"the FP32 reference detects nothing above the operating threshold {conf:.2f} "
            "on this image set: nothing was compared"
        )
    if n and unmatched / n > max_unmatched:
        failures.append(f"{unmatched}/{n} boxes above the threshold without a counterpart")
    summary = (
        f"at the operating threshold {conf:.2f} (band {band}): {len(images)} images, "
        f"{len(images) - len(flips) - len(borderline_flips)} identical decisions "
        f"({len(borderline_flips)} tipped near the threshold), {n} boxes, mean IoU "
        f"{mean_iou:.3f}, p95 score delta {p95_delta:.3f} (tolerance {tol} for "
        f"{len(deltas)} boxes), {unmatched} unmatched ({borderline_unmatched} near the "
        "threshold)"
    )
    return {
        "passed": not failures,
        "rule": "decisions at the operating threshold",
        "conf": conf,
        "summary": summary if not failures else "FAILED: " + "; ".join(failures),
        "images": len(images),
        "verdict_mismatches": len(flips) + len(borderline_flips),
        "decisive_flips": len(flips),
        "borderline_flips": len(borderline_flips),
        "boxes": n,
        "mean_iou": round(mean_iou, 4),
        "p95_score_delta": round(p95_delta, 4),
        "score_tolerance": tol,
        "unmatched": unmatched,
        "borderline_unmatched": borderline_unmatched,
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
    ref = create_backend(OnnxBackend()).load(
        opened.file(cards.FP32), card.input_size, card.classes, boxes=card.boxes
    )
    try:
        cand = opened.load_detector(backend_config)
    except Exception as exc:
        ref.close()
        msg = f"{type(exc).__name__}: {exc}"
        return {"passed": False, "summary": "FAILED: " + msg, "failures": [msg]}
    try:
        if card.operating_threshold.get("conf") is not None:
            report = verify_decisions(ref, cand, images, cards.operating_conf(card))
        else:
            report = {**verify_backends(ref, cand, images), "rule": "boxes at 0.25"}
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
