"""Inline scan grade after the ISO/IEC 15415 (2D) and 15416 (1D) parameters.

This is a *scan grade*, not a verification: a verifier needs calibrated reflectance,
controlled lighting and a measuring aperture. Here reflectance is the grey level
relative to the local white (the brightest light modules and quiet zone around the
symbol), which stands in for a verifier's calibration: an ageing lamp does not lower
the grade, a faint or smeared print does. Numbers are comparable within one station
and one batch (which is what the trend is for), not between stations.

2D parameters measured from one image, given the symbol's four corners from the decoder:
  SC   symbol contrast: light minus dark module reflectance
  MOD  modulation: how far module samples sit from the global threshold (with a share
       of poor modules allowed in proportion to unused error correction, the way
       15415 lets error correction absorb damaged codewords)
  FPD  fixed pattern damage: DataMatrix L-finder and clock track, QR finders and timing
  AN   axial non-uniformity: module pitch along x versus y
  GN   grid non-uniformity: clock/timing track edges versus the ideal grid
  UEC  unused error correction, when the decoder reports it
1D: per ISO/IEC 15416, ten scan lines through the bars, each graded on SC, ECmin and
MOD; the symbol grade is their average.

Each parameter grades 4..0 (A..F); the overall grade is the minimum.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

#: (A, B, C, D) lower bounds; below D is F. Higher is better.
_SC = (0.70, 0.55, 0.40, 0.20)
_MOD_2D = (0.50, 0.40, 0.30, 0.20)
_MOD_1D = (0.70, 0.60, 0.50, 0.40)
_UEC = (0.62, 0.50, 0.37, 0.25)
#: (A, B, C, D) upper bounds; above D is F. Lower is better.
_AN = (0.06, 0.08, 0.10, 0.12)
_GN = (0.38, 0.50, 0.63, 0.75)
_FPD_WRONG = (0.0, 0.03, 0.06, 0.09)  # share of fixed-pattern modules on the wrong side
_EC_MIN_1D = 0.15

LETTERS = "FDCBA"


def letter(grade: float) -> str:
    """4 -> A ... 0 -> F (rounded down, as graders do)."""
    return LETTERS[max(0, min(4, int(grade + 1e-9)))]


def _at_least(value: float, bounds: tuple[float, ...]) -> float:
    for g, b in zip((4, 3, 2, 1), bounds, strict=True):
        if value >= b:
            return float(g)
    return 0.0


def _at_most(value: float, bounds: tuple[float, ...]) -> float:
    for g, b in zip((4, 3, 2, 1), bounds, strict=True):
        if value <= b:
            return float(g)
    return 0.0


@dataclass
class ScanGrade:
    """Overall grade (min of parameters), and each parameter's value and grade."""

    overall: float
    params: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (value, grade)

    @property
    def worst(self) -> str:
        """The parameter that set the overall grade (for the operator's message)."""
        if not self.params:
            return ""
        return min(self.params.items(), key=lambda kv: kv[1][1])[0]

    def describe(self) -> str:
        parts = [f"{k} {v:.2f}={letter(g)}" for k, (v, g) in self.params.items()]
        return f"{self.overall:.1f} ({letter(self.overall)}): " + ", ".join(parts)


def _parse_size(version: Any, fmt: str) -> tuple[int, int] | None:
    """Module rows x cols from the decoder's `Version` extra (DataMatrix 'RxC', QR 'N')."""
    if version is None:
        return None
    v = str(version)
    if "x" in v:
        try:
            rows, cols = (int(p) for p in v.lower().split("x", 1))
        except ValueError:
            return None
        return (rows, cols) if rows > 0 and cols > 0 else None
    if fmt.startswith("QR") and v.isdigit():
        n = 17 + 4 * int(v)
        return n, n
    return None


def _homography(corners: np.ndarray, rows: int, cols: int) -> np.ndarray:
    # The decoder's corners are the centres of the outermost pixels; half a pixel
    # outward gives the symbol's outer edge, which is what module coordinates 0..n mean.
    c = (corners + _outward(corners)).astype(np.float32)
    src = np.float32([[0, 0], [cols, 0], [cols, rows], [0, rows]])
    return cv2.getPerspectiveTransform(src, c)


