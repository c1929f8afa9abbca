"""Novel defects: kinds no model was trained on, drawn over a finished good item.

A real line shows defects nobody labelled (a fibre in the solution, a dented cap, an ink
blot, a stray printed mark). The detector never saw these classes (`edge.taxonomy`
keeps them out of its class list), so only the good-only `anomaly` tool can catch them:
they let the whole line be measured on the unknown.

Each kind is an overlay on the frame after the product's scene has drawn a good item and
before the stage adds light and noise. It finds its place from the boxes the scene
reported (`Drawn.boxes`: the cap, the label or print box, the liquid above the fill
level), so the scene modules need no change; the item's rotation (a degree or two) is
ignored, which the margins below allow for. It draws with its own random stream, so an
item without a novel defect is drawn exactly as it would be without this module.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from edge.sim.draw import BASE_H, BASE_W
from edge.sim.scene import Drawn

Box = list[int]


def draw(kind: str, scenario: str, canvas: np.ndarray, drawn: Drawn, rng) -> Box:
    """Draw novel defect `kind` on the item just drawn in `canvas`; its box [x, y, w, h]."""
    try:
        fn = _DRAW[(scenario, kind)]
    except KeyError:
        raise ValueError(f"no novel defect {kind!r} on {scenario!r}") from None
    return [int(v) for v in fn(canvas, drawn.boxes, rng)]


def _blend(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float):
    """Lay `colour` over `canvas` where `mask` (0..1 float) is, at opacity `alpha`."""
    a = (mask * alpha)[..., None]
    out = canvas.astype(np.float32) * (1 - a) + np.array(colour, np.float32) * a
    canvas[:] = np.clip(out, 0, 255).astype(np.uint8)


def _fibre(canvas: np.ndarray, boxes: dict[str, Box], rng) -> Box:
    """A thin, faint, slightly curved fibre floating in the liquid between meniscus and label."""
    lx, ly, lw, lh = boxes["low_fill"]  # the interior's width; the liquid starts below it
    label_top = boxes["missing_label"][1]
    x_lo, x_hi = lx + 14, lx + lw - 14
    y_lo, y_hi = ly + lh + 4, label_top - 8
    if y_hi - y_lo < 8:  # a low level: the liquid shows only below the label
        y_lo, y_hi = ly + lh + 2, ly + lh + 10
    x, y = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    ang = float(rng.uniform(0, 2 * np.pi))
    pts = [(x, y)]
    for _ in range(int(rng.integers(4, 7))):
        ang += float(rng.uniform(-0.6, 0.6))
        step = float(rng.uniform(4, 7))
        x = float(np.clip(x + step * np.cos(ang), x_lo, x_hi))
        y = float(np.clip(y + step * np.sin(ang), y_lo, y_hi))
        pts.append((x, y))
    a = np.round(np.array(pts)).astype(np.int32)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    cv2.polylines(mask, [a], False, 255, 1, cv2.LINE_AA)
    shade = int(rng.integers(25, 60))
    _blend(canvas, mask.astype(np.float32) / 255, (shade, shade, shade + 6), 0.85)
    x0, y0 = a.min(0) - 2
    x1, y1 = a.max(0) + 3
    return [x0, y0, x1 - x0, y1 - y0]


def _dented_cap(canvas: np.ndarray, boxes: dict[str, Box], rng) -> Box:
    """The flip-off cap pushed in at its top rim: the outline sags, the crease is shaded."""
    cx, cy, cw, _ = boxes["missing_cap"]  # flip-off top to crimp bottom
    xc = float(rng.uniform(cx + 18, cx + cw - 18))
    depth = float(rng.uniform(5, 9))
    sigma = float(rng.uniform(5, 9))
    reach = 30  # rows below the top edge the dent fades over
    x0, x1 = int(max(0, xc - 3 * sigma)), int(min(BASE_W, xc + 3 * sigma + 1))
    y0, y1 = max(0, cy - 4), min(BASE_H, cy + reach)
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    g = np.exp(-((xs - xc) ** 2) / (2 * sigma**2))
    fade = np.clip(1 - (ys - cy) / reach, 0, 1)
    dy = depth * g * fade
    region = canvas[y0:y1, x0:x1].copy()
    # each pixel shows what lay dy rows above it: the top edge moves down into the cap
    src = cv2.remap(
        canvas, xs, ys - dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    crease = 1 - 0.35 * g * np.clip(1 - np.abs(ys - cy - depth - 4) / 6, 0, 1)
    region = np.clip(src.astype(np.float32) * crease[..., None], 0, 255).astype(np.uint8)
    canvas[y0:y1, x0:x1] = region
    return [x0, y0, x1 - x0, int(min(y1 - y0, depth + 14))]


def _stain_mask(shape: tuple[int, int], centre: tuple[float, float], size: float, rng):
    """An irregular blot: a few overlapping discs, softened at the edge."""
    mask = np.zeros(shape, np.uint8)
    x, y = centre
    for _ in range(int(rng.integers(3, 7))):
        r = int(rng.uniform(0.35, 0.6) * size)
        dx, dy = rng.normal(0, size * 0.3, 2)
        cv2.circle(mask, (int(x + dx), int(y + dy)), max(2, r), 255, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (5, 5), 1.2).astype(np.float32) / 255


def _away_from(
    rng, region: Box, avoid: list[Box], margin: int, tries: int = 30
) -> tuple[float, float]:
    """A random point of `region` at least `margin` outside each box of `avoid` (best effort)."""
    rx, ry, rw, rh = region
    p = (rx + rw / 2, ry + rh / 2)
    for _ in range(tries):
        p = (float(rng.uniform(rx, rx + rw)), float(rng.uniform(ry, ry + rh)))
        if all(
            not (
                b[0] - margin < p[0] < b[0] + b[2] + margin
                and b[1] - margin < p[1] < b[1] + b[3] + margin
            )
            for b in avoid
        ):
            break
    return p


def _box_of(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask > 0.1)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


def _ink_colour(rng) -> tuple[int, int, int]:
    return ((110, 40, 20), (30, 30, 35), (40, 30, 120))[int(rng.integers(0, 3))]


def _vial_ink_stain(canvas: np.ndarray, boxes: dict[str, Box], rng) -> Box:
    """A blot of ink on the vial's label, away from the code (so the code still reads)."""
    lx, ly, lw, lh = boxes["missing_label"]
    avoid = [boxes["code"]] if "code" in boxes else []
    size = float(rng.uniform(9, 15))
    c = _away_from(rng, [lx + 14, ly + 30, lw - 28, lh - 44], avoid, int(size))
    mask = _stain_mask(canvas.shape[:2], c, size, rng)
    _blend(canvas, mask, _ink_colour(rng), float(rng.uniform(0.6, 0.85)))
    return _box_of(mask)


