"""What a close-up print camera's view has in common for every product (the vial's label
camera, the carton's print camera): where each print and code defect shows in its frame,
and the frame finished as the whole-item view is, tilted on the belt and through the same
optics in this camera's pixels (`z` times closer).

One home, so both products' close-up views say the same truth for the same defect.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge.sim.draw import box_after
from edge.sim.scene import Drawn
from edge.taxonomy import CODE_DEFECTS, PRINT_DEFECTS


def mark_print(
    boxes: dict[str, tuple], info: dict[str, Any], code: tuple, ox: int, oy: int
) -> None:
    """The printed block's box for each print defect and the code's for each code defect
    (and `code`), moved by the patch's place (ox, oy) in the frame."""
    bx, by, bw, bh = info["box"]
    for d in PRINT_DEFECTS:
        boxes[d] = (ox + bx, oy + by, bw, bh)
    cx, cy, sw, sh = code
    code_box = (ox + cx, oy + cy, sw, sh)
    for c in CODE_DEFECTS:
        boxes.setdefault(c, code_box)
    boxes["code"] = code_box


def finish(
    canvas: np.ndarray,
    angle: float,
    z: int,
    rng: np.random.Generator,
    boxes: dict[str, tuple],
    info: dict[str, Any] | None,
) -> Drawn:
    """Tilt the frame by `angle` about its centre, blur it as the whole-item view's optics
    blur (in this camera's pixels), and place every box where it now lies."""
    h, w = canvas.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    blur = rng.random()
    if blur < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), 0.3 * z)
    elif blur < 0.5:
        out = cv2.blur(out, (z + 1, 1))
    canvas[:] = out
    placed = {k: box_after(m, b, (0, 0)) for k, b in boxes.items()}
    return Drawn(placed, placed.get("code"), info is not None, info)
