"""Folding cartons on a belt: a printed face with the variable-data box (code and text).

Cartons have no product defects: their defect rate draws code and print defects, and a
missing print (`missing_label`) leaves no code to read.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import SimulatorSource
from edge.sim import closeup, gs1data, printing
from edge.sim.draw import BASE_H, BASE_W, Stage, box_after, damage_code, fade, module_image
from edge.sim.drift import contrast_factor
from edge.sim.scene import Drawn, Scene
from edge.taxonomy import CODE_DEFECTS, PRINT_DEFECTS


class CartonScene(Scene):
    """The front face of a folding carton, lying on the belt."""

    _KW, _KH = 520, 350
    _PRINT = (250, 210, 250, 120)  # x, y, w, h of the variable-data box on the face
    #: the print camera's pixels per pixel of the whole-carton view (`label_view`): the text
    #: about 22 px high instead of 11, as a camera over the print box sees it
    LABEL_ZOOM = 2
    #: the solid font's scale and stroke per zoom: Hershey glyphs round to whole pixels, so
    #: 0.8 doubled (1.6) prints lines 2.3x as wide, past the print box; 1.4 with a 2 px stroke
    #: keeps each line 2.0-2.1x as wide and 1.75x as high, inside the box as on the carton
    _FONT = {1: (0.8, 1), 2: (1.4, 2)}

    def __init__(self, stage: Stage, cfg: SimulatorSource):
        super().__init__(stage, cfg)
        W, H = self._KW + 24, self._KH + 24
        face = np.zeros((H, W, 3), np.uint8)
        m = np.zeros((H, W), np.uint8)
        cv2.rectangle(m, (12, 12), (12 + self._KW - 1, 12 + self._KH - 1), 255, -1)
        face[m > 0] = (238, 240, 240)
        cv2.rectangle(face, (12, 12), (12 + self._KW - 1, 80), (140, 70, 20), -1)  # brand band
        cv2.putText(
            face,
            "EXAMPLAN",
            (36, 62),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.2,
            (250, 250, 250),
            2,
            cv2.LINE_AA,
        )
        cv2.putText(
            face,
            "20 mg film-coated tablets",
            (36, 120),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (40, 40, 40),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            face,
            "28 tablets  -  oral use",
            (36, 150),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (60, 60, 60),
            1,
            cv2.LINE_AA,
        )
        cv2.circle(face, (120, 260), 55, (60, 170, 230), -1, cv2.LINE_AA)
        cv2.circle(face, (120, 260), 35, (238, 240, 240), -1, cv2.LINE_AA)
        px, py, pw, ph = self._PRINT
        cv2.rectangle(
            face,
            (12 + px - 2, 12 + py - 2),
            (12 + px + pw + 1, 12 + py + ph + 1),
            (150, 150, 150),
            1,
        )
        self._k_face = face
        self._k_mask3 = np.repeat((m > 0)[..., None], 3, 2)
        self._k_patch = (W, H)

    def _print(
        self, p, at: tuple[int, int], defect, gs1, rng, drift, z: int = 1
    ) -> tuple[dict, tuple[int, ...]]:
        """The code and its human-readable lines in the variable-data box, on `p` (a part of
        the face from face pixel `at`, drawn at `z` pixels per pixel of the whole-carton
        view; 1: that view); the print info and the code's box, in `p`'s pixels."""
        px, py, _, ph = self._PRINT
        px, py = (px + 12 - at[0]) * z, (py + 12 - at[1]) * z
        sym = module_image(gs1data.hri(gs1), 4 * z)
        if defect == "damaged_code":
            sym = damage_code(sym, rng)
        sym = fade(sym, contrast_factor(drift))
        sh, sw = sym.shape
        cx, cy = px + 10 * z, py + (ph * z - sh) // 2
        p[cy : cy + sh, cx : cx + sw] = (sym[..., None] * 0.9).astype(np.uint8) + 12
        hri_lines = [("01", "GTIN "), ("17", "EXP "), ("10", "LOT "), ("21", "SN ")]
        org = (cx + sw + 10 * z, cy + 14 * z)
        scale, stroke = self._FONT[z]
        info = printing.print_block(
            p, gs1, hri_lines, org, 22 * z, scale, (25, 25, 25), self.cfg, defect, rng, stroke
        )
        return info, (cx, cy, sw, sh)

    def draw_label(self, canvas, defect, gs1, rng, drift) -> Drawn:
        """The print camera: the variable-data box `LABEL_ZOOM` times closer than in `draw`.

        A carton line reads its printed code and text with a camera of its own over the
        print box; the whole-carton view prints the text 11 px high, where J, 0 and U or 8
        and B are alike. Only code and print defects show here (`defect` is None for the
        others); the code's data is the front view's, a print defect is of the same class
        (which character it hit may differ: the defect is drawn in this camera's own order).
        """
        z = self.LABEL_ZOOM
        h, w = canvas.shape[:2]
        px, py, pw, ph = self._PRINT
        m0 = 24  # face around the print box, whole-view pixels
        x0, y0 = 12 + px - m0, 12 + py - m0
        face = self._k_face[y0 : y0 + ph + 2 * m0, x0 : x0 + pw + 2 * m0]
        p = cv2.resize(face, None, fx=z, fy=z, interpolation=cv2.INTER_LINEAR)
        # the box in the middle of the frame, moved as the carton lies on the belt
        ox = (w - p.shape[1]) // 2 + int(rng.integers(-20, 21))
        oy = (h - p.shape[0]) // 2 + int(rng.integers(-30, 31))
        angle = float(rng.uniform(-2.0, 2.0))
        info = None
        boxes: dict[str, tuple] = {"missing_label": (ox, oy, p.shape[1], p.shape[0])}
        if defect != "missing_label":  # no print: the camera sees the empty box
            info, code = self._print(p, (x0, y0), defect, gs1, rng, drift, z)
            closeup.mark_print(boxes, info, code, ox, oy)
        a0, b0 = max(0, ox), max(0, oy)
        a1, b1 = min(w, ox + p.shape[1]), min(h, oy + p.shape[0])
        canvas[b0:b1, a0:a1] = p[b0 - oy : b1 - oy, a0 - ox : a1 - ox]
        return closeup.finish(canvas, angle, z, rng, boxes, info)

    def draw(self, canvas, defect, gs1, rng, drift) -> Drawn:
        W, H = self._k_patch
        x0 = (BASE_W - W) // 2 + int(rng.integers(-25, 26))
        y0 = (BASE_H - H) // 2 + int(rng.integers(-18, 19))
        angle = float(rng.uniform(-2.0, 2.0))
        p = canvas[y0 : y0 + H, x0 : x0 + W].copy()
        np.copyto(p, self._k_face, where=self._k_mask3)
        px, py, pw, ph = self._PRINT
        px, py = px + 12, py + 12
        boxes: dict[str, tuple] = {"missing_label": (px, py, pw, ph)}
        printed = defect != "missing_label"
        code_box = None
        if printed:
            info, code_box = self._print(p, (0, 0), defect, gs1, rng, drift)
            for d in PRINT_DEFECTS:
                boxes[d] = tuple(info["box"])
        for c in CODE_DEFECTS:
            if c != "missing_label":
                boxes[c] = code_box
        if code_box is not None:
            boxes["code"] = code_box
        if rng.random() < 0.4:  # gloss on the varnished face, away from the print box
            g = cv2.resize(self.stage.glare, (60, 140))
            gx, gy = int(rng.integers(40, 180)), int(rng.integers(150, 220))
            roi = p[gy : gy + 140, gx : gx + 60]
            p[gy : gy + 140, gx : gx + 60] = cv2.add(
                roi, cv2.merge([(g * rng.uniform(20, 60)).astype(np.uint8)] * 3)
            )
        m = self.stage.place(canvas, p, x0, y0, angle, rng)
        out = {k: box_after(m, b, (x0, y0)) for k, b in boxes.items() if b is not None}
        return Drawn(out, out.get("code"), printed, info if printed else None)
