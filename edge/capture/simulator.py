"""The line simulator (digital twin): vials, blister packs and cartons with ground truth.

Every frame is a pure function of (seed, item index): `render(i)` can be called in any
order and gives the same image and truth. Sprites, lighting maps and noise tiles are
rendered once; a frame is a few slice copies, one small ROI warp, one gain multiply and
one noise add, so a single core renders a few hundred frames a second.

Ground truth rides along with each frame (`Frame.truth`) for evaluation and training;
the inspection never reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp

from edge import taxonomy
from edge.capture import gs1data, printing
from edge.capture.base import Source
from edge.capture.serialisation import SerialAllocator, SerialCursor
from edge.capture.sim_drift import contrast_factor, drift_at
from edge.config import SimulatorSource
from edge.domain import Frame
from edge.inspect.base import BatchState
from edge.taxonomy import CODE_DEFECTS, DETECTOR_CLASSES, PRINT_DEFECTS

DUPLICATE_MIN_GAP = 10  # a duplicate repeats the serial of an item at least this many earlier

BASE_W, BASE_H = 640, 480


def reasons_for(defect: str, scenario: str) -> list[str]:
    """Reason codes the inspection should give for a simulated defect."""
    return taxonomy.reasons(defect, scenario)


def severity_for(defect: str, scenario: str) -> str:
    return taxonomy.severity(defect, scenario)


# --------------------------------------------------------------------------- small helpers


def _box_after(
    m: np.ndarray, box: tuple[float, float, float, float], off: tuple[int, int]
) -> list[int]:
    """Axis-aligned [x, y, w, h] of a local box after the affine `m` and offset `off`."""
    x, y, w, h = box
    pts = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)
    t = pts @ m.T
    x0, y0 = t.min(0) + off
    x1, y1 = t.max(0) + off
    return [round(x0), round(y0), round(x1 - x0), round(y1 - y0)]


def _clip_box(b: list[int], w: int, h: int) -> list[int]:
    x0, y0 = max(0, b[0]), max(0, b[1])
    x1, y1 = min(w, b[0] + b[2]), min(h, b[1] + b[3])
    return [x0, y0, max(0, x1 - x0), max(0, y1 - y0)]


def _shade_cyl(width: int, lo: float, hi: float) -> np.ndarray:
    """Horizontal brightness profile of a lit cylinder (darker at the edges)."""
    x = np.linspace(-1, 1, width)
    return (lo + (hi - lo) * np.sqrt(np.clip(1 - x**2, 0, 1))).astype(np.float32)


def _module_image(hri: str, scale: int) -> np.ndarray:
    b = zxingcpp.create_barcode(hri, zxingcpp.BarcodeFormat.DataMatrix, gs1=True)
    m = np.asarray(b.to_image(scale=1, add_quiet_zones=False))
    return np.repeat(np.repeat(m, scale, 0), scale, 1)


def _fade(sym: np.ndarray, contrast: float) -> np.ndarray:
    """The symbol printed with only `contrast` of its ink (dark modules lighten toward paper)."""
    if contrast >= 1.0:
        return sym
    return (255 - (255 - sym.astype(np.float32)) * contrast).astype(sym.dtype)


def _damage_code(sym: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Destroy most of a symbol (scuff + smear) so that no decoder can recover it."""
    out = sym.copy()
    h, w = out.shape
    # scuff the finder L (left column and bottom row) and a big patch of the data region
    out[:, : max(3, w // 7)] = 255
    out[h - max(3, h // 7) :, :] = 255
    cx, cy = rng.integers(w // 3, 2 * w // 3), rng.integers(h // 3, 2 * h // 3)
    cv2.ellipse(
        out, (int(cx), int(cy)), (w // 3, h // 4), float(rng.uniform(0, 180)), 0, 360, 255, -1
    )
    cv2.line(out, (0, int(rng.integers(0, h))), (w, int(rng.integers(0, h))), 0, max(2, w // 10))
    for _ in range(3):
        pad = cv2.copyMakeBorder(out, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=255)
        if not zxingcpp.read_barcodes(pad, formats=zxingcpp.BarcodeFormat.DataMatrix):
            break
        out[: h // 2, :] = 255  # still readable: take away half the symbol
    return out


# --------------------------------------------------------------------------- the simulator


class LineSimulator:
    """Renders item i of a seeded run: (BGR image, ground truth)."""

    def __init__(
        self,
        cfg: SimulatorSource,
        batch: BatchState | None = None,
        today: dt.date | None = None,
    ):
        self.cfg = cfg
        self.scenario = cfg.scenario
        self._product = taxonomy.product(cfg.scenario)
        self.today = today or dt.date.today()
        b = batch or BatchState()
        self.batch = BatchState(
            lot=b.lot or gs1data.default_lot(self.today, cfg.seed),
            gtin=b.gtin or gs1data.default_gtin(cfg.seed),
            expiry=b.expiry or gs1data.default_expiry(self.today),
            id=b.id,
        )
        self.serial_base = gs1data.serial_base(cfg.seed)  # moved on by a SerialAllocator
        self._weights = self._check_weights(cfg.defect_weights)
        self._pools = self._defect_pools()
        rng = np.random.default_rng([cfg.seed, 0xC0FFEE])
        self._bg = self._background(rng)
        self._gains = self._gain_maps(rng)
        self._noise = self._noise_tiles(rng)
        self._glare = self._glare_sprite()
        {"vials": self._init_vials, "blisters": self._init_blisters, "cartons": self._init_cartons}[
            self.scenario
        ]()

    # ------------------------------------------------------------------ plan (cheap, no pixels)

    @staticmethod
    def _check_weights(w: dict[str, float]) -> dict[str, float]:
        known = set(DETECTOR_CLASSES) | set(CODE_DEFECTS) | set(PRINT_DEFECTS)
        bad = sorted(set(w) - known)
        if bad:
            raise ValueError(f"unknown defect classes in defect_weights: {bad}")
        if any(v < 0 for v in w.values()):
            raise ValueError("defect_weights must be >= 0")
        return dict(w)

    def _defect_pools(self) -> tuple[list[str], list[str]]:
        phys = list(self._product.defects)
        code = CODE_DEFECTS if self._product.code_defects else []
        # cartons have no physical defects: their defect_rate draws code defects too
        return (phys or code), code

    def _choose(self, rng: np.random.Generator, pool: list[str], exclude: str = "") -> str | None:
        cands = [c for c in pool if c != exclude and self._weights.get(c, 1.0) > 0]
        if not cands:
            return None
        p = np.array([self._weights.get(c, 1.0) for c in cands], np.float64)
        return cands[int(rng.choice(len(cands), p=p / p.sum()))]

    def _draw(self, i: int) -> tuple[str | None, np.random.Generator]:
        """The defect class of item i, before duplicate-serial resolution."""
        rng = np.random.default_rng([self.cfg.seed, i, 1])
        u = rng.random()
        phys_pool, code_pool = self._pools
        if u < self.cfg.defect_rate:
            return self._choose(rng, phys_pool), rng
        if u < self.cfg.defect_rate + self.cfg.code_defect_rate and code_pool:
            return self._choose(rng, code_pool), rng
        u -= self.cfg.defect_rate + self.cfg.code_defect_rate
        if 0 <= u < self.cfg.print_defect_rate and self._product.code_defects:
            return self._choose(rng, PRINT_DEFECTS), rng
        return None, rng

    def plan(self, i: int) -> tuple[str | None, int | None]:
        """(defect class, index of the item whose serial is repeated) for item i."""
        defect, rng = self._draw(i)
        if defect != "duplicate_serial":
            return defect, None
        top = i - DUPLICATE_MIN_GAP
        if top >= 0:
            j = top - int(rng.integers(0, min(top, 50) + 1))
            for k in range(j, max(-1, j - 200), -1):
                if self._draw(k)[0] is None:  # a good item: its serial was certainly accepted
                    return defect, k
        return self._choose(rng, self._pools[1], exclude="duplicate_serial"), None

    def serial(self, i: int) -> str:
        return gs1data.serial_number(self.serial_base + i)

    def _code_data(self, i: int, defect: str | None, dup_of: int | None, rng) -> dict[str, str]:
        b = self.batch
        gs1 = {"01": b.gtin, "17": b.expiry, "10": b.lot, "21": self.serial(i)}
        k = int(rng.integers(0, 1_000_000))
        if defect == "wrong_gtin":
            gs1["01"] = gs1data.other_gtin(b.gtin, k)
        elif defect == "bad_check_digit":
            gs1["01"] = gs1data.bad_check_digit(b.gtin, k)
        elif defect == "wrong_lot":
            gs1["10"] = gs1data.other_lot(b.lot, k)
        elif defect == "expired":
            gs1["17"] = gs1data.yymmdd(self.today - dt.timedelta(days=30 + k % 400))
        elif defect == "wrong_expiry":
            exp = gs1data.parse_yymmdd(b.expiry)
            months = (1 + k % 12) * (1 if k % 3 else -1)
            y, m = divmod(exp.year * 12 + exp.month - 1 + months, 12)
            d = gs1data.end_of_month(y, m + 1)
            if d <= self.today + dt.timedelta(days=31) or gs1data.yymmdd(d) == b.expiry:
                y, m = divmod(exp.year * 12 + exp.month - 1 + 1 + k % 12, 12)
                d = gs1data.end_of_month(y, m + 1)
            gs1["17"] = gs1data.yymmdd(d)
        elif defect == "duplicate_serial" and dup_of is not None:
            gs1["21"] = self.serial(dup_of)
        return gs1

    # ------------------------------------------------------------------ shared pre-rendering

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = BASE_H, BASE_W
        if self.scenario == "vials":  # diffuse backlight panel
            base = np.full((h, w, 3), (198, 200, 201), np.float32)
            tex = cv2.GaussianBlur(rng.normal(0, 3, (h, w)).astype(np.float32), (0, 0), 6)
        else:  # dark conveyor belt with longitudinal texture
            base = np.full((h, w, 3), (58, 60, 62), np.float32)
            tex = cv2.GaussianBlur(
                rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), sigmaX=8, sigmaY=1
            )
        return np.clip(base + tex[..., None], 0, 255).astype(np.uint8)

    def _gain_maps(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Lighting gradients and vignetting as uint8 gains (128 = 1.0)."""
        y, x = np.mgrid[0:BASE_H, 0:BASE_W].astype(np.float32)
        xn, yn = x / BASE_W - 0.5, y / BASE_H - 0.5
        maps = []
        for _ in range(12):
            a, b = rng.uniform(-0.25, 0.25, 2)
            g = 1.0 + a * xn + b * yn - 0.25 * (xn**2 + yn**2)
            maps.append(cv2.merge([np.clip(g * 128, 0, 255).astype(np.uint8)] * 3))
        return maps

    def _noise_tiles(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        tiles = []
        for sigma in (2.0, 3.5, 5.0):
            n = rng.normal(0, sigma, (BASE_H + 32, BASE_W + 32, 3)).astype(np.float32)
            tiles.append(
                (np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8))
            )
        return tiles

    @staticmethod
    def _glare_sprite() -> np.ndarray:
        y, x = np.mgrid[-1:1:120j, -1:1:40j].astype(np.float32)
        g = np.exp(-(x**2) * 6 - (y**2) * 2.5)
        return g

    def _finish(self, img: np.ndarray, rng: np.random.Generator, light: float) -> np.ndarray:
        gain = self._gains[int(rng.integers(len(self._gains)))]
        img = cv2.multiply(img, gain, scale=light / 128.0)
        pos, neg = self._noise[int(rng.integers(len(self._noise)))]
        ox, oy = int(rng.integers(0, 32)), int(rng.integers(0, 32))
        img = cv2.add(img, pos[oy : oy + BASE_H, ox : ox + BASE_W])
        return cv2.subtract(img, neg[oy : oy + BASE_H, ox : ox + BASE_W])

    def _place(
        self, canvas: np.ndarray, p: np.ndarray, x0: int, y0: int, angle: float, rng
    ) -> np.ndarray:
        """Rotate a product patch about its centre, blur it a little, paste it; return the affine."""
        h, w = p.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        p = cv2.warpAffine(p, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        blur = rng.random()
        if blur < 0.35:
            p = cv2.GaussianBlur(p, (3, 3), 0.6)
        elif blur < 0.5:
            p = cv2.blur(p, (3, 1))  # motion blur along the belt
        canvas[y0 : y0 + h, x0 : x0 + w] = p
        return m

    def _light(self, i: int, rng: np.random.Generator) -> float:
        hours = i / self.cfg.rate_per_min / 60.0
        drift = max(0.3, 1.0 - self.cfg.drift_per_hour * hours)
        return float(drift * rng.uniform(0.97, 1.03))

    def _encoder(self, i: int, rng: np.random.Generator) -> int:
        e = self.cfg.encoder
        return int(round((i * e.pitch_mm + rng.normal(0, 0.3)) * e.counts_per_mm))

    # ------------------------------------------------------------------ render

    def render(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        defect, dup_of = self.plan(i)
        rng = np.random.default_rng([self.cfg.seed, i, 2])
        light = self._light(i, rng)
        code_defect = defect if defect in CODE_DEFECTS else None
        gs1 = self._code_data(i, code_defect, dup_of, rng)
        fn = {
            "vials": self._render_vial,
            "blisters": self._render_blister,
            "cartons": self._render_carton,
        }
        canvas = self._bg.copy()
        drift = drift_at(self.cfg.process_drift, i)
        boxes, code_bbox, printed = fn[self.scenario](canvas, defect, gs1, rng, drift)
        print_info = boxes.pop("_print", None)
        img = self._finish(canvas, rng, light)
        H, W = self.cfg.height, self.cfg.width
        sx, sy = W / BASE_W, H / BASE_H
        if (W, H) != (BASE_W, BASE_H):
            img = cv2.resize(
                img, (W, H), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
            )

        def scale(b: list[int]) -> list[int]:
            s = [round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)]
            return _clip_box(s, W, H)

        defects = []
        if defect is not None:
            defects.append(
                {
                    "class": defect,
                    "severity": severity_for(defect, self.scenario),
                    "bbox": scale(boxes[defect]),
                }
            )
        code = None
        if printed:
            code = {"text": gs1data.element_string(gs1), "gs1": dict(gs1)}
            if defect == "damaged_code":
                code["readable"] = False
        reasons = reasons_for(defect, self.scenario) if defect else []
        truth: dict[str, Any] = {
            "id": f"{self.scenario}-{self.cfg.seed}-{i:06d}",
            "scenario": self.scenario,
            "seed": self.cfg.seed,
            "index": i,
            "defects": defects,
            "code": code,
            "code_bbox": scale(code_bbox) if code_bbox is not None else None,
            "expected": "REJECT" if defects else "PASS",
            "reasons": reasons,
            "light": round(light, 4),
            "t": round(i * 60.0 / self.cfg.rate_per_min, 4),
            "encoder": self._encoder(i, rng),
        }
        if self.cfg.process_drift:
            truth["drift"] = {k: round(v, 5) for k, v in drift.items()}
        if print_info is not None:
            truth["print"] = {k: v for k, v in print_info.items() if k != "box"}
        if dup_of is not None:
            truth["duplicate_of"] = f"{self.scenario}-{self.cfg.seed}-{dup_of:06d}"
        return img, truth

    # ------------------------------------------------------------------ vials

    # local geometry of the vial patch (240 x 460)
    _VW, _VH, _VCX = 240, 460, 120
    _BODY = (25, 130, 215, 442)  # x0, y0, x1, y1 of the body
    _BASE_Y = 432  # inner bottom (liquid ends here)
    _LABEL = (25, 232, 215, 402)
    _NOMINAL_FILL = 165
    _CAP = (60, 12, 180, 84)  # cap sprite patch in vial coordinates

    def _init_vials(self) -> None:
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
            self._bg[10 : 10 + H, 200 : 200 + W].astype(np.float32) * glass[..., None], 0, 255
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
        paper *= _shade_cyl(lw, 0.8, 1.0)[None, :, None]
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
        cap[crimp] *= _shade_cyl(96, 0.55, 1.05)[None, :, None]
        cap[80 - cy0 - 3 : 80 - cy0, c - 48 : c + 48] *= 0.8
        cmask[crimp] = 255
        flip = np.zeros((ph, pw), np.uint8)
        cv2.rectangle(flip, (c - 54, 24 - cy0), (c + 53, 50 - cy0), 255, -1)
        cv2.rectangle(flip, (c - 48, 18 - cy0), (c + 47, 30 - cy0), 255, -1)
        cv2.circle(flip, (c - 48, 24 - cy0), 6, 255, -1)
        cv2.circle(flip, (c + 47, 24 - cy0), 6, 255, -1)
        fm = flip > 0
        blue = np.array([190, 90, 30], np.float32) * _shade_cyl(pw, 0.45, 1.05)[:, None]
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

    def _render_vial(self, canvas, defect, gs1, rng, drift):
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
        if printed:
            lab = self._v_label.copy()
            sym = _module_image(gs1data.hri(gs1), 3)
            if defect == "damaged_code":
                sym = _damage_code(sym, rng)
            sym = _fade(sym, contrast_factor(drift))
            sh, sw = sym.shape
            cy = 48
            lab[cy : cy + sh, 10 : 10 + sw] = (
                sym[..., None] * (0.86 if rng.random() < 0.5 else 0.9)
            ).astype(np.uint8) + 8
            tx = 18 + sw
            hri_lines = [(ai, f"({ai})") for ai in ("01", "17", "10", "21")]
            info = printing.print_block(
                lab, gs1, hri_lines, (tx, cy + 12), 16, 0.6, (30, 30, 30), self.cfg, defect, rng
            )
            bx, by, bw, bh = info["box"]
            for d in PRINT_DEFECTS:
                boxes[d] = (lx0 + bx, ly0 + by, bw, bh)
            p[ly0:ly1, lx0:lx1] = lab
            code_box = (lx0 + 10, ly0 + cy, sw, sh)
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
                b = _box_after(m, (self._v_cap_box[0] - cx0, 18 - cy0, 108, 62), (cx0, cy0))
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
            g = cv2.resize(self._glare, (18, 300))
            roi = p[135:435, gx : gx + 18]
            p[135:435, gx : gx + 18] = cv2.add(roi, cv2.merge([(g * s).astype(np.uint8)] * 3))
        m = self._place(canvas, p, x0, y0, angle, rng)
        out = {k: _box_after(m, b, (x0, y0)) for k, b in boxes.items() if b is not None}
        if printed:
            out["_print"] = info
        return out, out.get("code"), printed

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

    # ------------------------------------------------------------------ blisters

    _CW, _CH = 590, 270  # card
    _POCKET_R = 35
    _TABLET_R = 26
    _FLAP_X = 440
    _B_OFF = (12, 30)  # card origin in its patch (room for the rotation)

    def _pocket_centres(self) -> list[tuple[int, int]]:
        ox, oy = self._B_OFF
        return [(ox + 55 + 84 * c, oy + 72 + 126 * r) for r in range(2) for c in range(5)]

    def _init_blisters(self) -> None:
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

    def _render_blister(self, canvas, defect, gs1, rng, drift):
        W, H = self._b_patch
        x0 = (BASE_W - W) // 2 + int(rng.integers(-10, 11))
        y0 = (BASE_H - H) // 2 + int(rng.integers(-25, 26))
        angle = float(rng.uniform(-2.5, 2.5))
        p = canvas[y0 : y0 + H, x0 : x0 + W].copy()
        np.copyto(p, self._b_card, where=self._b_mask3)
        cents = self._pocket_centres()
        bad = int(rng.integers(0, len(cents))) if defect in self._product.defects else -1
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
        sym = _module_image(gs1data.hri(gs1), 3)
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
        m = self._place(canvas, p, x0, y0, angle, rng)
        out = {k: _box_after(m, b, (x0, y0)) for k, b in boxes.items()}
        return out, out["code"], True

    # ------------------------------------------------------------------ cartons

    _KW, _KH = 520, 350
    _PRINT = (250, 210, 250, 120)  # x, y, w, h of the variable-data box on the face

    def _init_cartons(self) -> None:
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

    def _render_carton(self, canvas, defect, gs1, rng, drift):
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
            sym = _module_image(gs1data.hri(gs1), 4)
            if defect == "damaged_code":
                sym = _damage_code(sym, rng)
            sym = _fade(sym, contrast_factor(drift))
            sh, sw = sym.shape
            cx, cy = px + 10, py + (ph - sh) // 2
            p[cy : cy + sh, cx : cx + sw] = (sym[..., None] * 0.9).astype(np.uint8) + 12
            hri_lines = [("01", "GTIN "), ("17", "EXP "), ("10", "LOT "), ("21", "SN ")]
            info = printing.print_block(
                p,
                gs1,
                hri_lines,
                (cx + sw + 10, cy + 14),
                22,
                0.8,
                (25, 25, 25),
                self.cfg,
                defect,
                rng,
            )
            for d in PRINT_DEFECTS:
                boxes[d] = tuple(info["box"])
            code_box = (cx, cy, sw, sh)
        for c in CODE_DEFECTS:
            if c != "missing_label":
                boxes[c] = code_box
        if code_box is not None:
            boxes["code"] = code_box
        if rng.random() < 0.4:  # gloss on the varnished face, away from the print box
            g = cv2.resize(self._glare, (60, 140))
            gx, gy = int(rng.integers(40, 180)), int(rng.integers(150, 220))
            roi = p[gy : gy + 140, gx : gx + 60]
            p[gy : gy + 140, gx : gx + 60] = cv2.add(
                roi, cv2.merge([(g * rng.uniform(20, 60)).astype(np.uint8)] * 3)
            )
        m = self._place(canvas, p, x0, y0, angle, rng)
        out = {k: _box_after(m, b, (x0, y0)) for k, b in boxes.items() if b is not None}
        if printed:
            out["_print"] = info
        return out, out.get("code"), printed


# --------------------------------------------------------------------------- capture source


class SimulatorCapture(Source):
    """The simulator as a capture source, paced at rate_per_min on an absolute schedule."""

    def __init__(self, cfg: SimulatorSource, batch: BatchState | None = None):
        super().__init__(cfg)
        self.sim = LineSimulator(cfg, batch)
        self.batch = self.sim.batch
        self.paced = cfg.realtime
        self.serials: SerialAllocator | None = None

    def continue_serials(self, cursor: SerialCursor) -> None:
        """Print serials the state directory has not issued yet (see `serialisation`)."""
        self.serials = SerialAllocator(
            cursor, self.batch.gtin or "", self.sim.serial_base, self.cfg.items
        )
        self.sim.serial_base = self.serials.base

    def frames(self) -> Iterator[Frame]:
        period = 60.0 / self.cfg.rate_per_min
        t0 = time.monotonic()
        i = 0
        while not self.stopped and (self.cfg.items is None or i < self.cfg.items):
            if self.cfg.realtime:
                delay = t0 + i * period - time.monotonic()
                if delay > 0 and self.wait(delay):
                    break
            t_trigger = time.monotonic()  # the trigger fires, then the camera renders
            if self.serials is not None:
                self.serials.ensure(i)
            img, truth = self.sim.render(i)
            yield Frame(
                image=img,
                t_trigger=t_trigger,
                encoder=truth["encoder"],
                source="simulator",
                name=truth["id"],
                truth=truth,
            )
            i += 1

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "type": "simulator",
            "scenario": c.scenario,
            "seed": c.seed,
            "rate_per_min": c.rate_per_min,
            "batch": {"gtin": self.batch.gtin, "lot": self.batch.lot, "expiry": self.batch.expiry},
        }


# --------------------------------------------------------------------------- dataset export


def yolo_lines(truth: dict[str, Any], width: int, height: int) -> list[str]:
    """YOLO label lines (cls cx cy w h, normalised) for a truth dict."""
    boxes = [(d["class"], d["bbox"]) for d in truth["defects"] if d["class"] in DETECTOR_CLASSES]
    if truth.get("code_bbox"):
        boxes.append(("code", truth["code_bbox"]))
    out = []
    for cls, (x, y, w, h) in boxes:
        if w <= 0 or h <= 0:
            continue
        out.append(
            f"{DETECTOR_CLASSES.index(cls)} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} "
            f"{w / width:.6f} {h / height:.6f}"
        )
    return out


_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, _PNG):
        raise OSError(f"cannot write {path}")


def export(
    cfg: SimulatorSource,
    out_dir: Path,
    items: int,
    batch: BatchState | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a labelled data set: images/, labels/ (YOLO), truth.jsonl, data.yaml, batch.json."""
    import yaml

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    sim = LineSimulator(cfg, batch)
    counts: dict[str, int] = {}
    # PNG encoding costs more than rendering; OpenCV releases the GIL, so two writer
    # threads overlap it with the next renders (bounded, so memory stays flat)
    pending: deque[Future] = deque()
    with open(out / "truth.jsonl", "w") as tf, ThreadPoolExecutor(2) as pool:
        for i in range(items):
            img, truth = sim.render(i)
            name = truth["id"]
            pending.append(pool.submit(_write_png, out / "images" / f"{name}.png", img))
            while len(pending) > 8 or (pending and pending[0].done()):
                pending.popleft().result()
            (out / "labels" / f"{name}.txt").write_text(
                "".join(line + "\n" for line in yolo_lines(truth, cfg.width, cfg.height))
            )
            truth["image"] = f"images/{name}.png"
            tf.write(json.dumps(truth) + "\n")
            for d in truth["defects"]:
                counts[d["class"]] = counts.get(d["class"], 0) + 1
            if on_progress:
                on_progress(i + 1, items)
        for f in pending:
            f.result()
    data = {
        "path": str(out.resolve()),
        "train": "images",
        "val": "images",
        "names": list(DETECTOR_CLASSES),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    b = sim.batch
    (out / "batch.json").write_text(json.dumps({"gtin": b.gtin, "lot": b.lot, "expiry": b.expiry}))
    return {"out": str(out), "items": items, "scenario": cfg.scenario, "defects": counts}
