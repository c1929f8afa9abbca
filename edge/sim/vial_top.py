"""A vial seen from above: the camera over the line that looks down on the cap.

From above the flip-off cap is a blue disc inside the glass shoulder's ring; a missing cap
shows the grey rubber stopper in the neck, a tilted cap an off-centre, foreshortened disc
with the crimp showing beside it, a dent in the flat top a shaded crease that no side
camera can see. The label, its code and the liquid do not show from here.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from edge.sim.draw import box_after
from edge.sim.scene import Drawn

#: patch size and centre (base-frame pixels)
SIZE, C = 240, 120
BODY_R = 95  # the vial's outer radius (its body is 190 px wide in the side view)
NECK_R = 46  # the glass lip under the crimp
CAP_R = 54  # the flip-off disc (108 px wide in the side view)
STOPPER_R = 36
CAP_BGR = np.array([190, 90, 30], np.float32)  # the side view's blue
CRIMP_BGR = np.array([176, 178, 182], np.float32)
STOPPER_BGR = np.array([78, 78, 84], np.float32)


@functools.cache
def _geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What every item's top view shares, computed once: pixel grid, radius, the glass's
    shading, the good cap's mask and colour."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    r = np.hypot(xx - C, yy - C)
    glass = np.ones_like(r)
    glass[r <= BODY_R] = 0.88
    glass[(r > BODY_R - 7) & (r <= BODY_R)] = 0.6
    glass[(r > NECK_R - 6) & (r <= NECK_R)] = 0.55
    cap = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(cap, (C, C), (CAP_R, CAP_R), 0.0, 0, 360, 255, -1)
    on = cap > 0
    colour = (CAP_BGR[None, :] * _disc_shade(r[on], CAP_R)[:, None]).astype(np.float32)
    return yy, xx, r, glass[..., None].astype(np.float32), colour


def _disc_shade(r: np.ndarray, radius: float) -> np.ndarray:
    """A dome light's fall-off over a flat disc: bright in the middle, darker at the rim."""
    return 1.05 - 0.35 * np.clip(r / radius, 0, 1) ** 2


def draw_top(stage, canvas: np.ndarray, defect: str | None, rng) -> Drawn:
    """Draw the vial's top (with `defect`, where it shows from above) onto `canvas`, in place."""
    x0 = 200 + int(rng.integers(-28, 29))  # the belt's jitter, as the side views draw it
    y0 = 120 + int(rng.integers(-20, 21))
    p = canvas[y0 : y0 + SIZE, x0 : x0 + SIZE].astype(np.float32)
    yy, xx, r, glass, good_cap = _geometry()
    p *= glass  # glass from above: the shoulder and its rim darken the light through it
    boxes: dict[str, tuple] = {}
    cap_box = (C - CAP_R - 2, C - CAP_R - 2, 2 * CAP_R + 5, 2 * CAP_R + 5)
    boxes["missing_cap"] = cap_box
    if defect == "missing_cap":
        stop = r <= STOPPER_R
        shade = 0.9 + 0.1 * np.cos(r[stop] / STOPPER_R * math.pi)  # the plug's dimple
        p[stop] = STOPPER_BGR[None, :] * shade[:, None]
    elif defect != "cap_tilt":
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.ellipse(mask, (C, C), (CAP_R, CAP_R), 0.0, 0, 360, 255, -1)
        on = mask > 0
        p[on] = good_cap
        if defect == "dented_cap":
            boxes["dented_cap"] = _dent(p, on, rng)
    else:  # tilted: the disc leans over, foreshortened, the crimp showing beside it
        tilt = math.radians(float(rng.uniform(7, 15)))
        ang = float(rng.uniform(0, 180))
        shift = 32 * math.sin(tilt)  # the cap's height, leaning over
        cx = C + shift * math.cos(math.radians(ang))
        cy = C + shift * math.sin(math.radians(ang))
        p[r <= CAP_R - 6] = CRIMP_BGR * 0.9
        mask = np.zeros((SIZE, SIZE), np.uint8)
        axes = (round(CAP_R * math.cos(tilt)), CAP_R)
        cv2.ellipse(mask, (round(cx), round(cy)), axes, ang, 0, 360, 255, -1)
        on = mask > 0
        rd = np.hypot(xx[on] - cx, yy[on] - cy)
        p[on] = CAP_BGR[None, :] * _disc_shade(rd, CAP_R)[:, None]
        boxes["cap_tilt"] = cv2.boundingRect(mask)
    p = np.clip(p, 0, 255).astype(np.uint8)
    m = stage.place(canvas, p, x0, y0, float(rng.uniform(-1.5, 1.5)), rng)
    out = {k: box_after(m, b, (x0, y0)) for k, b in boxes.items()}
    return Drawn(out, None, False, None)


def _dent(p: np.ndarray, on: np.ndarray, rng) -> tuple[int, int, int, int]:
    """A crease in the flat top: a dark, slightly curved groove with a lit edge beside it."""
    a = float(rng.uniform(0, 2 * math.pi))
    rad = float(rng.uniform(14, 34))  # from the disc's centre
    length, width = float(rng.uniform(16, 26)), float(rng.uniform(5, 8))
    depth = float(rng.uniform(0.35, 0.5))
    mx, my = C + rad * math.cos(a), C + rad * math.sin(a)
    yy, xx = _geometry()[:2]
    # along (u) and across (v) the groove, which runs round the disc (tangential)
    u = -(xx - mx) * math.sin(a) + (yy - my) * math.cos(a)
    v = (xx - mx) * math.cos(a) + (yy - my) * math.sin(a) + 0.01 * u**2  # a little curved
    g = np.exp(-(u**2) / (2 * (length / 2) ** 2) - v**2 / (2 * (width / 2) ** 2))
    lit = np.exp(-(u**2) / (2 * (length / 2) ** 2) - (v + width) ** 2 / (2 * (width / 3) ** 2))
    f = (1 - depth * g) * (1 + 0.18 * lit)
    p[on] *= f[on][:, None]
    ys, xs = np.nonzero((g > 0.2) & on)
    if len(xs) == 0:
        return (round(mx) - 4, round(my) - 4, 9, 9)
    return (int(xs.min()) - 2, int(ys.min()) - 2, int(np.ptp(xs)) + 5, int(np.ptp(ys)) + 5)
