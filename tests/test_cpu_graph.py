"""The feature file on the CPU: ReLU6 on the integer kernels, a fast input path, same numbers.

EfficientNet-Lite's ReLU6 is a Clip(0, 6) between Q/DQ pairs; left as it is, ONNX Runtime's
CPU runs each in float between two requantisations and the INT8 file is no faster than
FP32. The CPU session's copy folds each clip into its convolution's output range. What
the plant needs: the same numbers (within a quantisation step), every convolution on the
integer kernels, and the file on disk (pinned by the card) untouched.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edge.inference.cpu_graph import cpu_model_bytes, fold_clip_into_qdq, qdq_activations_to_uint8
from edge.train.quantize import quantize_qdq


def conv_relu6_conv(path, seed: int = 0) -> None:
    """images -> Conv 3x3 (3->8) -> Clip(0, 6) -> Conv 1x1 (8->4): one MBConv-like step."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(0, 1.5, (8, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 1, 8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(0, 1, 4).astype(np.float32), "b2")
    lo = numpy_helper.from_array(np.array(0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(6, np.float32), "hi")
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["features"], name="c2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [1, 4, 32, 32])],
        [w1, b1, w2, b2, lo, hi],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def session(source, optimized=None) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    if optimized:
        o.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(source, o, providers=["CPUExecutionProvider"])


def test_relu6_runs_on_the_integer_kernels_with_the_same_numbers(tmp_path):
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "f.int8.onnx"
    conv_relu6_conv(fp32)
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    quantize_qdq(fp32, int8, calib)
    on_disk = int8.read_bytes()

    folded = cpu_model_bytes(int8)
    assert int8.read_bytes() == on_disk  # the artefact the card pins is not rewritten
    assert "Clip" not in {n.op_type for n in onnx.load_from_string(folded).graph.node}

    plain = onnx.load(str(int8))
    qdq_activations_to_uint8(plain)  # the same model with its clip left in float
    x = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
    want = session(plain.SerializeToString()).run(None, {"images": x})[0]
    got = session(folded, tmp_path / "opt.onnx").run(None, {"images": x})[0]
    reference = session(str(fp32)).run(None, {"images": x})[0]
    # one output step of the int8 file, at most (the folded clip has a finer step)
    step = np.abs(want - reference).max()
    assert np.abs(got - want).max() <= step + 1e-6
    assert np.abs(got - reference).mean() <= np.abs(want - reference).mean() * 1.05

    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert ops["QLinearConv"] == 2 and ops["Conv"] == 0, ops  # both convolutions fused


def test_a_clip_that_is_not_a_relu6_between_qdq_pairs_is_left_alone(tmp_path):
    fp32 = tmp_path / "f.onnx"
    conv_relu6_conv(fp32)
    model = onnx.load(str(fp32))  # FP32: no Q/DQ around the clip
    assert fold_clip_into_qdq(model) == 0
    assert "Clip" in {n.op_type for n in model.graph.node}


def test_the_fast_input_path_feeds_the_network_the_same_normalised_image():
    """One pass of blobFromImage with one scale, the channels' own ratios in the stem."""
    import pytest

    from edge.anomaly.features import MEAN, STD, STD_ONE, preprocess

    img = np.random.default_rng(2).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    fast = preprocess(img, 150, 100, "linear")  # same size: no resize, only normalisation
    rgb = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
    per_channel = (rgb - MEAN[:, None, None]) / STD[:, None, None]
    ratio = (STD_ONE / STD)[:, None, None]
    np.testing.assert_allclose(fast[0] * ratio, per_channel, atol=1e-4)

    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from edge.anomaly.export import feature_module

    plain = feature_module(64, 96, [2, 4], pool=1)
    folded = feature_module(64, 96, [2, 4], pool=1, fold_std=True)
    x = np.random.default_rng(3).normal(0, 1, (1, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        want = plain(torch.from_numpy(x)).numpy()
        got = folded(torch.from_numpy(x / ratio[None].astype(np.float32))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def qdq_convolutions(model: onnx.ModelProto) -> int:
    """Convolutions whose weights the file quantises (a DequantizeLinear feeds the weight)."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(n.op_type == "Conv" and n.input[1] in dq for n in model.graph.node)


def test_every_int8_convolution_of_a_head_only_detector_runs_on_the_integer_kernels(tmp_path):
    """The detectors' backend and the anomaly tool load through one CPU rewrite. The
    detectors' own copy once lacked the ReLU6 fold (and quantised biases before the
    activations' steps were final): the ImageNet-start detector's convolutions stayed in
    float between Q/DQ pairs and its INT8 file ran no faster than FP32."""
    import pytest

    pytest.importorskip("torch")
    from edge.inference import yolo
    from edge.train import patch_detector as pd
    from edge.train.quantize import head_nodes_to_exclude

    size = 96
    grid = (size // pd.STRIDE, size // pd.STRIDE)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    pd.export(
        pd.detector_module(pd.backbone(size, [4, 10]), pd._head(152, 2, 16), grid), fp32, size
    )
    rng = np.random.default_rng(4)
    calib = [yolo.letterbox(rng.integers(0, 256, (80, 96, 3), np.uint8), size)[0] for _ in range(4)]
    quantize_qdq(fp32, int8, calib, nodes_to_exclude=head_nodes_to_exclude(onnx.load(str(fp32))))
    want = qdq_convolutions(onnx.load(str(int8)))
    assert want > 20
    session(cpu_model_bytes(int8), tmp_path / "opt.onnx")
    fused = onnx.load(str(tmp_path / "opt.onnx"))
    ops = Counter(n.op_type for n in fused.graph.node)
    assert ops["QLinearConv"] == want, ops
    # the one exception: the bilinear Resize before the concatenation (its input and
    # output share one step, but ONNX Runtime's CPU has no uint8 linear resize): ~1 ms
    assert [n for n in float_islands(fused) if not n.endswith("Resize")] == [], ops


def float_islands(model: onnx.ModelProto) -> list[str]:
    """Nodes run in float between a DequantizeLinear and a QuantizeLinear: inside the INT8
    part of the graph, where each costs two requantisations and a float kernel."""
    q = {"QuantizeLinear", "DequantizeLinear"}
    made = {o: n.op_type for n in model.graph.node for o in n.output}
    read: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            read.setdefault(i, []).append(n.op_type)
    return [
        n.name or n.op_type
        for n in model.graph.node
        if n.op_type not in q
        and any(i in made for i in n.input)
        and all(made.get(i) == "DequantizeLinear" for i in n.input if i in made)
        and all(r == "QuantizeLinear" for o in n.output for r in read.get(o, ["-"]))
    ]