def _sample(grey: np.ndarray, h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Grey values at module coordinates `pts` (N x 2), bilinear."""
    img_pts = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float32), h).reshape(-1, 2)
    mx = img_pts[:, 0].astype(np.float32).reshape(1, -1)
    my = img_pts[:, 1].astype(np.float32).reshape(1, -1)
    out = cv2.remap(grey, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1).astype(np.float32)


def _fixed_pattern(fmt: str, rows: int, cols: int) -> dict[tuple[int, int], bool] | None:
    """(row, col) -> expected dark, for the patterns every symbol of this size carries."""
    exp: dict[tuple[int, int], bool] = {}
    if fmt.startswith("Data Matrix"):
        for r in range(rows):
            exp[(r, 0)] = True  # L-finder, left column
            exp[(r, cols - 1)] = r % 2 == 1  # clock track, right column
        for c in range(cols):
            exp[(rows - 1, c)] = True  # L-finder, bottom row
            exp[(0, c)] = c % 2 == 0  # clock track, top row
        exp[(rows - 1, cols - 1)] = True
        return exp
    if fmt == "QR Code" and rows == cols and rows >= 21:
        n = rows
        for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):
            for r in range(7):
                for c in range(7):
                    ring = max(abs(r - 3), abs(c - 3))
                    exp[(r0 + r, c0 + c)] = ring != 2
        for i in range(8, n - 8):
            exp[(6, i)] = i % 2 == 0
            exp[(i, 6)] = i % 2 == 0
        return exp
    return None


def _track_edges(
    grey: np.ndarray, h: np.ndarray, start: tuple[float, float], axis: int, n: int, gt: float
) -> float | None:
    """Largest distance (in modules) of a clock/timing track's edges from the ideal grid."""
    steps = 8
    t = np.arange(n * steps, dtype=np.float32) / steps + 0.5 / steps
    pts = np.zeros((t.size, 2), np.float32)
    pts[:, 0] = start[0]
    pts[:, 1] = start[1]
    pts[:, axis] += t
    prof = _sample(grey, h, pts) - gt
    s = np.sign(prof)
    idx = np.nonzero(s[:-1] * s[1:] < 0)[0]
    if idx.size < max(2, n // 4):
        return None
    frac = prof[idx] / (prof[idx] - prof[idx + 1])
    edges = t[idx] + frac / steps
    return float(np.max(np.abs(edges - np.round(edges))))


def grade_2d(
    grey: np.ndarray,
    corners: np.ndarray,
    fmt: str,
    extra: dict[str, Any] | None = None,
) -> ScanGrade | None:
    """Scan grade of a matrix symbol; None when its module grid is not known."""
    extra = extra or {}
    size = _parse_size(extra.get("Version"), fmt)
    if size is None:
        return None
    rows, cols = size
    pitch = _pitch(corners, rows, cols)
    if pitch < 1.0:
        return None
    # Average over about half a module around each centre (the 15415 aperture's role).
    k = max(1, int(pitch * 0.5)) | 1
    smooth = cv2.blur(grey, (k, k)) if k > 1 else grey
    # Reflectances over the symbol and a module of quiet zone around it.
    x0, y0 = np.floor(corners.min(axis=0) - pitch).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + pitch).astype(int)
    area = smooth[max(0, y0) : max(0, y1) + 1, max(0, x0) : max(0, x1) + 1]
    if area.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(area, (2, 98)))
    sc = (hi - lo) / max(hi, 1.0)  # relative to the local white
    params: dict[str, tuple[float, float]] = {"SC": (sc, _at_least(sc, _SC))}
    if sc < 0.02:  # nothing to sample a grid from
        return ScanGrade(params["SC"][1], params)
    gt = (hi + lo) / 2.0
    expected = _fixed_pattern(fmt, rows, cols)
    fixed = None
    if expected:
        idx = np.array(list(expected.keys()))
        fixed = (idx[:, 0] * cols + idx[:, 1], np.array(list(expected.values())))
    rr, cc = np.mgrid[0:rows, 0:cols]
    centres = np.stack([cc.ravel() + 0.5, rr.ravel() + 0.5], axis=1).astype(np.float32)
    corners, polarity = _fit_grid(smooth, corners, rows, cols, centres, gt, fixed)
    h = _homography(corners, rows, cols)
    vals = _sample(smooth, h, centres)
    uec = extra.get("UEC")
    mods = np.clip(2.0 * np.abs(vals - gt) / (hi - lo), 0.0, 1.0)
    # 15415 lets error correction absorb poor codewords; here a share of poor modules
    # in proportion to the unused error correction stands in for that.
    allowance = 0.10 * (float(uec) if uec is not None else 0.5)
    mod = float(np.quantile(mods, allowance))
    params["MOD"] = (mod, _at_least(mod, _MOD_2D))
    if fixed is not None:
        dark = (vals[fixed[0]] < gt) == polarity
        wrong = float(np.mean(dark != fixed[1]))
        params["FPD"] = (wrong, _at_most(wrong, _FPD_WRONG))
        gn = _grid_nonuniformity(smooth, h, fmt, rows, cols, gt)
        if gn is not None:
            params["GN"] = (gn, _at_most(gn, _GN))
    an = _axial(corners, rows, cols)
    params["AN"] = (an, _at_most(an, _AN))
    if uec is not None:
        u = float(uec)
        params["UEC"] = (u, _at_least(u, _UEC))
    return ScanGrade(min(g for _, g in params.values()), params)


