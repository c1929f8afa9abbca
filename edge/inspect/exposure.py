"""Exposure check: is this frame one the other tools can vouch for?

Brightness (mean grey), contrast (standard deviation) and clipped pixels (share at 0 or
255) of the frame, or of a region of it. A camera whose exposure, gain or lamp drifted, a
lens cap left on, a frame of noise: LIGHTING, a reject, instead of tools judging an image
outside what they were set up on. Product-independent, so it is also the first tool of a
recipe that commissions a new camera (the GigE Vision demo judges the fake camera's test
pattern with it).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.inspect.base import Tool, ToolContext, ToolResult
from edge.inspect.params.exposure import ExposureParams


class ExposureTool(Tool):
    type_key = "exposure"
    measures = {"mean_grey": "grey level 0-255", "grey_sd": "grey level", "clipped": "ratio"}
    version = "1.0"
    Params = ExposureParams

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> ToolResult:
        p: ExposureParams = self.params  # type: ignore[assignment]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
            return self.result([self.finding("IMAGE_ERROR", "not an 8-bit image")])
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if p.roi is not None:
            x, y, w, h = p.roi
            grey = grey[max(0, y) : y + h, max(0, x) : x + w]
            if grey.size == 0:
                return self.result(
                    [self.finding("IMAGE_ERROR", f"roi {p.roi} is outside the frame")]
                )
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(grey))
        clipped = float(np.count_nonzero((grey == 0) | (grey == 255))) / grey.size
        found = []
        if not p.min_brightness <= mean <= p.max_brightness:
            side = "dark" if mean < p.min_brightness else "bright"
            found.append(
                self.finding(
                    "LIGHTING",
                    f"too {side}: mean grey {mean:.1f} outside {p.min_brightness:g}..{p.max_brightness:g}",
                    value=mean,
                )
            )
        if std < p.min_contrast:
            found.append(
                self.finding("LIGHTING", f"contrast {std:.1f} < {p.min_contrast:g}", value=std)
            )
        if clipped > p.max_clipped:
            found.append(
                self.finding(
                    "LIGHTING",
                    f"{clipped:.1%} of pixels clipped (> {p.max_clipped:.1%})",
                    value=clipped,
                )
            )
        r = self.result(found)
        r.measurements = {
            "mean_grey": round(mean, 2),
            "grey_sd": round(std, 2),
            "clipped": round(clipped, 5),
        }
        return r
