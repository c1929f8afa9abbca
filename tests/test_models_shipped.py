"""The shipped default model: approved, intact, traceable, verified; the detector tool refuses bad models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge.config import OnnxBackend, SimulatorSource
from edge.inference.yolo import box_iou
from edge.inspect.base import Services, ToolContext
from edge.inspect.defects import DefectParams, DefectTool
from edge.models.cards import FP32, INT8, ModelError, load_card, save_card
from edge.models.registry import ModelRegistry
from edge.sim.twin import LineSimulator
from edge.train import dataset

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
CALIB = ROOT / "calibration" / "sim-v1"
VERIFY_SET = ROOT / "calibration" / "verify-sim-v1"
NAME = "defects"


def shipped_card():
    reg = ModelRegistry(MODELS)
    (version,) = reg.versions(NAME)
    return reg.card(NAME, version)


@pytest.fixture
def approved_copy(tmp_path) -> Path:
    """The shipped (approved) model in a scratch registry, for tests that damage it."""
    card = shipped_card()
    dst = tmp_path / "models"
    shutil.copytree(MODELS / NAME / card.version, dst / NAME / card.version)
    return dst


def tool(models_dir: Path, **params) -> DefectTool:
    p = DefectParams(model=NAME, **params)
    return DefectTool("defects", p, Services(models_dir=models_dir, backend=OnnxBackend(threads=2)))


def test_shipped_model_is_intact_and_names_what_it_was_made_from():
    card = shipped_card()
    assert ModelRegistry(MODELS).check_files(card) == []
    assert card.dataset["manifest_sha256"] and card.created and card.created_by
    assert card.calibration["manifest_sha256"] == dataset.read_manifest(CALIB)["sha256"]
    assert dataset.verify_manifest(CALIB) == []
    assert card.metrics and all(
        set(m["int8"]["ap50"]) <= set(card.classes) for m in card.metrics.values()
    )
    assert card.verify["int8_sha256"] == card.files[INT8]
    # change control: approved only with a passed verification of this very file, on an
    # image set that is not the calibration set
    assert card.status == "approved" and card.verify["passed"]
    assert card.verify["images_manifest_sha256"] == dataset.read_manifest(VERIFY_SET)["sha256"]
    assert card.verify["images_manifest_sha256"] != card.calibration["manifest_sha256"]
    assert dataset.verify_manifest(VERIFY_SET) == []
    assert any(h.action == "approve" for h in card.history)
    for f in (FP32, INT8):
        assert (MODELS / NAME / card.version / f).stat().st_size < 25 * 2**20


def _item_with(defect: str, scenario: str = "blisters", seed: int = 11):
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


@pytest.mark.parametrize(
    "scenario,defect",
    [
        ("blisters", "empty_pocket"),
        ("blisters", "broken_tablet"),
        ("vials", "crack"),
        ("vials", "particle"),
        ("vials", "scratch"),
    ],
)
def test_detector_reports_defects_and_hands_codes_to_the_barcode_tool(scenario, defect):
    t = tool(MODELS)
    img, truth, box = _item_with(defect, scenario)
    ctx = ToolContext(item_id=truth["id"], seq=0, deadline=1e18)
    res = t.inspect(img, ctx)
    hits = [f for f in res.findings if f.code == defect.upper()]
    assert hits, f"{defect} not found: {[f.to_dict() for f in res.findings]}"
    assert max(box_iou(f.bbox, box) for f in hits) > 0.3
    assert res.model == {"name": NAME, "version": t.card.version, "sha256": t.card.files[INT8]}
    # raw detections, codes included, are handed on to the barcode tool
    assert any(d.cls == "code" for d in ctx.detections)
    assert not any(f.code == "CODE" for f in res.findings)


@pytest.mark.parametrize("scenario", ["vials", "blisters"])
def test_a_dimming_lamp_is_compensated_and_too_dark_a_frame_rejects_as_lighting(scenario):
    """A lamp dimming fast: the simulated run ends at about 40 % of nominal light."""
    from edge.config import default_recipes

    spec = next(t for t in default_recipes()[scenario].tools if t.type == "defects")
    params = DefectParams(**spec.params)
    t = DefectTool("defects", params, Services(models_dir=MODELS, backend=OnnxBackend(threads=2)))
    sim = LineSimulator(
        SimulatorSource(
            scenario=scenario, seed=31, defect_rate=0.0, drift_per_hour=150.0, realtime=False
        )
    )
    lighting = false = 0
    for i in range(0, 150, 3):
        img, truth = sim.render(i)
        res = t.inspect(img, ToolContext(item_id="x", seq=i, deadline=1e18))
        codes = {f.code for f in res.findings}
        if truth["light"] > 1 / params.max_gain + 0.03:
            false += bool(codes)  # compensated: a good item stays good
        elif truth["light"] < 1 / params.max_gain - 0.03:
            lighting += codes == {"LIGHTING"}
            assert codes == {"LIGHTING"}, (truth["light"], codes)
    assert false == 0 and lighting >= 5


def test_the_detector_passes_good_items():
    t = tool(MODELS)
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=12, defect_rate=0.0, realtime=False))
    for i in range(10):
        img, truth = sim.render(i)
        assert truth["expected"] == "PASS"
        res = t.inspect(img, ToolContext(item_id=truth["id"], seq=i, deadline=1e18))
        assert res.findings == [], [f.to_dict() for f in res.findings]


def _dir(models: Path) -> Path:
    return models / NAME / shipped_card().version


def test_tool_refuses_a_model_whose_file_does_not_match_its_card(approved_copy):
    models, d = approved_copy, _dir(approved_copy)
    data = bytearray((d / INT8).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / INT8).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the card"):
        tool(models)


def test_tool_refuses_a_model_that_is_not_approved(approved_copy):
    models, d = approved_copy, _dir(approved_copy)
    card = load_card(d)
    card.status = "retired"
    save_card(d, card)
    with pytest.raises(ModelError, match="no approved version"):
        tool(models)
    with pytest.raises(ModelError, match="retired, not approved"):
        tool(models, version=card.version)


def test_tool_refuses_a_truncated_model_even_when_the_card_was_rehashed(approved_copy):
    models, d = approved_copy, _dir(approved_copy)
    (d / INT8).write_bytes((d / INT8).read_bytes()[:100_000])
    card = load_card(d)
    card.files[INT8] = dataset.sha256_file(d / INT8)
    save_card(d, card)
    with pytest.raises(ModelError, match="cannot load model"):
        tool(models)


def test_tool_refuses_a_model_of_another_input_shape(approved_copy):
    models, d = approved_copy, _dir(approved_copy)
    card = load_card(d)
    card.input_size = 416
    save_card(d, card)
    with pytest.raises(ModelError, match="input shape"):
        tool(models)


def test_tool_refuses_thresholds_for_classes_the_model_does_not_know(approved_copy):
    with pytest.raises(ModelError, match="not in model"):
        tool(approved_copy, class_conf={"bubble": 0.3})


def edge_model(*args: str):
    from typer.testing import CliRunner

    from edge.train.cli import model_app

    return CliRunner().invoke(model_app, [str(a) for a in args])


def test_edge_model_verify_reports_the_shipped_int8_result():
    card = shipped_card()
    r = edge_model(
        "verify", NAME, card.version, "--images", VERIFY_SET, "--models", MODELS, "--no-record"
    )
    assert r.exit_code == (0 if card.verify["passed"] else 1), r.output
    assert card.verify["summary"] in r.output  # the same, reproducible report as in the card


def test_edge_model_verify_passes_a_backend_that_computes_what_the_reference_does(approved_copy):
    d = _dir(approved_copy)
    shutil.copyfile(d / FP32, d / INT8)  # the same network: any difference is the tool's fault
    c = load_card(d)
    c.status, c.files[INT8] = "candidate", dataset.sha256_file(d / INT8)
    save_card(d, c)
    r = edge_model(
        "verify", NAME, c.version, "--images", CALIB, "--limit", "24", "--models", approved_copy
    )
    assert r.exit_code == 0, r.output
    assert "24 images, 24 identical verdicts, mean IoU 1.000" in r.output


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


def test_verify_fails_with_a_clear_report_for_a_broken_int8_model_and_blocks_approval(
    approved_copy,
):
    models, d = approved_copy, _dir(approved_copy)
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


def test_cpu_rewrite_of_int8_activations_keeps_the_numbers():
    """The uint8 view the CPU session runs is the signed Q/DQ file's arithmetic exactly."""
    import onnxruntime as ort

    from edge.inference.cpu_graph import qdq_activations_to_uint8
    from edge.inference.yolo import letterbox

    card = shipped_card()
    path = MODELS / NAME / card.version / INT8
    m = onnx.load(str(path))
    assert qdq_activations_to_uint8(m) > 50
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain Q/DQ math
    signed = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    unsigned = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    img, _, _ = _item_with("broken_tablet")
    x, _ = letterbox(img, card.input_size)
    name = signed.get_inputs()[0].name
    a = signed.run(None, {name: x})[0]
    b = unsigned.run(None, {name: x})[0]
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_int8_scores_are_not_rounded_to_a_few_logit_steps():
    """The head's logit convolutions stay in float (see edge.train.quantize): with int8
    logits every score came out as sigmoid(k) = 0.50, 0.73, 0.88, 0.95, and a false
    foreign tablet at exactly 0.50 passed a 0.5 threshold."""
    t = tool(MODELS)
    scores = set()
    for defect in ("broken_tablet", "foreign_tablet", "empty_pocket"):
        img, _, _ = _item_with(defect)
        scores |= {round(d["score"], 4) for d in t.backend.infer(img, conf=0.05)}
    steps = {round(1 / (1 + np.exp(-k)), 4) for k in range(-3, 8)}
    assert len(scores - steps) >= 3, sorted(scores)


