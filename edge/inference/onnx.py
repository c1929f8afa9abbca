"""ONNX Runtime backend: the embedded default (CPU; CUDA / TensorRT execution providers when present)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnxruntime as ort

from edge.inference.base import Backend, BackendError
from edge.inference.cpu_graph import cpu_model_bytes

#: preferred order when the config names no providers
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def pick_providers(requested: list[str] | None) -> list[str]:
    """The providers to ask for: the requested ones (all must exist), else the best available."""
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BackendError(
                f"ONNX Runtime execution provider(s) {missing} not available here "
                f"(available: {available})"
            )
        return list(requested)
    return [p for p in _PREFERRED if p in available] or list(available)


class OnnxRuntimeBackend(Backend):
    """One InferenceSession per model; sessions are thread-safe for `run`."""

    type_key: ClassVar[str] = "onnx"

    def _load(self) -> None:
        threads = int(getattr(self.config, "threads", 2) or 2)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers = pick_providers(getattr(self.config, "providers", None))
        try:
            source: str | bytes = str(self.model_path)
            if providers == ["CPUExecutionProvider"]:
                source = cpu_model_bytes(self.model_path)
            self.session = ort.InferenceSession(source, sess_options=opts, providers=providers)
        except BackendError:
            raise
        except Exception as exc:  # ORT raises its own exception types for corrupt files
            raise BackendError(f"cannot load model {self.model_path}: {exc}") from exc
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{self.model_path}: expected one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        shape = list(inputs[0].shape)
        want = [1, 3, self.input_size, self.input_size]
        if shape != want:
            raise BackendError(
                f"{self.model_path}: input shape {shape} does not match the card's {want} "
                "(the model must be exported with a static shape at the card's input size)"
            )
        outputs = self.session.get_outputs()
        nc = len(self.class_names)
        oshape = list(outputs[0].shape)
        if len(oshape) != 3 or oshape[1] != 4 + nc:
            raise BackendError(
                f"{self.model_path}: output shape {oshape} does not fit {nc} classes "
                f"(expected [1, {4 + nc}, N])"
            )
        self.output_name = outputs[0].name

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: tensor})[0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
