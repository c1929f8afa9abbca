"""A model's operating threshold, chosen on its validation photos (never on a test set).

A model trained on tens of photos is unsure of itself: its scores on real defects sit
between 0.2 and 0.6, and a fixed 0.25 for every model misses some and passes others. The
training job therefore measures, with the FP32 reference, the highest score on each
validation photo and picks the lowest threshold at which the validation *good* photos
stay within the good-flag target (`GOOD_FLAG_TARGET`): the lowest, because below that
point every further step only adds defect photos found. The choice and what it gave on
validation are recorded on the card (`operating_threshold`), the one home the defect
tool and verify read it from (`cards.operating_conf`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2

from edge.inference.base import Backend
from edge.train.detector_metrics import iter_images, read_labels

#: the share of validation good photos the chosen threshold may flag: half the plant's
#: 10 % goal, a margin for the few validation photos a small product has
GOOD_FLAG_TARGET = 0.05
LOWEST, HIGHEST, STEP = 0.10, 0.90, 0.01  # thresholds tried
MARGIN = 0.02  # above the highest good score kept below the line: room for INT8 rounding


def image_scores(backend: Backend, folder: str | Path) -> tuple[list[float], list[float]]:
    """(highest score on each defect photo, on each good photo) of a labelled folder: a
    photo with a labelled box is a defect photo, one with none is good."""
    bad: list[float] = []
    good: list[float] = []
    for p in iter_images(folder):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image {p}")
        dets = backend.infer(img, conf=0.05)
        # codes are read by the barcode tool, never findings (the defect tool's default)
        top = max((float(d["score"]) for d in dets if d["cls"] != "code"), default=0.0)
        (bad if read_labels(p, img.shape[1], img.shape[0]) else good).append(top)
    return bad, good


def choose(bad: list[float], good: list[float], target: float = GOOD_FLAG_TARGET) -> dict[str, Any]:
    """The lowest threshold that flags at most `target` of the good photos (with `MARGIN`
    above the highest good score it lets pass), and what it gives on these photos.

    Without good photos there is nothing to hold the threshold up with: the tool's default
    (0.25) is kept and the record says so."""
    from edge.models.cards import DEFAULT_CONF

    if not good:
        conf, rule = DEFAULT_CONF, "default: no good validation photos to choose with"
    else:
        allowed = math.floor(target * len(good))
        ranked = sorted(good, reverse=True)
        # the highest good score that must stay below the threshold
        ceiling = ranked[allowed] if allowed < len(ranked) else 0.0
        conf = min(max(ceiling + MARGIN, LOWEST), HIGHEST)
        conf = math.ceil(round(conf / STEP, 6)) * STEP
        rule = (
            f"lowest threshold flagging at most {target:.0%} of the validation good photos "
            f"({allowed} of {len(good)}), {MARGIN} above the highest good score below it"
        )
    conf = round(conf, 2)
    found = sum(s >= conf for s in bad)
    flagged = sum(s >= conf for s in good)
    return {
        "conf": conf,
        "rule": rule,
        "on": "validation",
        "good_flag_target": target,
        "validation": {
            "defect_images": len(bad),
            "defect_images_found": found,
            "image_recall": round(found / len(bad), 4) if bad else None,
            "good_images": len(good),
            "good_images_flagged": flagged,
            "defect_scores": [round(s, 3) for s in sorted(bad, reverse=True)],
            "good_top_scores": [round(s, 3) for s in sorted(good, reverse=True)[:5]],
        },
    }


def operating_threshold(
    model_dir: str | Path,
    val_dir: str | Path,
    target: float = GOOD_FLAG_TARGET,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Choose the threshold of a candidate on its validation folder and record it on the
    card (`operating_threshold`, with the precision it was chosen with).

    With the FP32 reference by default: verify then holds the INT8 file to the reference's
    decisions at that threshold. (Chosen on the INT8 file's own scores, which run a few
    hundredths lower on a small model, the threshold lands lower, and verify finds the
    good photos the FP32 reference would flag there: README, retraining.)"""
    from edge.config import OnnxBackend
    from edge.inference.base import create_backend
    from edge.models import cards
    from edge.models.registry import ModelRegistry

    model_dir = Path(model_dir)
    card = cards.load_card(model_dir)
    if precision == "int8":  # opened as the line opens it (files checked, CPU rewrite)
        be = (
            ModelRegistry(model_dir.parent.parent)
            .open_model(card.name, card.version, allow_unapproved=True)
            .load_detector()
        )
    else:
        be = create_backend(OnnxBackend()).load(
            model_dir / cards.FP32, card.input_size, card.classes, boxes=card.boxes
        )
    try:
        bad, good = image_scores(be, val_dir)
    finally:
        be.close()
    rec = {**choose(bad, good, target), "precision": precision, "at": cards.now_iso()}
    card = cards.load_card(model_dir)
    card.operating_threshold = rec
    cards.save_card(model_dir, card)
    return rec
