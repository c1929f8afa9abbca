"""The heat map of an ANOMALY finding as evidence: small enough to keep with every reject.

A reject's heat map travels in its finding's `detail["heat"]`, so it is recorded in the
item's row beside the reject image (and in the result message) and drawn over the frame
by the HMI (`static/hmi_heat.js`) and over the kept image by the web UI (`overlay`).

Encoding: the patch grid max-pooled to at most `MAX_CELLS` cells on its longer side (a
hot patch never disappears in the pooling), each cell one byte, `128 * score /
threshold` clipped to 255 (so 128 is the threshold and 255 twice it), base64. A vial's
60 x 40 grid becomes 30 x 20 cells, 800 characters.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

MAX_CELLS = 32
#: the byte value of the threshold
AT_THRESHOLD = 128
#: cells below this share of the threshold are not drawn (the frame stays readable)
DRAW_FROM = 0.75


def encode(
    heat: np.ndarray,
    threshold: float,
    rect: tuple[int, int, int, int],
    bbox: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """`detail["heat"]` of a finding: the region `rect` (x, y, w, h image pixels) and its
    pooled map; `bbox` the finding's box as the tool drew it (a viewer that moves the box,
    as a multi-view picture does, moves the map by as much)."""
    m = np.asarray(heat, dtype=np.float32)
    gh, gw = m.shape
    f = max(1, int(np.ceil(max(gh, gw) / MAX_CELLS)))
    rows, cols = -(-gh // f), -(-gw // f)
    padded = np.full((rows * f, cols * f), -np.inf, np.float32)
    padded[:gh, :gw] = m
    pooled = padded.reshape(rows, f, cols, f).max(axis=(1, 3))
    cells = np.clip(np.round(AT_THRESHOLD * pooled / float(threshold)), 0, 255).astype(np.uint8)
    out: dict[str, Any] = {
        "rect": [int(v) for v in rect],
        "rows": int(rows),
        "cols": int(cols),
        "cells": base64.b64encode(cells.tobytes()).decode("ascii"),
        "scale": f"{AT_THRESHOLD} = threshold",
    }
    if bbox is not None:
        out["bbox"] = [int(v) for v in bbox]
    return out


def decode(detail: dict[str, Any]) -> np.ndarray:
    """The pooled map as shares of the threshold (rows x cols float32)."""
    rows, cols = int(detail["rows"]), int(detail["cols"])
    raw = np.frombuffer(base64.b64decode(detail["cells"]), dtype=np.uint8)
    if raw.size != rows * cols:
        raise ValueError(f"heat map of {raw.size} cells, {rows}x{cols} expected")
    return raw.reshape(rows, cols).astype(np.float32) / AT_THRESHOLD


def overlay(image: np.ndarray, heats: list[dict[str, Any]], alpha: float = 0.55) -> np.ndarray:
    """The image with each heat map blended over its region where it is at least
    `DRAW_FROM` of the threshold (blue at that share, red at the threshold and above)."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    ih, iw = out.shape[:2]
    for h in heats:
        x, y, w, hh = (int(v) for v in h["rect"])
        x0, y0, x1, y1 = max(0, x), max(0, y), min(iw, x + w), min(ih, y + hh)
        if x1 <= x0 or y1 <= y0:
            continue
        share = cv2.resize(decode(h), (w, hh), interpolation=cv2.INTER_NEAREST)
        share = share[y0 - y : y1 - y, x0 - x : x1 - x]
        level = np.clip((share - DRAW_FROM) / (1.0 - DRAW_FROM), 0.0, 1.0)
        colours = cv2.applyColorMap((96 + 159 * level).astype(np.uint8), cv2.COLORMAP_JET)
        mask = (share >= DRAW_FROM)[..., None]
        roi = out[y0:y1, x0:x1]
        blended = cv2.addWeighted(roi, 1 - alpha, colours, alpha, 0)
        out[y0:y1, x0:x1] = np.where(mask, blended, roi)
    return out


def heats_of(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The heat maps among recorded findings (dicts, as stored)."""
    return [
        f["detail"]["heat"]
        for f in findings
        if isinstance(f.get("detail"), dict) and isinstance(f["detail"].get("heat"), dict)
    ]
