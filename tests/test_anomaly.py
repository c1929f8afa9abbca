"""Teach a product from good units only: fit, change control, the anomaly tool on the line.

One small model is fitted once (simulated good vials, a 320x256 input, a small memory)
and used by every test: the requirements are about refusal, change control and
findings, not about accuracy (that is bench/anomaly.py on real photos).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.anomaly.fit import FitError, FitOptions, fit, load_good
from edge.anomaly.model import MEMORY
from edge.anomaly.verify import verify
from edge.config import SimulatorSource
from edge.domain import Detection, Reason
from edge.inspect.base import Services, ToolContext
from edge.inspect.registry import tool_class
from edge.models.cards import INT8, ModelError, load_card
from edge.models.registry import ModelRegistry
from edge.sim.twin import LineSimulator

pytest.importorskip("efficientnet_lite_pytorch")

OPT = FitOptions(input_hw=(256, 320), memory_size=300, folds=3, calibration_images=4)


def good_vials(n: int, seed: int = 11) -> list[np.ndarray]:
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=seed, realtime=False, defect_rate=0))
    return [sim.render(i)[0] for i in range(n)]


def with_stain(img: np.ndarray) -> np.ndarray:
    """A defect no model was trained on: a dark ink stain in the middle of the frame."""
    out = img.copy()
    h, w = out.shape[:2]
    cv2.circle(out, (w // 2, h // 2), 40, (20, 20, 120), -1)
    return out


def write(folder: Path, images: list[np.ndarray], prefix: str = "g") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{prefix}{i:03d}.png"), img)
    return folder


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    root = tmp_path_factory.mktemp("anomaly")
    imgs = good_vials(16)
    good = write(root / "good", imgs[:12])
    held = write(root / "held", imgs[12:])
    models = root / "models"
    card = fit([good], "vial-anomaly", "1.0.0", models, opt=OPT, by="tester")
    return {"root": root, "good": good, "held": held, "models": models, "card": card}


def make_tool(models: Path, **params):
    cls = tool_class("anomaly")
    p = cls.Params.model_validate({"model": "vial-anomaly", **params})
    return cls("anomaly", p, Services(models_dir=models))


def ctx() -> ToolContext:
    return ToolContext(item_id="i1", seq=1, deadline=time.monotonic() + 10)


def approve(taught) -> None:
    reg = ModelRegistry(taught["models"])
    if reg.approved("vial-anomaly") is None:
        report = verify(reg.path("vial-anomaly", "1.0.0"), taught["held"])
        assert report["passed"], report["summary"]
        reg.approve("vial-anomaly", "1.0.0", by="qa", reason="taught from good vials")


def test_the_card_records_how_the_threshold_was_set_and_what_it_was_taught_on(taught):
    card = load_card(taught["models"] / "vial-anomaly" / "1.0.0")
    a = card.model_extra["anomaly"]
    assert card.status == "candidate" and card.task == "anomaly"
    assert a["threshold"] > 0 and a["target_frr"] == 0.01
    assert "k-fold" in a["threshold_method"]
    assert a["good_images"] == 12 and len(a["good_manifest_sha256"]) == 64
    assert a["backbone"] == "efficientnet-lite0" and "Apache-2.0" in a["backbone_licence"]
    assert a["held_out"]["n"] == 12
    for f in ("model.onnx", INT8, MEMORY):
        assert len(card.files[f]) == 64


def test_the_card_records_the_feature_settings_the_line_must_reproduce(taught):
    d = taught["models"] / "vial-anomaly" / "1.0.0"
    a = load_card(d).model_extra["anomaly"]
    assert a["preprocess"] == "linear" and a["pool"] == 1 and a["margin"] == 1
    assert a["feature_dim"] == a["projection"] == 96  # the good patches' main axes
    assert np.load(d / MEMORY).shape[1] == 96


def test_a_card_written_before_these_settings_keeps_its_scoring():
    from edge.anomaly.model import AnomalySpec

    old = AnomalySpec.model_validate(
        {
            "input_hw": [512, 768],
            "grid": [64, 96],
            "layers": [4, 10],
            "image_size": [1500, 1000],
            "threshold": 46.8,
        }
    )
    assert (old.preprocess, old.margin, old.pool) == ("area", 0, 3)


def test_the_line_refuses_a_candidate_that_was_not_approved(taught):
    if ModelRegistry(taught["models"]).approved("vial-anomaly") is not None:
        pytest.skip("already approved by an earlier test in this module")
    with pytest.raises(ModelError, match="no approved version"):
        make_tool(taught["models"])


def test_approval_refuses_an_anomaly_model_whose_verification_failed(taught, tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(taught["models"], models)
    reg = ModelRegistry(models)
    d = reg.path("vial-anomaly", "1.0.0")
    card = yaml.safe_load((d / "card.yaml").read_text())
    if card["status"] != "candidate":
        pytest.skip("already approved")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not verify(d, empty)["passed"]
    with pytest.raises(ModelError, match="has not passed"):
        reg.approve("vial-anomaly", "1.0.0", by="qa")


def test_a_stain_on_a_good_vial_is_an_anomaly_and_held_good_vials_pass(taught):
    approve(taught)
    tool = make_tool(taught["models"])
    held = [cv2.imread(str(p)) for p in sorted(taught["held"].iterdir())]
    for img in held:
        r = tool.run(img, ctx())
        assert r.error is None and r.findings == [], r
        assert r.model["name"] == "vial-anomaly" and len(r.model["sha256"]) == 64
    c = ctx()
    r = tool.run(with_stain(held[0]), c)
    assert [f.code for f in r.findings] == [Reason.ANOMALY.value]
    f = r.findings[0]
    assert f.score > f.value  # score above the threshold
    x, y, w, h = f.bbox
    assert x <= 320 <= x + w and y <= 240 <= y + h, f.bbox  # the hottest area holds the stain
    assert c.anomaly_maps[0].heat.shape == (32, 40)


def test_a_frame_of_another_size_is_a_reject_not_a_pass(taught):
    approve(taught)
    tool = make_tool(taught["models"])
    r = tool.run(np.zeros((100, 100, 3), np.uint8), ctx())
    assert r.error and "fitted on 640x480" in r.error


def test_a_region_outside_the_image_is_refused_at_construction(taught):
    approve(taught)
    with pytest.raises(ModelError, match="outside the 640x480 image"):
        make_tool(taught["models"], regions={"cap": [600, 0, 640, 480]})


def test_a_corrupted_memory_file_stops_the_line_from_loading_the_model(taught, tmp_path):
    approve(taught)
    import shutil

    models = tmp_path / "models"
    shutil.copytree(taught["models"], models)
    mem = models / "vial-anomaly" / "1.0.0" / MEMORY
    data = bytearray(mem.read_bytes())
    data[-8:] = b"\x00" * 8
    mem.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"memory\.npy: SHA-256"):
        make_tool(models)


def test_fit_refuses_too_few_good_images(tmp_path):
    good = write(tmp_path / "good", good_vials(4))
    with pytest.raises(FitError, match="at least 10 are needed"):
        load_good([good])


def test_fit_refuses_images_of_mixed_sizes(tmp_path):
    imgs = good_vials(10)
    imgs[3] = cv2.resize(imgs[3], (320, 240))
    good = write(tmp_path / "good", imgs)
    with pytest.raises(FitError, match="mixed sizes"):
        load_good([good])


def test_fit_refuses_a_region_outside_the_images(tmp_path):
    good = write(tmp_path / "good", good_vials(10))
    with pytest.raises(FitError, match="outside the 640x480 image"):
        load_good([good], roi=(500, 0, 200, 100))


def test_the_recipe_key_is_validated_like_every_tool():
    from edge.config import ToolSpec
    from edge.inspect.registry import validate_tool_spec

    validate_tool_spec(ToolSpec(type="anomaly", model="m"))
    with pytest.raises(ValueError, match="threshold"):
        validate_tool_spec(ToolSpec(type="anomaly", model="m", threshold=-1))


def test_regions_located_by_an_earlier_tool_are_scored_and_a_missing_one_rejects(taught):
    approve(taught)
    tool = make_tool(taught["models"], regions_from="vial", min_regions=1)
    held = cv2.imread(str(sorted(taught["held"].iterdir())[0]))
    box = Detection("vial", 0.9, (0, 0, 640, 480))
    c = ctx()
    c.detections = [box, Detection("code", 0.9, (10, 10, 50, 50))]
    assert tool.run(held, c).findings == []
    c = ctx()
    c.detections = [box]
    r = tool.run(with_stain(held), c)
    assert [f.code for f in r.findings] == [Reason.ANOMALY.value]
    r = tool.run(held, ctx())  # the earlier tool found no vial
    assert [f.code for f in r.findings] == [Reason.ANOMALY.value]
    assert "0 vial region(s) located" in r.findings[0].message


def test_edge_anomaly_fit_says_why_it_refuses_a_good_set(tmp_path):
    import subprocess
    import sys

    good = write(tmp_path / "good", good_vials(3))
    cmd = [sys.executable, "-c", "from edge.cli import main; main()", "anomaly", "fit"]
    p = subprocess.run(
        [*cmd, "--good", str(good), "--name", "m", "--version", "1", "--models", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1
    assert "3 good images" in p.stderr and "at least 10 are needed" in p.stderr
    assert not (tmp_path / "m").exists()
