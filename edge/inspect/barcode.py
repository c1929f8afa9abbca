"""Barcode tool: read every pack's code, interpret it as GS1, check it against the batch.

A pack passes only if its code was read, is valid GS1, matches the running batch, has a
serial never seen before, and scans at or above the recipe's minimum grade.

Reading (`CodeReader`):
  1. regions: crops around the defect model's `code` boxes first (fast on large frames,
     robust to clutter), then the recipe ROI or the whole image;
  2. fast pass: one zxing-cpp call per region, nothing else, so a good code costs what
     plain zxing-cpp costs;
  3. retry ladder, only when the fast pass found fewer codes than expected, each rung
     run only while the item's deadline leaves time for it (cost estimated from the
     fast pass on the same region): other binariser, sharpening, CLAHE, adaptive
     threshold, zbar for 1D symbols, upscaling, mirror. The rung that read a code is
     recorded in `CodeRead.rung`.

Text is taken from zxing-cpp with `TextMode.Plain`: ECI-transcoded, FNC1 separators kept
as GS (0x1D), no leading FNC1 (the symbology identifier `]d2`/`]C1`/`]Q3` says GS1).
The default `TextMode.HRI` would turn GS1 content into "(01)..." text, which is a
rendering, not the symbol's data. zbar reads carry no symbology identifier (pyzbar does
not expose it), so their content is never taken as GS1 element strings by guesswork.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
import zxingcpp

from edge.domain import CodeRead, Finding, Reason, ToolResult
from edge.inspect import gs1
from edge.inspect.base import LocatedCode, Services, Tool, ToolContext, ToolParams
from edge.inspect.grade import GradeTrend, scan_grade
from edge.inspect.params.barcode import ALL_RUNGS, DEFAULT_SYMBOLOGIES, BarcodeParams

#: Cost of each rung relative to the fast pass on the same region (measured on the
#: public corpus; used to skip a rung that would not finish before the deadline).
RUNG_COST = {
    "histogram": 1.0,
    "sharpen": 1.3,
    "clahe": 1.4,
    "adaptive": 1.4,
    "zbar": 1.6,
    "upscale": 4.5,
    "mirror": 1.1,
}
#: zxing-cpp format name -> pyzbar symbol name (zbar reads 1D codes only here).
_ZBAR_1D = {
    "EAN-13": "EAN13",
    "EAN-8": "EAN8",
    "UPC-A": "UPCA",
    "UPC-E": "UPCE",
    "Code 128": "CODE128",
    "Code 39": "CODE39",
    "Code 93": "CODE93",
    "ITF": "I25",
    "Codabar": "CODABAR",
    "DataBar": "DATABAR",
    "DataBar Expanded": "DATABAR_EXP",
}


# --------------------------------------------------------------------------- reading


@dataclass
class Decoded:
    """One symbol as a decoder gave it, with coordinates in the full image."""

    text: str  # Plain text mode: ECI-transcoded, GS (0x1D) kept, no leading FNC1
    raw: bytes  # the decoder's bytes (binary payloads compare on these)
    format: str  # zxing-cpp's format name, e.g. "Data Matrix"
    symbology_id: str  # e.g. "]d2"; "" where the decoder does not report it
    is_gs1: bool | None  # None: the decoder cannot say (zbar)
    corners: np.ndarray | None  # 4x2: top-left, top-right, bottom-right, bottom-left
    extra: dict[str, Any] = field(default_factory=dict)
    rung: str = "fast"
    decoder: str = "zxing-cpp"

    @property
    def key(self) -> tuple[str, bytes]:
        return (self.format, self.raw)

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        if self.corners is None:
            return None
        x0, y0 = np.floor(self.corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(self.corners.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)


Region = tuple[int, int, int, int]  # x, y, w, h
#: map points of a rung's image back to the region's own coordinates
PointMap = Callable[[np.ndarray], np.ndarray]


def _identity(p: np.ndarray) -> np.ndarray:
    return p


def _zx_corners(r: Any) -> np.ndarray:
    p = r.position
    return np.array(
        [
            [p.top_left.x, p.top_left.y],
            [p.top_right.x, p.top_right.y],
            [p.bottom_right.x, p.bottom_right.y],
            [p.bottom_left.x, p.bottom_left.y],
        ],
        dtype=np.float64,
    )


class CodeReader:
    """Fast pass plus a deadline-bounded retry ladder over a list of regions."""

    def __init__(
        self,
        symbologies: list[str] | None = None,
        *,
        try_rotate: bool = True,
        try_invert: bool = True,
        try_downscale: bool = True,
        try_mirrored: bool = True,
        ladder: bool = True,
        rungs: list[str] | None = None,
        second_decoder: bool = True,
        upscale_max_pixels: int = 250_000,
    ):
        names = symbologies or DEFAULT_SYMBOLOGIES
        self.formats = zxingcpp.barcode_formats_from_str(",".join(names))
        self.format_names = {str(f) for f in zxingcpp.barcode_formats_list(self.formats)} | {
            str(zxingcpp.barcode_format_from_str(n)) for n in names
        }
        self.try_rotate = try_rotate
        self.try_invert = try_invert
        self.try_downscale = try_downscale
        self.upscale_max_pixels = upscale_max_pixels
        chosen = list(rungs) if rungs is not None else list(ALL_RUNGS)
        self.zbar_symbols = self._zbar_symbols() if second_decoder else []
        if not ladder:
            chosen = []
        if not try_mirrored:
            chosen = [r for r in chosen if r != "mirror"]
        if not self.zbar_symbols:
            chosen = [r for r in chosen if r != "zbar"]
        self.rungs = chosen
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def _zbar_symbols(self) -> list[Any]:
        wanted = sorted({_ZBAR_1D[n] for n in self.format_names if n in _ZBAR_1D})
        if not wanted:
            return []
        try:
            from pyzbar import pyzbar
        except ImportError:  # libzbar missing: the ladder simply has no zbar rung
            return []
        return [pyzbar.ZBarSymbol[w] for w in wanted]

    # ---------------------------------------------------------------- decoders

    def _zxing(self, img: np.ndarray, **kw: Any) -> list[Any]:
        try:
            rs = zxingcpp.read_barcodes(
                img,
                formats=self.formats,
                try_rotate=self.try_rotate,
                try_downscale=self.try_downscale,
                try_invert=self.try_invert,
                text_mode=zxingcpp.TextMode.Plain,
                **kw,
            )
        except (ValueError, TypeError, RuntimeError):
            return []
        return [r for r in rs if r.valid and str(r.format) in self.format_names]

    def _from_zxing(self, r: Any, rung: str, to_region: PointMap, off: Region) -> Decoded:
        corners = to_region(_zx_corners(r)) + np.array([off[0], off[1]], dtype=np.float64)
        return Decoded(
            text=r.text,
            raw=bytes(r.bytes),
            format=str(r.format),
            symbology_id=r.symbology_identifier,
            is_gs1=r.content_type == zxingcpp.ContentType.GS1,
            corners=corners,
            extra=dict(r.extra or {}),
            rung=rung,
        )

    def _zbar(self, img: np.ndarray, off: Region) -> list[Decoded]:
        from pyzbar import pyzbar

        try:
            found = pyzbar.decode(img, symbols=self.zbar_symbols)
        except Exception:  # zbar on a malformed buffer: no read, never a crash
            return []
        out = []
        names = {v: k for k, v in _ZBAR_1D.items()}
        for z in found:
            fmt = names.get(z.type)
            if fmt is None or fmt not in self.format_names:
                continue
            left, top, w, h = z.rect
            if getattr(z, "orientation", None) in ("LEFT", "RIGHT"):
                pts = [[left, top], [left, top + h], [left + w, top + h], [left + w, top]]
            else:
                pts = [[left, top], [left + w, top], [left + w, top + h], [left, top + h]]
            corners = np.array(pts, np.float64) + np.array([off[0], off[1]], np.float64)
            try:
                text = z.data.decode("utf-8")
            except UnicodeDecodeError:
                text = z.data.decode("latin-1")
            out.append(
                Decoded(
                    text=text,
                    raw=bytes(z.data),
                    format=fmt,
                    symbology_id="",
                    is_gs1=None,
                    corners=corners,
                    rung="zbar",
                    decoder="zbar",
                )
            )
        return out

    # ---------------------------------------------------------------- rungs

    def _rung(self, name: str, img: np.ndarray, off: Region) -> list[Decoded]:
        if name == "histogram":
            rs = self._zxing(img, binarizer=zxingcpp.Binarizer.GlobalHistogram)
            return [self._from_zxing(r, name, _identity, off) for r in rs]
        if name == "zbar":
            return self._zbar(img, off)
        if name == "upscale":
            big = cv2.resize(img, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
            return [self._from_zxing(r, name, lambda p: p / 2.0, off) for r in self._zxing(big)]
        if name == "mirror":
            w = img.shape[1]
            flipped = cv2.flip(img, 1)

            def back(p: np.ndarray) -> np.ndarray:
                q = p.copy()
                q[:, 0] = (w - 1) - q[:, 0]
                return q[[1, 0, 3, 2]]  # mirrored: left and right corners swap

            return [self._from_zxing(r, name, back, off) for r in self._zxing(flipped)]
        if name == "sharpen":
            soft = cv2.GaussianBlur(img, (0, 0), 3)
            proc = cv2.addWeighted(img, 1.5, soft, -0.5, 0)
        elif name == "clahe":
            proc = self._clahe.apply(img)
        elif name == "adaptive":
            proc = cv2.adaptiveThreshold(
                img, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 31, 5
            )
        else:
            return []
        return [self._from_zxing(r, name, _identity, off) for r in self._zxing(proc)]

    # ---------------------------------------------------------------- driver

    def read(
        self,
        grey: np.ndarray,
        regions: list[Region] | None = None,
        *,
        expected: int = 1,
        deadline: float | None = None,
        reserve_s: float = 0.0,
    ) -> list[Decoded]:
        """Decode `grey` (uint8, 2D) region by region; stop once `expected` codes are read.

        `deadline` is a time.monotonic() value: a ladder rung starts only if its estimated
        cost still fits before `deadline - reserve_s`. The fast pass always runs.
        """
        h, w = grey.shape[:2]
        regions = regions or [(0, 0, w, h)]
        found: dict[tuple[str, bytes], Decoded] = {}
        fast_s: list[float] = []
        crops: list[tuple[np.ndarray, Region]] = []
        for reg in regions:
            x, y, rw, rh = reg
            crop = grey[y : y + rh, x : x + rw]
            if crop.size == 0:
                continue
            crops.append((crop, reg))
            t0 = time.perf_counter()
            for r in self._zxing(crop):
                d = self._from_zxing(r, "fast", _identity, reg)
                found.setdefault(d.key, d)
            fast_s.append(time.perf_counter() - t0)
            if len(found) >= expected:
                return list(found.values())
        for rung in self.rungs:
            for (crop, reg), t_fast in zip(crops, fast_s, strict=True):
                if rung == "upscale" and crop.size > self.upscale_max_pixels:
                    continue
                if deadline is not None:
                    left = deadline - reserve_s - time.monotonic()
                    if left < RUNG_COST[rung] * max(t_fast, 2e-4):
                        continue
                for d in self._rung(rung, crop, reg):
                    found.setdefault(d.key, d)
                if len(found) >= expected:
                    return list(found.values())
        return list(found.values())


# --------------------------------------------------------------------------- the tool


class BadImage(ValueError):
    pass


def to_grey(image: Any, max_pixels: int) -> np.ndarray:
    """A uint8 single-channel view of a camera frame, or BadImage saying why not."""
    if not isinstance(image, np.ndarray):
        raise BadImage(f"frame is {type(image).__name__}, not an image array")
    if image.ndim not in (2, 3) or image.size == 0 or min(image.shape[:2]) < 1:
        raise BadImage(f"frame has shape {image.shape}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise BadImage(f"frame {image.shape[1]}x{image.shape[0]} exceeds {max_pixels} pixels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImage(f"frame dtype {image.dtype} (expected uint8 or uint16)")
    if image.ndim == 3:
        ch = image.shape[2]
        if ch == 1:
            image = image[:, :, 0]
        elif ch == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif ch == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        else:
            raise BadImage(f"frame has {ch} channels")
    return np.ascontiguousarray(image)


class BarcodeTool(Tool):
    """Reads the pack's codes and rejects with one reason code per failed check."""

    type_key: ClassVar[str] = "barcode"
    version: ClassVar[str] = "1.0"
    measures: ClassVar[dict[str, str]] = {"scan_grade": "grade 0-4", "symbol_contrast": "ratio"}
    Params: ClassVar[type[ToolParams]] = BarcodeParams

    def __init__(self, name: str, params: ToolParams, services: Services):
        super().__init__(name, params, services)
        p: BarcodeParams = params  # type: ignore[assignment]
        self.p = p
        self.reader = CodeReader(
            p.symbologies,
            try_rotate=p.try_rotated,
            try_invert=p.try_inverted,
            try_mirrored=p.try_mirrored,
            ladder=p.retry_ladder,
            rungs=p.rungs,
            second_decoder=p.second_decoder,
        )
        self.trend: GradeTrend = services.grade_trend or GradeTrend()

    # ---------------------------------------------------------------- regions

    def _regions(self, shape: tuple[int, ...], ctx: ToolContext) -> list[Region]:
        h, w = shape[:2]
        base: Region = (0, 0, w, h)
        if self.p.roi is not None:
            x, y, rw, rh = self.p.roi
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(w, x + rw), min(h, y + rh)
            if x1 <= x0 or y1 <= y0:
                raise BadImage(f"ROI {self.p.roi} lies outside the {w}x{h} frame")
            base = (x0, y0, x1 - x0, y1 - y0)
        regions = []
        if self.p.use_detections:
            boxes = []
            for d in ctx.detections:
                bx, by, bw, bh = d.bbox
                if (
                    d.cls == self.p.detection_class
                    and d.score >= self.p.detection_min_score
                    and bw > 0
                    and bh > 0
                ):
                    boxes.append((d.score, bx, by, bw, bh))
            boxes.sort(reverse=True)
            for _, bx, by, bw, bh in boxes[: 2 * self.p.expected_count]:
                m = self.p.crop_margin * max(bw, bh) + 8
                x0, y0 = max(base[0], int(bx - m)), max(base[1], int(by - m))
                x1 = min(base[0] + base[2], int(math.ceil(bx + bw + m)))
                y1 = min(base[1] + base[3], int(math.ceil(by + bh + m)))
                if x1 - x0 >= 8 and y1 - y0 >= 8:
                    regions.append((x0, y0, x1 - x0, y1 - y0))
        regions.append(base)
        return regions

    # ---------------------------------------------------------------- inspect

    def read(self, grey: np.ndarray, ctx: ToolContext) -> list[Decoded]:
        """The decode path alone (what the corpus benchmark measures)."""
        return self.reader.read(
            grey,
            self._regions(grey.shape, ctx),
            expected=self.p.expected_count,
            deadline=ctx.deadline,
            reserve_s=self.p.reserve_ms / 1000.0,
        )

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        try:
            grey = to_grey(image, self.p.max_pixels)
            reads = self.read(grey, ctx)
        except BadImage as exc:
            return self.result(findings=[self.finding(Reason.IMAGE_ERROR.value, str(exc))])
        measured: dict[str, float] = {}
        findings, codes = self.check_reads(reads, ctx, grey, measured)
        r = self.result(findings=findings, codes=codes)
        r.measurements = measured
        return r

    def check_reads(
        self,
        reads: list[Decoded],
        ctx: ToolContext,
        grey: np.ndarray | None = None,
        measured: dict[str, float] | None = None,
    ) -> tuple[list[Finding], list[CodeRead]]:
        """Every check on what was read: count, grade, GS1 content, batch, serial.

        Separate from decoding so the GS1 path can be exercised (and fuzzed) on decoder
        output alone; `grey` is needed only for the scan grade. The reads (content and
        corners) are shared as `ctx.codes` for later tools.
        """
        findings: list[Finding] = []
        codes: list[CodeRead] = []
        gs1_codes: list[tuple[CodeRead, gs1.GS1Data]] = []
        for d in reads:
            code = CodeRead(
                text=d.text,
                symbology=d.format,
                symbology_id=d.symbology_id,
                rung=d.rung,
                bbox=d.bbox,
            )
            codes.append(code)
            if grey is not None:
                self._grade(grey, d, code, ctx, findings, measured)
            data = self._interpret(d)
            if data is not None:
                code.gs1 = dict(data.ais)
                gs1_codes.append((code, data))
        if len(reads) < self.p.expected_count:
            findings.append(
                self.finding(
                    Reason.NO_READ.value, f"{len(reads)} of {self.p.expected_count} code(s) read"
                )
            )
        if self.p.required_ais or gs1_codes:
            findings.extend(self._check_gs1(reads, gs1_codes, ctx))
        # later tools (the printed-text check) locate their regions from the codes read
        for d, code in zip(reads, codes, strict=True):
            ctx.codes.append(LocatedCode(code.gs1, d.corners, d.bbox))
        return findings, codes

    @staticmethod
    def _interpret(d: Decoded) -> gs1.GS1Data | None:
        """GS1 content of a read, or None for a code that is not meant to be GS1."""
        if d.format in gs1.RETAIL_FORMATS:
            return gs1.interpret_retail(d.text)
        if d.is_gs1:
            return gs1.interpret(d.text, is_gs1=True)
        return None

    def _grade(
        self,
        grey: np.ndarray,
        d: Decoded,
        code: CodeRead,
        ctx: ToolContext,
        findings: list[Finding],
        measured: dict[str, float] | None = None,
    ) -> None:
        if d.corners is None:
            return
        g = scan_grade(grey, d.corners, d.format, d.extra)
        if g is None:
            return
        code.grade = g.overall
        if measured is not None:  # the worst code of the item sets the item's values
            measured["scan_grade"] = min(g.overall, measured.get("scan_grade", 4.0))
            if "SC" in g.params:
                sc = round(float(g.params["SC"][0]), 4)
                measured["symbol_contrast"] = min(sc, measured.get("symbol_contrast", 1.0))
        batch = ctx.batch.id or ctx.batch.lot if ctx.batch else None
        self.trend.add(batch or "-", g.overall)
        if g.overall < self.p.min_grade:
            findings.append(
                self.finding(
                    Reason.LOW_GRADE.value,
                    f"scan grade {g.describe()} below {self.p.min_grade:.1f}",
                    value=g.overall,
                    bbox=code.bbox,
                )
            )

    def _check_gs1(
        self,
        reads: list[Decoded],
        gs1_codes: list[tuple[CodeRead, gs1.GS1Data]],
        ctx: ToolContext,
    ) -> list[Finding]:
        out: list[Finding] = []
        if not gs1_codes:
            if reads:
                shown = ", ".join(f"{d.format} {d.symbology_id or '(no id)'}" for d in reads)
                out.append(self.finding(Reason.NOT_GS1.value, f"no GS1 code among: {shown}"))
            return out
        batch = ctx.batch if self.p.check_batch else None
        today = None
        if self.p.check_expiry:  # the plant's local date at the trigger (wall clock if unset)
            today = dt.datetime.fromtimestamp(ctx.now or time.time()).date()
        union: dict[str, str] = {}
        complete = True
        seen: set[tuple[str, str]] = set()
        for code, data in gs1_codes:
            union.update(data.ais)
            complete = complete and data.complete
            problems = gs1.check(
                data,
                required_ais=(),
                gtin=batch.gtin if batch else None,
                lot=batch.lot if batch else None,
                expiry=batch.expiry if batch else None,
                today=today,
            )
            for pr in problems:
                key = (pr.reason.value, pr.message)
                if key not in seen:
                    seen.add(key)
                    out.append(self.finding(pr.reason.value, pr.message, bbox=code.bbox))
        missing = [ai for ai in self.p.required_ais if ai not in union]
        if missing and complete:
            out.append(self.finding(Reason.MISSING_AI.value, "missing AI " + ", ".join(missing)))
        if not out and self.p.check_serial:
            out.extend(self._claim_serials(gs1_codes, ctx))
        return out

    def _claim_serials(
        self, gs1_codes: list[tuple[CodeRead, gs1.GS1Data]], ctx: ToolContext
    ) -> list[Finding]:
        """Claim each valid (GTIN, serial) once the code passed every other check.

        A pack whose code failed is rejected anyway; its serial is not evidence of a pack
        released, so it is not claimed.
        """
        registry = self.services.serials
        if registry is None:
            return []
        out = []
        claimed: set[tuple[str, str]] = set()
        for code, data in gs1_codes:
            gtin, serial = data.ais.get("01"), data.ais.get("21")
            if not gtin or not serial or (gtin, serial) in claimed:
                continue
            claimed.add((gtin, serial))
            batch = (ctx.batch.id or ctx.batch.lot) if ctx.batch else None
            holder = registry.claim(gtin, serial, batch, ctx.item_id)
            if holder is not None:
                out.append(
                    self.finding(
                        Reason.DUPLICATE_SERIAL.value,
                        f"serial {serial} of GTIN {gtin} already on item {holder}",
                        bbox=code.bbox,
                    )
                )
        return out