def _sessions(*models: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return [
        ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        for m in models
    ]


def _run(sess, x):
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_cpu_softmax_rewrite_is_the_same_function():
    from edge.inference.cpu_graph import decompose_softmax
    from edge.inference.yolo import letterbox

    path = MODELS / NAME / shipped_card().version / FP32
    plain, rewritten = onnx.load(str(path)), onnx.load(str(path))
    assert decompose_softmax(rewritten) >= 1
    assert not any(n.op_type == "Softmax" for n in rewritten.graph.node)
    a, b = _sessions(plain, rewritten)
    x, _ = letterbox(_item_with("broken_tablet")[0], shipped_card().input_size)
    np.testing.assert_allclose(_run(a, x), _run(b, x), atol=1e-3, rtol=1e-4)


def test_cpu_relu_folding_removes_every_float_relu_and_stays_as_close_to_fp32():
    """Each ReLU of the INT8 file runs as a clamp inside QLinearConv's output range. It
    rounds once where the file rounds twice, so it must be at least as close to FP32."""
    from edge.inference.cpu_graph import fold_relu_into_qdq, qdq_activations_to_uint8
    from edge.inference.yolo import letterbox

    d = MODELS / NAME / shipped_card().version
    unfolded, folded = onnx.load(str(d / INT8)), onnx.load(str(d / INT8))
    relus = sum(n.op_type == "Relu" for n in folded.graph.node)
    assert relus > 50  # the shipped architecture is YOLO11n with ReLU
    for m in (unfolded, folded):
        qdq_activations_to_uint8(m)
    assert fold_relu_into_qdq(folded) == relus
    assert not any(n.op_type == "Relu" for n in folded.graph.node)
    ref, a, b = _sessions(onnx.load(str(d / FP32)), unfolded, folded)
    for defect in ("broken_tablet", "foreign_tablet"):
        x, _ = letterbox(_item_with(defect)[0], shipped_card().input_size)
        y, ya, yb = (_run(s, x)[0] for s in (ref, a, b))
        hit = y[4:].max(axis=0) > 0.25  # anchors that detect something
        assert hit.sum() >= 2
        for rows, sel, slack in ((slice(4, None), slice(None), 0.02), (slice(0, 4), hit, 1.0)):
            err_unfolded = np.abs(y[rows][:, sel] - ya[rows][:, sel]).max()
            err_folded = np.abs(y[rows][:, sel] - yb[rows][:, sel]).max()
            assert err_folded <= err_unfolded + slack, (err_folded, err_unfolded)


def test_item_level_evaluation_runs_the_whole_recipe_with_the_pinned_version(
    approved_copy, tmp_path
):
    """What a technician's evaluation reports besides AP: verdicts of the whole recipe."""
    from edge.config import default_recipes
    from edge.sim.export import export
    from edge.train.line_eval import acceptance_failures, line_evaluate

    folder = tmp_path / "items"
    export(SimulatorSource(scenario="vials", seed=41, defect_rate=0.5, realtime=False), folder, 40)
    recipe = default_recipes()["vials"]
    card = shipped_card()
    services = Services(models_dir=approved_copy, backend=OnnxBackend(threads=2))
    line = line_evaluate(recipe, services, folder, card.version)
    assert line["items"] == 40 and line["critical_items"] >= 5
    assert line["critical_escapes"] == 0 and line["false_rejects"] == 0
    assert acceptance_failures(recipe, line) == []
    # a candidate loads for an evaluation (it decides nothing), never for the line
    d = _dir(approved_copy)
    c = load_card(d)
    c.status = "candidate"
    save_card(d, c)
    line = line_evaluate(recipe, Services(models_dir=approved_copy), folder, card.version, limit=5)
    assert line["items"] == 5
    with pytest.raises(ModelError, match="not approved"):
        tool(approved_copy, version=card.version)


def test_the_evaluation_job_judges_item_rates_against_the_recipe_acceptance(
    approved_copy, tmp_path
):
    from edge.config import default_recipes
    from edge.sim.export import export
    from edge.web.jobrun import run_evaluate

    folder = tmp_path / "items"
    export(SimulatorSource(scenario="vials", seed=42, defect_rate=0.5, realtime=False), folder, 20)
    recipe = default_recipes()["vials"].model_copy(deep=True)
    recipe.acceptance.max_false_reject_rate = 0.0
    version = shipped_card().version
    args = {
        "name": NAME,
        "candidate": version,
        "test_dir": str(folder),
        "models_dir": str(approved_copy),
        "line_dir": str(folder),
        "recipe": recipe.model_dump(mode="json"),
    }
    out = run_evaluate(args, tmp_path, lambda ev: None)
    line = out["candidate"]["line"]
    assert line["items"] == 20 and line["critical_escapes"] == 0
    assert out["acceptance"]["criteria"]["max_critical_escape_rate"] == 0.001
    assert out["acceptance"]["passed"], out["acceptance"]


def test_item_rates_above_the_recipe_limits_fail_acceptance():
    from edge.config import default_recipes
    from edge.train.line_eval import acceptance_failures

    line = {
        "critical_escape_rate": 0.002,
        "critical_escapes": 1,
        "critical_items": 500,
        "false_reject_rate": 0.004,
        "false_rejects": 18,
        "expected_pass": 4500,
    }
    fails = acceptance_failures(default_recipes()["vials"], line)
    assert len(fails) == 2 and "1/500" in fails[0] and "18/4500" in fails[1]


def test_cpu_session_runs_every_int8_convolution_of_the_float_bias_file_as_qlinearconv(tmp_path):
    """The shipped file keeps biases in float (TensorRT cannot import INT32 bias Q/DQ); the
    CPU session still runs each INT8 convolution as one QLinearConv (the speed-up), with
    the in-memory rewrites (INT32 biases, uint8 activations, ReLU folding) applied."""
    import onnxruntime as ort

    from edge.inference.cpu_graph import cpu_model_bytes

    card = shipped_card()
    path = MODELS / NAME / card.version / INT8
    m = onnx.load(str(path))
    qdq_convs = sum(
        1
        for n in m.graph.node
        if n.op_type == "Conv"
        and any(p.op_type == "DequantizeLinear" and p.output[0] == n.input[1] for p in m.graph.node)
    )
    assert qdq_convs > 50
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "cpu.onnx")
    ort.InferenceSession(cpu_model_bytes(path), opts, providers=["CPUExecutionProvider"])
    fused = onnx.load(str(tmp_path / "cpu.onnx"))
    assert sum(n.op_type == "QLinearConv" for n in fused.graph.node) == qdq_convs


