"""A product scene: how one product looks on the line, drawn with one of its defects.

A scene pre-renders its sprites once (`__init__`) and then draws item after item onto a
copy of the stage's background (`draw`), saying where each class went so the twin can
write the ground truth. Everything it varies comes from the item's `rng`, so an item
stays a pure function of (seed, index).

A new product: its defects in `edge.taxonomy.PRODUCTS` (and its name in
`edge.config.Scenario`), a module here with a `Scene` subclass, and one line in `SCENES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edge.config import SimulatorSource
from edge.sim.draw import Stage

#: product (a simulator scenario) -> "module:Scene class", imported when first used
SCENES: dict[str, str] = {
    "vials": "edge.sim.vials:VialScene",
    "blisters": "edge.sim.blisters:BlisterScene",
    "cartons": "edge.sim.cartons:CartonScene",
}


@dataclass
class Drawn:
    """Where a drawn item's parts went, in base-frame pixels ([x, y, w, h] each)."""

    #: a box per class that could be shown on this item (the twin keeps the drawn defect's)
    boxes: dict[str, list[int]]
    #: the code symbol's box; None when no code was printed
    code_box: list[int] | None
    #: the code and its human-readable lines are on the item
    printed: bool
    #: what the printer printed (`edge.sim.printing.draw_lines`), when it printed
    print_info: dict[str, Any] | None = None


class Scene:
    """One product's look. Subclasses set `backlit` and implement `draw`."""

    #: seen against a diffuse backlight panel (glass) rather than on a dark belt
    backlit: ClassVar[bool] = False

    def __init__(self, stage: Stage, cfg: SimulatorSource):
        self.stage = stage
        self.cfg = cfg
        #: the camera faces the item's code and printed text (several views: the first only)
        self.front = True

    def draw(
        self,
        canvas: np.ndarray,
        defect: str | None,
        gs1: dict[str, str],
        rng: np.random.Generator,
        drift: dict[str, float],
    ) -> Drawn:
        """Draw one item (with `defect`, its code carrying `gs1`) onto `canvas`, in place."""
        raise NotImplementedError

    def draw_label(
        self,
        canvas: np.ndarray,
        defect: str | None,
        gs1: dict[str, str],
        rng: np.random.Generator,
        drift: dict[str, float],
    ) -> Drawn:
        """The label camera's close-up of the code and its printed text (`label_view`)."""
        raise ValueError(f"the {type(self).__name__} has no label camera")

    def draw_top(self, canvas: np.ndarray, defect: str | None, rng: np.random.Generator) -> Drawn:
        """The item seen from above (a camera over the line looking down on its cap)."""
        raise ValueError(f"the simulator has no top view of {type(self).__name__}")


def scene_class(name: str) -> type[Scene]:
    """The scene of product `name`, or a clear error naming the known ones."""
    try:
        module, cls = SCENES[name].split(":")
    except KeyError:
        raise ValueError(f"no simulator scene for {name!r} (known: {sorted(SCENES)})") from None
    return getattr(importlib.import_module(module), cls)
