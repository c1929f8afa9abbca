"""Good-only anomaly check as an inspection tool: ANOMALY where a region looks unlike good units.

The model (edge.anomaly) is opened with `edge.models.registry.open_model` at construction:
approved status (a named candidate only for services built for an evaluation,
`allow_unapproved_models`), task `anomaly`, the SHA-256 of the feature file and of the
memory against the card; any failure raises, so the line refuses to start with a broken or
unapproved model.
The regions are the model's fitted ROI, named rectangles of the recipe (each the
fitted ROI's size: the model knows one view of the product; a rectangle outside the
image the model was fitted on is a config error), or the boxes of one class located by
an earlier tool (`regions_from`, e.g. each blister pocket the detector found; the model
is then fitted on crops of that region).

Each region's score is the maximum of its smoothed heat map; above the threshold (the
card's, set from good images at a stated false-reject rate, or the recipe's override)
it is an ANOMALY finding with the score, the region's name and the box of the hottest
area. The finding carries the region's heat map (`edge.anomaly.evidence`: recorded with
the reject, drawn over the frame on the HMI); every region's map goes to
`ctx.anomaly_maps`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge.domain import Finding, Reason
from edge.inspect.base import AnomalyMap, Services, Tool, ToolContext, ToolParams
from edge.inspect.params.anomaly import AnomalyParams, Rect
from edge.models.cards import ModelError


class AnomalyTool(Tool):
    type_key: ClassVar[str] = "anomaly"
    measures: ClassVar[dict[str, str]] = {"anomaly_score_max": "score (threshold-relative)"}
    version: ClassVar[str] = "1"
    Params: ClassVar[type[ToolParams]] = AnomalyParams

    def __init__(self, name: str, params: AnomalyParams, services: Services):
        super().__init__(name, params, services)
        from edge.anomaly.model import AnomalyModel

        backend = services.backend
        threads = int(getattr(backend, "threads", 1) or 1)
        try:
            self.model = AnomalyModel(
                services.models_dir or "models",
                params.model,
                params.version,
                params.precision,
                allow_unapproved=services.allow_unapproved_models,
                threads=threads,
            )
        except ModelError as exc:
            raise ModelError(f"tool {name!r}: {exc}") from None
        spec = self.model.spec
        iw, ih = spec.image_size
        fitted = spec.roi or (0, 0, iw, ih)
        self.regions: dict[str, Rect] = dict(params.regions) or {"roi": tuple(fitted)}
        for rname, (x, y, w, h) in self.regions.items():
            if x + w > iw or y + h > ih:
                raise ModelError(
                    f"tool {name!r}: region {rname!r} {[x, y, w, h]} lies outside the "
                    f"{iw}x{ih} image the model was fitted on"
                )
            if (w, h) != (fitted[2], fitted[3]):
                raise ModelError(
                    f"tool {name!r}: region {rname!r} is {w}x{h}, the model was fitted on "
                    f"{fitted[2]}x{fitted[3]} regions"
                )
        self.threshold = float(params.threshold or spec.threshold)
        if params.regions_from and params.regions:
            raise ModelError(f"tool {name!r}: give either `regions` or `regions_from`, not both")

    def _located(self, image: np.ndarray, ctx: ToolContext) -> dict[str, Rect]:
        """Boxes of the `regions_from` class found by earlier tools, clipped to the image."""
        ih, iw = image.shape[:2]
        out: dict[str, Rect] = {}
        for d in ctx.detections:
            if d.cls != self.params.regions_from:
                continue
            x, y, w, h = (int(round(v)) for v in d.bbox)
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(iw, x + w), min(ih, y + h)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                out[f"{self.params.regions_from}{len(out)}"] = (x0, y0, x1 - x0, y1 - y0)
        return out

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> Any:
        from edge.anomaly.evidence import encode
        from edge.anomaly.model import crop, hottest_box

        findings: list[Finding] = []
        maps: list[AnomalyMap] = []
        if self.params.regions_from:
            regions = self._located(image, ctx)
            if len(regions) < self.params.min_regions:
                findings.append(
                    self.finding(
                        Reason.ANOMALY.value,
                        f"{len(regions)} {self.params.regions_from} region(s) located, "
                        f"{self.params.min_regions} expected",
                    )
                )
        else:
            self.model.check_image(image)
            regions = self.regions
        for rname, rect in regions.items():
            heat = self.model.scorer.heat(crop(image, rect))
            if self.params.ignore_codes is not None:
                heat = cool_codes(heat, rect, ctx.codes, self.params.ignore_codes)
            score = float(heat.max())
            maps.append(AnomalyMap(self.name, rname, rect, heat, float(score)))
            if score > self.threshold:
                bx, by, bw, bh = hottest_box(heat, self.threshold, (rect[2], rect[3]))
                box = (rect[0] + bx, rect[1] + by, bw, bh)
                findings.append(
                    self.finding(
                        Reason.ANOMALY.value,
                        f"{rname}: anomaly score {score:.3f} > {self.threshold:.3f}",
                        score=score,
                        value=self.threshold,
                        bbox=box,
                        # the heat map, kept with the reject and drawn over its frame
                        detail={"region": rname, "heat": encode(heat, self.threshold, rect, box)},
                    )
                )
        ctx.anomaly_maps.extend(maps)
        r = self.result(findings=findings, model=dict(self.model.info))
        if maps:  # the worst region, as a share of the threshold: comparable across models
            worst = max(m.score for m in maps)
            r.measurements = {"anomaly_score_max": round(float(worst) / self.threshold, 4)}
        return r

    def close(self) -> None:
        self.model.close()


def cool_codes(heat: np.ndarray, rect: Rect, codes: list[Any], grow: float) -> np.ndarray:
    """The heat map with the patches over each decoded code (grown by `grow` of its size)
    set to the map's coldest value, as the unscored margin is: kept in shape for the
    evidence, never the region's maximum."""
    gh, gw = heat.shape
    x0, y0, w, h = rect
    cold = np.zeros(heat.shape, bool)
    for c in codes:
        if getattr(c, "bbox", None) is None:
            continue
        bx, by, bw, bh = c.bbox
        px, py = grow * bw, grow * bh
        c0 = int(np.floor((bx - px - x0) * gw / w))
        c1 = int(np.ceil((bx + bw + px - x0) * gw / w))
        r0 = int(np.floor((by - py - y0) * gh / h))
        r1 = int(np.ceil((by + bh + py - y0) * gh / h))
        cold[max(0, r0) : max(0, min(gh, r1)), max(0, c0) : max(0, min(gw, c1))] = True
    if not cold.any() or cold.all():
        return heat
    out = heat.copy()
    out[cold] = float(heat[~cold].min())
    return out
