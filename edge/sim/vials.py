"""Injection vials against a backlight: fill level, cap, label with code and text, glass.

Defects: low fill, missing or tilted cap, crack, scratch, particle (the product defects of
`edge.taxonomy`), and the code and print defects on the label. Process drift moves the
fill level, the cap's tilt and the print's contrast.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.config import SimulatorSource
from edge.sim import closeup, gs1data, printing, vial_top
from edge.sim.draw import Stage, box_after, damage_code, fade, module_image, shade_cyl
from edge.sim.drift import contrast_factor
from edge.sim.scene import Drawn, Scene
from edge.taxonomy import CODE_DEFECTS, PRINT_DEFECTS


class VialScene(Scene):
    """A 5 ml vial with a blue flip-off cap and a wrap-around label, seen backlit."""

    backlit = True

    # local geometry of the vial patch (240 x 460)
    _VW, _VH, _VCX = 240, 460, 120
    _BODY = (25, 130, 215, 442)  # x0, y0, x1, y1 of the body
    _BASE_Y = 432  # inner bottom (liquid ends here)
    _LABEL = (25, 232, 215, 402)
    _NOMINAL_FILL = 165
    _CAP = (60, 12, 180, 84)  # cap sprite patch in vial coordinates
    #: the label camera's pixels per pixel of the whole-vial view (`label_view`): the text
    #: about 24 px high instead of 8, as a camera close to the label sees it
    LABEL_ZOOM = 3

    def __init__(self, stage: Stage, cfg: SimulatorSource):
        super().__init__(stage, cfg)
        W, H, cx = self._VW, self._VH, self._VCX
        bx0, by0, bx1, by1 = self._BODY
        sil = np.zeros((H, W), np.uint8)
        cv2.rectangle(sil, (bx0, by0), (bx1 - 1, by1 - 15), 255, -1)
        cv2.rectangle(sil, (bx0 + 14, by0), (bx1 - 15, by1 - 1), 255, -1)
        cv2.circle(sil, (bx0 + 14, by1 - 15), 14, 255, -1)
        cv2.circle(sil, (bx1 - 15, by1 - 15), 14, 255, -1)
        t = np.linspace(0, 1, 20)
        half = 40 + (95 - 40) * (3 * t**2 - 2 * t**3)  # smooth shoulder
        ys = 100 + 30 * t
        poly = np.concatenate(
            [np.stack([cx - half, ys], 1), np.stack([cx + half, ys], 1)[::-1]]
        ).astype(np.int32)
        cv2.fillPoly(sil, [poly], 255)
        cv2.rectangle(sil, (cx - 40, 62), (cx + 39, 101), 255, -1)  # neck
        cv2.rectangle(sil, (cx - 46, 62), (cx + 45, 76), 255, -1)  # lip under the crimp
        dist = cv2.distanceTransform(sil, cv2.DIST_L2, 3)
        wall = np.clip(dist / 6.0, 0, 1)
        glass = (0.5 + 0.43 * wall).astype(np.float32)  # dark walls, slightly dark interior
        xs = np.arange(W)[None, :].repeat(H, 0)
        glass += 0.12 * ((dist > 8) & (dist < 11) & (xs < cx)).astype(np.float32)  # highlight
        yy = np.arange(H)[:, None].repeat(W, 1)
        base = yy >= self._BASE_Y
        glass[base & (sil > 0)] *= 0.62
        empty = np.clip(
            self.stage.bg[10 : 10 + H, 200 : 200 + W].astype(np.float32) * glass[..., None], 0, 255
        )
        interior = (dist >= 6) & ~base & (yy >= 104)
        liquid = np.array([70, 150, 205], np.float32) * (0.78 + 0.2 * wall)[..., None]
        full = empty.copy()
        full[interior] = liquid[interior]
        self._v_sil = sil > 0
        self._v_sil3 = np.repeat(self._v_sil[..., None], 3, 2)
        self._v_empty = empty.astype(np.uint8)
        self._v_full = full.astype(np.uint8)
        self._v_interior_x = (bx0 + 6, bx1 - 6)
        # meniscus band: liquid below a concave curve, a dark line along it
        bw = bx1 - bx0
        xn = np.linspace(-1, 1, bw)
        curve = 9.0 - 7.0 * xn**4  # rows into the band where the liquid starts
        rows = np.arange(14)[:, None]
        band_liq = rows >= curve[None, :]
        band_line = np.abs(rows - curve[None, :]) < 1.6
        self._v_band_liq = np.repeat(band_liq[..., None], 3, 2)
        self._v_band_line = band_line
        # label
        lx0, ly0, lx1, ly1 = self._LABEL
        lw, lh = lx1 - lx0, ly1 - ly0
        paper = np.empty((lh, lw, 3), np.float32)
        paper[:] = (236, 240, 242)
        paper *= shade_cyl(lw, 0.8, 1.0)[None, :, None]
        lab = paper.astype(np.uint8)
        cv2.rectangle(lab, (0, 6), (lw - 1, 22), (60, 150, 40), -1)  # green brand band
        cv2.putText(
            lab,
            "EXAMPLAN",
            (40, 19),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (245, 245, 245),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            lab,
            "10 mg/ml  solution for injection",
            (8, 36),
            cv2.FONT_HERSHEY_PLAIN,
            0.65,
            (40, 40, 40),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            lab,
            "Rx only  5 ml  sterile",
            (8, 160),
            cv2.FONT_HERSHEY_PLAIN,
            0.65,
            (40, 40, 40),
            1,
            cv2.LINE_AA,
        )
        self._v_label = lab
        # cap (flip-off + aluminium crimp) and a bare rubber stopper
        cx0, cy0, cx1, cy1 = self._CAP
        pw, ph = cx1 - cx0, cy1 - cy0
        cap = np.zeros((ph, pw, 3), np.float32)
        cmask = np.zeros((ph, pw), np.uint8)
        c = cx - cx0
        crimp = (slice(50 - cy0, 80 - cy0), slice(c - 48, c + 48))
        cap[crimp] = (176, 178, 182)
        cap[crimp] *= shade_cyl(96, 0.55, 1.05)[None, :, None]
        cap[80 - cy0 - 3 : 80 - cy0, c - 48 : c + 48] *= 0.8
        cmask[crimp] = 255
        flip = np.zeros((ph, pw), np.uint8)
        cv2.rectangle(flip, (c - 54, 24 - cy0), (c + 53, 50 - cy0), 255, -1)
        cv2.rectangle(flip, (c - 48, 18 - cy0), (c + 47, 30 - cy0), 255, -1)
        cv2.circle(flip, (c - 48, 24 - cy0), 6, 255, -1)
        cv2.circle(flip, (c + 47, 24 - cy0), 6, 255, -1)
        fm = flip > 0
        blue = np.array([190, 90, 30], np.float32) * shade_cyl(pw, 0.45, 1.05)[:, None]
        cap[fm] = np.broadcast_to(blue[None], (ph, pw, 3))[fm]
        cmask[fm] = 255
        self._v_cap = np.clip(cap, 0, 255).astype(np.uint8)
        self._v_cap_mask = cmask
        self._v_cap_box = (cx0 + c - 54, 18, 108, 62)  # flip-off top to crimp bottom
        stop = np.zeros((ph, pw, 3), np.uint8)
        smask = np.zeros((ph, pw), np.uint8)
        cv2.rectangle(smask, (c - 36, 54 - cy0), (c + 35, 66 - cy0), 255, -1)
        cv2.circle(smask, (c, 60 - cy0), 20, 255, -1)
        stop[smask > 0] = (78, 78, 84)
        self._v_stop = stop
        self._v_stop_mask = np.repeat((smask > 0)[..., None], 3, 2)

    def draw(self, canvas, defect, gs1, rng, drift) -> Drawn:
        W, H = self._VW, self._VH
        x0 = 200 + int(rng.integers(-28, 29))
        y0 = 10 + int(rng.integers(-6, 7))
        angle = float(rng.uniform(-1.5, 1.5))
        p = canvas[y0 : y0 + H, x0 : x0 + W].copy()
        v = self._v_empty.copy()
        level = self._NOMINAL_FILL + int(rng.integers(-3, 4))
        if drift.get("fill_level"):  # mm of liquid height -> rows (the tool scales by width)
            ix0, ix1 = self._v_interior_x
            level -= round(drift["fill_level"] * (ix1 - ix0) / 22.0)
        if defect == "low_fill":
            level = int(rng.integers(195, 223))
        v[level + 4 :] = self._v_full[level + 4 :]
        bx0, _, bx1, _ = self._BODY
        rs = slice(level - 10, level + 4)
        band = v[rs, bx0:bx1]
        np.copyto(band, self._v_full[rs, bx0:bx1], where=self._v_band_liq)
        band[self._v_band_line] = (band[self._v_band_line] * 0.55).astype(np.uint8)
        np.copyto(p, v, where=self._v_sil3)
        boxes: dict[str, tuple] = {}
        ix0, ix1 = self._v_interior_x
        boxes["low_fill"] = (
            ix0,
            self._NOMINAL_FILL - 8,
            ix1 - ix0,
            level + 10 - self._NOMINAL_FILL,
        )
        # label with code and human-readable text
        lx0, ly0, lx1, ly1 = self._LABEL
        printed = defect != "missing_label"
        code_box = None
        if printed and not self.front:  # a camera beside or behind the code: a plain label
            p[ly0:ly1, lx0:lx1] = self._v_label
            printed = False
        elif printed:
            lab = self._v_label.copy()
            info, (cx, cy, sw, sh) = self._print(lab, defect, gs1, rng, drift, 1)
            bx, by, bw, bh = info["box"]
            for d in PRINT_DEFECTS:
                boxes[d] = (lx0 + bx, ly0 + by, bw, bh)
            p[ly0:ly1, lx0:lx1] = lab
            code_box = (lx0 + cx, ly0 + cy, sw, sh)
        boxes["missing_label"] = (lx0, ly0, lx1 - lx0, ly1 - ly0)
        boxes["code"] = code_box
        for c in CODE_DEFECTS:
            boxes.setdefault(c, code_box)
        # cap
        cx0, cy0, cx1, cy1 = self._CAP
        cp = p[cy0:cy1, cx0:cx1]
        boxes["missing_cap"] = self._v_cap_box
        if defect == "missing_cap":
            np.copyto(cp, self._v_stop, where=self._v_stop_mask)
        else:
            spr, msk = self._v_cap, self._v_cap_mask
            if defect != "cap_tilt" and drift.get("cap_tilt"):  # the capper losing torque
                tilt = float(drift["cap_tilt"])
                piv = (self._VCX - cx0 + 48 * np.sign(tilt), 80 - cy0)
                m = cv2.getRotationMatrix2D(piv, tilt, 1.0)
                spr = cv2.warpAffine(spr, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_LINEAR)
                msk = cv2.warpAffine(msk, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_NEAREST)
            if defect == "cap_tilt":
                tilt = float(rng.uniform(7, 15)) * (1 if rng.random() < 0.5 else -1)
                piv = (self._VCX - cx0 + 48 * np.sign(tilt), 80 - cy0)
                m = cv2.getRotationMatrix2D(piv, tilt, 1.0)
                m[1, 2] -= float(rng.uniform(2, 6))
                spr = cv2.warpAffine(spr, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_LINEAR)
                msk = cv2.warpAffine(msk, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_NEAREST)
                b = box_after(m, (self._v_cap_box[0] - cx0, 18 - cy0, 108, 62), (cx0, cy0))
                boxes["cap_tilt"] = tuple(b)
            np.copyto(cp, spr, where=np.repeat((msk > 0)[..., None], 3, 2))
        # glass defects: above the label, where glass (and liquid) is visible
        if defect == "crack":
            boxes["crack"] = self._draw_crack(p, rng)
        elif defect == "scratch":
            boxes["scratch"] = self._draw_scratch(p, rng)
        elif defect == "particle":
            boxes["particle"] = self._draw_particle(p, rng, level)
        # glare: a vertical specular stripe on the right of the glass
        if rng.random() < 0.5:
            s = float(rng.uniform(20, 70))
            gx = int(rng.integers(170, 190))
            g = cv2.resize(self.stage.glare, (18, 300))
            roi = p[135:435, gx : gx + 18]
            p[135:435, gx : gx + 18] = cv2.add(roi, cv2.merge([(g * s).astype(np.uint8)] * 3))
        m = self.stage.place(canvas, p, x0, y0, angle, rng)
        out = {k: box_after(m, b, (x0, y0)) for k, b in boxes.items() if b is not None}
        return Drawn(out, out.get("code"), printed, info if printed else None)

    def _print(self, lab, defect, gs1, rng, drift, z: int) -> tuple[dict, tuple[int, ...]]:
        """The code and its human-readable lines on the label `lab`, drawn at `z` pixels per
        pixel of the whole-vial view (1: that view); the print info and the code's box."""
        sym = module_image(gs1data.hri(gs1), 3 * z)
        if defect == "damaged_code":
            sym = damage_code(sym, rng)
        sym = fade(sym, contrast_factor(drift))
        sh, sw = sym.shape
        cx, cy = 10 * z, 48 * z
        lab[cy : cy + sh, cx : cx + sw] = (
            sym[..., None] * (0.86 if rng.random() < 0.5 else 0.9)
        ).astype(np.uint8) + 8
        hri_lines = [(ai, f"({ai})") for ai in ("01", "17", "10", "21")]
        org = (cx + 8 * z + sw, cy + 12 * z)
        colour = (30, 30, 30)
        info = printing.print_block(
            lab, gs1, hri_lines, org, 16 * z, 0.6 * z, colour, self.cfg, defect, rng, max(1, z - 1)
        )
        return info, (cx, cy, sw, sh)

    def draw_label(self, canvas, defect, gs1, rng, drift) -> Drawn:
        """The label camera: the code and its text `LABEL_ZOOM` times larger than in `draw`.

        A real station reads the printed text with a camera of its own close to the label;
        the whole-vial view prints it about 8 px high, too small to tell J from 0 reliably.
        Only code and print defects show here (`defect` is None for the others); the code's
        data is the front view's, a print defect is of the same class (which character it
        hit may differ: the defect is drawn in this camera's own order).
        """
        z = self.LABEL_ZOOM
        h, w = canvas.shape[:2]
        lab = cv2.resize(self._v_label, None, fx=z, fy=z, interpolation=cv2.INTER_LINEAR)
        # the label wraps round the vial: beyond the whole-vial view's edge there is more paper
        lab = cv2.copyMakeBorder(lab, 0, 0, 0, 20 * z, cv2.BORDER_REPLICATE)
        # the code and text in the middle of the frame, moved as the vial is on the line
        ox = w // 2 - 101 * z + int(rng.integers(-12, 13))
        oy = h // 2 - 84 * z + int(rng.integers(-15, 16))
        angle = float(rng.uniform(-1.5, 1.5))
        info = None
        boxes: dict[str, tuple] = {"missing_label": (ox, oy, lab.shape[1], lab.shape[0])}
        if defect != "missing_label":  # no label: the camera sees the backlit glass
            info, code = self._print(lab, defect, gs1, rng, drift, z)
            closeup.mark_print(boxes, info, code, ox, oy)
            x0, y0 = max(0, ox), max(0, oy)
            x1, y1 = min(w, ox + lab.shape[1]), min(h, oy + lab.shape[0])
            canvas[y0:y1, x0:x1] = lab[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return closeup.finish(canvas, angle, z, rng, boxes, info)

    def draw_top(self, canvas, defect, rng) -> Drawn:
        return vial_top.draw_top(self.stage, canvas, defect, rng)

    def _draw_crack(self, p, rng) -> tuple:
        x, y = float(rng.uniform(50, 190)), float(rng.uniform(140, 215))
        ang = rng.uniform(0, 2 * math.pi)
        pts = [(x, y)]
        for _ in range(int(rng.integers(6, 10))):
            ang += rng.uniform(-0.9, 0.9)
            step = rng.uniform(5, 10)
            x = float(np.clip(x + step * math.cos(ang), 35, 205))
            y = float(np.clip(y + step * math.sin(ang), 135, 226))
            pts.append((x, y))
        a = np.array(pts, np.int32)
        cv2.polylines(p, [a], False, (52, 52, 58), 2, cv2.LINE_AA)
        cv2.polylines(p, [a + (2, -1)], False, (235, 235, 235), 1, cv2.LINE_AA)
        x0, y0 = a.min(0) - 3
        x1, y1 = a.max(0) + 4
        return (int(x0), int(y0), int(x1 - x0), int(y1 - y0))

    def _draw_scratch(self, p, rng) -> tuple:
        x, y = float(rng.uniform(45, 170)), float(rng.uniform(140, 220))
        ang = rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.5 else 0)
        ln = rng.uniform(22, 45)
        x2 = float(np.clip(x + ln * math.cos(ang), 35, 205))
        y2 = float(np.clip(y + ln * math.sin(ang), 135, 226))
        mid = ((x + x2) / 2 + rng.uniform(-2, 2), (y + y2) / 2 + rng.uniform(-2, 2))
        a = np.array([(x, y), mid, (x2, y2)], np.int32)
        cv2.polylines(p, [a], False, (222, 224, 226), 2, cv2.LINE_AA)
        x0, y0 = a.min(0) - 3
        x1, y1 = a.max(0) + 4
        return (int(x0), int(y0), int(x1 - x0), int(y1 - y0))

    def _draw_particle(self, p, rng, level: int) -> tuple:
        if level + 14 < 222 and rng.random() < 0.75:
            y = int(rng.integers(level + 10, 224))
        else:
            y = int(rng.integers(408, 426))
        x = int(rng.integers(50, 190))
        r = int(rng.integers(3, 6))
        cv2.ellipse(
            p,
            (x, y),
            (r, max(2, r - 1)),
            float(rng.uniform(0, 180)),
            0,
            360,
            (28, 30, 36),
            -1,
            cv2.LINE_AA,
        )
        return (x - r - 2, y - r - 2, 2 * r + 5, 2 * r + 5)
