"""OCV tool: read the printed human-readable block and verify it against the code and batch.

EU FMD and DSCSA want the product identifier printed in human-readable form beside the
DataMatrix; a pack whose printed lot or expiry differs from its code is a recall. The tool
runs after the barcode tool and, per item:

1. **locates** the printed block from the decoded code's corners (`ctx.codes`):
   the block's place is fixed in the product's layout, given in code sides relative to the
   code (`block`), so one small affine warp cuts it out upright and at a fixed scale, even
   when the pack is turned. Without a decoded code, a recipe `region` (image pixels) is used,
   if configured. Only this block, never the frame, reaches the OCR;
2. **splits** it into text lines by the ink's row profile (no detection network), one line
   per configured field, in print order;
3. **measures** print quality per line (contrast, character height, position against the
   layout, ink blots, broken characters): PRINT_QUALITY when outside the product's limits;
4. **reads** the lines with the recognizer (`edge/inspect/ocr.py`), each line restricted to
   the characters its field may hold, and
5. **verifies** each line against what it must say: the prefix and the field's value from the
   decoded code, formatted as configured for the product (dates: `MM/YYYY`, `YYMMDD`, ...).
   The expected string is aligned to the network's output and each of its characters must
   be seen (`min_support`); see `_verify`.
   The barcode tool checks the code against the batch; with print = code here, the three
   agree. Without a decoded code the batch is the reference for GTIN, lot and expiry, and the
   serial cannot be verified (NO_READ, the code's own reason).

Every verdict on a field is explicit: a line that is missing, unread, or does not show its
expected characters rejects (OCV_NO_READ, OCV_MISMATCH, PRINT_QUALITY); there is no path on
which an unread field passes. Each finding carries `detail`: field, expected and read
strings, per-character support and confidence, the indexes of the characters that differ,
and the line's box in the image (the HMI draws it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from edge.domain import Finding, Reason, ToolResult
from edge.inspect.barcode import BadImage, to_grey
from edge.inspect.base import Services, Tool, ToolContext, ToolParams
from edge.inspect.ocr import LineRead, Recognizer, recognizer
from edge.inspect.ocv_fields import (
    BATCH_FIELDS,
    FIELD_AI,
    ExpectedCache,
    differing,
    squeeze,
)
from edge.inspect.params.ocv import OcvParams

#: characters shorter than the cap height: a line printing one is not judged by glyph height
_SHORT_GLYPHS = set("-.:")


@dataclass
class Line:
    """A text line found in the block (block pixels), with its print-quality measures."""

    y0: int
    y1: int
    x0: int
    x1: int
    contrast: float  # (paper - ink) / paper
    ink: float  # the largest ink share of a character-sized window along the line
    glyph: float  # the shortest glyph (connected ink) as a share of the line's height


@dataclass
class Reading:
    """The block's lines as found and read, before verification."""

    lines: list[Line]
    reads: list[LineRead]
    back: np.ndarray  # affine block -> image
    scale: float  # block pixels per code side (0: placed by a region, no layout)
    #: least support of each verified line's expected characters (set by `verify`)
    support: list[float] = field(default_factory=list)


