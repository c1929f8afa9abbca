"""The recipe that trains the shipped default model, step by step, reproducibly.

    python -m edge.train.defaults all --work runs/defaults --models models

Steps (each can be run alone): `data` (simulator export with training seeds, merged
into one YOLO dataset with a manifest), `train`, `package` (ONNX export, candidate in
the registry, calibration set, INT8, evaluation on an independent test set, verify,
approve). Seeds for training data (1001, 1002) and for the test set (2001, 2002) are
never used by the tests or the line evaluations.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

NAME = "defects"
VERSION = "1.0.0"
ARCH = "yolo11n.yaml"
IMGSZ = 320

#: training data: scenario -> simulator settings (the classes the classic tools cannot
#: see — crack, particle, scratch — are drawn more often)
TRAIN_SETS: dict[str, dict[str, Any]] = {
    "vials": {
        "seed": 1001,
        "items": 500,
        "defect_rate": 0.8,
        "code_defect_rate": 0.05,
        "defect_weights": {
            "crack": 3,
            "particle": 4,
            "scratch": 3,
            "missing_cap": 1,
            "cap_tilt": 1,
            "low_fill": 1,
        },
    },
    "blisters": {"seed": 1002, "items": 250, "defect_rate": 0.8},
}
TEST_SETS: dict[str, dict[str, Any]] = {
    "vials": {"seed": 2001, "items": 300, "defect_rate": 0.5},
    "blisters": {"seed": 2002, "items": 150, "defect_rate": 0.5},
}
CALIBRATION = {"vials": {"seed": 3001, "items": 48}, "blisters": {"seed": 3002, "items": 24}}
TRAIN_ARGS = {
    # small defects (a particle is ~6 px at 320): no mosaic, mild scale jitter
    "mosaic": 0.0,
    "close_mosaic": 0,
    "scale": 0.2,
    "translate": 0.05,
    "warmup_epochs": 1,
}
#: from scratch, then on from the first stage's best weights (two runs of 20 epochs fit the
#: CPU budget and can be resumed between them)
STAGES: list[dict[str, Any]] = [
    {"epochs": 20, "args": TRAIN_ARGS},
    {"epochs": 20, "args": {**TRAIN_ARGS, "warmup_epochs": 0}},
]


def export_sets(sets: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    from edge.capture.simulator import export
    from edge.config import SimulatorSource

    dirs = []
    for scenario, kw in sets.items():
        d = out / f"{scenario}-{kw['seed']}"
        if not (d / "data.yaml").is_file():
            items = kw["items"]
            cfg = SimulatorSource(
                scenario=scenario, realtime=False, **{k: v for k, v in kw.items() if k != "items"}
            )
            export(cfg, d, items)
        dirs.append(d)
    return dirs


def step_data(work: Path) -> dict[str, Any]:
    from edge.train import dataset

    raw = export_sets(TRAIN_SETS, work / "raw")
    man = dataset.prepare(raw, work / "dataset", val_fraction=0.1, seed=0)
    export_sets(TEST_SETS, work / "test")
    for d in (work / "test").iterdir():
        dataset.write_manifest(d)
    return man


def stage_dir(work: Path, i: int) -> Path:
    return work / ("train" if i == 0 else f"train{i + 1}")


def final_weights(work: Path) -> Path:
    return stage_dir(work, len(STAGES) - 1) / "run" / "weights" / "best.pt"


def step_train(work: Path) -> Path:
    """Train the stages in turn, each from the previous stage's best weights.

    A stage whose best.pt exists is not trained again (the step can be resumed).
    """
    from edge.train.train import train

    def progress(ev: dict[str, Any]) -> None:
        print(json.dumps(ev), flush=True)

    weights = ARCH
    for i, stage in enumerate(STAGES):
        best = stage_dir(work, i) / "run" / "weights" / "best.pt"
        if not best.is_file():
            best = train(
                work / "dataset",
                arch=str(weights),
                imgsz=IMGSZ,
                epochs=stage["epochs"],
                seed=0,
                out=stage_dir(work, i),
                on_progress=progress,
                batch=16,
                extra=stage["args"],
            )
        weights = best
    return Path(weights)


def build_calibration(out: Path, size: int = IMGSZ) -> dict[str, Any]:
    """Calibration images from the simulator, stored letterboxed at the model's input size."""
    import tempfile

    import cv2

    from edge.inference.yolo import letterbox
    from edge.train import dataset

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for d in export_sets(CALIBRATION, Path(tmp)):
            for p in sorted((d / "images").glob("*.png")):
                img = cv2.imread(str(p))
                t, _ = letterbox(img, size)
                small = (t[0].transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype("uint8")
                cv2.imwrite(str(out / f"{p.stem}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dataset.write_manifest(
        out,
        extra={
            "source": "simulator",
            "sets": {k: dict(v) for k, v in CALIBRATION.items()},
            "letterboxed_to": size,
        },
    )


def step_package(
    work: Path,
    models: Path,
    calibration: Path,
    weights: Path | None = None,
    approve: bool = True,
) -> dict[str, Any]:
    from edge.capture.simulator import CLASSES, SEVERITY
    from edge.train import dataset, evaluate, quantize, registry
    from edge.train.train import export_onnx

    weights = weights or final_weights(work)
    onnx_path = export_onnx(weights, work / "export" / "model.onnx", IMGSZ)
    reg = registry.ModelRegistry(models)
    man = dataset.read_manifest(work / "dataset")
    d = reg.path(NAME, VERSION)
    if d.exists():
        shutil.rmtree(d)
    by = f"{registry.whoami()} via scripts/train-default-models.sh"
    reg.create(
        NAME,
        VERSION,
        onnx_path,
        by=by,
        classes=list(CLASSES),
        input_size=IMGSZ,
        arch=ARCH,
        severities={c: SEVERITY[c] for c in CLASSES if c in SEVERITY},
        dataset={
            "manifest_sha256": man["sha256"],
            "files": man["count"],
            "simulator": {k: dict(v) for k, v in TRAIN_SETS.items()},
        },
        training={"imgsz": IMGSZ, "seed": 0, "batch": 16, "stages": STAGES},
    )
    if not (calibration / dataset.MANIFEST).is_file():
        build_calibration(calibration)
    quantize.quantize(d, calibration)
    metrics: dict[str, Any] = {}
    for t in sorted((work / "test").iterdir()):
        metrics[t.name] = evaluate.evaluate(d, t)
        metrics[t.name]["test_set"] = f"simulator {t.name}"
    card = registry.load_card(d)
    card.metrics = metrics
    registry.save_card(d, card)
    report = evaluate.verify(d, calibration)
    print(json.dumps({"verify": report["summary"]}), flush=True)
    if approve and report["passed"]:
        reg.approve(NAME, VERSION, by=by, reason="default model: verify passed, metrics in card")
    return {"metrics": metrics, "verify": report}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["data", "train", "package", "all"])
    ap.add_argument("--work", type=Path, default=Path("runs/defaults"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--calibration", type=Path, default=Path("calibration/sim-v1"))
    a = ap.parse_args(argv)
    if a.step in ("data", "all"):
        print(json.dumps({"dataset_manifest": step_data(a.work)["sha256"]}), flush=True)
    if a.step in ("train", "all"):
        print(json.dumps({"best": str(step_train(a.work))}), flush=True)
    if a.step in ("package", "all"):
        out = step_package(a.work, a.models, a.calibration)
        print(json.dumps(out["metrics"], indent=1), flush=True)


if __name__ == "__main__":
    main()
