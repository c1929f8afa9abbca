"""The TensorRT backend's GPU-free parts: engine cache keys, buffer planning, the check that
TensorRT can import the ONNX file (every shipped model included).

TensorRT and pycuda cannot be installed on the CPU-only development machines; the
GPU test at the end skips there with that reason (the control flow is tested on a
double in test_tensorrt_backend.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.inference.base import BackendError
from edge.inference.engine_cache import DeviceInfo, check_engine_meta, engine_cache_key, engine_meta
from edge.inference.qdq_check import check_qdq_model
from edge.inference.tensorrt import TensorSpec, plan_buffers

SHA = "ab" * 32


ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), 16, 64 * 2**30)


def test_engine_cache_key_changes_with_runtime_gpu_model_and_precision():
    base = engine_cache_key("10.3.0", ORIN, SHA, "int8-fp16")
    assert base == engine_cache_key("10.3.0", ORIN, SHA, "int8-fp16")  # stable
    others = {
        engine_cache_key("10.7.0", ORIN, SHA, "int8-fp16"),
        engine_cache_key("10.3.0", replace(ORIN, name="NVIDIA H100"), SHA, "int8-fp16"),
        engine_cache_key("10.3.0", replace(ORIN, compute_capability=(7, 2)), SHA, "int8-fp16"),
        engine_cache_key("10.3.0", replace(ORIN, sm_count=8), SHA, "int8-fp16"),
        engine_cache_key("10.3.0", replace(ORIN, total_memory=32 * 2**30), SHA, "int8-fp16"),
        engine_cache_key("10.3.0", ORIN, "cd" * 32, "int8-fp16"),
        engine_cache_key("10.3.0", ORIN, SHA, "int8"),
        engine_cache_key("11.0.0", ORIN, SHA, "typed"),
    }
    assert base not in others and len(others) == 8
    assert "/" not in base and " " not in base  # a file name


def test_engine_built_for_another_tensorrt_or_gpu_is_refused():
    want = engine_meta("10.3.0", ORIN, SHA, "int8-fp16")
    assert check_engine_meta(dict(want), want) == []
    diffs = check_engine_meta({**want, "tensorrt": "8.6.1", "gpu_sm_count": 8}, want)
    assert len(diffs) == 2 and any("8.6.1" in d for d in diffs) and any("8" in d for d in diffs)


def engine_tensors(input_shape=(1, 3, 320, 320), out_shape=(1, 14, 2100)):
    return [
        TensorSpec("images", True, input_shape, np.dtype(np.float32)),
        TensorSpec("output0", False, out_shape, np.dtype(np.float32)),
    ]


def test_buffers_are_planned_from_the_engine_tensor_shapes():
    plan = plan_buffers(engine_tensors(), 320, 10)
    assert plan.input.name == "images" and [o.name for o in plan.outputs] == ["output0"]
    assert plan.nbytes(plan.input) == 3 * 320 * 320 * 4
    assert plan.nbytes(plan.outputs[0]) == 14 * 2100 * 4


def test_buffer_planning_refuses_engines_that_do_not_fit_the_card():
    with pytest.raises(BackendError, match="dynamic shape"):
        plan_buffers(engine_tensors(input_shape=(-1, 3, 320, 320)), 320, 10)
    with pytest.raises(BackendError, match="card says"):
        plan_buffers(engine_tensors(input_shape=(1, 3, 416, 416)), 320, 10)
    with pytest.raises(BackendError, match="expected"):
        plan_buffers(engine_tensors(out_shape=(1, 84, 2100)), 320, 10)
    with pytest.raises(BackendError, match="exactly one"):
        plan_buffers(engine_tensors()[1:], 320, 10)


def qdq_model(path, zero_point: int = 0, dynamic: bool = False, opset: int = 17, qdq: bool = True):
    dims = ["N", 3, 8, 8] if dynamic else [1, 3, 8, 8]
    nodes = (
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
        ]
        if qdq
        else [helper.make_node("Identity", ["x"], ["y"])]
    )
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(zero_point, np.int8), "zp"),
        ],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_qdq_model_fed_to_tensorrt_is_checked(tmp_path):
    info = check_qdq_model(qdq_model(tmp_path / "ok.onnx"))
    assert info["opset"] == 17 and info["quantize_linear"] == 1
    with pytest.raises(BackendError, match="no Q/DQ nodes"):
        check_qdq_model(qdq_model(tmp_path / "f.onnx", qdq=False))
    with pytest.raises(BackendError, match="dynamic shape"):
        check_qdq_model(qdq_model(tmp_path / "d.onnx", dynamic=True))
    with pytest.raises(BackendError, match="opset 13 < 17"):
        check_qdq_model(qdq_model(tmp_path / "o.onnx", opset=13))
    with pytest.raises(BackendError, match="non-zero zero-points"):
        check_qdq_model(qdq_model(tmp_path / "z.onnx", zero_point=3))


def test_a_model_quantised_with_int32_biases_fails_the_check(tmp_path):
    """ONNX Runtime's default (QuantizeBias on) writes INT32 bias DequantizeLinear nodes,
    which TensorRT 10 cannot import; the project's quantiser leaves biases in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from tiny_models import calibration_arrays, fp32_detector

    from edge.train.quantize import _ArrayReader, quantize_qdq

    fp32 = fp32_detector(tmp_path / "model.onnx")
    feeds = [{"images": a} for a in calibration_arrays(4)]
    quantize_static(
        str(fp32),
        str(tmp_path / "biased.onnx"),
        _ArrayReader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    with pytest.raises(BackendError, match=r"DequantizeLinear on non-INT8 inputs \{'INT32': 2\}"):
        check_qdq_model(tmp_path / "biased.onnx")
    info = quantize_qdq(fp32, tmp_path / "ours.onnx", calibration_arrays(4))
    assert info["biases"] == "float (not quantised)"
    assert check_qdq_model(tmp_path / "ours.onnx")["dequantize_linear"] > 0


def test_the_generic_quantiser_takes_arrays_or_feeds_and_refuses_what_tensorrt_would(tmp_path):
    """`quantize_qdq` is the entry point for any FP32 ONNX (a detector, a feature
    extractor): calibration arrays or feed dicts in, a checked Q/DQ file out."""
    from tiny_models import calibration_arrays, fp32_detector

    from edge.train.quantize import quantize_qdq

    fp32 = fp32_detector(tmp_path / "model.onnx")
    arrays = calibration_arrays(4)
    a = quantize_qdq(fp32, tmp_path / "a.onnx", arrays, method="minmax")
    b = quantize_qdq(fp32, tmp_path / "b.onnx", [{"images": x} for x in arrays], method="minmax")
    assert a["samples"] == b["samples"] == 4
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    m = onnx.load(str(fp32))  # an op outside the table: the file is refused and not left behind
    m.graph.node.append(helper.make_node("Erf", ["output0"], ["erf"]))
    m.graph.output.append(helper.make_tensor_value_info("erf", TensorProto.FLOAT, None))
    onnx.save(m, str(tmp_path / "erf.onnx"))
    with pytest.raises(ValueError, match="Erf"):
        quantize_qdq(tmp_path / "erf.onnx", tmp_path / "erf.int8.onnx", arrays)
    assert not (tmp_path / "erf.int8.onnx").exists()
    with pytest.raises(ValueError, match="unknown calibration method"):
        quantize_qdq(fp32, tmp_path / "c.onnx", arrays, method="mse")


def test_ops_tensorrt_cannot_import_are_refused(tmp_path):
    m = onnx.load(str(qdq_model(tmp_path / "ok.onnx")))
    m.graph.node.append(helper.make_node("NonMaxSuppression", ["y"], ["z"]))
    m.graph.node.append(helper.make_node("QLinearConv", ["y"], ["w"], domain="com.microsoft"))
    onnx.save(m, str(tmp_path / "ops.onnx"))
    with pytest.raises(BackendError) as e:
        check_qdq_model(tmp_path / "ops.onnx")
    assert "NonMaxSuppression" in str(e.value) and "com.microsoft:QLinearConv" in str(e.value)


def test_uint8_quantisation_is_refused(tmp_path):
    m = onnx.load(str(qdq_model(tmp_path / "ok.onnx")))
    zp = next(i for i in m.graph.initializer if i.name == "zp")
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.uint8), "zp"))
    onnx.save(m, str(tmp_path / "u8.onnx"))
    with pytest.raises(BackendError, match="non-INT8"):
        check_qdq_model(tmp_path / "u8.onnx")


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "models").glob("*/*/model*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: "/".join(p.parts[-3:]))
def test_every_shipped_model_is_one_tensorrt_imports(path):
    """No DequantizeLinear in a shipped file reads anything but INT8 (and the rest of the
    check): the file the line runs on the CPU is the one a Jetson builds its engine from."""
    info = check_qdq_model(path, require_qdq=path.name != "model.onnx")
    m = onnx.load(str(path))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    dq_init_types = {
        inits[n.input[0]]
        for n in m.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    }
    assert dq_init_types <= {TensorProto.INT8}, dq_init_types
    assert info["inputs"]


def _has_tensorrt() -> bool:
    try:
        import pycuda.driver  # noqa: F401
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(
    not _has_tensorrt(),
    reason="needs an NVIDIA GPU with TensorRT and pycuda, which cannot be installed on the "
    "CPU-only development machines (on a Jetson: docs/deployment.md, 'TensorRT engines')",
)
def test_tensorrt_engine_matches_fp32_reference(tmp_path):  # pragma: no cover - GPU only
    """On the device: build the approved model's engine into a fresh cache, load it again
    from the cache without a build, and verify it against the FP32 reference."""
    from edge.config import TensorRTBackend
    from edge.models.registry import ModelRegistry
    from edge.train.engines import build_engine
    from edge.train.verify import verify

    root = Path(__file__).resolve().parents[1]
    reg = ModelRegistry(root / "models")
    card = reg.approved("defects")
    cfg = TensorRTBackend(cache_dir=tmp_path / "engines")
    built = build_engine(reg.root, "defects", None, cfg)
    engine = Path(built["engine"])
    mtime = engine.stat().st_mtime_ns
    again = build_engine(reg.root, "defects", None, cfg)
    assert again["engine"] == built["engine"] and engine.stat().st_mtime_ns == mtime
    print(f"\nengine {engine.name}: built in {built['seconds']} s, loaded in {again['seconds']} s")
    report = verify(
        reg.path(card.name, card.version),
        root / "calibration" / "verify-sim-v1",
        backend_config=cfg,
        record=False,
    )
    print(f"{card.name} {card.version} [{report['providers'][0]}]: {report['summary']}")
    assert report["passed"], report["summary"]