def test_cpu_bias_quantisation_detects_what_the_float_bias_file_detects():
    """INT32 biases round each bias to one accumulator step; a value that then crosses a
    rounding boundary downstream moves by one INT8 step, so raw outputs differ a little.
    What must not change is what is detected."""
    import onnxruntime as ort

    from edge.inference.cpu_graph import quantize_conv_biases
    from edge.inference.yolo import decode, letterbox

    card = shipped_card()
    path = MODELS / NAME / card.version / INT8
    m = onnx.load(str(path))
    assert quantize_conv_biases(m) > 50
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain Q/DQ math
    a = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    compared = 0
    for defect in ("broken_tablet", "foreign_tablet", "empty_pocket"):
        img = _item_with(defect)[0]
        x, lb = letterbox(img, card.input_size)
        da, db = (
            decode(s.run(None, {"images": x})[0], lb, card.classes, conf=0.25) for s in (a, b)
        )
        assert sorted(d["cls"] for d in da) == sorted(d["cls"] for d in db)
        for d in da:
            best = max(
                (e for e in db if e["cls"] == d["cls"]), key=lambda e: box_iou(d["bbox"], e["bbox"])
            )
            assert box_iou(d["bbox"], best["bbox"]) > 0.9 and abs(d["score"] - best["score"]) < 0.05
            compared += 1
    assert compared >= 3


