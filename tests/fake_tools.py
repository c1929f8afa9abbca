"""Tools and a source for pipeline tests: real Tool subclasses with controllable behaviour."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from edge.capture.base import Source
from edge.domain import Frame
from edge.inspect.base import Tool, ToolParams


class BehaviourParams(ToolParams):
    impl: ClassVar[str] = "fake_tools:BehaviourTool"
    sleep_ms: float = 0.0
    raise_on: list[int] = []  # item seqs (1-based) on which the tool raises
    find: str | None = None  # finding code to report on every item
    find_when_mean_below: float | None = None  # report `find` only when the image is dark


class BehaviourTool(Tool):
    type_key = "behaviour"
    version = "test-1"
    Params = BehaviourParams
    measures = {"mean_grey": "grey level 0-255"}

    def inspect(self, image, ctx):
        p: BehaviourParams = self.params  # type: ignore[assignment]
        if p.sleep_ms:
            time.sleep(p.sleep_ms / 1000)
        if ctx.seq in p.raise_on:
            raise RuntimeError("sensor glitch")
        findings = []
        if p.find and (p.find_when_mean_below is None or image.mean() < p.find_when_mean_below):
            findings.append(self.finding(p.find, "seen"))
        r = self.result(findings)
        r.measurements = {"mean_grey": round(float(image.mean()), 2)}
        return r


class ListSource(Source):
    """Frames from a list of images (None = an unreadable frame), optionally paced."""

    def __init__(self, images, period_s: float = 0.0, paced: bool = True, first_count: int = 0):
        super().__init__(cfg=None)
        self.images = images
        self.first_count = first_count  # the encoder count of the first frame
        self.period_s = period_s
        self.paced = paced

    def frames(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, img in enumerate(self.images):
            if self.stopped:
                return
            if self.period_s:
                delay = t0 + i * self.period_s - time.monotonic()
                if delay > 0 and self.wait(delay):
                    return
            yield Frame(
                image=img,
                t_trigger=time.monotonic(),
                encoder=self.first_count + i * 800,
                source="list",
                name=f"img-{i}",
                error=None if img is not None else "unreadable",
            )


def grey(value: int = 128, shape=(48, 64, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)
