"""Drawing and randomisation every scene shares.

The `Stage` is rendered once per run (background, lighting gradients, noise tiles, a glare
sprite); a frame then costs a few slice copies, one small ROI warp, one gain multiply and
one noise add. The helpers place a product patch, follow its boxes through the warp, and
draw, fade or damage the code symbol.
"""

from __future__ import annotations

import cv2
import numpy as np
import zxingcpp

#: the frame size scenes draw at; the twin resizes to the configured size afterwards
BASE_W, BASE_H = 640, 480


def box_after(
    m: np.ndarray, box: tuple[float, float, float, float], off: tuple[int, int]
) -> list[int]:
    """Axis-aligned [x, y, w, h] of a local box after the affine `m` and offset `off`."""
    x, y, w, h = box
    pts = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)
    t = pts @ m.T
    x0, y0 = t.min(0) + off
    x1, y1 = t.max(0) + off
    return [round(x0), round(y0), round(x1 - x0), round(y1 - y0)]


def clip_box(b: list[int], w: int, h: int) -> list[int]:
    """The part of box `b` that lies on a `w` x `h` image."""
    x0, y0 = max(0, b[0]), max(0, b[1])
    x1, y1 = min(w, b[0] + b[2]), min(h, b[1] + b[3])
    return [x0, y0, max(0, x1 - x0), max(0, y1 - y0)]


def shade_cyl(width: int, lo: float, hi: float) -> np.ndarray:
    """Horizontal brightness profile of a lit cylinder (darker at the edges)."""
    x = np.linspace(-1, 1, width)
    return (lo + (hi - lo) * np.sqrt(np.clip(1 - x**2, 0, 1))).astype(np.float32)


def module_image(hri: str, scale: int) -> np.ndarray:
    """The GS1 DataMatrix of `hri`, one module `scale` pixels, no quiet zone (0/255).

    Always a square symbol, as pharmaceutical packs carry: left to choose, the encoder makes a
    rectangle for some data (a longer lot, some serials), which the label has no room for."""
    b = zxingcpp.create_barcode(hri, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, forceSquare=True)
    m = np.asarray(b.to_image(scale=1, add_quiet_zones=False))
    return np.repeat(np.repeat(m, scale, 0), scale, 1)


def fade(sym: np.ndarray, contrast: float) -> np.ndarray:
    """The symbol printed with only `contrast` of its ink (dark modules lighten toward paper)."""
    if contrast >= 1.0:
        return sym
    return (255 - (255 - sym.astype(np.float32)) * contrast).astype(sym.dtype)


def damage_code(sym: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


# --------------------------------------------------------------------------- the stage


class Stage:
    """What every item of a run shares: the belt or backlight, lighting, noise, glare.

    Rendered once from the run's seed; `finish` and `place` then draw from the item's rng.
    """

    def __init__(self, seed: int, backlit: bool):
        rng = np.random.default_rng([seed, 0xC0FFEE])
        self.bg = self._background(rng, backlit)
        self.gains = self._gain_maps(rng)
        self.noise = self._noise_tiles(rng)
        self.glare = self._glare_sprite()

    @staticmethod
    def _background(rng: np.random.Generator, backlit: bool) -> np.ndarray:
        h, w = BASE_H, BASE_W
        if backlit:  # diffuse backlight panel
            base = np.full((h, w, 3), (198, 200, 201), np.float32)
            tex = cv2.GaussianBlur(rng.normal(0, 3, (h, w)).astype(np.float32), (0, 0), 6)
        else:  # dark conveyor belt with longitudinal texture
            base = np.full((h, w, 3), (58, 60, 62), np.float32)
            tex = cv2.GaussianBlur(
                rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), sigmaX=8, sigmaY=1
            )
        return np.clip(base + tex[..., None], 0, 255).astype(np.uint8)

    @staticmethod
    def _gain_maps(rng: np.random.Generator) -> list[np.ndarray]:
        """Lighting gradients and vignetting as uint8 gains (128 = 1.0)."""
        y, x = np.mgrid[0:BASE_H, 0:BASE_W].astype(np.float32)
        xn, yn = x / BASE_W - 0.5, y / BASE_H - 0.5
        maps = []
        for _ in range(12):
            a, b = rng.uniform(-0.25, 0.25, 2)
            g = 1.0 + a * xn + b * yn - 0.25 * (xn**2 + yn**2)
            maps.append(cv2.merge([np.clip(g * 128, 0, 255).astype(np.uint8)] * 3))
        return maps

    @staticmethod
    def _noise_tiles(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
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

    def finish(self, img: np.ndarray, rng: np.random.Generator, light: float) -> np.ndarray:
        """The camera's view of a drawn frame: a lighting gradient, the light level, sensor noise."""
        gain = self.gains[int(rng.integers(len(self.gains)))]
        img = cv2.multiply(img, gain, scale=light / 128.0)
        pos, neg = self.noise[int(rng.integers(len(self.noise)))]
        ox, oy = int(rng.integers(0, 32)), int(rng.integers(0, 32))
        img = cv2.add(img, pos[oy : oy + BASE_H, ox : ox + BASE_W])
        return cv2.subtract(img, neg[oy : oy + BASE_H, ox : ox + BASE_W])

    def place(
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
