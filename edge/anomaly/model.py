"""An approved anomaly model on the line: feature file + memory + threshold, checked first.

Registry layout (the detector's, plus the memory):

    models/<name>/<version>/model.onnx        FP32 feature extractor (the reference)
    models/<name>/<version>/model.int8.onnx   INT8 Q/DQ feature extractor (what the line runs)
    models/<name>/<version>/memory.npy        the coreset of good patch features
    models/<name>/<version>/card.yaml         task: anomaly; `anomaly:` section below

The card's `anomaly` section holds what scoring needs (input size, ROI, smoothing,
threshold) and what QA needs to know (backbone and licence, the good images' manifest
SHA-256, the threshold method and its target false-reject rate).

Scoring: the distance of each patch to its nearest good patch is the heat map; the
region's score is the maximum of that map after a small Gaussian smoothing (one hot
patch of noise does not decide, a defect a few patches wide does). The outer `margin`
patches of the grid are not scored: their receptive field hangs over the region's edge
(zero padding, objects cut by the frame), and on VisA capsules they held the highest
score of most of the good photos that scored highest (image AUROC 0.952 -> 0.975 with a
one-patch margin, fit on 20; bench/anomaly.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.anomaly.features import FeatureExtractor
from edge.anomaly.memory import MemoryIndex
from edge.inference.base import BackendError
from edge.models.cards import FP32, INT8, ModelCard, ModelError
from edge.models.registry import Precision, Roots, open_model

MEMORY = "memory.npy"
TASK = "anomaly"


class AnomalySpec(BaseModel):
    """The card's `anomaly` section."""

    model_config = ConfigDict(extra="allow")

    input_hw: tuple[int, int] = Field(..., description="feature model input (height, width)")
    grid: tuple[int, int] = Field(..., description="patch grid (rows, cols)")
    layers: list[int]
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x, y, w, h in image pixels the model was fitted on (None: whole image)"
    )
    image_size: tuple[int, int] = Field(..., description="width, height of the good images")
    sigma: float = Field(1.0, ge=0, description="Gaussian smoothing of the map, in patches")
    knn: int = Field(1, ge=1)
    margin: int = Field(
        0,
        ge=0,
        description="outer patches of the grid not scored (their field hangs over the edge)",
    )
    pool: int = Field(3, ge=1, description="local averaging of the features, in patches")
    preprocess: Literal["area", "linear"] = Field(
        "area", description="how a region becomes the input (features.PREPROCESS)"
    )
    threshold: float = Field(..., gt=0)
    threshold_method: str = ""
    target_frr: float = 0.01
    backbone: str = ""
    backbone_licence: str = ""


def spec_of(card: ModelCard) -> AnomalySpec:
    if card.task != TASK:
        raise ModelError(f"{card.name} {card.version} is a {card.task!r} model, not {TASK!r}")
    raw = getattr(card, "anomaly", None) or (card.model_extra or {}).get("anomaly")
    if not raw:
        raise ModelError(f"{card.name} {card.version}: the card has no `anomaly` section")
    try:
        return AnomalySpec.model_validate(raw)
    except Exception as exc:
        raise ModelError(f"{card.name} {card.version}: bad `anomaly` section: {exc}") from None


