"""Patch features of a region on ONNX Runtime (deploy side: no torch).

The ONNX file (FP32 reference or INT8 Q/DQ) is loaded through the project's CPU rewrite
(`edge.inference.cpu_graph`: uint8 activations, ReLU6 clips folded into the convolution's
output range), so the INT8 file runs on ONNX Runtime's integer kernels. The region is resized
to the model's input size; the caller gets one feature vector per patch of the grid.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.inference.base import BackendError

#: ImageNet normalisation the backbone was trained with (RGB, 0..255 scale)
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
#: one scale for all three channels in the "linear" path; each channel's own ratio
#: (STD_ONE / STD[c]) is folded into the stem convolution's weights at export
STD_ONE = float(STD.mean())

#: the node that ends a feature graph with its projection on the good patches' main axes
PROJECTION = "projection"

#: How a region becomes the network's input, recorded on the card. "area": anti-aliased
#: resize, per-channel normalisation in numpy (models fitted before the fast path; ~20 ms
#: for a 1500x1000 photo on one core). "linear": bilinear resize, then mean, scale and
#: RGB/CHW order in one pass of cv2.dnn.blobFromImage (~3 ms). At a 1500 -> 768 reduction
#: bilinear averages about the same 2x2 pixels as the area resize.
PREPROCESS = ("area", "linear")


def preprocess(region: np.ndarray, width: int, height: int, mode: str = "linear") -> np.ndarray:
    """BGR (or grey) uint8 region -> 1x3xHxW float32, normalised as `mode` says."""
    if mode not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {mode!r} (known: {list(PREPROCESS)})")
    if region.ndim == 2:
        region = cv2.cvtColor(region, cv2.COLOR_GRAY2BGR)
    resize = cv2.INTER_AREA if mode == "area" else cv2.INTER_LINEAR
    if region.shape[1] != width or region.shape[0] != height:
        region = cv2.resize(region, (width, height), interpolation=resize)
    if mode == "linear":
        mean = tuple(float(v) for v in MEAN)  # R, G, B: subtracted after the swap
        return cv2.dnn.blobFromImage(region, 1.0 / STD_ONE, None, mean, swapRB=True)
    x = (region[:, :, ::-1].astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


class FeatureExtractor:
    """One ONNX Runtime session for one feature file; `run` is thread-safe."""

    def __init__(
        self,
        path: str | Path,
        threads: int = 1,
        providers: list[str] | None = None,
        preprocess: str = "linear",
        unprojected: bool = False,
    ):
        """`unprojected`: `run_both` also returns the features before the projection
        (fitting only; CPU)."""
        import onnxruntime as ort

        from edge.inference.cpu_graph import cpu_model_bytes
        from edge.inference.onnx import pick_providers

        self.path = Path(path)
        if preprocess not in PREPROCESS:
            raise BackendError(f"unknown preprocessing {preprocess!r} (known: {list(PREPROCESS)})")
        self.preprocess = preprocess
        if not self.path.is_file():
            raise BackendError(f"feature model not found: {self.path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        chosen = pick_providers(providers or ["CPUExecutionProvider"])
        try:
            source: str | bytes = str(self.path)
            if chosen == ["CPUExecutionProvider"]:  # in-memory rewrite of the same artefact
                source = cpu_model_bytes(self.path, PROJECTION if unprojected else None)
            self.session = ort.InferenceSession(source, sess_options=opts, providers=chosen)
        except BackendError:
            raise
        except Exception as exc:  # ORT raises its own types for corrupt files
            raise BackendError(f"cannot load feature model {self.path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise BackendError(f"{self.path}: expected one 1x3xHxW input")
        shape = inputs[0].shape
        if not all(isinstance(v, int) and v > 0 for v in shape) or shape[:2] != [1, 3]:
            raise BackendError(f"{self.path}: input shape {shape} is not a static 1x3xHxW")
        self.input_name = inputs[0].name
        self.height, self.width = int(shape[2]), int(shape[3])
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        self.dim, self.grid = int(out.shape[1]), (int(out.shape[2]), int(out.shape[3]))

    def run(self, region: np.ndarray) -> np.ndarray:
        """BGR region (any size) -> (gh*gw, D) float32 patch features, row-major grid."""
        return self.run_tensor(preprocess(region, self.width, self.height, self.preprocess))

    def run_tensor(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed 1x3xHxW input -> (gh*gw, D) float32 patch features."""
        y = self.session.run([self.output_name], {self.input_name: x})[0][0]
        return np.ascontiguousarray(y.reshape(self.dim, -1).T)

    def run_both(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, features before the projection), each (gh*gw, D) float32; without a
        projection both are the same array."""
        x = preprocess(region, self.width, self.height, self.preprocess)
        outs = self.session.run(None, {self.input_name: x})
        feats = np.ascontiguousarray(outs[0][0].reshape(self.dim, -1).T)
        if len(outs) < 2:
            return feats, feats
        raw = outs[1][0]
        return feats, np.ascontiguousarray(raw.reshape(raw.shape[0], -1).T)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
