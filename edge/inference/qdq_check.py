"""Will TensorRT import this ONNX? The checks that need no GPU, run where the file is made.

TensorRT (>= 10) builds INT8 engines from explicit quantisation: the Q/DQ nodes of the
file say what runs in INT8. Its ONNX parser (onnx-tensorrt) imports only part of what
ONNX allows, and a file it cannot import is found out on the Jetson, at the first start,
which is too late. So the file is checked when it is quantised and when it is verified:

* `DequantizeLinear` must read INT8. TensorRT's `addDequantize` accepts INT8, FP8 and INT4
  inputs only (NvInfer.h, `IDequantizeLayer`); ONNX Runtime's quantiser also writes INT32
  biases behind a `DequantizeLinear` unless told `QuantizeBias: False`, and onnx-tensorrt
  10.x rejects those (NVIDIA/TensorRT#3360, microsoft/onnxruntime#17738). This project
  quantises to INT8 only, so anything but INT8 is refused; `QuantizeLinear` likewise.
* Zero-points are 0 (TensorRT's quantisation is symmetric); scales are constants
  (initializers), positive; activations are quantised per tensor, weights per tensor or
  per output channel (axis 0); no blocked quantisation (`block_size`: INT4 weights only).
* Every op is in `TENSORRT_OPS`, a short table of the operators these models use that
  onnx-tensorrt imports in every release the backend supports (10.x; 11.x keeps them),
  taken from onnx-tensorrt's `docs/operators.md`
  (https://github.com/onnx/onnx-tensorrt/blob/release/10.3-GA/docs/operators.md).
  The table is deliberately small: an op that is not in it is refused with its name, and
  whoever needs it checks that page for the TensorRT versions the line runs and adds it.
  Ops of other domains (ONNX Runtime's `com.microsoft` QLinearConv, QGemm ...) are refused.
* Static input shapes, opset >= 17 (as exported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.inference.base import BackendError

#: ONNX ops these detectors and feature extractors use that onnx-tensorrt imports
#: (docs/operators.md of onnx-tensorrt 10.x: each listed "Y" for FP32/FP16, INT8 where a
#: Q/DQ pair surrounds it). Keep it small; add an op only after checking that table.
TENSORRT_OPS = frozenset(
    {
        "Add",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "Conv",
        "DequantizeLinear",
        "Div",
        "Exp",
        "Flatten",
        "Gemm",
        "GlobalAveragePool",
        "HardSigmoid",
        "HardSwish",
        "Identity",
        "LeakyRelu",
        "MatMul",
        "MaxPool",
        "Mul",
        "Pad",
        "QuantizeLinear",
        "ReduceMax",
        "ReduceMean",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Resize",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Tanh",
        "Transpose",
        "Unsqueeze",
    }
)

_INT8 = 3  # onnx.TensorProto.INT8


def _const_array(name: str, inits: dict[str, Any], consts: dict[str, Any]) -> np.ndarray | None:
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    if name in consts:
        return numpy_helper.to_array(consts[name])
    return None


def tensorrt_import_problems(model: Any) -> list[str]:
    """What in this ONNX model TensorRT's parser would refuse (empty: nothing found)."""
    from onnx import TensorProto

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {
        n.output[0]: next(a.t for a in n.attribute if a.name == "value")
        for n in g.node
        if n.op_type == "Constant" and any(a.name == "value" for a in n.attribute)
    }
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems: list[str] = []

    foreign = sorted({f"{n.domain}:{n.op_type}" for n in g.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        problems.append(f"ops outside the ONNX domain (TensorRT cannot import them): {foreign}")
    unknown = sorted({n.op_type for n in g.node if n.domain in ("", "ai.onnx")} - TENSORRT_OPS)
    if unknown:
        problems.append(
            f"ops not in the table checked against onnx-tensorrt: {unknown} "
            "(see edge/inference/qdq_check.py)"
        )

    def elem_type(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        if name in consts:
            return consts[name].data_type
        p = producer.get(name)
        if p is not None and p.op_type == "QuantizeLinear":
            return _q_output_type(p, inits, consts)
        return None

    bad_dq: dict[str, int] = {}
    bad_q: dict[str, int] = {}
    nonconst = asym = neg = blocked = per_channel_act = bad_axis = 0
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        attrs = {a.name: a for a in n.attribute}
        if "block_size" in attrs and attrs["block_size"].i:
            blocked += 1
        if n.op_type == "DequantizeLinear":
            t = elem_type(n.input[0])
            if t != _INT8:
                key = TensorProto.DataType.Name(t) if t is not None else "unknown"
                bad_dq[key] = bad_dq.get(key, 0) + 1
        else:
            t = _q_output_type(n, inits, consts)
            if t != _INT8:
                key = TensorProto.DataType.Name(t) if t is not None else "unknown"
                bad_q[key] = bad_q.get(key, 0) + 1
        scale = _const_array(n.input[1], inits, consts) if len(n.input) > 1 else None
        if scale is None:
            nonconst += 1
            continue
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            neg += 1
        if len(n.input) > 2 and n.input[2]:
            zp = _const_array(n.input[2], inits, consts)
            if zp is None:
                nonconst += 1
            elif np.any(zp != 0):
                asym += 1
        if scale.size > 1:
            is_weight = n.op_type == "DequantizeLinear" and (
                n.input[0] in inits or n.input[0] in consts
            )
            if not is_weight:
                per_channel_act += 1
            else:
                axis = attrs["axis"].i if "axis" in attrs else 1
                rank = len(_const_array(n.input[0], inits, consts).shape)
                if axis < 0:
                    axis += rank
                users = {c.op_type for c in consumers.get(n.output[0], [])}
                if "Conv" in users and axis != 0:
                    bad_axis += 1
    if bad_dq:
        problems.append(
            f"DequantizeLinear on non-INT8 inputs {bad_dq} (TensorRT dequantizes INT8 only here; "
            "quantise with QuantizeBias off: biases stay float)"
        )
    if bad_q:
        problems.append(f"QuantizeLinear to non-INT8 outputs {bad_q}")
    if asym:
        problems.append(f"{asym} Q/DQ nodes with non-zero zero-points (TensorRT needs symmetric)")
    if nonconst:
        problems.append(f"{nonconst} Q/DQ nodes whose scale or zero-point is not a constant")
    if neg:
        problems.append(f"{neg} Q/DQ nodes with a scale that is not positive and finite")
    if blocked:
        problems.append(f"{blocked} Q/DQ nodes with block_size (blocked quantisation)")
    if per_channel_act:
        problems.append(f"{per_channel_act} activation Q/DQ nodes per channel (per tensor only)")
    if bad_axis:
        problems.append(f"{bad_axis} convolution weight DQ nodes not along axis 0")
    return problems


def _q_output_type(node: Any, inits: dict[str, Any], consts: dict[str, Any]) -> int | None:
    """QuantizeLinear's output type: its zero-point's type, else the attribute, else uint8."""
    if len(node.input) > 2 and node.input[2]:
        zp = inits.get(node.input[2])
        if zp is None:
            zp = consts.get(node.input[2])
        return zp.data_type if zp is not None else None
    for a in node.attribute:
        if a.name == "output_dtype" and a.i:
            return a.i
    return 2  # onnx.TensorProto.UINT8: the ONNX default without a zero-point


def check_qdq_model(
    path: str | Path, min_opset: int = 17, require_qdq: bool = True
) -> dict[str, Any]:
    """What TensorRT's explicit quantisation needs of the ONNX it is fed.

    Q/DQ pairs present (unless `require_qdq` is off: an FP32 file), static input shapes,
    opset >= 17, and nothing `tensorrt_import_problems` finds. Raises BackendError listing
    every problem; returns a summary for the card.
    """
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BackendError(f"cannot read ONNX {path}: {exc}") from exc
    problems = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < min_opset:
        problems.append(f"opset {opset} < {min_opset}")
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    nq, ndq = counts.get("QuantizeLinear", 0), counts.get("DequantizeLinear", 0)
    if require_qdq and (nq == 0 or ndq == 0):
        problems.append(f"no Q/DQ nodes (QuantizeLinear {nq}, DequantizeLinear {ndq})")
    shapes = {}
    inits = {i.name for i in model.graph.initializer}
    for i in model.graph.input:
        if i.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim
        ]
        shapes[i.name] = dims
        if any(d <= 0 for d in dims):
            problems.append(f"input {i.name!r} has a dynamic shape {dims}")
    problems += tensorrt_import_problems(model)
    if problems:
        raise BackendError(f"{path} is not a TensorRT-ready model: " + "; ".join(problems))
    return {"opset": opset, "quantize_linear": nq, "dequantize_linear": ndq, "inputs": shapes}