def _carton_face(boxes: dict[str, Box]) -> Box:
    """The carton's face, from its print box (250, 210 into the 520 x 350 face)."""
    px, py = boxes["missing_label"][:2]
    return [px - 250, py - 210, 520, 350]


def _carton_ink_stain(canvas: np.ndarray, boxes: dict[str, Box], rng) -> Box:
    """A blot of ink on the carton's white face, below the brand band, off the print box."""
    fx, fy, fw, fh = _carton_face(boxes)
    size = float(rng.uniform(10, 18))
    c = _away_from(rng, [fx + 20, fy + 85, fw - 40, fh - 105], [boxes["missing_label"]], 22)
    mask = _stain_mask(canvas.shape[:2], c, size, rng)
    _blend(canvas, mask, _ink_colour(rng), float(rng.uniform(0.6, 0.85)))
    return _box_of(mask)


_MARKS = ("X", "QC", "07", "B2", "OK", "#")


def _foreign_mark(canvas: np.ndarray, boxes: dict[str, Box], rng) -> Box:
    """A stray printed mark (a code from another job, a test stamp) in a blank area of the face."""
    fx, fy, _, _ = _carton_face(boxes)
    blanks = ([fx + 385, fy + 95, 110, 100], [fx + 190, fy + 215, 50, 110])
    region = blanks[int(rng.integers(0, len(blanks)))]
    mask = np.zeros(canvas.shape[:2], np.uint8)
    x = int(rng.uniform(region[0], region[0] + region[2] - 30))
    y = int(rng.uniform(region[1] + 20, region[1] + region[3]))
    if rng.random() < 0.3:  # a small stamp: a ring
        cv2.circle(mask, (x + 12, y - 10), int(rng.integers(8, 13)), 255, 2, cv2.LINE_AA)
    else:
        text = _MARKS[int(rng.integers(0, len(_MARKS)))]
        scale = float(rng.uniform(0.6, 0.9))
        cv2.putText(mask, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 2, cv2.LINE_AA)
    m = mask.astype(np.float32) / 255
    _blend(canvas, m, _ink_colour(rng), float(rng.uniform(0.75, 0.95)))
    return _box_of(m)


_DRAW: dict[tuple[str, str], Callable[[np.ndarray, dict[str, Box], np.random.Generator], Box]] = {
    ("vials", "fibre"): _fibre,
    ("vials", "dented_cap"): _dented_cap,
    ("vials", "ink_stain"): _vial_ink_stain,
    ("cartons", "ink_stain"): _carton_ink_stain,
    ("cartons", "foreign_mark"): _foreign_mark,
}