def _fit_grid(
    smooth: np.ndarray,
    corners: np.ndarray,
    rows: int,
    cols: int,
    centres: np.ndarray,
    gt: float,
    fixed: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, bool]:
    """Nudge the decoder's corners (often a pixel or two off) onto the module grid.

    Coordinate descent over the eight corner coordinates, within about half a module,
    on how far module samples sit from the threshold plus how well the fixed patterns
    match. Skipped when the decoder's corners already sample every fixed module clearly.
    Returns the corners and the polarity (True: dark modules on light, the usual print).
    """
    pitch = _pitch(corners, rows, cols)
    src = np.float32([[0, 0], [cols, 0], [cols, rows], [0, rows]])
    pts = centres.reshape(-1, 1, 2)
    outward = _outward(corners)

    def score(c: np.ndarray) -> tuple[float, bool, float]:
        h = cv2.getPerspectiveTransform(src, (c + outward).astype(np.float32))
        ip = cv2.perspectiveTransform(pts, h).reshape(-1, 2)
        v = (
            cv2.remap(
                smooth,
                ip[:, 0].reshape(1, -1),
                ip[:, 1].reshape(1, -1),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            .ravel()
            .astype(np.float32)
            - gt
        )
        s = float(np.abs(v).mean())
        if fixed is None:
            return s, True, 1.0
        signed = np.where(fixed[1], -v[fixed[0]], v[fixed[0]])
        m = float(signed.mean())
        worst = float(signed.min() if m >= 0 else (-signed).min())
        return s + abs(m), m >= 0, worst

    best = corners.astype(np.float64).copy()
    best_s, polarity, worst = score(best)
    if worst > 0.25 * abs(gt - float(smooth.min())):  # every fixed module clearly right
        return best, polarity
    for step in (pitch * 0.3, pitch * 0.12):
        for i in range(4):
            for j in range(2):
                for d in (-step, step):
                    trial = best.copy()
                    trial[i, j] += d
                    if abs(trial[i, j] - corners[i, j]) > pitch * 0.6:
                        continue
                    s, pol, _ = score(trial)
                    if s > best_s + 1e-6:
                        best, best_s, polarity = trial, s, pol
                        break
    return best, polarity


def _outward(corners: np.ndarray) -> np.ndarray:
    """Half a pixel outward from each corner (decoder corners are outermost pixel centres)."""
    d = corners - corners.mean(axis=0)
    return 0.5 * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)


def _pitch(corners: np.ndarray, rows: int, cols: int) -> float:
    tl, tr, br, bl = corners.astype(np.float64)
    x = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2 / cols
    y = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2 / rows
    return float((x + y) / 2)


def _axial(corners: np.ndarray, rows: int, cols: int) -> float:
    tl, tr, br, bl = corners.astype(np.float64)
    x = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2 / cols
    y = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2 / rows
    return float(abs(x - y) / max((x + y) / 2, 1e-9))


def _grid_nonuniformity(
    grey: np.ndarray, h: np.ndarray, fmt: str, rows: int, cols: int, gt: float
) -> float | None:
    devs = []
    if fmt.startswith("Data Matrix"):
        devs.append(_track_edges(grey, h, (0.0, 0.5), 0, cols, gt))  # top clock track
        devs.append(_track_edges(grey, h, (cols - 0.5, 0.0), 1, rows, gt))  # right clock
    elif fmt == "QR Code":
        devs.append(_track_edges(grey, h, (7.0, 6.5), 0, cols - 14, gt))  # timing row
        devs.append(_track_edges(grey, h, (6.5, 7.0), 1, rows - 14, gt))  # timing column
    known = [d for d in devs if d is not None]
    return max(known) if known else None