def crop(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """The region (x, y, w, h) of an image; a region outside the image is an error."""
    if roi is None:
        return image
    x, y, w, h = (int(v) for v in roi)
    ih, iw = image.shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > iw or y + h > ih:
        raise ValueError(f"region {[x, y, w, h]} lies outside the {iw}x{ih} image")
    return image[y : y + h, x : x + w]


def score_map(
    distances: np.ndarray, grid: tuple[int, int], sigma: float, margin: int = 0
) -> np.ndarray:
    """Patch distances -> the heat map: smoothed, the unscored margin set to the inner minimum.

    The margin is set cold rather than cut off so that the map keeps the grid's shape
    (evidence overlays, pixel maps) and its maximum is the region's score.
    """
    m = np.asarray(distances, dtype=np.float32).reshape(grid)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if margin > 0:
        inner = m[margin:-margin, margin:-margin]
        if inner.size == 0:
            raise ValueError(f"margin {margin} leaves nothing of a {grid[0]}x{grid[1]} grid")
        m = np.full_like(m, float(inner.min()))
        m[margin:-margin, margin:-margin] = inner
    return m


class Scorer:
    """Feature file + memory: region -> (score, heat map on the patch grid)."""

    def __init__(
        self,
        features_path: str | Path,
        memory: np.ndarray,
        sigma: float = 1.0,
        knn: int = 1,
        threads: int = 1,
        margin: int = 0,
        preprocess: str = "area",
    ):
        self.extractor = FeatureExtractor(features_path, threads=threads, preprocess=preprocess)
        if memory.ndim != 2 or memory.shape[1] != self.extractor.dim:
            raise ModelError(
                f"memory of shape {memory.shape} does not fit features of dim {self.extractor.dim}"
            )
        self.index = MemoryIndex(memory, threads=threads)
        gh, gw = self.extractor.grid
        if 2 * int(margin) >= min(gh, gw):
            raise ModelError(f"margin {margin} leaves nothing of the {gh}x{gw} patch grid")
        self.sigma, self.knn, self.margin = float(sigma), int(knn), int(margin)

    @classmethod
    def for_spec(
        cls, features_path: str | Path, memory: np.ndarray, spec: AnomalySpec, threads: int = 1
    ) -> Scorer:
        return cls(
            features_path, memory, spec.sigma, spec.knn, threads, spec.margin, spec.preprocess
        )

    def heat(self, region: np.ndarray) -> np.ndarray:
        """Smoothed distance map on the patch grid (rows x cols), float32."""
        d = self.index.distances(self.extractor.run(region), self.knn)
        return score_map(d, self.extractor.grid, self.sigma, self.margin)

    def score(self, region: np.ndarray) -> tuple[float, np.ndarray]:
        m = self.heat(region)
        return float(m.max()), m

    def close(self) -> None:
        self.extractor.close()


def hottest_box(
    heat: np.ndarray, level: float, region_wh: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h, region pixels) of the connected hot area around the peak.

    The area is the patches at or above `level` connected to the hottest patch (at least
    that patch itself).
    """
    gh, gw = heat.shape
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    hot = (heat >= min(level, float(heat[peak]))).astype(np.uint8)
    _, labels = cv2.connectedComponents(hot, connectivity=8)
    ys, xs = np.nonzero(labels == labels[peak])
    sx, sy = region_wh[0] / gw, region_wh[1] / gh
    x0, y0 = int(xs.min() * sx), int(ys.min() * sy)
    x1, y1 = int(np.ceil((xs.max() + 1) * sx)), int(np.ceil((ys.max() + 1) * sy))
    return x0, y0, x1 - x0, y1 - y0


class AnomalyModel:
    """An anomaly model opened from the registry (`open_model`), its memory checked too."""

    def __init__(
        self,
        models_dir: Roots,
        name: str,
        version: str | None = None,
        precision: Precision = "int8",
        allow_unapproved: bool = False,
        threads: int = 1,
    ):
        opened = open_model(
            name,
            version,
            allow_unapproved=allow_unapproved,
            models_dir=models_dir,
            precision=precision,
            with_files=(MEMORY,),
            task=TASK,
        )
        card, path = opened.card, opened.path
        self.spec = spec_of(card)
        try:
            memory = np.load(opened.file(MEMORY), allow_pickle=False)
        except Exception as exc:
            raise ModelError(
                f"model {card.name} {card.version}: unreadable memory: {exc}"
            ) from None
        try:
            self.scorer = Scorer.for_spec(path, memory, self.spec, threads)
        except BackendError as exc:
            raise ModelError(f"model {card.name} {card.version}: {exc}") from None
        if list(self.scorer.extractor.grid) != list(self.spec.grid):
            raise ModelError(
                f"model {card.name} {card.version}: feature grid {self.scorer.extractor.grid} "
                f"does not match the card's {self.spec.grid}"
            )
        self.card = card
        self.info = opened.info

    def check_image(self, image: np.ndarray) -> None:
        w, h = self.spec.image_size
        if image.shape[1] != w or image.shape[0] != h:
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, the model was fitted on {w}x{h}"
            )

    def close(self) -> None:
        self.scorer.close()


def files_of(model_dir: str | Path) -> list[str]:
    """Files an anomaly version must hold (for approval and verification)."""
    return [FP32, INT8, MEMORY]


def describe(card: ModelCard) -> dict[str, Any]:
    s = spec_of(card)
    return {"threshold": s.threshold, "roi": s.roi, "input_hw": s.input_hw, "grid": s.grid}
