"""`edge sim`: a labelled data set from the twin, for training and evaluation.

Writes images/ (PNG), labels/ (YOLO, through the one label writer the labeller also
uses: `edge.train.yolo_labels`), truth.jsonl (one ground-truth line per item), data.yaml
(the detector's classes from `edge.taxonomy`) and batch.json.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import SimulatorSource
from edge.domain import BatchState
from edge.sim.twin import LineSimulator
from edge.taxonomy import CODE_CLASS, DETECTOR_CLASSES
from edge.train.yolo_labels import label_lines, write_labels


def yolo_lines(truth: dict[str, Any], width: int, height: int) -> list[str]:
    """YOLO label lines of an item: its detector-class defect and its code's location."""
    boxes = [
        (d["class"], d["bbox"])
        for d in truth["defects"]
        if d["class"] in DETECTOR_CLASSES and "bbox" in d  # several views: where it shows
    ]
    if truth.get("code_bbox"):
        boxes.append((CODE_CLASS, truth["code_bbox"]))
    return label_lines(boxes, DETECTOR_CLASSES, width, height)


_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, _PNG):
        raise OSError(f"cannot write {path}")


def export(
    cfg: SimulatorSource,
    out_dir: Path,
    items: int,
    batch: BatchState | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a labelled data set: images/, labels/ (YOLO), truth.jsonl, data.yaml, batch.json."""
    import yaml

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    sim = LineSimulator(cfg, batch)
    # several cameras: the first view is the folder itself (as with one), view k of the same
    # items under views/<k>/ with its own truth.jsonl (its encoder counts and its boxes)
    others = [
        (LineSimulator(cfg.model_copy(update={"view": k}), batch), out / "views" / str(k))
        for k in range(1, cfg.views)
    ]
    for _, d in others:
        (d / "images").mkdir(parents=True, exist_ok=True)
    view_truths = [open(d / "truth.jsonl", "w") for _, d in others]  # noqa: SIM115
    counts: dict[str, int] = {}
    # PNG encoding costs more than rendering; OpenCV releases the GIL, so two writer
    # threads overlap it with the next renders (bounded, so memory stays flat)
    pending: deque[Future] = deque()
    with open(out / "truth.jsonl", "w") as tf, ThreadPoolExecutor(2) as pool:
        for i in range(items):
            img, truth = sim.render(i)
            name = truth["id"]
            pending.append(pool.submit(_write_png, out / "images" / f"{name}.png", img))
            while len(pending) > 8 or (pending and pending[0].done()):
                pending.popleft().result()
            write_labels(out / "labels" / f"{name}.txt", yolo_lines(truth, cfg.width, cfg.height))
            truth["image"] = f"images/{name}.png"
            tf.write(json.dumps(truth) + "\n")
            for (vsim, vdir), vtf in zip(others, view_truths, strict=True):
                vimg, vtruth = vsim.render(i)
                pending.append(pool.submit(_write_png, vdir / "images" / f"{name}.png", vimg))
                vtruth["image"] = f"images/{name}.png"
                vtf.write(json.dumps(vtruth) + "\n")
            for d in truth["defects"]:
                counts[d["class"]] = counts.get(d["class"], 0) + 1
            if on_progress:
                on_progress(i + 1, items)
        for f in pending:
            f.result()
    for vtf in view_truths:
        vtf.close()
    data = {
        "path": str(out.resolve()),
        "train": "images",
        "val": "images",
        "names": list(DETECTOR_CLASSES),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    b = sim.batch
    (out / "batch.json").write_text(json.dumps({"gtin": b.gtin, "lot": b.lot, "expiry": b.expiry}))
    summary = {"out": str(out), "items": items, "scenario": cfg.scenario, "defects": counts}
    if cfg.views > 1:
        summary["views"] = cfg.views
    return summary
