"""Training that can work on a technician's few real photos.

Validation always holds defect images (a split with only good photos scored every model
0 and verified nothing); a class with too few labelled examples is refused in plain words;
the input size is proposed from the labelled box sizes (a 34 px defect on a 1500 px photo
must not shrink to 7 px); training starts from the project's own detector, its weights
read back from the shipped ONNX (nothing is downloaded); each product gets its own model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.models.registry import product_model_name
from edge.train import dataset, sizes

REPO = Path(__file__).resolve().parent.parent


def raw_folder(root: Path, bad: int, good: int, box=(0.5, 0.5, 0.02, 0.03)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    import cv2

    img = np.zeros((100, 150, 3), np.uint8)
    for i in range(bad + good):
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), img)
        line = f"0 {box[0]} {box[1]} {box[2]} {box[3]}\n" if i < bad else ""
        (root / "labels" / f"{i:03d}.txt").write_text(line)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": {0: "capsule_defect"}}))
    return root


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_holds_defect_images_even_when_they_are_few(tmp_path, seed):
    raw = raw_folder(tmp_path / "raw", bad=3, good=60)
    man = dataset.prepare([raw], tmp_path / "ds", val_fraction=0.15, seed=seed)
    assert man["split"]["val"]["defect_images"] >= 1
    assert man["split"]["train"]["defect_images"] >= 1
    assert man["split"]["val"]["images"] + man["split"]["train"]["images"] == 63
    assert man["examples"] == {"capsule_defect": 3}


def test_the_good_photos_share_of_validation_may_be_set_apart_from_the_defect_photos(tmp_path):
    """The operating threshold is chosen on the validation good photos: a bench may give
    them a larger share without taking defect photos from training."""
    raw = raw_folder(tmp_path / "raw", bad=30, good=150)
    man = dataset.prepare([raw], tmp_path / "ds", val_fraction=0.2, seed=0, good_fraction=0.5)
    val = man["split"]["val"]
    assert val["defect_images"] == 6 and val["images"] - val["defect_images"] == 75
    same = dataset.prepare([raw], tmp_path / "ds2", val_fraction=0.2, seed=0)
    assert same["split"]["val"]["images"] == 36  # by default the good photos' share is the same


def test_a_technicians_dataset_puts_half_the_good_photos_in_validation(tmp_path):
    """The web's frozen dataset (what the training job trains on) sets the operating
    threshold on half the good photos and keeps four in five defect photos to learn from."""
    import cv2

    from edge.store.labels import LabelledImage
    from edge.train.dataset_versions import build_version

    _ok, png = cv2.imencode(".png", np.zeros((100, 150, 3), np.uint8))
    box = {"cls": "capsule_defect", "bbox": [70, 45, 6, 6]}
    photos = [LabelledImage(f"{i:064x}", [box] if i < 30 else [], 150, 100) for i in range(180)]
    info = build_version(
        tmp_path,
        photos,
        lambda _sha: png.tobytes(),
        ["capsule_defect"],
        by="t",
        note=None,
        val_fraction=0.2,
    )
    val = dataset.read_manifest(tmp_path / info["version"])["split"]["val"]
    assert val["defect_images"] == 6 and val["images"] - val["defect_images"] == 75
    assert dataset.GOOD_VAL_FRACTION == 0.5


def test_a_class_with_too_few_examples_is_refused_in_plain_words():
    assert dataset.too_few({"capsule_defect": 3, "crack": 0, "scratch": 40}) == [
        "too few examples of class capsule_defect: 3 labelled, at least 8 are needed"
    ]


def test_the_input_size_is_proposed_from_the_labelled_box_sizes(tmp_path):
    # 3 % of a 150 px-high... boxes of 0.02 x 0.03 on 150 x 100 photos: 3 px short side
    raw = raw_folder(tmp_path / "raw", bad=10, good=2)
    dataset.prepare([raw], tmp_path / "ds", val_fraction=0.2, seed=0)
    assert sizes.box_scales(tmp_path / "ds")[0] == pytest.approx((3.0, 150))
    assert sizes.proposed_imgsz(tmp_path / "ds") == 800  # 150 * 16 / 3 = 800
    # a 34 px defect on a 1500 px photo needs about 704 px, not 320
    assert sizes.propose([(34.0, 1500)] * 5) == 736
    assert sizes.propose([(200.0, 640)]) == sizes.SMALLEST  # large defects: no need to grow
    assert sizes.propose([(2.0, 4000)]) == sizes.LARGEST
    assert sizes.propose([]) == sizes.SMALLEST


def test_each_product_gets_its_own_model_name():
    from edge.config import Recipe, ToolSpec

    vials = Recipe(name="vials", tools=[ToolSpec(type="defects", model="defects")])
    assert product_model_name(vials) == "defects"  # the model its recipe already runs
    assert product_model_name(Recipe(name="Capsules 20 mg", tools=[])) == "capsules-20-mg"
    assert product_model_name("9-blister") == "p-9-blister"


def test_training_starts_from_the_shipped_detector_read_back_from_its_onnx(tmp_path):
    """The converted model computes what the shipped ONNX computes, boxes and scores."""
    import onnxruntime as ort
    import torch

    from edge.models.cards import load_card
    from edge.train.start_weights import arch_path, model_from_onnx, shipped_start

    d = REPO / "models" / "defects" / "1.0.1"
    card = load_card(d)
    model = model_from_onnx(d / "model.onnx", arch_path(card.arch), len(card.classes))
    x = np.random.default_rng(0).random((1, 3, card.input_size, card.input_size), np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    y = (y[0] if isinstance(y, list | tuple) else y).numpy()
    ref = ort.InferenceSession(str(d / "model.onnx")).run(None, {"images": x})[0]
    assert np.abs(y[:, 4:] - ref[:, 4:]).max() < 1e-4  # class scores
    assert np.abs(y[:, :4] - ref[:, :4]).max() < 1e-3 * np.abs(ref[:, :4]).max()  # boxes
    rec = shipped_start([tmp_path / "state", REPO / "models"], tmp_path / "start.pt")
    assert rec["model"] == "defects" and rec["version"] == card.version
    assert rec["sha256"] == card.files["model.onnx"]
    assert (tmp_path / "start.pt").is_file()
    assert shipped_start([tmp_path / "empty"], tmp_path / "none.pt") is None  # nothing ships


def test_a_new_class_starts_from_the_shipped_defect_classes_not_from_random(tmp_path):
    """The class outputs are rebuilt for the product's classes: a known class keeps the
    shipped detector's scores, a new class scores what the shipped defect classes score
    on average (so a short run starts from the shipped detector's idea of a defect)."""
    import torch

    from edge.train.start_weights import shipped_start

    d = REPO / "models" / "defects" / "1.0.1"
    names = ["capsule_defect", "crack"]
    rec = shipped_start([tmp_path / "state", REPO / "models"], tmp_path / "s.pt", class_names=names)
    assert rec["class_rows"] == {
        "capsule_defect": "mean of 9 shipped defect classes",
        "crack": "crack",
    }
    model = torch.load(tmp_path / "s.pt", weights_only=False)["model"]
    assert model.names == {0: "capsule_defect", 1: "crack"} and model.nc == 2
    x = torch.from_numpy(np.random.default_rng(1).random((1, 3, 320, 320), np.float32))
    import onnxruntime as ort

    ref = ort.InferenceSession(str(d / "model.onnx")).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        y = model(x)
    y = (y[0] if isinstance(y, list | tuple) else y).numpy()
    assert y.shape[1] == 4 + 2
    assert np.abs(y[:, 5] - ref[:, 4]).max() < 1e-4  # crack: the shipped detector's row
    p = ref[0, 4:13].astype(np.float64)  # the 9 defect classes' scores at each anchor
    ok = (p > 1e-6).all(0) & (p < 1 - 1e-6).all(0)  # scores a float32 sigmoid did not saturate
    assert ok.sum() >= 10
    mean = 1 / (1 + np.exp(-np.log(p[:, ok] / (1 - p[:, ok])).mean(0)))  # mean logit
    assert np.abs(y[0, 4, ok] - mean).max() < 1e-3


def test_training_crops_keep_each_defect_at_the_models_scale(tmp_path):
    """Photos resized to the model's input size, cut into 320 px crops: one around each
    defect (its box inside, in crop coordinates), one at random per photo."""
    import cv2

    from edge.train.tiles import crop_dataset

    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "labels").mkdir(parents=True)
    img = np.zeros((1000, 1500, 3), np.uint8)
    cv2.rectangle(img, (700, 480), (734, 514), (255, 255, 255), -1)  # a 34 px defect
    for i in range(10):
        cv2.imwrite(str(raw / "images" / f"{i}.png"), img)
        line = f"0 {717 / 1500} {497 / 1000} {34 / 1500} {34 / 1000}\n" if i < 5 else ""
        (raw / "labels" / f"{i}.txt").write_text(line)
    (raw / "data.yaml").write_text(yaml.safe_dump({"names": {0: "capsule_defect"}}))
    dataset.prepare([raw], tmp_path / "ds", val_fraction=0.2, seed=0)
    made = crop_dataset(tmp_path / "ds", tmp_path / "crops", imgsz=704, per_defect=1)
    assert made == {"train": 12, "val": 3}  # 4 + 1 defect photos, one crop each, + 1 per photo
    # by default each training defect is seen in four surroundings; validation once
    made = crop_dataset(tmp_path / "ds", tmp_path / "crops", imgsz=704)
    assert made == {"train": 4 * 4 + 8, "val": 3}
    assert crop_dataset(tmp_path / "ds", tmp_path / "none", imgsz=320) is None
    for lbl in (tmp_path / "crops" / "labels" / "train").glob("*_t0.txt"):
        rows = [r.split() for r in lbl.read_text().splitlines()]
        if not rows:
            continue
        crop = cv2.imread(str(lbl.parent.parent.parent / "images" / "train" / f"{lbl.stem}.png"))
        assert crop.shape[:2] == (320, 320)
        cx, cy, w, h = (float(v) * 320 for v in rows[0][1:])
        assert w == pytest.approx(34 * 704 / 1500, abs=1)  # ~16 px: the scale it will run at
        patch = crop[int(cy - h / 4) : int(cy + h / 4), int(cx - w / 4) : int(cx + w / 4)]
        assert patch.mean() > 200  # the box sits on the defect


