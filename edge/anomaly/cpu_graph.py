"""The INT8 feature file as ONNX Runtime's CPU kernels want it (deploy side: no torch).

EfficientNet-Lite's activation is ReLU6, a `Clip(0, 6)`. With the symmetric activations
TensorRT needs, the Q/DQ file keeps `Conv -> Q -> DQ -> Clip -> Q -> DQ`, and ONNX Runtime's
CPU runs the 22 clips in float between two requantisations: the INT8 file was no faster
than FP32. Quantising the convolution's output straight into uint8 with a zero-point of 0
and a step of `top / 255` (top = the clip's 6, or the Q's own saturation if lower) is the
same clip exactly (negatives go to 0, the top saturates at `top`) with a finer step; ONNX
Runtime then fuses each convolution with its output Q into one QLinearConv.

Order matters: the convolution biases are quantised (INT32, scale = input scale x weight
scale) *after* the fold, else the consumers of a re-stepped activation carry a bias at
the old scale and ONNX Runtime leaves them in float (measured: slower than FP32). Only the
CPU session's in-memory copy changes; the file on disk (whose SHA-256 the card pins) stays
the one TensorRT imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edge.inference.base import BackendError
from edge.inference.onnx import (
    decompose_softmax,
    drop_unused_initializers,
    fold_relu_into_qdq,
    graph_links,
    qdq_activations_to_uint8,
    quantize_conv_biases,
)


def _const(inits: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    t = inits.get(name)
    return None if t is None else numpy_helper.to_array(t)


def fold_clip_into_qdq(model: onnx.ModelProto) -> int:
    """Replace each `Q -> DQ -> Clip(0, hi) -> Q` by one uint8 Q (zero-point 0), in place.

    Run after `qdq_activations_to_uint8` and before `quantize_conv_biases`. Returns how
    many clips were folded.
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers, producer = graph_links(g)
    drop: set[int] = set()
    folded = 0
    for clip in [n for n in g.node if n.op_type == "Clip"]:
        lo = _const(inits, clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
        hi = _const(inits, clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
        if lo is None or hi is None or float(lo) != 0.0 or float(hi) <= 0:
            continue
        dq1 = producer.get(clip.input[0])
        q2s = consumers.get(clip.output[0], [])
        if dq1 is None or dq1.op_type != "DequantizeLinear" or len(q2s) != 1:
            continue
        q2 = q2s[0]
        q1 = producer.get(dq1.input[0])
        if q2.op_type != "QuantizeLinear" or len(q2.input) < 3 or q1 is None:
            continue
        if q1.op_type != "QuantizeLinear" or len(consumers.get(q1.output[0], [])) != 1:
            continue
        if len(consumers.get(dq1.output[0], [])) != 1:
            continue
        zp, scale = inits.get(q2.input[2]), _const(inits, q2.input[1])
        if zp is None or zp.data_type != onnx.TensorProto.UINT8 or scale is None:
            continue
        if scale.size != 1 or int(numpy_helper.to_array(zp).ravel()[0]) != 128:
            continue
        dqs = consumers.get(q2.output[0], [])
        if not dqs or not all(
            d.op_type == "DequantizeLinear" and list(d.input[1:3]) == list(q2.input[1:3])
            for d in dqs
        ):
            continue
        top = min(float(hi), 127.0 * float(scale))  # the int8 Q saturated there already
        key = clip.name or clip.output[0]
        s_name, z_name = f"{key}__clip_scale", f"{key}__clip_zp"
        g.initializer.extend(
            [
                numpy_helper.from_array(np.array(top / 255.0, dtype=scale.dtype), s_name),
                numpy_helper.from_array(np.array(0, dtype=np.uint8), z_name),
            ]
        )
        q2.input[0], q2.input[1], q2.input[2] = q1.input[0], s_name, z_name
        for d in dqs:
            d.input[1], d.input[2] = s_name, z_name
        drop |= {id(q1), id(dq1), id(clip)}
        folded += 1
    if drop:
        keep = [n for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(keep)
    return folded


def cpu_model_bytes(path: str | Path, expose_input_of: str | None = None) -> bytes:
    """The feature file rewritten for ONNX Runtime's CPU kernels (the same function).

    `expose_input_of`: also output what the node of that name reads (the fit reads the
    features before the projection; absent node: nothing added).
    """
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BackendError(f"cannot load feature model {path}: {exc}") from exc
    node = next((n for n in model.graph.node if n.name == expose_input_of), None)
    if node is not None:
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None)
        )
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        qdq_activations_to_uint8(model)
        fold_clip_into_qdq(model)
        quantize_conv_biases(model)
        fold_relu_into_qdq(model)
    decompose_softmax(model)
    drop_unused_initializers(model)
    return model.SerializeToString()
