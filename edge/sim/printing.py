"""The simulator's variable-data printer: the human-readable lines beside the code.

A good pack in the solid font is drawn exactly as before (the same `cv2.putText` calls),
so data sets rendered without print defects keep their pixels. This module adds what the
OCV check must catch or tolerate:

* a dot-matrix (continuous inkjet) font, as a line option (`print_font: dotmatrix`);
* print defects, drawn on one line of the block, the code left correct:
  `missing_char` (a character not printed), `broken_char` (most of a character gone),
  `smear` (wet ink dragged over characters), `wrong_lot_print` / `wrong_expiry_print`
  (another lot or expiry printed than the code carries), `low_contrast` (low ink), and
  `shifted_print` (the block printed off its place).

Ground truth says what was printed (`truth["print"]`), and the reason codes expected.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

from edge.inspect.ocv_fields import format_date
from edge.sim import gs1data
from edge.taxonomy import PRINT_DEFECTS

#: AI of each printed field, in the simulator's print order per scenario
FIELDS = {"01": "gtin", "17": "expiry", "10": "lot", "21": "serial"}

_FONT = cv2.FONT_HERSHEY_PLAIN
_DOT_X = 0.7  # inkjet fonts are condensed: dot pitch across, relative to down (as wide as solid)
_UP = 4  # dot-matrix lines are drawn at 4x and reduced (the dots blend like ink)


def printed_values(
    gs1: dict[str, str],
    defect: str | None,
    rng: np.random.Generator | None,
    date_format: str = "YYMMDD",
) -> dict[str, str]:
    """The value printed for each AI: the code's, except where a print defect changes it."""
    out = dict(gs1)
    if defect == "wrong_lot_print" and rng is not None:
        out["10"] = gs1data.other_lot(gs1["10"], int(rng.integers(0, 1_000_000)))
    elif defect == "wrong_expiry_print" and rng is not None:
        exp = gs1data.parse_yymmdd(gs1["17"])
        months = int(rng.integers(1, 13)) * (1 if rng.random() < 0.5 else -1)
        y, m = divmod(exp.year * 12 + exp.month - 1 + months, 12)
        out["17"] = gs1data.yymmdd(gs1data.end_of_month(y, m + 1))
    if "17" in out:
        out["17"] = format_date(out["17"], date_format)
    return out


def print_block(
    img: np.ndarray,
    gs1: dict[str, str],
    lines: list[tuple[str, str]],
    org: tuple[int, int],
    pitch: int,
    scale: float,
    colour: tuple[int, int, int],
    cfg: Any,
    defect: str | None,
    rng: np.random.Generator,
    stroke: int = 1,
) -> dict[str, Any]:
    """The simulator's hook: print the (AI, prefix) `lines` of `gs1` as the source configures
    (`stroke`: the solid font's line width in pixels, larger in a close-up)."""
    bad = defect if defect in PRINT_DEFECTS else None
    values = printed_values(gs1, bad, rng, cfg.print_date_format)
    return draw_lines(
        img,
        [(prefix, values[ai]) for ai, prefix in lines],
        org,
        pitch,
        scale,
        colour,
        cfg.print_font,
        bad,
        rng,
        stroke,
    )


def _text_mask(
    text: str, scale: float, size: tuple[int, int], org: tuple[int, int], stroke: int = 1
) -> np.ndarray:
    """Ink coverage 0..1 of one line drawn as cv2.putText would (anti-aliased)."""
    m = np.zeros(size, np.uint8)
    cv2.putText(m, text, org, _FONT, scale, 255, stroke, cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


#: The 5 x 7 dot font of a continuous inkjet printer (rows top to bottom, 1 = a dot), for
#: what a printed block may hold. A CIJ printer fires a column of drops per stroke from a
#: designed dot font; rasterising a vector font at 7 dots gave blobs no printer makes.
_FONT_5X7 = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 10001 11111 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ":": "00000 01100 01100 00000 01100 01100 00000",
}


@functools.lru_cache(maxsize=128)
def _glyph(c: str) -> np.ndarray:
    """A character's dot pattern, 7 rows by 5 columns (a space or unknown sign: no dots)."""
    rows = _FONT_5X7.get(c.upper(), "00000 " * 6 + "00000").split()
    return np.array([[b == "1" for b in r] for r in rows], bool)


def _dot_advances(text: str, scale: float) -> tuple[list[tuple[float, float]], float]:
    """x-span of each character of a dot-matrix line, and the dot pitch, in image pixels."""
    cap = cv2.getTextSize("0", _FONT, scale, 1)[0][1]
    pitch = cap / 7.0
    spans, x = [], 0.0
    for _ in text:
        w = 6 * pitch * _DOT_X  # 5 columns and one column of space
        spans.append((x, x + w))
        x += w
    return spans, pitch


def _dot_mask(
    text: str, scale: float, size: tuple[int, int], org: tuple[int, int], stroke: int = 1
) -> np.ndarray:
    """The same line as a continuous inkjet prints it: round dots, 7 per cap height."""
    h, w = size
    big = np.zeros((h * _UP, w * _UP), np.uint8)
    spans, pitch = _dot_advances(text, scale)
    r = max(1, round(0.4 * pitch * _UP))
    for c, (x0, _) in zip(text, spans, strict=True):
        g = _glyph(c)
        for y, x in zip(*np.nonzero(g), strict=True):
            px = (org[0] + x0 + (x + 0.5) * pitch * _DOT_X) * _UP
            py = (org[1] - 7 * pitch + (y + 0.5) * pitch) * _UP
            cv2.circle(big, (round(px), round(py)), r, 255, -1, cv2.LINE_AA)
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _char_span(text: str, k: int, scale: float, font: str, stroke: int = 1) -> tuple[int, int]:
    if font == "dotmatrix":
        a, b = _dot_advances(text, scale)[0][k]
        return int(a), int(math.ceil(b))
    x0 = cv2.getTextSize(text[:k], _FONT, scale, stroke)[0][0] if k else 0
    x1 = cv2.getTextSize(text[: k + 1], _FONT, scale, stroke)[0][0]
    return x0, x1