def test_the_start_network_keeps_its_function_when_training_normalises_by_batch(tmp_path):
    """Read back from the ONNX, each BatchNormalization is an identity: exact in evaluation
    mode, but training mode normalises by the batch's statistics and starts from another
    network. Given the statistics of the training images, both modes compute what the
    shipped detector computes."""
    import torch

    from edge.models.cards import load_card
    from edge.train.start_weights import arch_path, inflate_batchnorm, model_from_onnx

    d = REPO / "models" / "defects" / "1.0.1"
    card = load_card(d)
    model = model_from_onnx(d / "model.onnx", arch_path(card.arch), len(card.classes))
    x = torch.from_numpy(np.random.default_rng(3).random((8, 3, 128, 128), np.float32))

    def class_logits(train: bool) -> np.ndarray:
        """What the loss sees: the raw class maps of the head (on a copy: a forward pass in
        training mode moves the running statistics)."""
        import copy

        m = copy.deepcopy(model).train(train)
        with torch.no_grad():
            out = m(x)
        return (out if train else out[1])["scores"].numpy()

    shipped = class_logits(False)
    assert np.abs(class_logits(True) - shipped).max() > 1.0  # batch statistics: another net
    assert inflate_batchnorm(model, x.numpy()) > 50
    assert np.abs(class_logits(False) - shipped).max() < 1e-3  # evaluation: unchanged
    # the same images in training mode: their batch statistics are the measured ones
    assert np.abs(class_logits(True) - shipped).max() < 1e-2


