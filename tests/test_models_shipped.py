"""The shipped default model: approved, intact, traceable, verified; the detector tool refuses bad models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge.capture.simulator import LineSimulator
from edge.config import OnnxBackend, SimulatorSource
from edge.inference.base import create_backend
from edge.inference.yolo import box_iou
from edge.inspect.base import Services, ToolContext
from edge.inspect.defects import DefectParams, DefectTool
from edge.train import dataset
from edge.train.registry import FP32, INT8, ModelError, ModelRegistry, load_card, save_card

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
CALIB = ROOT / "calibration" / "sim-v1"
NAME = "defects"


@pytest.fixture(scope="module")
def shipped():
    card, path = ModelRegistry(MODELS).resolve(NAME)
    return card, path


def tool(models_dir: Path, **params) -> DefectTool:
    p = DefectParams(model=NAME, **params)
    return DefectTool("defects", p, Services(models_dir=models_dir, backend=OnnxBackend(threads=2)))


def test_shipped_model_is_approved_intact_and_names_what_it_was_made_from(shipped):
    card, path = shipped
    assert card.status == "approved" and path.name == INT8
    assert ModelRegistry(MODELS).check_files(card) == []
    assert card.dataset["manifest_sha256"] and card.created and card.created_by
    assert card.calibration["manifest_sha256"] == dataset.read_manifest(CALIB)["sha256"]
    assert dataset.verify_manifest(CALIB) == []
    for test_set in card.metrics.values():
        assert set(test_set["int8"]["ap50"]) <= set(card.classes)
    assert card.verify["passed"] and card.verify["int8_sha256"] == card.files[INT8]
    for f in (FP32, INT8):
        assert (path.parent / f).stat().st_size < 25 * 2**20


def _item_with(defect: str, scenario: str = "vials", seed: int = 11):
    """First simulated item with this defect (a seed used neither in training nor in tests of the set)."""
    sim = LineSimulator(
        SimulatorSource(
            scenario=scenario,
            seed=seed,
            defect_rate=1.0,
            defect_weights={defect: 1.0},
            realtime=False,
        )
    )
    for i in range(50):
        img, truth = sim.render(i)
        boxes = [d["bbox"] for d in truth["defects"] if d["class"] == defect]
        if boxes:
            return img, truth, boxes[0]
    raise AssertionError(f"no {defect} in 50 items")


@pytest.mark.parametrize("defect", ["crack", "particle", "scratch"])
def test_detector_finds_the_defects_classic_tools_cannot(defect):
    t = tool(MODELS)
    img, truth, box = _item_with(defect)
    ctx = ToolContext(item_id=truth["id"], seq=0, deadline=1e18)
    res = t.inspect(img, ctx)
    hits = [f for f in res.findings if f.code == defect.upper()]
    assert hits, f"{defect} not found: {[f.to_dict() for f in res.findings]}"
    assert max(box_iou(f.bbox, box) for f in hits) > 0.3
    assert res.model == {"name": NAME, "version": t.card.version, "sha256": t.card.files[INT8]}
    # raw detections, codes included, are handed on to the barcode tool
    assert any(d["cls"] == "code" for d in ctx.shared["detections"])
    assert not any(f.code == "CODE" for f in res.findings)


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    card = ModelRegistry(MODELS).approved(NAME)
    dst = tmp_path / "models"
    shutil.copytree(MODELS / NAME / card.version, dst / NAME / card.version)
    return dst, dst / NAME / card.version


def test_tool_refuses_a_model_whose_file_does_not_match_its_card(tmp_path):
    models, d = _copy(tmp_path)
    data = bytearray((d / INT8).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / INT8).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the card"):
        tool(models)


def test_tool_refuses_a_model_that_is_not_approved(tmp_path):
    models, d = _copy(tmp_path)
    card = load_card(d)
    card.status = "retired"
    save_card(d, card)
    with pytest.raises(ModelError, match="no approved version"):
        tool(models)
    with pytest.raises(ModelError, match="retired, not approved"):
        tool(models, version=card.version)


def test_tool_refuses_a_truncated_model_even_when_the_card_was_rehashed(tmp_path):
    models, d = _copy(tmp_path)
    (d / INT8).write_bytes((d / INT8).read_bytes()[:100_000])
    card = load_card(d)
    card.files[INT8] = dataset.sha256_file(d / INT8)
    save_card(d, card)
    with pytest.raises(ModelError, match="cannot load model"):
        tool(models)


def test_tool_refuses_a_model_of_another_input_shape(tmp_path):
    models, d = _copy(tmp_path)
    card = load_card(d)
    card.input_size = 416
    save_card(d, card)
    with pytest.raises(ModelError, match="input shape"):
        tool(models)


def test_tool_refuses_thresholds_for_classes_the_model_does_not_know():
    with pytest.raises(ModelError, match="not in model"):
        tool(MODELS, class_conf={"bubble": 0.3})


def edge_model(*args: str):
    from typer.testing import CliRunner

    from edge.train.cli import model_app

    return CliRunner().invoke(model_app, [str(a) for a in args])


def test_edge_model_verify_passes_for_the_shipped_int8_model():
    r = edge_model("verify", NAME, "--images", CALIB, "--limit", "24", "--models", MODELS)
    assert r.exit_code == 0, r.output
    assert "24 images, 24 identical verdicts" in r.output


def _break_int8(d: Path) -> None:
    """A deliberately broken INT8 model: one early conv's weight scales multiplied by 4."""
    m = onnx.load(str(d / INT8))
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and "model.2" in n.input[0]:
            s = inits[n.input[1]]
            s.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(s) * 4.0, s.name))
            break
    else:
        raise AssertionError("no weight DequantizeLinear found")
    onnx.save(m, str(d / INT8))


def test_verify_fails_with_a_clear_report_for_a_broken_int8_model_and_blocks_approval(tmp_path):
    models, d = _copy(tmp_path)
    _break_int8(d)
    card = load_card(d)
    card.status, card.verify = "candidate", {}
    card.files[INT8] = dataset.sha256_file(d / INT8)
    save_card(d, card)
    r = edge_model(
        "verify", NAME, card.version, "--images", CALIB, "--limit", "24", "--models", models
    )
    assert r.exit_code == 1
    assert "FAILED: " in r.output
    report = load_card(d).verify  # recorded in the candidate's card
    assert not report["passed"] and report["failures"]
    with pytest.raises(ModelError, match="verify` has not passed"):
        ModelRegistry(models).approve(NAME, card.version, by="qa", reason="try")


def test_cpu_rewrite_of_int8_activations_keeps_the_numbers(shipped):
    """The uint8 view the CPU session runs computes what the signed Q/DQ file says."""
    import onnxruntime as ort

    card, path = shipped
    be = create_backend(OnnxBackend()).load(path, card.input_size, card.classes)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # reference kernels
    ref = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    img, _, _ = _item_with("crack")
    from edge.inference.yolo import letterbox

    x, _ = letterbox(img, card.input_size)
    a = be.run(x)
    b = ref.run(None, {ref.get_inputs()[0].name: x})[0]
    scores_a, scores_b = a[0, 4:], b[0, 4:]
    assert np.abs(scores_a - scores_b).max() < 0.05
    assert np.median(np.abs(a[0, :4] - b[0, :4])) < 1.0  # box pixels
