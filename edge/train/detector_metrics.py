"""Detector metrics: AP50 per class and mAP50 on a labelled test set (`edge model eval`).

`ap50_of_version` scores the files of one registry version (FP32 and INT8) on a YOLO-format
folder generated with a seed not used in training; `ap50_of_backend` one loaded backend.
How a backend compares with the FP32 reference before approval is `edge.train.verify`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.inference.base import Backend
from edge.inference.yolo import box_iou
from edge.models import cards
from edge.models.registry import ModelRegistry
from edge.train.dataset import IMAGE_EXT

EVAL_CONF = 0.01  # low threshold: AP integrates over the whole score range


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


def labelled_defects(folder: str | Path, classes: list[str]) -> dict[str, int] | None:
    """Labelled boxes of each of the model's classes in a folder, or None when the folder
    has no label files at all (an unlabelled image set, e.g. calibration photos)."""
    counts = dict.fromkeys(classes, 0)
    any_labels = False
    for p in iter_images(folder):
        parts = list(p.parts)
        if "images" not in parts:
            continue
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
        lbl = Path(*parts).with_suffix(".txt")
        if not lbl.is_file():
            continue
        any_labels = True
        for line in lbl.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[0].isdigit() and int(f[0]) < len(classes):
                counts[classes[int(f[0])]] += 1
    return counts if any_labels else None


def no_defects_sentence(classes: list[str]) -> str:
    """Why a labelled test set without one defect of the model's classes is refused."""
    return (
        f"This test set has no labelled defects of the model's classes "
        f"({', '.join(classes)}), so it cannot show whether the model finds them. "
        "Add photos with labelled defects to it, or pick another set."
    )


def require_defects(folder: str | Path, classes: list[str]) -> dict[str, int] | None:
    """Refuse (ValueError, in plain words) a labelled set without any defect to find."""
    counts = labelled_defects(folder, classes)
    if counts is not None and not any(counts.values()):
        raise ValueError(no_defects_sentence(classes))
    return counts


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


def ap50_of_backend(
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


def ap50_of_version(
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
    require_defects(test_dir, card.classes)
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
            out[prec] = ap50_of_backend(be, test_dir, limit=limit)
        finally:
            be.close()
    return out
