"""Inference plumbing: letterbox geometry, YOLO output decode, NMS, the ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.config import OnnxBackend, TensorRTBackend
from edge.inference import yolo
from edge.inference.base import BackendError, create_backend

NAMES = ["crack", "particle", "code"]


def raw_output(
    boxes: list[tuple[float, float, float, float, int, float]], n: int = 50
) -> np.ndarray:
    """A model output 1x(4+C)xN with the given (cx, cy, w, h, cls, score) in input pixels."""
    out = np.zeros((1, 4 + len(NAMES), n), np.float32)
    for i, (cx, cy, w, h, c, s) in enumerate(boxes):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + c, i] = s
    return out


def test_letterbox_keeps_aspect_and_pads_grey():
    img = np.full((480, 640, 3), 200, np.uint8)
    t, lb = yolo.letterbox(img, 320)
    assert t.shape == (1, 3, 320, 320) and t.dtype == np.float32
    assert lb.scale == pytest.approx(0.5) and lb.pad_x == 0 and lb.pad_y == 40
    assert t[0, :, 0, 0] == pytest.approx([114 / 255] * 3)  # padding
    assert t[0, :, 160, 160] == pytest.approx([200 / 255] * 3)  # image


def test_letterbox_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match="empty"):
        yolo.letterbox(np.zeros((0, 0, 3), np.uint8), 320)
    with pytest.raises(ValueError, match="uint8"):
        yolo.letterbox(np.zeros((10, 10, 3), np.float32), 320)
    with pytest.raises(ValueError, match="shape"):
        yolo.letterbox(np.zeros((10, 10, 5), np.uint8), 320)


def test_decoded_box_lands_where_it_was_in_the_original_image():
    # a 40x20 box at (100, 200) in a 640x480 image is at (50, 100+40 pad) in the 320 input
    lb = yolo.Letterbox(scale=0.5, pad_x=0, pad_y=40, width=640, height=480)
    out = raw_output([(50 + 10, 140 + 5, 20, 10, 0, 0.9)])
    (d,) = yolo.decode(out, lb, NAMES)
    assert d["cls"] == "crack" and d["score"] == pytest.approx(0.9)
    assert d["bbox"] == [100, 200, 40, 20]


def test_nms_drops_duplicates_of_one_class_but_keeps_overlapping_classes():
    lb = yolo.Letterbox(1.0, 0, 0, 320, 320)
    out = raw_output(
        [
            (100, 100, 40, 40, 0, 0.9),
            (102, 101, 40, 40, 0, 0.8),  # same crack again
            (100, 100, 40, 40, 2, 0.7),  # a code under it: another class
            (250, 250, 20, 20, 0, 0.6),  # another crack elsewhere
        ]
    )
    dets = yolo.decode(out, lb, NAMES, iou=0.45)
    assert sorted((d["cls"], d["score"]) for d in dets) == [
        ("code", pytest.approx(0.7)),
        ("crack", pytest.approx(0.6)),
        ("crack", pytest.approx(0.9)),
    ]


def fragments(jitter: float = 0.0) -> np.ndarray:
    """One defect region scored cell by cell (four overlapping fragment boxes), a second
    region apart, and a code box over the first region."""
    j = jitter
    return raw_output(
        [
            (100, 100, 40, 60, 0, 0.62 + j),
            (90, 110, 50, 30, 0, 0.45 - j),
            (115, 95, 36, 40, 0, 0.43 + j),
            (105, 120, 30, 30, 0, 0.30 - j),
            (250, 250, 20, 20, 0, 0.50),
            (100, 100, 40, 40, 2, 0.70),
        ]
    )


def test_a_regions_fragment_boxes_merge_into_one_box_with_its_highest_score():
    lb = yolo.Letterbox(1.0, 0, 0, 320, 320)
    dets = yolo.decode(fragments(), lb, NAMES, conf=0.25, boxes="merge")
    assert [(d["cls"], d["score"]) for d in dets] == [
        ("code", pytest.approx(0.70)),  # another class is never merged into a crack
        ("crack", pytest.approx(0.62)),
        ("crack", pytest.approx(0.50)),  # the region apart stays apart
    ]
    # the score-weighted mean of the four fragments' corners
    assert dets[1]["bbox"] == pytest.approx([82, 83, 40, 43], abs=1)
    # the image's decision at any threshold is the one NMS gives (the top score is kept)
    for conf in (0.3, 0.55, 0.65):
        nms = yolo.decode(fragments(), lb, NAMES, conf=conf)
        merged = yolo.decode(fragments(), lb, NAMES, conf=conf, boxes="merge")
        assert max((d["score"] for d in nms), default=0) == max(
            (d["score"] for d in merged), default=0
        )


def test_merged_boxes_barely_move_when_the_scores_move_a_little():
    """What INT8 rounding does to a region's scores: NMS may keep another fragment (a box
    without a counterpart), a merged region stays where it was."""
    lb = yolo.Letterbox(1.0, 0, 0, 320, 320)
    a = yolo.decode(fragments(), lb, NAMES, boxes="merge")
    b = yolo.decode(fragments(0.03), lb, NAMES, boxes="merge")
    assert len(a) == len(b) == 3
    assert all(yolo.box_iou(p["bbox"], q["bbox"]) > 0.9 for p, q in zip(a, b, strict=True))


def test_an_unknown_box_rule_is_refused(tmp_path):
    path = fixed_output_model(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="unknown box rule 'wbf'"):
        create_backend(OnnxBackend()).load(path, 320, NAMES, boxes="wbf")


def test_thresholds_per_class():
    lb = yolo.Letterbox(1.0, 0, 0, 320, 320)
    out = raw_output([(50, 50, 10, 10, 0, 0.3), (150, 150, 10, 10, 1, 0.3)])
    dets = yolo.decode(out, lb, NAMES, conf=np.array([0.5, 0.2, 0.5], np.float32))
    assert [d["cls"] for d in dets] == ["particle"]


def test_output_that_does_not_fit_the_classes_is_an_error():
    with pytest.raises(ValueError, match="does not fit 3 classes"):
        yolo.decode(np.zeros((1, 9, 10), np.float32), yolo.Letterbox(1, 0, 0, 1, 1), NAMES)


def fixed_output_model(path: Path, size: int = 320, out: np.ndarray | None = None) -> Path:
    """A tiny ONNX detector whose output is a constant (plus 0 x the input): real ORT plumbing."""
    out = raw_output([(160, 160, 40, 40, 1, 0.8)]) if out is None else out
    g = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
            helper.make_node("Mul", ["m", "zero"], ["z"]),
            helper.make_node("Add", ["base", "z"], ["output0"]),
        ],
        "fixed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
        [
            numpy_helper.from_array(out, "base"),
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_onnx_backend_runs_a_model_and_maps_boxes_back(tmp_path):
    be = create_backend(OnnxBackend(threads=1)).load(
        fixed_output_model(tmp_path / "m.onnx"), 320, NAMES
    )
    assert be.providers[-1] == "CPUExecutionProvider"
    dets = be.infer(np.zeros((480, 640, 3), np.uint8))
    assert dets == [{"cls": "particle", "score": pytest.approx(0.8), "bbox": [280, 200, 80, 80]}]


def test_onnx_backend_refuses_a_model_of_another_input_size(tmp_path):
    path = fixed_output_model(tmp_path / "m.onnx", size=416)
    with pytest.raises(BackendError, match=r"input shape \[1, 3, 416, 416\] does not match"):
        create_backend(OnnxBackend()).load(path, 320, NAMES)


def test_onnx_backend_refuses_a_model_with_other_classes(tmp_path):
    path = fixed_output_model(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="does not fit 5 classes"):
        create_backend(OnnxBackend()).load(path, 320, [*NAMES, "a", "b"])


def test_corrupt_or_truncated_model_file_is_a_clear_error(tmp_path):
    good = fixed_output_model(tmp_path / "m.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(BackendError, match="cannot load model"):
        create_backend(OnnxBackend()).load(bad, 320, NAMES)
    with pytest.raises(BackendError, match="not found"):
        create_backend(OnnxBackend()).load(tmp_path / "missing.onnx", 320, NAMES)


def test_missing_execution_provider_is_refused_not_replaced(tmp_path):
    path = fixed_output_model(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="not available here"):
        create_backend(OnnxBackend(providers=["NoSuchExecutionProvider"])).load(path, 320, NAMES)


def test_tensorrt_backend_without_tensorrt_is_reported_not_replaced(tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the missing-runtime path cannot be shown")
    except ImportError:
        pass
    path = fixed_output_model(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="tensorrt"):
        create_backend(TensorRTBackend()).load(path, 320, NAMES)