def grade_1d(grey: np.ndarray, corners: np.ndarray) -> ScanGrade | None:
    """ISO/IEC 15416-style profile grade from ten scan lines across the bars."""
    tl, tr, br, bl = corners.astype(np.float64)
    length = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    if length < 8:
        return None
    n = int(min(2048, max(64, length * 2)))
    grades, scs, ecs, mds = [], [], [], []
    for f in np.linspace(0.1, 0.9, 10):
        a = tl + (bl - tl) * f
        b = tr + (br - tr) * f
        ext = (b - a) * 0.05  # a little quiet zone on either side
        xs = np.linspace(a[0] - ext[0], b[0] + ext[0], n, dtype=np.float32).reshape(1, -1)
        ys = np.linspace(a[1] - ext[1], b[1] + ext[1], n, dtype=np.float32).reshape(1, -1)
        prof = cv2.remap(grey, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        prof = prof.reshape(-1).astype(np.float32)
        prof /= max(float(prof.max()), 1.0)  # reflectance relative to the local white
        r_min, r_max = float(prof.min()), float(prof.max())
        sc = r_max - r_min
        if sc < 1e-3:
            grades.append(0.0)
            scs.append(sc)
            continue
        gt = (r_max + r_min) / 2
        light = prof > gt
        cuts = np.nonzero(light[1:] != light[:-1])[0] + 1
        segs = np.split(prof, cuts)
        if len(segs) < 3:
            grades.append(0.0)
            scs.append(sc)
            continue
        ext_vals = [s.max() if s[0] > gt else s.min() for s in segs]
        ec_min = float(min(abs(ext_vals[i + 1] - ext_vals[i]) for i in range(len(segs) - 1)))
        mod = ec_min / sc
        g = min(_at_least(sc, _SC), 4.0 if ec_min >= _EC_MIN_1D else 0.0, _at_least(mod, _MOD_1D))
        grades.append(g)
        scs.append(sc)
        ecs.append(ec_min)
        mds.append(mod)
    overall = float(np.mean(grades))
    params = {"SC": (float(np.mean(scs)), _at_least(float(np.mean(scs)), _SC))}
    if mds:
        m = float(np.mean(mds))
        params["MOD"] = (m, _at_least(m, _MOD_1D))
        params["ECmin"] = (float(np.mean(ecs)), 4.0 if np.mean(ecs) >= _EC_MIN_1D else 0.0)
    return ScanGrade(overall, params)


MATRIX_FORMATS = ("Data Matrix", "QR Code", "Micro QR Code", "rMQR Code", "Aztec")


def scan_grade(
    grey: np.ndarray, corners: np.ndarray, fmt: str, extra: dict[str, Any] | None = None
) -> ScanGrade | None:
    """Grade one decoded symbol in the image it was found in (grey, uint8)."""
    if corners.shape != (4, 2) or not np.all(np.isfinite(corners)):
        return None
    if fmt.startswith(MATRIX_FORMATS):
        return grade_2d(grey, corners, fmt, extra)
    return grade_1d(grey, corners)


class GradeTrend:
    """Scan grades per batch for the HMI and MQTT: count, mean, minimum, recent values.

    Bounded: a running sum and a fixed window per batch, never a list of every grade.
    """

    def __init__(self, window: int = 200, max_batches: int = 16):
        self.window = window
        self.max_batches = max_batches
        self._lock = threading.Lock()
        self._batches: dict[str, dict[str, Any]] = {}

    def add(self, batch: str, grade: float) -> None:
        with self._lock:
            b = self._batches.get(batch)
            if b is None:
                if len(self._batches) >= self.max_batches:
                    self._batches.pop(next(iter(self._batches)))
                b = {"n": 0, "sum": 0.0, "min": 4.0, "recent": deque(maxlen=self.window)}
                self._batches[batch] = b
            b["n"] += 1
            b["sum"] += grade
            b["min"] = min(b["min"], grade)
            b["recent"].append(round(grade, 2))

    def snapshot(self, batch: str) -> dict[str, Any] | None:
        with self._lock:
            b = self._batches.get(batch)
            if b is None:
                return None
            recent = list(b["recent"])
            return {
                "batch": batch,
                "count": b["n"],
                "mean": round(b["sum"] / b["n"], 3),
                "min": round(b["min"], 2),
                "recent_mean": round(sum(recent) / len(recent), 3),
                "recent": recent,
            }
