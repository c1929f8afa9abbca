"""A tiny detector-shaped ONNX model (1x3xSxS in, 1x(4+C)xN out) and its INT8 Q/DQ file,
quantised by the project's own entry point, for tests that need a real file quickly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32
CLASSES = ["crack", "code"]


def fp32_detector(path: Path, size: int = SIZE, classes: int = len(CLASSES)) -> Path:
    """Conv 3x3 -> Relu -> Conv 1x1 (4+C channels) -> Reshape to 1x(4+C)x(S*S)."""
    rng = np.random.default_rng(0)
    c1, out = 8, 4 + classes
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (c1, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, (c1,)).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (out, c1, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(0, 0.1, (out,)).astype(np.float32), "b2"),
        numpy_helper.from_array(np.array([1, out, size * size], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Reshape", ["c2", "shape"], ["output0"], name="reshape"),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, out, size * size])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def calibration_arrays(n: int = 8, size: int = SIZE) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((1, 3, size, size), dtype=np.float32) for _ in range(n)]
