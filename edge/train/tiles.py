"""Training crops at the scale the model will see: small defects on large photos.

The model runs on the whole photo resized to its input size (`sizes.proposed_imgsz`,
e.g. 704 px for 34 px defects on 1500 px photos). Training on whole photos at that size
costs five times the pixels of a 320 px tile, most of them background, and on a CPU it is
what makes a training job take hours. So each training photo is resized to the model's
scale once, and training sees `TILE` px crops of it: `PER_DEFECT` around each labelled
defect (placed at random, so the defect is not always central and each one is seen in
several surroundings) and one at random per photo (good photos give the background the
model must learn to leave alone). With one crop per defect, tens of defects were a fifth of
the crops and a short run learnt mostly background. The detector is fully
convolutional: trained on crops, it is exported at the full input size and runs on whole
photos, at the same scale. Validation crops are made the same way (seeded).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import yaml

from edge.train.dataset import IMAGE_EXT, read_class_names

TILE = 320
#: training crops around each labelled defect (validation: one)
PER_DEFECT = 4


def _boxes(lbl: Path) -> list[tuple[int, float, float, float, float]]:
    if not lbl.is_file():
        return []
    out = []
    for row in lbl.read_text().splitlines():
        f = row.split()
        if len(f) >= 5:
            out.append((int(f[0]), *(float(v) for v in f[1:5])))
    return out


def _crop(img, boxes, x0: int, y0: int, tile: int) -> tuple[object, list[str]]:
    """The tile at (x0, y0) and the YOLO lines of the boxes it holds (clipped; a box cut
    to less than half its area is dropped, not half-labelled)."""
    h, w = img.shape[:2]
    crop = img[y0 : y0 + tile, x0 : x0 + tile]
    lines = []
    for c, cx, cy, bw, bh in boxes:
        x1, y1, x2, y2 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
        a1, b1 = max(x1, x0), max(y1, y0)
        a2, b2 = min(x2, x0 + tile), min(y2, y0 + tile)
        if a2 <= a1 or b2 <= b1 or (a2 - a1) * (b2 - b1) < 0.5 * (x2 - x1) * (y2 - y1):
            continue
        lines.append(
            f"{c} {((a1 + a2) / 2 - x0) / tile:.6f} {((b1 + b2) / 2 - y0) / tile:.6f} "
            f"{(a2 - a1) / tile:.6f} {(b2 - b1) / tile:.6f}"
        )
    return crop, lines


def crop_dataset(
    src: str | Path,
    out: str | Path,
    imgsz: int,
    tile: int = TILE,
    seed: int = 0,
    per_defect: int = PER_DEFECT,
):
    """A YOLO dataset of `tile` crops of `src`'s photos resized to `imgsz` (long side):
    `per_defect` crops around each defect of a training photo, one in validation.

    Returns the number of crops per split. When `imgsz <= tile` the photos are small
    enough to train whole and nothing is made (returns None)."""
    import cv2

    if imgsz <= tile:
        return None
    src, out = Path(src), Path(out)
    if out.exists():
        shutil.rmtree(out)
    rng = random.Random(seed)
    made = {}
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        n = 0
        for p in sorted((src / "images" / split).iterdir()):
            if p.suffix.lower() not in IMAGE_EXT:
                continue
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"unreadable training image {p}")
            s = imgsz / max(img.shape[:2])
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)))
            h, w = img.shape[:2]
            if h < tile or w < tile:
                img = cv2.copyMakeBorder(
                    img,
                    0,
                    max(0, tile - h),
                    0,
                    max(0, tile - w),
                    cv2.BORDER_CONSTANT,
                    value=(114, 114, 114),
                )
                h, w = img.shape[:2]
            boxes = _boxes(src / "labels" / split / f"{p.stem}.txt")
            origins = []
            for _c, cx, cy, bw, bh in boxes:  # crops holding each defect, placed at random
                bx, by = cx * w, cy * h
                lo_x = int(max(0, min(w - tile, bx + bw * w / 2 - tile)))
                hi_x = int(max(lo_x, min(w - tile, bx - bw * w / 2)))
                lo_y = int(max(0, min(h - tile, by + bh * h / 2 - tile)))
                hi_y = int(max(lo_y, min(h - tile, by - bh * h / 2)))
                for _k in range(per_defect if split == "train" else 1):
                    origins.append((rng.randint(lo_x, hi_x), rng.randint(lo_y, hi_y)))
            origins.append((rng.randint(0, w - tile), rng.randint(0, h - tile)))
            for k, (x0, y0) in enumerate(origins):
                crop, lines = _crop(img, boxes, x0, y0, tile)
                name = f"{p.stem}_t{k}"
                cv2.imwrite(str(out / "images" / split / f"{name}.png"), crop)
                (out / "labels" / split / f"{name}.txt").write_text(
                    "".join(f"{ln}\n" for ln in lines)
                )
                n += 1
        made[split] = n
    names = read_class_names(src)
    (out / "data.yaml").write_text(
        yaml.safe_dump(
            {"train": "images/train", "val": "images/val", "names": dict(enumerate(names))},
            sort_keys=False,
        )
    )
    return made