def test_the_operating_threshold_is_the_lowest_that_keeps_validation_good_photos_clear():
    """A model made from tens of photos scores its defects between 0.2 and 0.6: it runs
    at the threshold its validation photos support, not at a fixed 0.25."""
    from edge.train.threshold import GOOD_FLAG_TARGET, choose

    bad = [0.63, 0.51, 0.45, 0.36, 0.24, 0.22, 0.05]
    good = [0.17, 0.12] + [0.01 * (i % 9) for i in range(28)]
    rec = choose(bad, good)
    conf, v = rec["conf"], rec["validation"]
    allowed = int(GOOD_FLAG_TARGET * len(good))  # 1 of 30
    assert sum(s >= conf for s in good) <= allowed == v["good_images_flagged"]
    # the lowest such threshold: one step lower lets a second good photo through the margin
    assert conf - 0.01 < 0.12 + 0.02 <= conf
    assert v["defect_images_found"] == sum(s >= conf for s in bad) == 6
    assert rec["on"] == "validation" and "validation good photos" in rec["rule"]
    # good photos that score high hold the threshold up
    assert choose(bad, [0.7, 0.6] + [0.0] * 28)["conf"] >= 0.62
    # nothing to choose with: the tool's default, and the record says why
    none = choose(bad, [])
    assert none["conf"] == 0.25 and "no good validation photos" in none["rule"]