def _width(text: str, scale: float, font: str, stroke: int = 1) -> int:
    if font == "dotmatrix":
        return int(math.ceil(_dot_advances(text, scale)[0][-1][1]))
    return cv2.getTextSize(text, _FONT, scale, stroke)[0][0]


def draw_lines(
    img: np.ndarray,
    lines: list[tuple[str, str]],
    org: tuple[int, int],
    pitch: int,
    scale: float,
    colour: tuple[int, int, int],
    font: str = "solid",
    defect: str | None = None,
    rng: np.random.Generator | None = None,
    stroke: int = 1,
) -> dict[str, Any]:
    """Print `lines` ((prefix, value) each) on `img` from baseline `org`, one every `pitch` px.

    Returns what was printed and where a defect went, for the ground truth.
    """
    info: dict[str, Any] = {"font": font, "lines": [p + v for p, v in lines]}
    widest = max(_width(p + v, scale, font, stroke) for p, v in lines)
    th0 = cv2.getTextSize(lines[0][0] + lines[0][1], _FONT, scale, stroke)[0][1]
    info["box"] = [org[0], org[1] - th0 - 2, widest, pitch * (len(lines) - 1) + th0 + 6]
    if font == "solid" and defect not in PRINT_DEFECTS:
        for n, (p, v) in enumerate(lines):
            cv2.putText(
                img, p + v, (org[0], org[1] + pitch * n), _FONT, scale, colour, stroke, cv2.LINE_AA
            )
        return info
    assert rng is not None or defect not in PRINT_DEFECTS, "a print defect needs the item's rng"
    x0, y0 = org
    ink = np.array(colour, np.float32)
    if defect == "shifted_print" and rng is not None:
        dy = int(round(pitch * rng.uniform(0.9, 1.3)))
        dx = int(round(pitch * rng.uniform(-0.3, 0.3)))
        x0, y0 = x0 + dx, y0 + dy
        info["shift"] = [dx, dy]
    if defect == "low_contrast" and rng is not None:
        paper = float(np.median(img[max(0, y0 - pitch) : y0, x0 : x0 + 40]))
        ink = np.full(3, paper - rng.uniform(0.08, 0.18) * paper, np.float32)
        info["ink"] = round(float(ink[0]), 1)
    target = -1
    if defect in ("missing_char", "broken_char", "smear") and rng is not None:
        target = int(rng.integers(0, len(lines)))
    elif defect == "wrong_lot_print":
        target = next((n for n, (p, _) in enumerate(lines) if "10" in p or "LOT" in p), -1)
    elif defect == "wrong_expiry_print":
        target = next((n for n, (p, _) in enumerate(lines) if "17" in p or "EXP" in p), -1)
    h, w = img.shape[:2]
    for n, (p, v) in enumerate(lines):
        text = p + v
        base = y0 + pitch * n
        th = cv2.getTextSize(text, _FONT, scale, stroke)[0][1]
        top = max(0, base - th - 4 * stroke)
        bottom = min(h, base + 5 * stroke)
        right = min(w, x0 + _width(text, scale, font, stroke) + 4 * stroke)
        if bottom <= top or right <= max(0, x0):
            continue
        size = (bottom - top, right - max(0, x0))
        local = (x0 - max(0, x0), base - top)
        make = _dot_mask if font == "dotmatrix" else _text_mask
        a = make(text, scale, size, local, stroke)
        if n == target and rng is not None:
            info["field_line"] = n
            if defect in ("missing_char", "broken_char"):
                k = len(p) + int(rng.integers(0, len(v)))  # a character of the value
                c0, c1 = _char_span(text, k, scale, font, stroke)
                c0, c1 = c0 + local[0], c1 + local[0]
                if defect == "missing_char":
                    a[:, c0:c1] = 0.0
                else:  # keep a sliver: the character no longer reads as itself
                    keep = int(rng.integers(0, 2))
                    mid = (c0 + c1) // 2
                    a[:, c0:mid] = a[:, c0:mid] * keep
                    a[:, mid:c1] = a[:, mid:c1] * (1 - keep)
                    a[: size[0] // 2 + 1, c0:c1] = 0.0
                info["char"] = k
            elif defect == "smear":
                k = len(p) + int(rng.integers(0, max(1, len(v) - 2)))
                c0, _ = _char_span(text, k, scale, font, stroke)
                _, c1 = _char_span(text, min(len(text) - 1, k + 2), scale, font, stroke)
                smear = np.zeros(size, np.float32)
                cy = size[0] // 2 + int(rng.integers(-1, 2))
                cv2.ellipse(
                    smear,
                    ((c0 + c1) // 2 + local[0], cy),
                    (max(3, (c1 - c0) // 2 + 2 * stroke), max(2, size[0] // 3)),
                    float(rng.uniform(-15, 15)),
                    0,
                    360,
                    0.9,
                    -1,
                    cv2.LINE_AA,
                )
                a = np.maximum(a, cv2.GaussianBlur(smear, (0, 0), 1.2 * stroke))
                info["char"] = k
            else:
                info["printed"] = text
        roi = img[top:bottom, max(0, x0) : right].astype(np.float32)
        roi = roi * (1.0 - a[..., None]) + ink[None, None, :] * a[..., None]
        img[top:bottom, max(0, x0) : right] = np.clip(roi, 0, 255).astype(np.uint8)
    return info
