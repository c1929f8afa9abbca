"""The simulator as a capture source: frames from the digital twin (`edge.sim`), paced.

The twin renders item i (image and ground truth); this source triggers items at
`rate_per_min` on an absolute schedule and hands each over as a Frame, the way a camera
source does. Serials continue across restarts when the app hands it a cursor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from edge.capture.base import Source
from edge.config import SimulatorSource
from edge.domain import BatchState, Frame
from edge.sim.serialisation import SerialAllocator, SerialCursor
from edge.sim.timing import period_s
from edge.sim.twin import LineSimulator


class SimulatorCapture(Source):
    """The simulator as a capture source, paced at rate_per_min on an absolute schedule."""

    def __init__(self, cfg: SimulatorSource, batch: BatchState | None = None):
        super().__init__(cfg)
        self.sim = LineSimulator(cfg, batch)
        self.batch = self.sim.batch
        self.paced = cfg.realtime
        self.serials: SerialAllocator | None = None
        self._next = 0  # the next item to render (a batch switch applies from there)

    def continue_serials(self, cursor: SerialCursor) -> None:
        """Print serials the state directory has not issued yet (see `edge.sim.serialisation`)."""
        self.serials = SerialAllocator(
            cursor, self.batch.gtin or "", self.sim.serial_base, self.cfg.items
        )
        self.sim.serial_base = self.serials.base

    def frames(self) -> Iterator[Frame]:
        period = period_s(self.cfg)
        t0 = time.monotonic()
        i = 0
        while not self.stopped and (self.cfg.items is None or i < self.cfg.items):
            if self.cfg.realtime:
                delay = t0 + i * period - time.monotonic()
                if delay > 0 and self.wait(delay):
                    break
            t_trigger = time.monotonic()  # the trigger fires, then the camera renders
            if self.serials is not None:
                self.serials.ensure(i)
            img, truth = self.sim.render(i)
            self._next = i + 1
            yield Frame(
                image=img,
                t_trigger=t_trigger,
                encoder=truth["encoder"],
                source="simulator",
                name=truth["id"],
                truth=truth,
            )
            i += 1

    def print_batch(self, batch: BatchState) -> None:
        """The line started a batch: the next items carry its GTIN, lot and expiry (a field
        the batch leaves empty keeps what was printed), serials of a new GTIN continue from
        that GTIN's cursor."""
        b = self.batch
        new = BatchState(
            lot=batch.lot or b.lot,
            gtin=batch.gtin or b.gtin,
            expiry=batch.expiry or b.expiry,
            id=batch.id,
        )
        if self.serials is not None and new.gtin != b.gtin:
            self.serials.switch(new.gtin or "", self._next, self.sim.default_serial_base)
            self.sim.serial_base = self.serials.base
        self.sim.batch = self.batch = new

    def set_exposure(
        self, exposure_us: float | None, gain: float | None = None, *, at_connect: bool = False
    ) -> dict[str, Any]:
        """A product's exposure and gain (changeover): the simulated camera refuses a value
        outside its range as a real one does, and renders the next items with the new light.
        Returns what the camera now runs (None: the nominal value)."""
        from edge.sim.camera import settings_problem

        problem = settings_problem(exposure_us, gain)
        if problem:
            raise ValueError(f"camera simulator: {problem}")
        self.cfg = self.cfg.model_copy(update={"exposure_us": exposure_us, "gain": gain})
        self.sim.cfg = self.cfg  # the next render reads the new light
        return {"exposure_us": exposure_us, "gain": gain}

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "type": "simulator",
            "scenario": c.scenario,
            "seed": c.seed,
            "rate_per_min": c.rate_per_min,
            "batch": {"gtin": self.batch.gtin, "lot": self.batch.lot, "expiry": self.batch.expiry},
        }
