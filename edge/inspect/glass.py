"""Glass and content check for vials: cracks, scratches and particles (classic OpenCV).

A first-line check as a plant's particle/glass station would run it: find the liquid
column (by its hue, as the fill tool does), then look in the visible glass above the
label and the liquid below it for small local contrast anomalies. Morphological
black-hat / top-hat against the local background give dark and bright residues;
thresholds are relative to the local brightness, so lighting gradients and drift do not
move them. Long straight structures that belong to the vial itself (meniscus, walls,
glare stripe) are removed by line openings before the blobs are classified:

- compact dark blob                   -> PARTICLE
- dark line (jagged, with a bright rim) -> CRACK
- bright line without a dark part     -> SCRATCH
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.domain import Finding
from edge.inspect.measure import Box, _MeasureTool, _runs, locate_vial
from edge.inspect.params.glass import GlassParams


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A 1-px line structuring element of `length` at `angle_deg` from horizontal."""
    k = np.zeros((length, length), np.uint8)
    c = (length - 1) / 2
    dx, dy = math.cos(math.radians(angle_deg)) * c, math.sin(math.radians(angle_deg)) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
    return k


class GlassTool(_MeasureTool):
    """Particles in the liquid, cracks and scratches on the visible glass."""

    type_key = "glass"
    version = "1.0"
    Params = GlassParams
    measures = {"glass_residue_max": "ratio"}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        p: GlassParams = self.params  # type: ignore[assignment]
        k = p.kernel_px | 1
        self._disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        n = p.structure_len_px | 1
        self._h_lines = [_line_kernel(n, a) for a in (-16, -8, 0, 8, 16)]
        self._v_line = _line_kernel(n, 90)

    # ------------------------------------------------------------------ regions

    def _regions(self, image: np.ndarray) -> tuple[list[Box], int] | str:
        """Search windows (upper glass + liquid above the label, liquid below it)."""
        p: GlassParams = self.params  # type: ignore[assignment]
        v = locate_vial(image, p)
        if v is None:
            return "no vial (liquid column) in view"
        s = v.scale
        runs = _runs(v.rows >= p.row_fraction, 2)
        x0, x1 = v.x0 + p.wall_margin_px, v.x1 - p.wall_margin_px
        if x1 - x0 < 20:
            return "liquid column too narrow"
        H = image.shape[0]
        up_top = max(0, v.top - p.glass_above_px)
        up_bot = v.oy + round(runs[0][1] / s) - p.label_margin_px
        boxes = [(x0, up_top, x1 - x0, up_bot - up_top)]
        if len(runs) > 1:
            lo_top = v.oy + round(runs[-1][0] / s) + p.label_margin_px
            lo_bot = min(H, v.bottom - p.bottom_margin_px)
            if lo_bot - lo_top >= 6:
                boxes.append((x0, lo_top, x1 - x0, lo_bot - lo_top))
        boxes = [b for b in boxes if b[3] >= 6]
        if not boxes:
            return "no glass visible outside the label"
        return boxes, v.top

    # ------------------------------------------------------------------ residues

    def _residues(self, gray: np.ndarray, dark: bool) -> np.ndarray:
        """Relative dark (or bright) residue after removing the vial's own straight lines."""
        op = cv2.MORPH_BLACKHAT if dark else cv2.MORPH_TOPHAT
        res = cv2.morphologyEx(gray, op, self._disc, borderType=cv2.BORDER_REPLICATE)
        # dark: meniscus (near horizontal) and walls; bright: glare and wall highlights (vertical)
        kernels = (*self._h_lines, self._v_line) if dark else (self._v_line,)
        lines = [cv2.morphologyEx(res, cv2.MORPH_OPEN, k) for k in kernels]
        res = cv2.subtract(res, np.maximum.reduce(lines))
        res[res < self.params.noise_floor] = 0  # type: ignore[attr-defined]  # sensor noise is absolute
        k = 2 * self.params.kernel_px + 1  # type: ignore[attr-defined]
        bg = cv2.blur(gray, (k, k))
        return res.astype(np.float32) / np.maximum(bg.astype(np.float32), 8.0)

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: GlassParams = self.params  # type: ignore[assignment]
        found = self._regions(image)
        if isinstance(found, str):
            return [self.finding("NO_PRODUCT", found)]
        boxes, _ = found
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        pad = p.kernel_px
        H, W = gray.shape
        findings: list[Finding] = []
        for bx, by, bw, bh in boxes:
            # analyse a padded window so the kernels see real background at the borders
            ax0, ay0 = max(0, bx - pad), max(0, by - pad)
            ax1, ay1 = min(W, bx + bw + pad), min(H, by + bh + pad)
            win = gray[ay0:ay1, ax0:ax1]
            inner = (slice(by - ay0, by - ay0 + bh), slice(bx - ax0, bx - ax0 + bw))
            dark = self._residues(win, True)[inner]
            bright = self._residues(win, False)[inner]
            peak = float(max(dark.max(initial=0.0), bright.max(initial=0.0)))
            values["glass_residue_max"] = max(peak, values.get("glass_residue_max", 0.0))
            findings += self._classify(dark, bright, bx, by)
        return findings

    # ------------------------------------------------------------------ blobs

    def _classify(self, dark: np.ndarray, bright: np.ndarray, ox: int, oy: int) -> list[Finding]:
        p: GlassParams = self.params  # type: ignore[assignment]
        out: list[Finding] = []
        dmask = (dark > p.dark_contrast).astype(np.uint8)
        bmask = (bright > p.bright_contrast).astype(np.uint8)
        near_bright = cv2.dilate(bmask, np.ones((5, 5), np.uint8))
        n, lab, st, _ = cv2.connectedComponentsWithStats(dmask, connectivity=8)
        claimed = np.zeros_like(bmask)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in st[k])
            if area < p.min_dark_area_px:
                continue
            blob = lab[y : y + h, x : x + w] == k
            length = _length(blob)
            score = float(dark[y : y + h, x : x + w][blob].max())
            box = (ox + x, oy + y, w, h)
            if length <= p.particle_max_len_px:
                if score < p.particle_contrast:
                    continue  # faint specks: noise and the meniscus ends
                out.append(
                    self.finding("PARTICLE", f"dark blob {length:.0f} px", score=score, bbox=box)
                )
            else:
                rim = bool(near_bright[y : y + h, x : x + w][blob].any())
                msg = f"dark line {length:.0f} px" + (" with bright rim" if rim else "")
                out.append(self.finding("CRACK", msg, score=score, bbox=box))
                claimed[y : y + h, x : x + w] = 1
        n, lab, st, _ = cv2.connectedComponentsWithStats(bmask & (1 - claimed), connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in st[k])
            if area < p.min_bright_area_px:
                continue
            blob = lab[y : y + h, x : x + w] == k
            length = _length(blob)
            if length < p.min_line_len_px or h > p.max_line_slope * w:
                continue  # short, or steep: glare stripes and wall highlights run vertically
            score = float(bright[y : y + h, x : x + w][blob].max())
            out.append(
                self.finding(
                    "SCRATCH",
                    f"bright line {length:.0f} px",
                    score=score,
                    bbox=(ox + x, oy + y, w, h),
                )
            )
        return out


def _length(blob: np.ndarray) -> float:
    """Longest extent of a blob (its rotated bounding box's long side)."""
    pts = np.column_stack(np.nonzero(blob)[::-1]).astype(np.float32)
    (_, _), (a, b), _ = cv2.minAreaRect(pts)
    return float(max(a, b)) + 1.0
