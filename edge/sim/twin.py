"""The line simulator (digital twin): items of a product with their ground truth.

Every frame is a pure function of (seed, item index): `render(i)` can be called in any
order and gives the same image and truth. The twin plans what item i carries (a defect,
a repeated serial, its code's data: cheap, no pixels), its product's scene draws it
(`edge.sim.scene`), and the stage gives it light and noise (`edge.sim.draw`); a single
core renders a few hundred frames a second.

Ground truth rides along with each frame (`Frame.truth`) for evaluation and training;
the inspection never reads it. Classes, reasons and severities come from `edge.taxonomy`.

Novel defects (`novel_rate`, classes no model was trained on) are drawn by
`edge.sim.novel` over a good item of the scene, with a random stream of their own: at
`novel_rate` 0 every image and truth is what it was before they existed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import cv2
import numpy as np

from edge import taxonomy
from edge.config import SimulatorSource
from edge.domain import BatchState
from edge.sim import gs1data
from edge.sim.draw import BASE_H, BASE_W, Stage, clip_box
from edge.sim.drift import drift_at, lighting
from edge.sim.novel import draw as draw_novel
from edge.sim.scene import scene_class
from edge.sim.timing import encoder_count, trigger_time
from edge.taxonomy import CODE_DEFECTS, DETECTOR_CLASSES, NOVEL_DEFECTS, PRINT_DEFECTS

DUPLICATE_MIN_GAP = 10
#: defects a camera above the item sees (on the cap), besides the side cameras
TOP_DEFECTS = frozenset(
    {"missing_cap", "cap_tilt", "dented_cap"}
)  # a duplicate repeats the serial of an item at least this many earlier


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
        self.default_serial_base = gs1data.serial_base(cfg.seed)
        self.serial_base = self.default_serial_base  # moved on by a SerialAllocator
        self._weights = self._check_weights(cfg.defect_weights)
        self._pools = self._defect_pools()
        scene = scene_class(cfg.scenario)
        self.stage = Stage(cfg.seed, scene.backlit)
        self.scene = scene(self.stage, cfg)

    # ------------------------------------------------------------------ plan (cheap, no pixels)

    @staticmethod
    def _check_weights(w: dict[str, float]) -> dict[str, float]:
        known = set(DETECTOR_CLASSES) | set(CODE_DEFECTS) | set(PRINT_DEFECTS) | set(NOVEL_DEFECTS)
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
        u -= self.cfg.print_defect_rate
        if 0 <= u < self.cfg.novel_rate:  # 0 by default: the draws above stay as they were
            return self._choose(rng, list(self._product.novel)), rng
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

    def seen_in(self, i: int, defect: str | None) -> list[int]:
        """The views (cameras around the axis) in which item i's defect shows: a defect at one
        place on the glass faces one camera; the code and its text face the first (and the
        label camera, `label_view`, which sees nothing else); fill and cap show all round."""
        n, label = self.cfg.views, self.cfg.label_view
        if defect is None or n == 1:
            return list(range(n))
        if defect in CODE_DEFECTS or defect in PRINT_DEFECTS:  # and the label camera's
            return [0] + ([label] if label is not None else [])
        # the label camera sees only the label; the top camera (the last view) only the cap
        top = n - 1 if self.cfg.top_view else None
        around = [k for k in range(n) if k not in (label, top)]
        if defect in taxonomy.LOCAL_DEFECTS:
            pick = np.random.default_rng([self.cfg.seed, i, 3]).integers(0, len(around))
            return [around[int(pick)]]
        if top is not None:  # from above only the cap shows; a dent in its top only there
            if defect == "dented_cap":
                return [top]
            if defect in TOP_DEFECTS:
                return [*around, top]
        return around

    # ------------------------------------------------------------------ render

    def render(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Item i: its BGR image at the configured size, and its ground truth."""
        defect, dup_of = self.plan(i)
        view, seen_in = self.cfg.view, self.seen_in(i, defect)
        closeup = view == self.cfg.label_view
        # the label camera reads the same code as the front one: the same stream for its data
        rng = np.random.default_rng(
            [self.cfg.seed, i, 2] + ([view] if view and not closeup else [])
        )
        light = lighting(self.cfg, i, rng)
        code_defect = defect if defect in CODE_DEFECTS else None
        gs1 = self._code_data(i, code_defect, dup_of, rng)
        canvas = self.stage.bg.copy()
        drift = drift_at(self.cfg.process_drift, i)
        self.scene.front = view == 0  # the code and text face the first camera
        shown = defect if view in seen_in else None
        top = self.cfg.top_view and view == self.cfg.views - 1
        novel = shown if shown in NOVEL_DEFECTS and not top else None
        if closeup:  # only what is on the label shows
            on_label = shown if shown in CODE_DEFECTS or shown in PRINT_DEFECTS else None
            drawn = self.scene.draw_label(canvas, on_label, gs1, rng, drift)
        elif top:
            drawn = self.scene.draw_top(canvas, shown, rng)
        else:
            drawn = self.scene.draw(canvas, None if novel else shown, gs1, rng, drift)
        if novel:  # over the good item, before light and noise; its own random stream
            nrng = np.random.default_rng([self.cfg.seed, i, 3])
            drawn.boxes[novel] = draw_novel(novel, self.scenario, canvas, drawn, nrng)
        img = self.stage.finish(canvas, rng, light)
        H, W = self.cfg.height, self.cfg.width
        sx, sy = W / BASE_W, H / BASE_H
        if (W, H) != (BASE_W, BASE_H):
            img = cv2.resize(
                img, (W, H), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
            )

        def scale(b: list[int]) -> list[int]:
            s = [round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)]
            return clip_box(s, W, H)

        defects = []
        if defect is not None:
            d = {"class": defect, "severity": taxonomy.severity(defect, self.scenario)}
            if shown is not None:
                d["bbox"] = scale(drawn.boxes[defect])
            defects.append(d)
        code = None
        if drawn.printed:
            code = {"text": gs1data.element_string(gs1), "gs1": dict(gs1)}
            if defect == "damaged_code":
                code["readable"] = False
        reasons = taxonomy.reasons(defect, self.scenario) if defect else []
        truth: dict[str, Any] = {
            "id": f"{self.scenario}-{self.cfg.seed}-{i:06d}",
            "scenario": self.scenario,
            "seed": self.cfg.seed,
            "index": i,
            "defects": defects,
            "code": code,
            "code_bbox": scale(drawn.code_box) if drawn.code_box is not None else None,
            "expected": "REJECT" if defects else "PASS",
            "reasons": reasons,
            "light": round(light, 4),
            "t": round(trigger_time(self.cfg, i), 4),
            "encoder": encoder_count(self.cfg, i, rng),
        }
        if self.cfg.process_drift:
            truth["drift"] = {k: round(v, 5) for k, v in drift.items()}
        if drawn.print_info is not None:
            truth["print"] = {k: v for k, v in drawn.print_info.items() if k != "box"}
        if self.cfg.views > 1:
            truth["view"], truth["views"] = view, self.cfg.views
            if self.cfg.top_view:
                truth["top_view"] = self.cfg.views - 1
            if defect is not None:
                truth["seen_in"] = seen_in
        if dup_of is not None:
            truth["duplicate_of"] = f"{self.scenario}-{self.cfg.seed}-{dup_of:06d}"
        return img, truth
