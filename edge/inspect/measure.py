"""Classic measurement tools: fill level, cap, label (vials) and blister pockets.

Deterministic OpenCV/numpy measurements, each a few ms at 640x480. They locate the
product themselves (jitter, small rotation), and measure in ratios, hues and locally
normalised brightness so that lighting gradients and slow drift do not move them.
A tool that cannot find what it measures reports a finding (NO_PRODUCT, ...), never a
silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.domain import Finding
from edge.inspect.base import Tool, ToolContext, ToolResult
from edge.inspect.params.measure import (
    Box,
    CapParams,
    FillParams,
    LabelParams,
    PocketParams,
    VialParams,
)


def check_image(image: object) -> str | None:
    """Why an image cannot be measured (None if it can): the tools need 8-bit BGR."""
    if not isinstance(image, np.ndarray):
        return f"not an image array: {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"image dtype {image.dtype} (expected uint8)"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image shape {image.shape} (expected H x W x 3 BGR)"
    if image.shape[0] < 32 or image.shape[1] < 32:
        return f"image too small: {image.shape[1]}x{image.shape[0]}"
    return None


class _MeasureTool(Tool):
    version = "1.0"

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        why = check_image(image)
        if why is not None:
            return self.result([self.finding("IMAGE_ERROR", why)])
        values: dict[str, float] = {}
        r = self.result(self.measure(image, values))
        r.measurements = {k: round(float(v), 4) for k, v in values.items()}
        return r

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        """The findings; what was measured goes into `values` (names from `measures`)."""
        raise NotImplementedError


def _roi(image: np.ndarray, roi: Box | None) -> tuple[np.ndarray, int, int]:
    if roi is None:
        return image, 0, 0
    x, y, w, h = roi
    H, W = image.shape[:2]
    x0, y0 = max(0, min(W - 1, x)), max(0, min(H - 1, y))
    x1, y1 = max(x0 + 1, min(W, x + w)), max(y0 + 1, min(H, y + h))
    return image[y0:y1, x0:x1], x0, y0


def _runs(flags: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, end) of the runs of True at least min_len long."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if e - s >= min_len]


# --------------------------------------------------------------------------- vials


@dataclass
class Vial:
    """Where the liquid column is, in full-resolution image pixels."""

    x0: int
    x1: int
    top: int  # meniscus
    bottom: int  # inner bottom
    rows: np.ndarray  # per analysed row: share of the column that is liquid
    scale: float
    hsv: np.ndarray  # analysis image (HSV), offset by (ox, oy) / scale
    liquid: np.ndarray  # liquid mask of the analysis image
    ox: int
    oy: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def box(self) -> Box:
        return (self.x0, self.top, self.width, self.bottom - self.top)


def locate_vial(image: np.ndarray, p: VialParams) -> Vial | None:
    """Find the liquid column: its side walls, meniscus and inner bottom."""
    sub, ox, oy = _roi(image, p.roi)
    s = p.scale
    small = cv2.resize(sub, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s != 1 else sub
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    lo = (p.liquid_hue[0], p.liquid_min_saturation, p.min_value)
    hi = (p.liquid_hue[1], 255, 255)
    liquid = cv2.inRange(hsv, lo, hi)
    liquid = cv2.morphologyEx(liquid, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    lm = liquid > 0
    cols = lm.sum(0)
    if cols.max(initial=0) < 4:
        return None
    runs = _runs(cols >= max(4, 0.25 * cols.max()), max(2, int(p.min_width_px * s)))
    if not runs:
        return None
    c0, c1 = max(runs, key=lambda r: int(cols[r[0] : r[1]].sum()))
    rows = lm[:, c0:c1].mean(1)
    vr = _runs(rows >= p.row_fraction, 2)
    if not vr:
        return None
    top, bottom = vr[0][0], vr[-1][1]
    return Vial(
        x0=ox + round(c0 / s),
        x1=ox + round(c1 / s),
        top=oy + round(top / s),
        bottom=oy + round(bottom / s),
        rows=rows,
        scale=s,
        hsv=hsv,
        liquid=lm,
        ox=ox,
        oy=oy,
    )


class FillLevelTool(_MeasureTool):
    """Fill height (meniscus to inner bottom) in mm, scaled by the vial's own width."""

    type_key = "fill_level"
    Params = FillParams
    measures = {"fill_level_mm": "mm"}

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: FillParams = self.params  # type: ignore[assignment]
        v = locate_vial(image, p)
        if v is None:
            return [self.finding("NO_PRODUCT", "no vial (liquid column) in view")]
        level = (v.bottom - v.top) / max(1, v.width) * p.inner_diameter_mm
        values["fill_level_mm"] = level
        if level < p.min_level_mm:
            return [
                self.finding(
                    "LOW_FILL", f"fill {level:.1f} mm < {p.min_level_mm}", value=level, bbox=v.box
                )
            ]
        if level > p.max_level_mm:
            return [
                self.finding(
                    "HIGH_FILL", f"fill {level:.1f} mm > {p.max_level_mm}", value=level, bbox=v.box
                )
            ]
        return []