def _recorded(state: Path, images: list[np.ndarray]) -> None:
    """Images in the line's store and database, as the recorder leaves them."""
    from edge.store.db import Database
    from edge.store.images import ImageStore

    db, store = Database(state / "edge.db"), ImageStore(state / "images")
    with db.transaction() as c:
        for img in images:
            sha, rel = store.put(img)
            db.add_image(c, sha, rel, img.shape[1], img.shape[0])


def _as_candidate(models: Path, version: str) -> Path:
    """The shipped network again, registered as a new candidate version."""
    d = models / NAME / version
    shutil.copytree(_dir(models), d)
    card = load_card(d)
    card.version, card.status = version, "candidate"
    save_card(d, card)
    return d


def test_shadow_mode_judges_each_version_as_the_line_does(approved_copy, tmp_path):
    """Shadow mode drives nothing, yet each recorded image is judged as the line would judge
    it (the line's recipe, the candidate pinned in its detector), and the candidate runs only
    while its files match its card."""
    from edge.config import default_recipes
    from edge.inspect.registry import ToolBuildError
    from edge.web.jobrun import run_shadow

    state = tmp_path / "state"
    _recorded(state, [_item_with(d)[0] for d in ("broken_tablet", "foreign_tablet")])
    d = _as_candidate(approved_copy, "9.9.9")
    recipe = default_recipes()["blisters"]
    args = {
        "name": NAME,
        "approved": shipped_card().version,
        "candidate": "9.9.9",
        "models_dir": str(approved_copy),
        "state_dir": str(state),
        "reject_classes": [c for c in shipped_card().classes if c != "code"],
        "recipe": recipe.model_dump(mode="json"),
    }
    out = run_shadow(args, tmp_path, lambda ev: None)
    assert out["recipe"] == "blisters" and out["images"] == 2
    assert out["differ"] == 0  # the same network, judged by the same rule, decides alike
    # without the line's recipe (or one that does not run the model): the model alone
    alone = run_shadow({**args, "recipe": None}, tmp_path, lambda ev: None)
    assert alone["recipe"] == f"{NAME} alone" and alone["images"] == 2
    data = bytearray((d / INT8).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / INT8).write_bytes(bytes(data))
    with pytest.raises(ToolBuildError, match=r"9\.9\.9: model\.int8\.onnx: SHA-256 .* does not"):
        run_shadow(args, tmp_path, lambda ev: None)


