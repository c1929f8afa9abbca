"""The TensorRT backend's GPU-free parts: engine cache keys, buffer planning, the Q/DQ model check.

TensorRT and pycuda cannot be installed on the CPU-only development machines; the
GPU tests at the end skip there with that reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.inference.base import BackendError
from edge.inference.tensorrt import (
    TensorSpec,
    check_engine_meta,
    check_qdq_model,
    engine_cache_key,
    engine_meta,
    plan_buffers,
)

SHA = "ab" * 32


def test_engine_cache_key_changes_with_runtime_gpu_model_and_flags():
    base = engine_cache_key("10.3.0", "Orin (nvgpu)", SHA, int8=True, fp16=True)
    assert base == engine_cache_key("10.3.0", "Orin (nvgpu)", SHA, True, True)  # stable
    others = {
        engine_cache_key("8.5.2", "Orin (nvgpu)", SHA, True, True),
        engine_cache_key("10.3.0", "NVIDIA H100", SHA, True, True),
        engine_cache_key("10.3.0", "Orin (nvgpu)", "cd" * 32, True, True),
        engine_cache_key("10.3.0", "Orin (nvgpu)", SHA, True, False),
        engine_cache_key("10.3.0", "Orin (nvgpu)", SHA, False, True),
    }
    assert base not in others and len(others) == 5
    assert "/" not in base and " " not in base  # a file name


def test_engine_built_for_another_tensorrt_or_gpu_is_refused():
    want = engine_meta("10.3.0", "Orin", SHA, True, True)
    assert check_engine_meta(dict(want), want) == []
    diffs = check_engine_meta({**want, "tensorrt": "8.6.1", "gpu": "Xavier"}, want)
    assert (
        len(diffs) == 2 and any("8.6.1" in d for d in diffs) and any("Xavier" in d for d in diffs)
    )


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
    "CPU-only development machines (run `edge model verify defects --backend tensorrt` on one)",
)
def test_tensorrt_engine_matches_fp32_reference(tmp_path):  # pragma: no cover - GPU only
    from edge.config import TensorRTBackend
    from edge.train import evaluate, registry

    card = registry.ModelRegistry("models").approved("defects")
    d = registry.ModelRegistry("models").path(card.name, card.version)
    report = evaluate.verify(
        d,
        "calibration/verify-sim-v1",
        backend_config=TensorRTBackend(cache_dir=tmp_path),
        record=False,
    )
    assert report["passed"], report["summary"]
