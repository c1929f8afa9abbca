"""Model files as ONNX Runtime's CPU kernels want them: the same function, faster.

The INT8 files on disk are symmetric Q/DQ (what TensorRT imports; their SHA-256 is pinned
by the card). ONNX Runtime's x86 CPU kernels want something else: uint8 activations,
INT32 biases, and ReLU / ReLU6 folded into the convolution's output range; left as they
are, the convolutions run in float between requantisations and the INT8 file is no faster
than FP32. Only the CPU session's in-memory copy is rewritten, by `cpu_model_bytes`, for
every CPU session in the project (detectors and the anomaly tool's features alike).

EfficientNet-Lite's activation is ReLU6, a `Clip(0, 6)`: the Q/DQ file keeps
`Conv -> Q -> DQ -> Clip -> Q -> DQ`. Quantising the convolution's output straight into
uint8 with a zero-point of 0 and a step of `top / 255` (top = the clip's 6, or the Q's
own saturation if lower) is the same clip exactly with a finer step; ONNX Runtime then
fuses each convolution with its output Q into one QLinearConv.

Order matters: the convolution biases are quantised (INT32, scale = input scale x weight
scale) *after* the clip fold, else the consumers of a re-stepped activation carry a bias
at the old scale and ONNX Runtime leaves them in float (measured: slower than FP32; the
detectors' backend had exactly that order, and its ImageNet-start detector ran INT8 no
faster than FP32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edge.inference.base import BackendError


def qdq_activations_to_uint8(model: onnx.ModelProto) -> int:
    """Rewrite symmetric int8 activation Q/DQ (zero-point 0) as uint8 (zero-point 128), in place.

    The same numbers exactly (q_u8 = q_s8 + 128 with the same scale), but ONNX Runtime's
    x86 CPU kernels fuse u8 activations x s8 weights into QLinearConv and leave s8
    activations as float Conv between Q/DQ pairs (slower than FP32). Returns how many
    zero-points were rewritten.
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    act_zp: set[str] = set()
    weight_zp: set[str] = set()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) >= 3:
            act_zp.add(n.input[2])
        elif n.op_type == "DequantizeLinear" and len(n.input) >= 3:
            (weight_zp if n.input[0] in inits else act_zp).add(n.input[2])
    if act_zp & weight_zp:
        return 0  # shared zero-points: leave the model as it is
    changed = 0
    for name in sorted(act_zp):
        t = inits.get(name)
        if t is None or t.data_type != onnx.TensorProto.INT8:
            continue
        zp = numpy_helper.to_array(t).astype(np.int16) + 128
        t.CopyFrom(numpy_helper.from_array(zp.astype(np.uint8), name))
        changed += 1
    return changed


