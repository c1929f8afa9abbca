"""A new product can train from a backbone that installs with its ImageNet weights.

The shipped detector learnt simulated vials; on a product it never saw, a technician's
job proposes an ImageNet backbone (frozen) with a small trained head instead. Its ONNX file
has the YOLO detector's output layout, so the defect tool, INT8 quantisation, the
operating threshold and verify take it unchanged; the card says which backbone and
licence it starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.train import dataset

REPO = Path(__file__).resolve().parent.parent


def test_the_proposed_start_follows_the_datasets_classes():
    from edge.models.registry import ModelRegistry
    from edge.train.starts import propose, shipped_classes

    known = shipped_classes(REPO / "models")
    assert known == ModelRegistry(REPO / "models").approved("defects").classes
    assert propose(["capsule_defect"], known)["start"] == "imagenet"
    assert "capsule_defect" in propose(["capsule_defect"], known)["why"]
    assert propose(known[:2], known)["start"] == "shipped"
    assert propose(["crack"], [])["start"] == "imagenet"  # nothing shipped to start from


def test_an_unknown_start_is_refused_in_words():
    from edge.web.jobrun import chosen_start

    with pytest.raises(ValueError, match="unknown training start 'resnet'"):
        chosen_start({"start": "resnet", "models_dir": str(REPO / "models")}, ["crack"])
    got = chosen_start({"models_dir": str(REPO / "models")}, ["capsule_defect"])
    assert got == {"start": "imagenet", "proposed": "imagenet", "why": got["why"]}
    asked = chosen_start({"start": "shipped", "models_dir": str(REPO / "models")}, ["x"])
    assert asked["start"] == "shipped" and asked["proposed"] == "imagenet"


def test_the_exported_head_only_detector_fits_the_yolo_decode(tmp_path):
    import onnxruntime as ort
    import torch

    from edge.inference import yolo
    from edge.train import patch_detector as pd

    size = 96
    feats = pd.backbone(size, [4, 10])
    head = pd._head(152, 2, 16)
    with torch.no_grad():  # every box 2 cells wide on each side; class 1 certain at one cell
        head.box.weight.zero_()
        head.box.bias.fill_(float(np.log(2.0)))
        head.cls.weight.zero_()
        head.cls.bias.copy_(torch.tensor([-9.0, -9.0]))
    grid = (size // pd.STRIDE, size // pd.STRIDE)
    path = pd.export(pd.detector_module(feats, head, grid), tmp_path / "m.onnx", size)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    img = np.full((60, 90, 3), 200, np.uint8)
    x, lb = yolo.letterbox(img, size)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape == (1, 4 + 2, grid[0] * grid[1])
    # boxes in input pixels: cell (row 6, column 5) is centred at (44, 52), 32 px wide
    k = 6 * grid[1] + 5
    assert out[0, :4, k] == pytest.approx([44.0, 52.0, 32.0, 32.0], abs=1e-3)
    assert out[0, 4:].max() < 0.01  # sigmoid scores, not logits
    assert yolo.decode(out, lb, ["a", "b"], conf=0.25) == []
    # the same file with one confident cell decodes to one box in the photo's pixels
    out[0, 5, k] = 0.9
    (det,) = yolo.decode(out, lb, ["a", "b"], conf=0.25)
    assert det["cls"] == "b" and det["score"] == pytest.approx(0.9)
    assert det["bbox"] == pytest.approx(
        [(28 - lb.pad_x) / lb.scale, (36 - lb.pad_y) / lb.scale, 32 / lb.scale, 32 / lb.scale],
        abs=1,
    )
    # the logit and box convolutions and the decode stay in float when quantised
    import onnx

    from edge.train.quantize import head_nodes_to_exclude

    excluded = head_nodes_to_exclude(onnx.load(str(path)))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node if n.name in excluded}
    assert {"Conv", "Exp", "Sigmoid", "Concat"} <= ops
    # and so do the first convolutions, which see the [0, 1] input (quantize.FLOAT_INPUT)
    first = [n for n in excluded if n.startswith(("/features/stem/", "/features/blocks.0/"))]
    assert len(first) >= 4 and not any(n.startswith("/features/blocks.1/") for n in excluded)
    assert len(excluded) < 40


def _spots(root: Path, n: int = 24) -> Path:
    """Bright photos, every other one with one dark spot (labelled), as a technician's."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for i in range(n):
        img = np.clip(rng.normal(190, 6, (96, 128, 3)), 0, 255).astype(np.uint8)
        line = ""
        if i % 2:
            cx, cy = int(rng.integers(24, 104)), int(rng.integers(24, 72))
            cv2.circle(img, (cx, cy), 10, (30, 30, 40), -1)
            line = f"0 {cx / 128:.4f} {cy / 96:.4f} {22 / 128:.4f} {22 / 96:.4f}\n"
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), img)
        (root / "labels" / f"{i:03d}.txt").write_text(line)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": {0: "spot"}}))
    return root


