"""The defect detector as an inspection tool: one approved INT8 model, checked before it runs.

At construction the tool opens the model with `edge.models.registry.open_model` (approved
status, SHA-256 of the file against its card) and loads it on the configured backend (input
shape); any failure raises, so the line refuses to start rather than run an unverified
model. Only services built for an evaluation that decides nothing
(`allow_unapproved_models`, set by the item-level evaluation, never by the line) let a
named candidate load. Every result names the model (name, version, SHA-256) that decided.
Raw detections go into `ctx.detections` for later tools (the barcode tool finds
codes there).

Lamp ageing: the model knows the brightness it was trained at. With `light_reference`
set, each frame is scaled so its 99th-percentile grey level meets that reference before
inference (a dimmer lamp would otherwise read as defects: at 65 % light the default
detector saw foreign tablets on good blisters). The gain is bounded by `max_gain`:
beyond it the frame is out of the range the model was validated for, and the tool
reports LIGHTING, a reject, rather than guess. The classic tools are unaffected.

A backend that is not ready (a TensorRT engine still being built at start) makes every
item a MODEL_ERROR reject, and `readiness()` says why for /readyz.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge.domain import Detection
from edge.inference.base import Backend, BackendError
from edge.inspect.base import Services, Tool, ToolContext, ToolParams
from edge.inspect.params.defects import DefectParams
from edge.models.cards import ModelError, operating_conf
from edge.models.registry import open_model

#: the smallest frame side the detector judges: below it no product can be in view
MIN_SIDE = 16


def compensate_light(image: np.ndarray, reference: float) -> tuple[np.ndarray, float]:
    """The frame scaled so its 99th-percentile grey level is `reference`; and the gain used.

    Measured on a 4x subsampled grey image (the percentile of a 640x480 frame costs
    ~1 ms in full; the subsample is within a grey level of it).
    """
    import cv2

    small = image[::4, ::4]
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    p99 = float(np.percentile(grey, 99))
    gain = reference / max(p99, 1.0)
    if abs(gain - 1.0) < 0.08:  # within nominal frame-to-frame spread: leave the frame alone
        return image, 1.0
    return cv2.convertScaleAbs(image, alpha=gain), gain


class DefectTool(Tool):
    type_key: ClassVar[str] = "defects"
    measures: ClassVar[dict[str, str]] = {"defect_score_max": "score 0-1"}
    version: ClassVar[str] = "2"  # 2: lamp-ageing compensation, LIGHTING
    Params: ClassVar[type[ToolParams]] = DefectParams

    def __init__(self, name: str, params: DefectParams, services: Services):
        super().__init__(name, params, services)
        try:
            opened = open_model(
                params.model,
                params.version,
                allow_unapproved=services.allow_unapproved_models,
                models_dir=services.models_dir or "models",
                precision=params.precision,
            )
        except ModelError as exc:
            raise ModelError(f"tool {name!r}: {exc}") from None
        card = opened.card
        self.card = card
        self.model_info = opened.info
        unknown = sorted(set(params.class_conf) | set(params.classes or []))
        unknown = [c for c in unknown if c not in card.classes]
        if unknown:
            raise ModelError(
                f"tool {name!r}: classes {unknown} are not in model {card.name} {card.version} "
                f"(it knows {card.classes})"
            )
        self.report = (
            set(params.classes) if params.classes is not None else (set(card.classes) - {"code"})
        )
        conf = params.conf if params.conf is not None else operating_conf(card)
        self.thresholds = np.array(
            [params.class_conf.get(c, conf) for c in card.classes], dtype=np.float32
        )
        try:
            # wait=False: an engine that must first be built (TensorRT, none cached) is
            # built in the background; meanwhile every item rejects as MODEL_ERROR
            self.backend: Backend = opened.load_detector(services.backend, wait=False)
        except BackendError as exc:
            raise ModelError(f"tool {name!r}: model {card.name} {card.version}: {exc}") from None

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): /readyz reports it for the line."""
        ready, detail = self.backend.readiness()
        name = f"{self.card.name} {self.card.version}"
        return ready, f"model {name}: {detail}"

    def inspect(self, image: np.ndarray, ctx: ToolContext) -> Any:
        ready, detail = self.readiness()
        if not ready:  # never a verdict from a model that is not loaded: reject, say why
            return self.result(
                findings=[self.finding("MODEL_ERROR", f"detector not ready: {detail}")],
                model=dict(self.model_info),
            )
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:  # letterboxed, it would find nothing: a silent pass
            raise ValueError(f"frame {w}x{h} is too small for the detector ({MIN_SIDE} px a side)")
        ref = self.params.light_reference
        if ref is not None:
            image, gain = compensate_light(image, ref)
            if gain > self.params.max_gain:
                return self.result(
                    findings=[
                        self.finding(
                            "LIGHTING",
                            f"frame needs gain {gain:.2f} (> {self.params.max_gain}): "
                            "lamp too dim for the detector",
                            value=gain,
                        )
                    ],
                    model=dict(self.model_info),
                )
        dets = self.backend.infer(image, conf=self.thresholds, iou=self.params.iou)
        ctx.detections.extend(Detection.of(d) for d in dets)
        findings = [
            self.finding(
                d["cls"].upper(),
                f"{d['cls']} {d['score']:.2f}",
                score=d["score"],
                bbox=tuple(d["bbox"]),
            )
            for d in dets
            if d["cls"] in self.report
        ]
        r = self.result(findings=findings, model=dict(self.model_info))
        r.measurements = {
            "defect_score_max": round(max((d["score"] for d in dets), default=0.0), 4)
        }
        return r

    def close(self) -> None:
        self.backend.close()