def graph_links(
    g: onnx.GraphProto,
) -> tuple[dict[str, list[onnx.NodeProto]], dict[str, onnx.NodeProto]]:
    """(the nodes reading each tensor, the node writing each tensor) of a graph: what the
    Q/DQ rewrites walk."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    return consumers, producer


def _drop_nodes(g: onnx.GraphProto, drop: set[int]) -> None:
    """Remove the nodes whose `id` is in `drop`, keeping the others' order."""
    if drop:
        keep = [n for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(keep)


def _requantised_activation(
    act: onnx.NodeProto,
    consumers: dict[str, list[onnx.NodeProto]],
    producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, list[onnx.NodeProto]] | None:
    """`Q1 -> DQ1 -> act -> Q2 -> DQs`, each link the only one, Q2 uint8 with its own
    scale and zero-point read by every DQ after it: (Q1, DQ1, Q2, DQs), else None.

    The shape the activation folds replace by one Q2 reading Q1's input: the activation
    ran in float between two requantisations.
    """
    dq1 = producer.get(act.input[0])
    q2s = consumers.get(act.output[0], [])
    if dq1 is None or dq1.op_type != "DequantizeLinear" or len(q2s) != 1:
        return None
    q2, q1 = q2s[0], producer.get(dq1.input[0])
    if q2.op_type != "QuantizeLinear" or len(q2.input) < 3 or q1 is None:
        return None
    if q1.op_type != "QuantizeLinear" or len(consumers.get(q1.output[0], [])) != 1:
        return None
    if len(consumers.get(dq1.output[0], [])) != 1:
        return None
    zp = inits.get(q2.input[2])
    if zp is None or zp.data_type != onnx.TensorProto.UINT8:
        return None
    dqs = consumers.get(q2.output[0], [])
    if not dqs or not all(
        d.op_type == "DequantizeLinear" and list(d.input[1:3]) == list(q2.input[1:3]) for d in dqs
    ):
        return None
    return q1, dq1, q2, dqs


def fold_relu_into_qdq(model: onnx.ModelProto) -> int:
    """Drop each Q -> DQ -> Relu between a convolution and the Relu's own Q, in place.

    With symmetric activations (what TensorRT needs) the quantiser cannot fold a ReLU
    into the convolution's output range, so the Q/DQ file keeps `DQ -> Relu -> Q`, which
    the CPU runs in float between two requantisations. Quantising the convolution's
    output straight with the Relu's scale and a zero-point of 0 (uint8) is the same ReLU:
    negatives clamp to 0, and the positive range keeps the Relu output's step. ONNX
    Runtime then fuses the convolution and its output Q into one QLinearConv. Run after
    `qdq_activations_to_uint8`. Returns how many ReLUs were folded.
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers, producer = graph_links(g)
    drop: set[int] = set()
    folded = 0
    for relu in [n for n in g.node if n.op_type == "Relu"]:
        chain = _requantised_activation(relu, consumers, producer, inits)
        if chain is None:
            continue
        q1, dq1, q2, dqs = chain
        zero = f"{q2.input[2]}__relu"
        if zero not in inits:
            zp = numpy_helper.to_array(inits[q2.input[2]])
            inits[zero] = numpy_helper.from_array(np.zeros_like(zp), zero)
            g.initializer.append(inits[zero])
        q2.input[0] = q1.input[0]
        q2.input[2] = zero
        for dq in dqs:
            dq.input[2] = zero
        drop |= {id(q1), id(dq1), id(relu)}
        folded += 1
    _drop_nodes(g, drop)
    return folded


def quantize_conv_biases(model: onnx.ModelProto) -> int:
    """Give each INT8 convolution's float bias an INT32 DequantizeLinear, in place.

    The file on disk keeps biases in float, because TensorRT cannot import a
    DequantizeLinear of INT32 (see edge.inference.qdq_check). QLinearConv adds an INT32
    bias to its INT32 accumulator; ONNX Runtime 1.32 (measured) quantises a float bias
    itself when it fuses `DQ(x) -> Conv <- DQ(w)`, but the QDQ selectors of older releases
    the project allows (>= 1.18) wanted a DequantizeLinear on every Conv input and left the
    Conv in float between Q/DQ pairs (slower than FP32). So the CPU session's copy
    quantises each bias the way ONNX Runtime's quantiser does (scale = input scale x
    weight scale, zero-point 0, round to nearest): the same graph, whatever the release.
    On the shipped model the fused graph and its outputs are identical to those of the
    earlier file that carried the INT32 biases. Returns how many.
    """
    from onnx import helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    int32 = np.iinfo(np.int32)
    added: list[onnx.NodeProto] = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 3 or not n.input[2]:
            continue
        b = inits.get(n.input[2])
        dx, dw = producer.get(n.input[0]), producer.get(n.input[1])
        if b is None or b.data_type != onnx.TensorProto.FLOAT or dx is None or dw is None:
            continue
        if dx.op_type != "DequantizeLinear" or dw.op_type != "DequantizeLinear":
            continue
        xs, ws = inits.get(dx.input[1]), inits.get(dw.input[1])
        if xs is None or ws is None or dw.input[0] not in inits:
            continue
        x_scale, w_scale = numpy_helper.to_array(xs), numpy_helper.to_array(ws)
        bias = numpy_helper.to_array(b)
        scale = (x_scale * w_scale).astype(np.float32)
        if x_scale.size != 1 or scale.size not in (1, bias.size) or np.any(scale <= 0):
            continue
        q = np.round(bias.astype(np.float64) / scale.astype(np.float64))
        q = np.clip(q, int32.min, int32.max).astype(np.int32)
        p = f"{n.name or n.output[0]}__bias"
        scale = scale.reshape(-1) if scale.size > 1 else scale.reshape(())
        g.initializer.extend(
            [
                numpy_helper.from_array(q, p + "_q"),
                numpy_helper.from_array(scale, p + "_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int32), p + "_zp"),
            ]
        )
        kw = {"axis": 0} if scale.ndim else {}
        added.append(
            helper.make_node(
                "DequantizeLinear", [p + "_q", p + "_scale", p + "_zp"], [p], name=p, **kw
            )
        )
        n.input[2] = p
    if added:
        nodes = added + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
    return len(added)


def decompose_softmax(model: onnx.ModelProto) -> int:
    """Replace each Softmax by ReduceMax, Sub, Exp, ReduceSum, Div over the same axis, in place.

    The same function; ONNX Runtime's CPU Softmax over a middle axis (the detect head's DFL
    softmax runs over axis 1 of 1x16x4xN) transposes internally and took about 1 ms of a
    10 ms forward pass; the element-wise form vectorises. Returns how many were replaced.
    """
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        return 0
    g = model.graph
    nodes: list[onnx.NodeProto] = []
    done = 0
    for n in g.node:
        if n.op_type != "Softmax":
            nodes.append(n)
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
        x, y, p = n.input[0], n.output[0], f"{n.name or n.output[0]}__"
        axes = numpy_helper.from_array(np.array([axis], dtype=np.int64), p + "axes")
        g.initializer.append(axes)
        if opset >= 18:
            rmax = helper.make_node("ReduceMax", [x, axes.name], [p + "max"], keepdims=1)
        else:
            rmax = helper.make_node("ReduceMax", [x], [p + "max"], axes=[axis], keepdims=1)
        nodes += [
            rmax,
            helper.make_node("Sub", [x, p + "max"], [p + "shifted"]),
            helper.make_node("Exp", [p + "shifted"], [p + "exp"]),
            helper.make_node("ReduceSum", [p + "exp", axes.name], [p + "sum"], keepdims=1),
            helper.make_node("Div", [p + "exp", p + "sum"], [y]),
        ]
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    return done


def drop_unused_initializers(model: onnx.ModelProto) -> int:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    dropped = len(model.graph.initializer) - len(keep)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return dropped


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
        chain = _requantised_activation(clip, consumers, producer, inits)
        if chain is None:
            continue
        q1, dq1, q2, dqs = chain
        zp, scale = inits[q2.input[2]], _const(inits, q2.input[1])
        if scale is None or scale.size != 1 or int(numpy_helper.to_array(zp).ravel()[0]) != 128:
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
    _drop_nodes(g, drop)
    return folded


def cpu_model_bytes(path: str | Path, expose_input_of: str | None = None) -> bytes:
    """The model file rewritten for ONNX Runtime's CPU kernels: the same function.

    Every CPU session of the project (the detectors' backend and the anomaly tool's
    feature model) loads its file through here, so an INT8 file gets the same passes in
    the same order whoever loads it. FP32 gets the Softmax rewrite too, so a bench
    compares like with like. `expose_input_of`: also output what the node of that name
    reads (the anomaly fit reads the features before the projection; absent node:
    nothing added).
    """
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BackendError(f"cannot load model {path}: {exc}") from exc
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
