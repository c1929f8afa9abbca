"""`edge anomaly verify`: the INT8 feature file against the FP32 reference on held images.

Both files score the same images with the same memory; the check passes when every
image's INT8 score is within `tolerance` (a share of the threshold) of its FP32 score and
no image's decision differs unless both scores sit within that band of the threshold.
The report is written into a candidate's card (`verify`), with the SHA-256 of the INT8
file verified: approval refuses a card whose INT8 file changed since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.anomaly.model import MEMORY, TASK, Scorer, crop, spec_of
from edge.models import cards
from edge.models.cards import FP32, ModelError
from edge.models.registry import ModelRegistry
from edge.train.dataset import IMAGE_EXT

#: INT8 patch features differ from FP32 by several per cent (depthwise convolutions);
#: nearest-neighbour distances inherit it. The threshold is set on INT8 scores (fit), so
#: what must hold is that INT8 and FP32 rank and decide alike within this share of it.
TOLERANCE = 0.15


def verify(
    model_dir: str | Path,
    images: str | Path,
    limit: int = 100,
    tolerance: float = TOLERANCE,
    record: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    model_dir = Path(model_dir)
    card = cards.load_card(model_dir)
    spec = spec_of(card)
    try:  # both files it runs and the memory, against the card (a candidate may be verified)
        opened = ModelRegistry(model_dir.parent.parent).open_model(
            card.name, card.version, allow_unapproved=True, with_files=(FP32, MEMORY), task=TASK
        )
    except ModelError as exc:
        report: dict[str, Any] = {"passed": False, "summary": f"FAILED: {exc}"}
        return _record(model_dir, card, report, record)
    files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_EXT)[:limit]
    if not files:
        report = {"passed": False, "summary": f"FAILED: no images under {images}"}
        return _record(model_dir, card, report, record)
    memory = np.load(opened.file(MEMORY), allow_pickle=False)
    s32 = Scorer.for_spec(opened.file(FP32), memory, spec, threads)
    s8 = Scorer.for_spec(opened.path, memory, spec, threads)
    t, band = spec.threshold, tolerance * spec.threshold
    rows, failures, scores = [], [], {}
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or (img.shape[1], img.shape[0]) != tuple(spec.image_size):
            failures.append(
                f"{p.name}: unreadable or not {spec.image_size[0]}x{spec.image_size[1]}"
            )
            continue
        a, _ = s32.score(crop(img, spec.roi))
        b, _ = s8.score(crop(img, spec.roi))
        rows.append((a, b))
        scores[p.name] = round(float(b), 4)
        if abs(a - b) > band:
            failures.append(f"{p.name}: INT8 score {b:.3f} vs FP32 {a:.3f} (> {band:.3f} apart)")
        elif (a > t) != (b > t) and min(abs(a - t), abs(b - t)) > band:
            failures.append(f"{p.name}: INT8 and FP32 decide differently ({b:.3f} / {a:.3f})")
    diffs = np.array([abs(a - b) for a, b in rows]) if rows else np.zeros(1)
    agree = sum((a > t) == (b > t) for a, b in rows)
    summary = (
        f"{len(rows)} images: max |INT8 - FP32| score {diffs.max():.4f} "
        f"({100 * diffs.max() / t:.1f} % of the threshold), decisions agree on {agree}/{len(rows)}"
    )
    report = {
        "passed": not failures,
        "summary": summary if not failures else "FAILED: " + "; ".join(failures[:5]),
        "failures": failures,
        "images": len(rows),
        "max_abs_score_diff": round(float(diffs.max()), 5),
        "decisions_agree": int(agree),
        "tolerance": tolerance,
        "images_path": Path(images).as_posix(),
        #: each image's INT8 score (what the line computes): held good images against the
        #: threshold, shown beside the held-out scores on the fit page
        "scores": scores,
        "backend": "onnxruntime-cpu",
    }
    return _record(model_dir, card, report, record)


def _record(model_dir: Path, card: cards.ModelCard, report: dict[str, Any], record: bool):
    report["int8_sha256"] = card.files.get(cards.INT8)
    report["at"] = cards.now_iso()
    if record and card.status == "candidate":
        card.verify = report
        cards.save_card(model_dir, card)
    return report