def _candidate_at_threshold(models: Path, conf: float, broken: bool) -> Path:
    """The shipped model as a candidate whose card records an operating threshold."""
    d = _dir(models)
    if broken:
        _break_int8(d)
    c = load_card(d)
    c.status, c.verify = "candidate", {}
    c.operating_threshold = {"conf": conf, "rule": "set by the test", "on": "validation"}
    c.files[INT8] = dataset.sha256_file(d / INT8)
    save_card(d, c)
    return d


def test_verify_at_the_operating_threshold_passes_the_int8_file_that_decides_as_fp32(
    approved_copy,
):
    d = _candidate_at_threshold(approved_copy, 0.3, broken=False)
    r = edge_model(
        "verify", NAME, load_card(d).version, "--images", CALIB, "--limit", "24",
        "--models", approved_copy,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = load_card(d).verify
    assert report["rule"] == "decisions at the operating threshold" and report["conf"] == 0.3
    assert report["decisive_flips"] == 0 and report["boxes"] > 0
    assert "at the operating threshold 0.30" in report["summary"]


def test_verify_at_the_operating_threshold_still_fails_a_broken_int8_file(approved_copy):
    d = _candidate_at_threshold(approved_copy, 0.3, broken=True)
    r = edge_model(
        "verify", NAME, load_card(d).version, "--images", CALIB, "--limit", "24",
        "--models", approved_copy,
    )  # fmt: skip
    assert r.exit_code == 1 and "FAILED: " in r.output
    report = load_card(d).verify
    assert report["rule"] == "decisions at the operating threshold"
    assert not report["passed"] and report["failures"]
    with pytest.raises(ModelError, match="verify` has not passed"):
        ModelRegistry(approved_copy).approve(NAME, load_card(d).version, by="qa", reason="try")


def test_the_score_tolerance_widens_only_for_a_few_boxes():
    from edge.train.verify import score_tolerance

    assert score_tolerance(200) == score_tolerance(20) == 0.15
    assert 0.15 < score_tolerance(10) < score_tolerance(5) <= 0.3 == score_tolerance(1)


def test_the_model_bench_runs_over_the_shipped_registry_and_its_detectors():
    """`python bench/models.py --json` as the README gives it: every approved detector,
    FP32 against INT8. The shipped anomaly models (`task: anomaly`, their own bench) once
    made it stop on the first one's input shape."""
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "bench/models.py", "--no-ap", "--runs", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(run.stdout)
    reg = ModelRegistry(MODELS)
    assert set(res) == {n for n in reg.names() if reg.approved(n).task != "anomaly"}
    assert NAME in res and res[NAME]["int8"]["median_ms"] > 0
