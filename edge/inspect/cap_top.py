"""The cap from above: present (the flip-off disc's colour) and undamaged (no dent in its top).

A camera over the line sees the flip-off cap as a disc. Missing: no disc of the cap's
colour, or too small a one (the grey stopper shows instead). Dented: the top of a good cap
is lit evenly at each distance from its centre (a dome light's fall-off is the same all
round), so each pixel is compared with the median of its ring; a crease is a patch darker
than its ring. Lighting drift moves a whole ring together, so the comparison keeps.
A dent is a kind no model was trained on: its reason is ANOMALY, as the anomaly tool's.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.domain import Finding
from edge.inspect.measure import _MeasureTool
from edge.inspect.params.cap_top import CapTopParams


class CapTopTool(_MeasureTool):
    type_key = "cap_top"
    version = "1.0"
    Params = CapTopParams
    measures = {"cap_top_area_px": "px", "cap_top_dent": "ratio"}

    def measure(self, image: np.ndarray, values: dict[str, float]) -> list[Finding]:
        p: CapTopParams = self.params  # type: ignore[assignment]
        ox = oy = 0
        if p.roi is not None:
            x, y, w, h = p.roi
            image = image[max(0, y) : y + h, max(0, x) : x + w]
            ox, oy = max(0, x), max(0, y)
            if image.size == 0:
                return [self.finding("IMAGE_ERROR", f"roi {p.roi} is outside the frame")]
        lo, hi = (p.cap_hue[0], p.cap_min_saturation, p.min_value), (p.cap_hue[1], 255, 255)
        # find the disc at half resolution (a quarter of the pixels), then look at it in full
        small = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        m = cv2.inRange(cv2.cvtColor(small, cv2.COLOR_BGR2HSV), lo, hi)
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n <= 1:
            values["cap_top_area_px"] = 0.0
            return [self.finding("MISSING_CAP", "no cap colour seen from above")]
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        bx, by, bw, bh, area = (int(v) for v in stats[k])
        area *= 4
        values["cap_top_area_px"] = float(area)
        box = (ox + 2 * bx, oy + 2 * by, 2 * bw, 2 * bh)
        if area < p.min_cap_area_px:
            return [
                self.finding(
                    "MISSING_CAP",
                    f"cap from above {area} px < {p.min_cap_area_px}",
                    value=float(area),
                    bbox=box,
                )
            ]
        x0, y0 = max(0, 2 * bx - 4), max(0, 2 * by - 4)
        image = image[y0 : 2 * (by + bh) + 4, x0 : 2 * (bx + bw) + 4]
        ox, oy = ox + x0, oy + y0
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        m = cv2.inRange(hsv, lo, hi)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n <= 1:
            return [self.finding("MISSING_CAP", "no cap colour seen from above", bbox=box)]
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        # the disc with its holes filled (a deep crease may lose the cap's colour)
        disc = np.zeros(m.shape, np.uint8)
        cnts, _ = cv2.findContours((lab == k).astype(np.uint8), cv2.RETR_EXTERNAL, 2)
        cv2.drawContours(disc, cnts, -1, 255, -1)
        if p.rim_px:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p.rim_px + 1,) * 2)
            disc = cv2.erode(disc, kernel)
        ys, xs = np.nonzero(disc)
        if len(xs) < p.min_dent_area_px:
            return []
        mo = cv2.moments(disc, binaryImage=True)
        cx, cy = mo["m10"] / mo["m00"], mo["m01"] / mo["m00"]
        v = cv2.GaussianBlur(hsv[..., 2], (3, 3), 0)[ys, xs].astype(np.float32)
        ring = np.hypot(xs - cx, ys - cy).astype(np.int32) // 2  # 2-px rings
        med = np.zeros(ring.max() + 1, np.float32)
        for r in np.unique(ring):
            med[r] = np.median(v[ring == r])
        dark = 1.0 - v / np.maximum(med[ring], 1.0)
        values["cap_top_dent"] = float(np.percentile(dark, 99.5))
        hit = dark > p.dent_contrast
        if np.count_nonzero(hit) < p.min_dent_area_px:  # a good cap: nothing to group
            return []
        spots = np.zeros(m.shape, np.uint8)
        spots[ys[hit], xs[hit]] = 255
        spots = cv2.morphologyEx(spots, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        n, _, st, _ = cv2.connectedComponentsWithStats(spots, connectivity=8)
        if n <= 1:
            return []
        j = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
        if st[j, cv2.CC_STAT_AREA] < p.min_dent_area_px:
            return []
        x, y, w, h = (int(u) for u in st[j, :4])
        return [
            self.finding(
                "ANOMALY",
                f"cap top dented: {int(st[j, cv2.CC_STAT_AREA])} px darker than its ring by "
                f"> {p.dent_contrast:.0%}",
                value=values["cap_top_dent"],
                bbox=(ox + x, oy + y, w, h),
            )
        ]