def test_a_new_products_job_trains_a_head_on_imagenet_features_in_seconds(tmp_path):
    """The web job's own function: proposed start for a new class, a candidate quantised,
    its threshold chosen and verified like any detector's; the card records the start."""
    import time

    from edge.anomaly.export import BACKBONE, BACKBONE_LICENCE
    from edge.models import cards
    from edge.models.registry import ModelRegistry, model_roots
    from edge.train.patch_detector import ARCH
    from edge.web.jobrun import Progress, run_train

    ds = tmp_path / "datasets" / "ds-1"
    dataset.prepare([_spots(tmp_path / "raw")], ds, val_fraction=0.25, seed=0)
    roots = [str(p) for p in model_roots(tmp_path / "state", REPO / "models")]
    job = tmp_path / "job"
    job.mkdir()
    t0 = time.monotonic()
    res = run_train(
        {
            "dataset": str(ds),
            "models_dir": roots,
            "model_name": "spots",
            "product": "spots",
            "epochs": 40,
            "imgsz": 128,
            "min_examples": 4,
            "threads": 1,
        },
        job,
        Progress(job),
    )
    took = time.monotonic() - t0
    reg = ModelRegistry(roots)
    card = reg.card("spots", res["version"])
    assert card.arch == ARCH and card.classes == ["spot"] and card.input_size == 128
    assert card.boxes == "merge"  # one box per region, FP32 and INT8 alike
    assert card.training["start"]["start"] == "imagenet"
    sw = card.training["start_weights"]
    assert sw["backbone"] == BACKBONE and sw["licence"] == BACKBONE_LICENCE
    assert card.training["head"]["epochs_run"] >= 1
    assert card.training["head"]["heads_trained"] == 3  # averaged in the one float tail
    # quantised into the one INT8 file, threshold chosen, verify recorded on the card
    d = reg.path("spots", res["version"])
    assert (d / cards.INT8).is_file() and card.quantization["format"] == "QDQ"
    assert card.operating_threshold["conf"] > 0
    # verify ran on the INT8 file against the FP32 reference and recorded its report; the
    # image decisions at the operating threshold are the same (the box-level rules may
    # still fail a head trained for seconds on a dozen photos)
    assert card.verify["rule"] == "decisions at the operating threshold"
    assert card.verify["verdict_mismatches"] == 0 and card.verify["decisive_flips"] == 0
    # the candidate opens as the line opens it and finds a spot the training never saw
    import cv2

    img = np.full((96, 128, 3), 190, np.uint8)
    cv2.circle(img, (64, 48), 10, (30, 30, 40), -1)
    be = reg.open_model("spots", res["version"], allow_unapproved=True).load_detector()
    try:
        dets = be.infer(img, conf=cards.operating_conf(card))
        assert dets and dets[0]["cls"] == "spot"
        x, y, w, h = dets[0]["bbox"]
        assert x <= 64 <= x + w and y <= 48 <= y + h
        assert be.infer(np.full((96, 128, 3), 190, np.uint8), conf=cards.operating_conf(card)) == []
    finally:
        be.close()
    assert took < 120  # seconds on a CPU, not an hour
