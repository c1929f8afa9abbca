"""Blister packs on a belt: 2 x 5 white round tablets, a printed flap with the code.

Defects: an empty pocket, a broken tablet, a foreign tablet (another colour or shape).
The code on the flap is always good: blister codes are checked, never made defective.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge import taxonomy
from edge.config import SimulatorSource
from edge.sim import gs1data
from edge.sim.draw import BASE_H, BASE_W, Stage, box_after, module_image
from edge.sim.scene import Drawn, Scene

_DEFECTS = taxonomy.product("blisters").defects


class BlisterScene(Scene):
    """A blister card of ten pockets and a flap, lying on the belt."""

    _CW, _CH = 590, 270  # card
    _POCKET_R = 35
    _TABLET_R = 26
    _FLAP_X = 440
    _B_OFF = (12, 30)  # card origin in its patch (room for the rotation)

    def _pocket_centres(self) -> list[tuple[int, int]]:
        ox, oy = self._B_OFF
        return [(ox + 55 + 84 * c, oy + 72 + 126 * r) for r in range(2) for c in range(5)]

    def __init__(self, stage: Stage, cfg: SimulatorSource):
        super().__init__(stage, cfg)
        ox, oy = self._B_OFF
        W, H = self._CW + 2 * ox, self._CH + 2 * oy
        self._b_patch = (W, H)
        card = np.zeros((H, W, 3), np.float32)
        m = np.zeros((H, W), np.uint8)
        cv2.rectangle(m, (ox, oy), (ox + self._CW - 1, oy + self._CH - 1), 255, -1)
        card[m > 0] = (150, 158, 146)
        rng = np.random.default_rng([self.cfg.seed, 77])
        card += (
            cv2.GaussianBlur(rng.normal(0, 4, (H, W)).astype(np.float32), (0, 0), 2)[..., None]
            * (m > 0)[..., None]
        )
        card8 = np.clip(card, 0, 255).astype(np.uint8)
        fx = ox + self._FLAP_X
        cv2.line(card8, (fx, oy + 4), (fx, oy + self._CH - 4), (120, 126, 118), 1, cv2.LINE_AA)
        cv2.rectangle(
            card8, (fx + 8, oy + 8), (ox + self._CW - 10, oy + self._CH - 10), (232, 234, 234), -1
        )
        cv2.putText(
            card8,
            "EXAMPLAN 20 mg",
            (fx + 16, oy + 30),
            cv2.FONT_HERSHEY_PLAIN,
            0.85,
            (60, 40, 30),
            1,
            cv2.LINE_AA,
        )
        for cx, cy in self._pocket_centres():
            cv2.circle(card8, (cx, cy), self._POCKET_R + 3, (110, 116, 108), 3, cv2.LINE_AA)
            cv2.circle(card8, (cx, cy), self._POCKET_R, (168, 176, 166), -1, cv2.LINE_AA)
            cv2.ellipse(
                card8, (cx - 12, cy - 14), (10, 5), -35, 0, 360, (215, 220, 215), -1, cv2.LINE_AA
            )
        self._b_card = card8
        self._b_mask3 = np.repeat((m > 0)[..., None], 3, 2)
        r = self._TABLET_R
        s = 2 * r + 12
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) - s / 2 + 0.5

        def round_tab(color, rx, ry):
            d = (xx / rx) ** 2 + (yy / ry) ** 2
            msk = d <= 1.0
            shade = np.clip(1.06 - 0.14 * d, 0.88, 1.06)
            img = (np.array(color, np.float32)[None, None] * shade[..., None]).astype(np.uint8)
            return img, msk

        self._b_tabs = {
            "white": round_tab((232, 234, 236), r, r),
            "yellow": round_tab((70, 200, 232), r, r),
            "pink": round_tab((185, 150, 238), r, r),
            "oval": round_tab((232, 234, 236), r + 7, r - 6),  # same mass, other shape
        }
        cap_img, cap_m = round_tab((232, 234, 236), r + 7, r - 12)
        cap_img[:, : s // 2][cap_m[:, : s // 2]] = (200, 120, 40)  # two-tone capsule
        self._b_tabs["capsule"] = (cap_img, cap_m)
        self._b_score = np.abs(xx) < 1.0

    def draw(self, canvas, defect, gs1, rng, drift) -> Drawn:
        W, H = self._b_patch
        x0 = (BASE_W - W) // 2 + int(rng.integers(-10, 11))
        y0 = (BASE_H - H) // 2 + int(rng.integers(-25, 26))
        angle = float(rng.uniform(-2.5, 2.5))
        p = canvas[y0 : y0 + H, x0 : x0 + W].copy()
        np.copyto(p, self._b_card, where=self._b_mask3)
        cents = self._pocket_centres()
        bad = int(rng.integers(0, len(cents))) if defect in _DEFECTS else -1
        boxes: dict[str, tuple] = {}
        for k, (cx, cy) in enumerate(cents):
            jx, jy = (int(v) for v in rng.integers(-3, 4, 2))
            kind = "white"
            if k == bad:
                pr = self._POCKET_R + 3
                boxes[defect] = (cx - pr, cy - pr, 2 * pr, 2 * pr)
                if defect == "empty_pocket":
                    continue
                if defect == "foreign_tablet":
                    kind = ("yellow", "pink", "oval", "capsule")[int(rng.integers(0, 4))]
            img, msk = self._b_tabs[kind]
            if kind in ("oval", "capsule"):
                rot = cv2.getRotationMatrix2D(
                    (img.shape[1] / 2, img.shape[0] / 2), float(rng.uniform(-40, 40)), 1
                )
                img = cv2.warpAffine(img, rot, img.shape[1::-1])
                msk = (
                    cv2.warpAffine(
                        msk.astype(np.uint8), rot, img.shape[1::-1], flags=cv2.INTER_NEAREST
                    )
                    > 0
                )
            if kind == "white":
                img = img.copy()
                img[self._b_score & msk] = (img[self._b_score & msk] * 0.82).astype(np.uint8)
            if k == bad and defect == "broken_tablet":
                s = img.shape[0]
                yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) - s / 2
                a = rng.uniform(0, 2 * math.pi)
                off = rng.uniform(-4, 6) + 2.0 * np.sin(xx * 0.9 + yy * 0.7)  # jagged break
                msk = msk & ((xx * math.cos(a) + yy * math.sin(a)) < off)
            s = img.shape[0]
            tx, ty = cx + jx - s // 2, cy + jy - s // 2
            np.copyto(p[ty : ty + s, tx : tx + s], img, where=np.repeat(msk[..., None], 3, 2))
        # code on the flap
        fx = self._B_OFF[0] + self._FLAP_X
        sym = module_image(gs1data.hri(gs1), 3)
        sh, sw = sym.shape
        cx, cy = fx + 16, self._B_OFF[1] + 50
        p[cy : cy + sh, cx : cx + sw] = (sym[..., None] * 0.88).astype(np.uint8) + 10
        for n, (lbl, ai) in enumerate((("LOT", "10"), ("EXP", "17"), ("SN", "21"))):
            cv2.putText(
                p,
                f"{lbl} {gs1[ai]}",
                (fx + 16, cy + sh + 22 + 18 * n),
                cv2.FONT_HERSHEY_PLAIN,
                0.8,
                (30, 30, 30),
                1,
                cv2.LINE_AA,
            )
        boxes["code"] = (cx, cy, sw, sh)
        m = self.stage.place(canvas, p, x0, y0, angle, rng)
        out = {k: box_after(m, b, (x0, y0)) for k, b in boxes.items()}
        return Drawn(out, out["code"], True)
