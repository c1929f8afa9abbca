"""One interface for every inference backend, and the lookup of backends by config `type`.

A backend loads one model file for a fixed square input size and turns a BGR image into
detections `[{cls, score, bbox [x, y, w, h]}]` in image pixels. Backends are imported
only when chosen: a backend whose library is missing (TensorRT on a CPU box) is reported
with a clear error when picked, and is never silently replaced by another model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge import plugins
from edge.inference import yolo
from edge.inference.config import BackendConfig, OnnxBackend

#: backend classes by config `type`, as each config class names its own (`impl`)
BACKENDS: dict[str, str] = plugins.table(BackendConfig)

Detection = dict[str, Any]  # {"cls": str, "score": float, "bbox": [x, y, w, h]}


class BackendError(RuntimeError):
    """A model that must not run: unreadable, wrong shape, wrong runtime. The line refuses it."""


class Backend:
    """Base class: subclasses implement `_load` and `run` (raw tensor in, raw output out)."""

    type_key: ClassVar[str] = ""

    def __init__(self, config: Any = None):
        self.config = config
        self.model_path: Path | None = None
        self.input_size = 0
        self.class_names: list[str] = []
        self.providers: list[str] = []
        self.wait_on_load = True
        self.boxes = "nms"  # how raw boxes become detections (yolo.BOX_RULES; the card's)

    # -- lifecycle
    def load(
        self,
        model_path: str | Path,
        input_size: int,
        class_names: list[str],
        *,
        wait: bool = True,
        boxes: str = "nms",
    ) -> Backend:
        """Load a model. `wait=False` lets a backend that must first prepare the model (a
        TensorRT engine build) return at once and do it in the background: `readiness()`
        then says what it is doing, and `run` raises until it is ready. `boxes`: the
        model's rule for its raw boxes (its card's `boxes`)."""
        p = Path(model_path)
        if not p.is_file():
            raise BackendError(f"model file not found: {p}")
        if not class_names:
            raise BackendError("a detector needs at least one class name")
        if boxes not in yolo.BOX_RULES:
            raise BackendError(f"unknown box rule {boxes!r} (known: {', '.join(yolo.BOX_RULES)})")
        self.boxes = boxes
        self.model_path, self.input_size, self.class_names = p, int(input_size), list(class_names)
        self.wait_on_load = wait
        self._load()
        return self

    def _load(self) -> None:
        raise NotImplementedError

    def readiness(self) -> tuple[bool, str]:
        """(ready to infer, what it is doing). Loaded backends are ready."""
        return self.model_path is not None, "loaded" if self.model_path else "not loaded"

    def close(self) -> None:
        """Release sessions and device memory."""

    # -- inference
    def run(self, tensor: np.ndarray) -> np.ndarray:
        """1x3xSxS float32 -> raw 1x(4+C)xN output."""
        raise NotImplementedError

    def infer(
        self,
        image: np.ndarray,
        conf: float | np.ndarray = 0.25,
        iou: float = 0.45,
        max_det: int = 100,
    ) -> list[Detection]:
        """BGR image -> detections in image pixels."""
        if self.model_path is None:
            raise BackendError("infer() before load()")
        tensor, lb = yolo.letterbox(image, self.input_size)
        out = self.run(tensor)
        return yolo.decode(
            out, lb, self.class_names, conf=conf, iou=iou, max_det=max_det, boxes=self.boxes
        )

    def describe(self) -> dict[str, Any]:
        return {"type": self.type_key, "model": str(self.model_path), "providers": self.providers}


def backend_class(type_key: str) -> type[Backend]:
    try:
        return plugins.load("inference backend", BACKENDS, type_key)
    except plugins.PluginError as exc:
        raise BackendError(str(exc)) from exc


def create_backend(config: BackendConfig | None = None) -> Backend:
    """A backend instance from its config (default: ONNX Runtime on the CPU, 2 threads)."""
    if config is None:
        config = OnnxBackend()
    return backend_class(config.type)(config)