def _orientation(mo: dict) -> float:
    """Angle of a blob's long axis from horizontal, in -90..90 degrees (image y down).

    From the second central moments, so it varies continuously with the blob: a rotated
    rectangle's bounding fit (minAreaRect) jumps between 0 and atan(1 / width) on pixel
    masks, too coarse to chart a capper drifting by tenths of a degree.
    """
    if mo["m00"] <= 0:
        return 0.0
    return float(np.degrees(0.5 * np.arctan2(2 * mo["mu11"], mo["mu20"] - mo["mu02"])))


class CapTool(_MeasureTool):
    """Flip-off cap presence (its colour above the liquid) and tilt (its long axis)."""

    type_key = "cap"
    version = "1.1"  # 1.1: tilt from the blob's moments (continuous), was its bounding fit
    Params = CapParams
    measures = {"cap_tilt_deg": "deg", "cap_area_px": "px"}

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: CapParams = self.params  # type: ignore[assignment]
        v = locate_vial(image, p)
        if v is None:
            return [self.finding("NO_PRODUCT", "no vial (liquid column) in view")]
        s = v.scale
        # search window: above the meniscus, over the vial's width, in analysis pixels
        y1 = max(1, round((v.top - v.oy) * s))
        y0 = max(0, y1 - round(p.search_above_px * s))
        x0 = max(0, round((v.x0 - v.ox) * s))
        x1 = max(x0 + 1, round((v.x1 - v.ox) * s))
        win = (v.x0, v.oy + round(y0 / s), v.width, round((y1 - y0) / s))
        hsv = v.hsv[y0:y1, x0:x1]
        if hsv.size == 0:
            values["cap_area_px"] = 0.0
            return [self.finding("MISSING_CAP", "no room above the liquid", bbox=win)]
        lo = (p.cap_hue[0], p.cap_min_saturation, p.min_value)
        m = cv2.inRange(hsv, lo, (p.cap_hue[1], 255, 255))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n <= 1:
            values["cap_area_px"] = 0.0
            return [self.finding("MISSING_CAP", "no cap colour above the vial", bbox=win)]
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = stats[k, cv2.CC_STAT_AREA] / (s * s)
        values["cap_area_px"] = area
        if area < p.min_cap_area_px:
            return [
                self.finding(
                    "MISSING_CAP",
                    f"cap area {area:.0f} px < {p.min_cap_area_px}",
                    value=area,
                    bbox=win,
                )
            ]
        angle = _orientation(cv2.moments((lab == k).astype(np.uint8), binaryImage=True))
        values["cap_tilt_deg"] = angle
        bx, by, bw, bh = stats[k, :4]
        box = (
            v.ox + round((x0 + bx) / s),
            v.oy + round((y0 + by) / s),
            round(bw / s),
            round(bh / s),
        )
        if abs(angle) > p.max_tilt_deg:
            return [self.finding("CAP_TILT", f"cap tilted {angle:+.1f} deg", value=angle, bbox=box)]
        return []


class LabelTool(_MeasureTool):
    """Label present: a band across the vial that hides the liquid below the meniscus."""

    type_key = "label"
    Params = LabelParams
    measures = {"label_coverage": "ratio"}

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: LabelParams = self.params  # type: ignore[assignment]
        v = locate_vial(image, p)
        if v is None:
            return [self.finding("NO_PRODUCT", "no vial (liquid column) in view")]
        s = v.scale
        r0 = round((v.top - v.oy) * s + p.margin_px * s)
        r1 = round((v.bottom - v.oy) * s - p.margin_px * s)
        if r1 - r0 < 4:
            return [
                self.finding("MISSING_LABEL", "liquid column too short to hold a label", bbox=v.box)
            ]
        coverage = float((v.rows[r0:r1] < p.row_fraction).mean())
        values["label_coverage"] = coverage
        if coverage < p.min_coverage:
            return [
                self.finding(
                    "MISSING_LABEL",
                    f"label covers {coverage:.0%} of the vial (< {p.min_coverage:.0%})",
                    value=coverage,
                    bbox=v.box,
                )
            ]
        return []


# --------------------------------------------------------------------------- blisters