class OcvTool(Tool):
    """Reads the human-readable block beside the code and verifies every printed field."""

    type_key: ClassVar[str] = "ocv"
    version: ClassVar[str] = "1.0"
    Params: ClassVar[type[ToolParams]] = OcvParams
    #: the worst line of the item, for SPC: fading ink or a drifting print head shows here
    #: before a character fails to read
    measures: ClassVar[dict[str, str]] = {
        "print_contrast_min": "ratio (paper - ink) / paper",
        "char_height_min": "code sides",
        "char_support_min": "probability 0-1",
    }

    def __init__(self, name: str, params: ToolParams, services: Services):
        super().__init__(name, params, services)
        p: OcvParams = params  # type: ignore[assignment]
        self.p = p
        self.specs = [f.spec() for f in p.fields]
        self.alphabets = [f.alphabet(p.alphabet) for f in p.fields]
        self.ocr: Recognizer = recognizer(
            p.engine, p.alphabet, p.threads, p.ocr_height, p.stretch, p.runs
        )
        self.cache = ExpectedCache()

    # ---------------------------------------------------------------- locate

    def _warp(
        self, grey: np.ndarray, ctx: ToolContext
    ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The block upright, the affine block -> image, px per code side (0: no layout)."""
        s = float(self.p.px_per_code)
        bx, by, bw, bh = self.p.block
        w, h = max(8, round(bw * s)), max(8, round(bh * s))
        corners = None
        for c in ctx.codes:
            if c.gs1 and c.corners is not None:
                corners = np.asarray(c.corners, np.float64)
                break
        if corners is not None:
            tl, tr, bl = corners[0], corners[1], corners[3]
            # zxing's corners are the symbol's outer module corners minus one module:
            # near enough, the layout tolerances absorb it
            u, v = tr - tl, bl - tl

            def at(a: float, b: float) -> np.ndarray:
                return tl + a * u + b * v

            src = np.float32([at(bx, by), at(bx + bw, by), at(bx, by + bh)])
        elif self.p.region is not None:
            x, y, rw, rh = self.p.region
            src = np.float32([[x, y], [x + rw, y], [x, y + rh]])
            w, h = rw, rh
            s = 0.0  # no layout to compare the position with
        else:
            return None
        dst = np.float32([[0, 0], [w, 0], [0, h]])
        m = cv2.getAffineTransform(src, dst)
        block = cv2.warpAffine(
            grey, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        return block, cv2.invertAffineTransform(m), s

    # ---------------------------------------------------------------- lines

    @staticmethod
    def _lines(block: np.ndarray, want: int, dots: bool = False) -> tuple[list[Line], float]:
        """Text lines by the ink's row profile; returns them and the paper level."""
        blur = cv2.GaussianBlur(block, (3, 3), 0)
        # ink = darker than its neighbourhood (black-hat), so that a dark area larger than a
        # character (the label's edge, the belt) is not taken for print
        k = max(5, (block.shape[0] // 16) | 1)
        hat = cv2.morphologyEx(blur, cv2.MORPH_BLACKHAT, np.ones((k, k), np.uint8))
        paper = float(np.percentile(blur, 75))
        t, ink = cv2.threshold(hat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if t < 12:  # nothing darker than the paper around it: no print at all
            return [], paper
        ink = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        rows = (ink > 0).sum(axis=1)
        on = rows > max(2, 0.02 * block.shape[1])
        bands: list[list[int]] = []
        for y, v in enumerate(on):
            if v:
                if bands and y - bands[-1][1] <= 2:
                    bands[-1][1] = y
                else:
                    bands.append([y, y])
        mass = [int(rows[a : b + 1].sum()) for a, b in bands]
        if not mass:
            return [], paper
        keep = [
            k for k, m in enumerate(mass) if m >= 0.15 * max(mass) and bands[k][1] > bands[k][0]
        ]
        if len(keep) > want:
            keep = sorted(sorted(keep, key=lambda k: -mass[k])[:want])
        out = []
        for k in keep:
            y0, y1 = bands[k]
            cols = np.flatnonzero((ink[y0 : y1 + 1] > 0).sum(axis=0))
            x0, x1 = int(cols[0]), int(cols[-1])
            band = blur[y0 : y1 + 1, x0 : x1 + 1]
            inked = ink[y0 : y1 + 1, x0 : x1 + 1] > 0
            if not inked.any() or inked.all():
                continue
            level = float(np.percentile(band[inked], 20))
            local = float(np.percentile(band[~inked], 60))
            # a blot is dark throughout (the black-hat only sees its rim): judge by grey level
            cols = (band < (local + level) / 2).mean(axis=0)
            cell = max(1, min(len(cols), round(0.8 * (y1 - y0 + 1))))
            ink_share = float(np.convolve(cols, np.ones(cell) / cell, mode="valid").max())
            out.append(
                Line(
                    y0,
                    y1,
                    x0,
                    x1,
                    (local - level) / max(local, 1.0),
                    ink_share,
                    OcvTool._shortest_glyph(inked, dots),
                )
            )
        return out, paper

    @staticmethod
    def _shortest_glyph(inked: np.ndarray, dots: bool = False) -> float:
        """Height of the shortest glyph over the line's: a broken character leaves a stub.

        Digits and capitals span the cap height; what remains of a character most of which
        did not print is a short fragment. Dots of an inkjet font are merged first: when
        most glyphs are short, or always for a product printed in dots (`dots`; in a sharp
        image most characters' dots touch, and one dot apart is no broken character).
        """
        h = inked.shape[0]
        m = inked.astype(np.uint8)
        for merge in (True,) if dots else (False, True):
            if merge:  # the gap between dots is a share of the line (7 dots high)
                k = 3 if not dots else max(3, round(h / 6))
                m = cv2.dilate(m, np.ones((k, k), np.uint8))
            n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            if n <= 1:
                return 0.0
            area = stats[1:, cv2.CC_STAT_AREA]
            heights = stats[1:, cv2.CC_STAT_HEIGHT]
            # a speck of noise is small every way; what is left of a broken character may
            # be thin (a third of a glyph's ink) but stands a quarter of the line high
            real = (area >= max(8.0, 0.2 * float(np.median(area)))) | (
                (heights >= 0.25 * h) & (area >= 8)
            )
            if not real.any():
                return 0.0
            if float(np.median(heights[real])) >= 0.6 * h:
                break
        return float(heights[real].min()) / h

    # ---------------------------------------------------------------- expected

    def _expected(self, ctx: ToolContext) -> tuple[dict[str, str | None], dict[str, str]]:
        """Expected value per field, and where it came from ('code' or 'batch')."""
        code = next((c.gs1 for c in ctx.codes if c.gs1), None)
        b = ctx.batch
        batch = {"gtin": b.gtin, "lot": b.lot, "expiry": b.expiry} if b else {}
        values: dict[str, str | None] = {}
        src: dict[str, str] = {}
        for spec in self.specs:
            v = code.get(FIELD_AI[spec.field]) if code else None
            if v is not None:
                values[spec.field], src[spec.field] = v, "code"
            elif spec.field in BATCH_FIELDS and batch.get(spec.field):
                values[spec.field], src[spec.field] = batch[spec.field], "batch"
            else:
                values[spec.field] = None
        return values, src

    # ---------------------------------------------------------------- inspect

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        try:
            grey = to_grey(image, 40_000_000)
        except BadImage as exc:
            return self.result(findings=[self.finding(Reason.IMAGE_ERROR.value, str(exc))])
        reading = self.read(grey, ctx)
        if isinstance(reading, Finding):
            return self.result(findings=[reading])
        r = self.result(findings=self.verify(reading, ctx))
        r.measurements = self.measured(reading)
        return r

    @staticmethod
    def measured(reading: Reading) -> dict[str, float]:
        """The item's print measures (names from `measures`): the worst line of each."""
        out = {"print_contrast_min": round(min(ln.contrast for ln in reading.lines), 4)}
        if reading.scale > 0:
            out["char_height_min"] = round(
                min(ln.y1 - ln.y0 + 1 for ln in reading.lines) / reading.scale, 4
            )
        if reading.support:
            out["char_support_min"] = round(min(reading.support), 4)
        return out

    def read(self, grey: np.ndarray, ctx: ToolContext) -> Reading | Finding:
        """Locate, split and read the block; a Finding when it cannot be (never a pass)."""
        placed = self._warp(grey, ctx)
        if placed is None:
            return self.finding(
                Reason.NO_READ.value,
                "no decoded code to locate the printed block from (and no region set)",
            )
        block, back, scale = placed
        lines, _ = self._lines(block, len(self.specs), self.p.dots)
        if len(lines) != len(self.specs):
            return self.finding(
                Reason.OCV_NO_READ.value,
                f"{len(lines)} printed line(s) found, {len(self.specs)} expected",
                bbox=self._box(back, (0, 0, block.shape[1], block.shape[0])),
            )
        crops = []
        for ln in lines:
            m = max(3, (ln.y1 - ln.y0) // 3)
            crop = block[max(0, ln.y0 - m) : ln.y1 + m + 1, max(0, ln.x0 - m) : ln.x1 + m + 1]
            # paper beside the first and last character: the recogniser's last steps must see
            # the end of a character (a final J or 5 was dropped with a 3-pixel margin)
            side = round(self.p.side_margin * (ln.y1 - ln.y0 + 1))
            if side > 0:
                crop = cv2.copyMakeBorder(crop, 0, 0, side, side, cv2.BORDER_REPLICATE)
            crops.append(crop)
        return Reading(lines, self.ocr.read_lines(crops, self.alphabets), back, scale)

    def verify(self, reading: Reading, ctx: ToolContext) -> list[Finding]:
        """Print quality of each line, then each line against what it must say."""
        lines, reads, back = reading.lines, reading.reads, reading.back
        findings = self._quality(lines, back, reading.scale)
        values, src = self._expected(ctx)
        b = ctx.batch
        bkey = (b.gtin, b.lot, b.expiry) if b else (None, None, None)
        for spec, ln, rd in zip(self.specs, lines, reads, strict=True):
            box = self._box(back, (ln.x0, ln.y0, ln.x1 - ln.x0 + 1, ln.y1 - ln.y0 + 1))
            value = values[spec.field]
            detail: dict[str, Any] = {
                "field": spec.field,
                "read": rd.text,
                "conf": [round(c, 3) for c in rd.conf],
                "box": list(box),
            }
            if value is None:
                findings.append(
                    self.finding(
                        Reason.NO_READ.value,
                        f"{spec.field}: no decoded code to verify the print against",
                        bbox=box,
                        detail=detail,
                    )
                )
                continue
            try:
                want = self.cache.line(spec, value, bkey)
            except ValueError as exc:  # e.g. a code whose expiry is no date: cannot verify
                findings.append(
                    self.finding(
                        Reason.OCV_MISMATCH.value, f"{spec.field}: {exc}", bbox=box, detail=detail
                    )
                )
                continue
            detail["expected"] = want
            detail["source"] = src[spec.field]
            f = self._verify(spec.field, want, rd, box, detail)
            if detail.get("support"):
                reading.support.append(min(detail["support"]))
            if f is not None:
                findings.append(f)
        return findings

    def _verify(
        self, field: str, want: str, rd: LineRead, box: tuple[int, int, int, int], detail: dict
    ) -> Finding | None:
        """Does the line show `want`? None if so, else the finding that says why not.

        With step probabilities (PP-OCR), the expected string is aligned to what the
        network saw and every character must reach `min_support`: a missing, wrong or
        smeared character scores about 0 there, while a clean print of the right text
        passes even where the greedy reading confuses look-alikes (8/B, 0/Q) of this font.
        Without them (tesseract), the reading must equal `want` at `min_char_conf`.
        """
        read = squeeze(rd.text)
        support = rd.support(want)
        if support is not None:
            detail["support"] = support
            weak = [i for i, v in enumerate(support) if v < self.p.min_support]
            if not weak and len(read) != len(squeeze(want)) and min(support) < self.p.count_support:
                # the network sees another number of characters and one of the expected is
                # barely there: what a broken or missing character looks like
                weak = [i for i, v in enumerate(support) if v < self.p.count_support]
            if not weak:
                return None
            detail["differs"] = sorted(set(weak) | set(differing(want, rd.text)))
            if not read:
                return self.finding(
                    Reason.OCV_NO_READ.value, f"{field}: nothing read", bbox=box, detail=detail
                )
            chars = ", ".join(f"{squeeze(want)[i]!r}@{i}" for i in weak[:4])
            return self.finding(
                Reason.OCV_MISMATCH.value,
                f"{field}: printed {rd.text!r}, expected {want!r} (not found: {chars})",
                score=min(support),
                bbox=box,
                detail=detail,
            )
        if not read:
            return self.finding(
                Reason.OCV_NO_READ.value, f"{field}: nothing read", bbox=box, detail=detail
            )
        if read != squeeze(want):
            detail["differs"] = differing(want, rd.text)
            return self.finding(
                Reason.OCV_MISMATCH.value,
                f"{field}: printed {rd.text!r}, expected {want!r}",
                score=rd.min_conf,
                bbox=box,
                detail=detail,
            )
        if rd.min_conf < self.p.min_char_conf:
            detail["differs"] = [i for i, c in enumerate(rd.conf) if c < self.p.min_char_conf]
            return self.finding(
                Reason.PRINT_QUALITY.value,
                f"{field}: character confidence {rd.min_conf:.2f} below {self.p.min_char_conf:.2f}",
                score=rd.min_conf,
                bbox=box,
                detail=detail,
            )
        return None

    def _quality(self, lines: list[Line], back: np.ndarray, s: float) -> list[Finding]:
        """Contrast, height and position of each line against the product's limits."""
        out = []
        lo, hi = self.p.char_height
        for n, (spec, ln) in enumerate(zip(self.specs, lines, strict=True)):
            box = self._box(back, (ln.x0, ln.y0, ln.x1 - ln.x0 + 1, ln.y1 - ln.y0 + 1))
            problems = []
            if ln.contrast < self.p.min_contrast:
                problems.append(f"contrast {ln.contrast:.2f} below {self.p.min_contrast:.2f}")
            if ln.ink > self.p.max_ink:
                problems.append(f"ink blot: {ln.ink:.2f} of a character cell inked")
            short_ok = set(spec.prefix + (spec.date_format or "")) & _SHORT_GLYPHS
            if ln.glyph < self.p.min_glyph and not short_ok:
                problems.append(f"broken character: a glyph {ln.glyph:.2f} of the line high")
            if s > 0:
                height = (ln.y1 - ln.y0 + 1) / s
                if not lo <= height <= hi:
                    problems.append(f"height {height:.3f} outside {lo:.3f}..{hi:.3f} code sides")
                by = self.p.block[1]
                cy = (ln.y0 + ln.y1) / 2 / s + by
                dy = cy - (self.p.first_line + n * self.p.line_pitch)
                dx = ln.x0 / s + self.p.block[0] - self.p.text_left
                if max(abs(dx), abs(dy)) > self.p.max_shift:
                    problems.append(f"print shifted by {dx:+.2f}, {dy:+.2f} code sides")
            if problems:
                out.append(
                    self.finding(
                        Reason.PRINT_QUALITY.value,
                        f"{spec.field}: " + "; ".join(problems),
                        value=ln.contrast,
                        bbox=box,
                        detail={"field": spec.field, "box": list(box)},
                    )
                )
        return out

    @staticmethod
    def _box(back: np.ndarray, r: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x, y, w, h = r
        pts = np.float64([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]]) @ back.T
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)
