"""INT8 calibration that one dead or near-constant activation cannot sink.

A short training run can leave a channel almost constant; ONNX Runtime's histogram
calibration then refused the whole model ("Too many bins for data range"), and the job
ended with no INT8 candidate. Such tensors keep their min-max range, the card says which,
and the file still passes the TensorRT Q/DQ rules."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.inference.qdq_check import check_qdq_model
from edge.train.quantize import quantize_qdq

SIZE = 16


def near_constant_model(path, wiggle: float = 1e-7):
    """images -> conv (weights ~0, bias 0.5: a near-constant activation) -> relu -> add
    to a normal conv's output. The near-constant branch is what failed calibration."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b1"),
        numpy_helper.from_array(np.full((4, 3, 1, 1), wiggle, np.float32), "w2"),
        numpy_helper.from_array(np.full(4, 0.5, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["a"], pads=[1, 1, 1, 1], name="live"),
        helper.make_node("Conv", ["images", "w2", "b2"], ["flat"], name="dead"),
        helper.make_node("Relu", ["flat"], ["flat_r"], name="dead_relu"),
        helper.make_node("Add", ["a", "flat_r"], ["output0"], name="join"),
    ]
    g = helper.make_graph(
        nodes,
        "near_constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4, SIZE, SIZE])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def samples(n=6):
    rng = np.random.default_rng(1)
    return [rng.random((1, 3, SIZE, SIZE), dtype=np.float32) for _ in range(n)]


def test_onnx_runtime_alone_fails_on_this_model(tmp_path):
    """The model reproduces the failure: without the project's per-tensor ranges, ONNX
    Runtime's percentile calibration raises on the near-constant activation."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    from edge.train.quantize import _ArrayReader

    fp32 = near_constant_model(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="bins"):
        quantize_static(
            str(fp32),
            str(tmp_path / "ort.onnx"),
            _ArrayReader([{"images": s} for s in samples()]),
            quant_format=QuantFormat.QDQ,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"ActivationSymmetric": True},
        )


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_a_near_constant_activation_falls_back_to_minmax_and_is_recorded(tmp_path, method):
    fp32 = near_constant_model(tmp_path / "m.onnx")
    int8 = tmp_path / f"{method}.onnx"
    info = quantize_qdq(fp32, int8, samples(), method=method)
    fell = {f["tensor"]: f for f in info["calibration_fallbacks"]["tensors"]}
    assert "flat" in fell and fell["flat"]["method"] == "minmax"
    assert "near-constant" in fell["flat"]["reason"]
    assert "a" not in fell and "images" not in fell  # live tensors keep the chosen method
    assert info["calibration_fallbacks"]["count"] == len(fell)
    assert info["method"] == method
    assert check_qdq_model(int8)["dequantize_linear"] > 0  # the TensorRT rules still hold
    x = samples(1)[0]
    ref = ort.InferenceSession(str(fp32)).run(None, {"images": x})[0]
    got = ort.InferenceSession(str(int8)).run(None, {"images": x})[0]
    # the constant branch is carried exactly enough: the output stays close to FP32
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_minmax_records_no_fallback_and_an_all_zero_tensor_is_accepted(tmp_path):
    fp32 = near_constant_model(tmp_path / "m.onnx")
    info = quantize_qdq(fp32, tmp_path / "mm.onnx", samples(), method="minmax")
    assert info["calibration_fallbacks"]["count"] == 0
    zero = near_constant_model(tmp_path / "z.onnx", wiggle=0.0)
    m = onnx.load(str(zero))  # bias -1: relu makes the branch exactly zero everywhere
    for init in m.graph.initializer:
        if init.name == "b2":
            init.CopyFrom(numpy_helper.from_array(np.full(4, -1.0, np.float32), "b2"))
    onnx.save(m, str(zero))
    info = quantize_qdq(zero, tmp_path / "z8.onnx", samples(), method="percentile")
    reasons = {f["tensor"]: f["reason"] for f in info["calibration_fallbacks"]["tensors"]}
    assert "flat_r" in reasons
    check_qdq_model(tmp_path / "z8.onnx")


def test_older_onnx_runtime_without_a_calibration_cache_gets_the_same_file(tmp_path, monkeypatch):
    """The appliance's own ONNX Runtime may predate calibration caches: the ranges then
    reach the quantiser through its calibrator, and the file written is the same."""
    from edge.train import calibration

    fp32 = near_constant_model(tmp_path / "m.onnx")
    quantize_qdq(fp32, tmp_path / "new.onnx", samples(), method="percentile")
    monkeypatch.setattr(calibration, "cache_supported", lambda f: False)
    quantize_qdq(fp32, tmp_path / "old.onnx", samples(), method="percentile")
    assert (tmp_path / "new.onnx").read_bytes() == (tmp_path / "old.onnx").read_bytes()
