"""Pre- and post-processing shared by every YOLO backend: letterbox, output decode, NMS.

The detector's ONNX graph (ultralytics export) takes a 1x3xSxS float tensor in [0, 1],
RGB, letterboxed with grey (114) padding, and returns 1x(4+C)xN: for each of N anchors
the box centre, width and height in input pixels and C class scores (already sigmoid).
Everything here is vectorised numpy/OpenCV: no per-pixel or per-anchor Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import cv2
import numpy as np

from edge.inference.config import BoxRule

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image was fitted into the square input, to map boxes back."""

    scale: float
    pad_x: float
    pad_y: float
    width: int  # original image size
    height: int


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HxWx3 (or HxW grey) -> 1x3xSxS float32 RGB tensor in [0, 1], plus the mapping.

    Same geometry as ultralytics' LetterBox(auto=False, center=True), so the exported
    model sees what it saw in training.
    """
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise ValueError("empty or missing image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    new_w, new_h = round(w * scale), round(h * scale)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    image = cv2.copyMakeBorder(
        image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    # BGR -> RGB, HWC -> CHW, uint8 -> float32 [0, 1]
    blob = cv2.dnn.blobFromImage(image, 1 / 255.0, swapRB=True) if hasattr(cv2, "dnn") else None
    if blob is None:  # pragma: no cover - every opencv build has dnn, but stay correct without
        blob = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob, dtype=np.float32), Letterbox(scale, left, top, w, h)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best first.

    The loop runs once per kept box (a handful per image), each step vectorised.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def merge_regions(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One box per defect region where a model's cells each predict their own: greedy from
    the highest score, every box that overlaps it at all joins it; the region's box is the
    members' score-weighted mean and its score their highest (an image's decision at a
    threshold is the same as with NMS). Returns (xyxy boxes, scores), best first.

    Why: a head that scores each cell of a region (edge.train.patch_detector) leaves after
    NMS several fragments of one region, and which fragments survive turns on the last
    digit of a score: the INT8 file and its FP32 reference then kept different ones and
    verify found boxes "without a counterpart" on the same defect. A weighted mean of all
    the region's boxes moves little when one score moves a little."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    order = np.argsort(-scores, kind="stable")
    out_b, out_s = [], []
    while order.size:
        i = int(order[0])
        w = np.minimum(x2[i], x2[order]) - np.maximum(x1[i], x1[order])
        h = np.minimum(y2[i], y2[order]) - np.maximum(y1[i], y1[order])
        member = (w > 0) & (h > 0)
        member[0] = True
        g = order[member]
        out_b.append((boxes[g] * scores[g, None]).sum(0) / max(float(scores[g].sum()), 1e-9))
        out_s.append(scores[i])
        order = order[~member]
    return np.asarray(out_b, dtype=np.float32), np.asarray(out_s, dtype=np.float32)


#: how a model's boxes are reduced to detections (the card's `boxes`)
BOX_RULES: tuple[str, ...] = get_args(BoxRule)
#: boxes merged at most (the highest scores): a whole-image scan at a near-zero threshold, as
#: an evaluation makes, must not take seconds
MERGE_CANDIDATES = 2000


def decode(
    output: np.ndarray,
    lb: Letterbox,
    class_names: list[str],
    conf: float | np.ndarray = 0.25,
    iou: float = 0.45,
    max_det: int = 100,
    boxes: str = "nms",
) -> list[dict]:
    """Raw 1x(4+C)xN model output -> detections in original image pixels.

    `conf` is one threshold or one per class. NMS is per class (boxes of different
    classes may overlap: a crack under a code); with `boxes="merge"` each class's boxes
    are merged into regions instead (`merge_regions`, `iou` unused). Returns
    [{cls, score, bbox [x, y, w, h]}].
    """
    out = np.asarray(output)
    if out.ndim == 3:
        out = out[0]
    nc = len(class_names)
    if out.ndim != 2 or out.shape[0] != 4 + nc:
        raise ValueError(
            f"model output shape {tuple(np.shape(output))} does not fit {nc} classes "
            f"(expected 1x{4 + nc}xN)"
        )
    pred = out.T  # N x (4+C)
    scores_all = pred[:, 4:]
    cls = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(cls)), cls]
    thr = np.broadcast_to(np.asarray(conf, dtype=np.float32), (nc,))[cls]
    mask = scores >= thr
    if not mask.any():
        return []
    box, cls, scores = pred[mask, :4], cls[mask], scores[mask]
    xyxy = np.empty_like(box)
    xyxy[:, 0] = box[:, 0] - box[:, 2] / 2
    xyxy[:, 1] = box[:, 1] - box[:, 3] / 2
    xyxy[:, 2] = box[:, 0] + box[:, 2] / 2
    xyxy[:, 3] = box[:, 1] + box[:, 3] / 2
    if boxes == "merge":  # each class's regions, from the highest-scored boxes (bounded time)
        if len(scores) > MERGE_CANDIDATES:
            top = np.argsort(-scores, kind="stable")[:MERGE_CANDIDATES]
            xyxy, cls, scores = xyxy[top], cls[top], scores[top]
        parts = [(*merge_regions(xyxy[cls == c], scores[cls == c]), c) for c in np.unique(cls)]
        xyxy = np.concatenate([b for b, _, _ in parts])
        scores = np.concatenate([s for _, s, _ in parts])
        cls = np.concatenate([np.full(len(s), c) for _, s, c in parts])
        keep = np.argsort(-scores, kind="stable")[:max_det]
    else:  # per-class NMS in one pass: shift each class into its own region of the plane
        offset = cls[:, None].astype(np.float32) * 4096.0
        keep = nms(xyxy + offset, scores, iou)[:max_det]
    xyxy, cls, scores = xyxy[keep], cls[keep], scores[keep]
    # undo the letterbox, clip to the image
    xyxy[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - lb.pad_x) / lb.scale, 0, lb.width)
    xyxy[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - lb.pad_y) / lb.scale, 0, lb.height)
    dets = []
    for (x1, y1, x2, y2), c, s in zip(xyxy.tolist(), cls.tolist(), scores.tolist(), strict=False):
        dets.append(
            {
                "cls": class_names[c],
                "score": round(float(s), 4),
                "bbox": [round(x1), round(y1), max(round(x2 - x1), 1), max(round(y2 - y1), 1)],
            }
        )
    return dets


def box_iou(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """IoU of two [x, y, w, h] boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0