def _labelled_sim_folder(root: Path, n: int = 16) -> Path:
    """Simulated blister photos, half with a defect: images/ and labels/ (YOLO)."""
    import cv2

    from edge.config import SimulatorSource
    from edge.sim.twin import LineSimulator

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for i in range(n):
        rate = 1.0 if i % 2 else 0.0
        sim = LineSimulator(
            SimulatorSource(scenario="blisters", seed=500 + i, defect_rate=rate, realtime=False)
        )
        img, truth = sim.render(0)
        cv2.imwrite(str(root / "images" / f"{i:03d}.jpg"), img)
        lines = ["1 0.5 0.5 0.1 0.1\n" for _d in truth["defects"]]
        (root / "labels" / f"{i:03d}.txt").write_text("".join(lines))
    return root


def test_the_card_holds_the_threshold_and_the_defect_tool_runs_the_model_at_it(tmp_path):
    import shutil

    from edge.config import OnnxBackend
    from edge.inspect.base import Services
    from edge.inspect.defects import DefectParams, DefectTool
    from edge.models import cards
    from edge.models.registry import ModelRegistry
    from edge.train.threshold import operating_threshold

    reg = ModelRegistry(REPO / "models")
    card = reg.approved("defects")
    models = tmp_path / "models"
    d = models / "defects" / card.version
    shutil.copytree(reg.path("defects", card.version), d)
    val = _labelled_sim_folder(tmp_path / "val")
    rec = operating_threshold(d, val / "images")
    assert cards.load_card(d).operating_threshold == rec  # the card is its one home
    assert rec["validation"]["good_images"] + rec["validation"]["defect_images"] == 16
    assert rec["validation"]["good_images_flagged"] <= int(0.05 * 8)

    def thresholds(**params) -> set[float]:
        p = DefectParams(model="defects", **params)
        t = DefectTool("d", p, Services(models_dir=models, backend=OnnxBackend(threads=1)))
        try:
            return {round(float(x), 4) for x in t.thresholds}
        finally:
            t.close()

    assert thresholds() == {round(rec["conf"], 4)}
    assert thresholds(conf=0.4) == {0.4}  # a recipe that names a threshold keeps it
    c = cards.load_card(d)
    c.operating_threshold = {}
    cards.save_card(d, c)
    assert thresholds() == {cards.DEFAULT_CONF}  # a card without one: the default
