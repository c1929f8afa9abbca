"""The input size a detector needs, proposed from the sizes of the labelled boxes.

The detector sees a whole photo resized to its input size: a 34 px defect on a 1500 px
photo at 320 px becomes 7 px, below what a small detector's finest grid (stride 8) can
find. The proposal is the smallest multiple of 32 at which the typical (median) labelled
box keeps `TARGET_PX` on its short side, within [`SMALLEST`, `LARGEST`]. It goes on the
training page and the card; the technician may choose another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.train.dataset import IMAGE_EXT

#: pixels a defect's short side should keep at the model's input size
TARGET_PX = 16
SMALLEST, LARGEST = 320, 1280


def box_scales(data_dir: str | Path, split: str = "train") -> list[tuple[float, int]]:
    """(box short side in pixels, image long side in pixels) of each labelled box."""
    from PIL import Image

    data_dir = Path(data_dir)
    out = []
    for img in sorted((data_dir / "images" / split).iterdir()):
        if img.suffix.lower() not in IMAGE_EXT:
            continue
        lbl = data_dir / "labels" / split / f"{img.stem}.txt"
        if not lbl.is_file():
            continue
        rows = [r.split() for r in lbl.read_text().splitlines() if len(r.split()) >= 5]
        if not rows:
            continue
        with Image.open(img) as im:
            w, h = im.size
        for r in rows:
            bw, bh = float(r[3]) * w, float(r[4]) * h
            out.append((min(bw, bh), max(w, h)))
    return out


def propose(scales: list[tuple[float, int]]) -> int:
    if not scales:
        return SMALLEST
    short = float(np.median([s for s, _ in scales]))
    longest = float(np.median([side for _, side in scales]))
    want = longest * TARGET_PX / max(short, 1.0)
    size = int(np.ceil(want / 32.0) * 32)
    return int(min(LARGEST, max(SMALLEST, size)))


def proposed_imgsz(data_dir: str | Path) -> int:
    """The input size proposed for a prepared dataset (see the module docstring)."""
    return propose(box_scales(data_dir))