class PocketTool(_MeasureTool):
    """Every pocket holds one whole tablet of the right colour and shape."""

    type_key = "pockets"
    Params = PocketParams
    measures = {"pocket_fill_min": "ratio", "pocket_saturation_max": "0-255"}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        p: PocketParams = self.params  # type: ignore[assignment]
        s = p.scale
        self._cw, self._ch = round(p.card_size[0] * s), round(p.card_size[1] * s)
        r = p.pocket_radius * s
        size = int(np.ceil(2 * r + 16 * s)) | 1
        c = size // 2
        yy, xx = np.mgrid[0:size, 0:size] - c
        d = np.hypot(xx, yy)
        self._patch = size
        self._disc = d <= r - 2 * s
        self._ring = (d >= r + 6 * s) & (d <= r + 10 * s)
        self._expected = np.pi * (p.tablet_diameter * s / 2) ** 2
        self._centres = [
            (p.first_pocket[0] + c_ * p.pitch[0], p.first_pocket[1] + r_ * p.pitch[1])
            for r_ in range(p.rows)
            for c_ in range(p.cols)
        ]

    def _card(self, image: np.ndarray) -> np.ndarray | None:
        """Affine map card pixels (analysis scale) -> image pixels, or None if no card."""
        p: PocketParams = self.params  # type: ignore[assignment]
        sub, ox, oy = _roi(image, p.roi)
        f = 0.5
        small = cv2.resize(sub, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        g = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if int(g.max()) - int(g.min()) < 30:
            return None
        _, m = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not cs:
            return None
        c = max(cs, key=cv2.contourArea)
        if cv2.contourArea(c) < 0.1 * g.size:
            return None
        rect = cv2.minAreaRect(c)
        pts = cv2.boxPoints(rect) / f + (ox, oy)
        e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
        long_, short = (e1, e2) if np.hypot(*e1) >= np.hypot(*e2) else (e2, e1)
        aspect = np.hypot(*long_) / max(1e-6, np.hypot(*short))
        want = p.card_size[0] / p.card_size[1]
        if abs(aspect - want) > p.aspect_tolerance * want:
            return None
        ux = long_ if long_[0] >= 0 else -long_
        uy = short if short[1] >= 0 else -short
        centre = pts.mean(0)
        origin = centre - ux / 2 - uy / 2
        src = np.float32([[0, 0], [self._cw, 0], [0, self._ch]])
        dst = np.float32([origin, origin + ux, origin + uy])
        return cv2.getAffineTransform(src, dst)

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: PocketParams = self.params  # type: ignore[assignment]
        m = self._card(image)
        if m is None:
            return [self.finding("NO_PRODUCT", "no blister card of the expected shape in view")]
        card = cv2.warpAffine(
            image,
            m,
            (self._cw, self._ch),
            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_AREA,
            borderMode=cv2.BORDER_REPLICATE,
        )
        hsv = cv2.cvtColor(card, cv2.COLOR_BGR2HSV)
        v = hsv[..., 2].astype(np.float32)
        sat = hsv[..., 1]
        s, h = p.scale, self._patch // 2
        findings: list[Finding] = []
        for cx, cy in self._centres:
            x, y = round(cx * s), round(cy * s)
            sl = (slice(y - h, y + h + 1), slice(x - h, x + h + 1))
            pv, ps = v[sl], sat[sl]
            if pv.shape != self._disc.shape:
                findings.append(self.finding("NO_PRODUCT", "pocket outside the card view"))
                continue
            ref = float(np.median(pv[self._ring])) + 1.0
            obj = ((pv > p.brightness_ratio * ref) | (ps > p.max_saturation)) & self._disc
            area = float(obj.sum())
            ratio = area / self._expected
            values["pocket_fill_min"] = min(ratio, values.get("pocket_fill_min", ratio))
            box = self._pocket_box(m, cx, cy)
            if ratio < p.empty_ratio:
                findings.append(self.finding("EMPTY_POCKET", "no tablet", value=ratio, bbox=box))
                continue
            mean_sat = float(ps[obj].mean())
            values["pocket_saturation_max"] = max(
                mean_sat, values.get("pocket_saturation_max", mean_sat)
            )
            if mean_sat > p.max_saturation:
                findings.append(
                    self.finding(
                        "FOREIGN_TABLET",
                        f"colour: saturation {mean_sat:.0f}",
                        value=mean_sat,
                        bbox=box,
                    )
                )
                continue
            if ratio < p.broken_ratio:
                findings.append(
                    self.finding("BROKEN_TABLET", f"tablet area {ratio:.0%}", value=ratio, bbox=box)
                )
                continue
            mo = cv2.moments(obj.astype(np.uint8), binaryImage=True)
            aspect = _elongation(mo)
            if ratio > p.oversize_ratio or aspect > p.max_aspect:
                findings.append(
                    self.finding(
                        "FOREIGN_TABLET",
                        f"shape: area {ratio:.0%}, elongation {aspect:.2f}",
                        value=aspect,
                        bbox=box,
                    )
                )
        return findings

    def _pocket_box(self, m: np.ndarray, cx: float, cy: float) -> Box:
        p: PocketParams = self.params  # type: ignore[assignment]
        s, r = p.scale, p.pocket_radius + 3
        pts = np.array(
            [[cx - r, cy - r, 1], [cx + r, cy - r, 1], [cx - r, cy + r, 1], [cx + r, cy + r, 1]],
            float,
        )
        pts[:, :2] *= s
        t = pts @ m.T
        x0, y0 = t.min(0)
        x1, y1 = t.max(0)
        return (round(x0), round(y0), round(x1 - x0), round(y1 - y0))


def _elongation(mo: dict) -> float:
    """sqrt of the ratio of the second-moment eigenvalues (1.0 for a disc)."""
    if mo["m00"] <= 0:
        return 1.0
    a, b, c = mo["mu20"] / mo["m00"], mo["mu11"] / mo["m00"], mo["mu02"] / mo["m00"]
    t = np.sqrt(4 * b * b + (a - c) ** 2)
    l1, l2 = (a + c + t) / 2, (a + c - t) / 2
    return float(np.sqrt(l1 / max(l2, 1e-6)))
