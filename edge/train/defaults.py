"""The recipe that trains the shipped default model, step by step, reproducibly.

    python -m edge.train.defaults all --work runs/defaults --models models

Steps (each can be run alone): `data` (simulator export with training seeds, merged
into one YOLO dataset with a manifest), `train`, `package` (ONNX export, candidate in
the registry, calibration set, INT8, evaluation on an independent test set, verify,
approve); `reissue --from V` (a new candidate from version V's FP32 network, quantised,
evaluated and verified again; approval is then `edge model approve`). Seeds for training data (1001-1008 vials, 1101-1104 blisters), for the test
sets (2001, 2002), calibration (3001, 3002) and verification (3101, 3102) are never used
by the tests or the line evaluations (4001+).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

NAME = "defects"
#: 1.0.1: 1.0.0's FP32 network re-quantised without INT32 bias Q/DQ (TensorRT imports it)
VERSION = "1.0.1"
#: YOLO11n with ReLU activations (see the yaml for why); the card names it by this path
ARCH = "edge/train/arch/yolo11n-relu.yaml"
ARCH_PATH = Path(__file__).resolve().parent / "arch" / "yolo11n-relu.yaml"
IMGSZ = 320

#: training data: one simulator export per seed (exports run in parallel). The classes the
#: classic tools see least well (crack, particle, scratch) are drawn more often on vials.
VIAL_TRAIN: dict[str, Any] = {
    "scenario": "vials",
    "items": 500,
    "defect_rate": 0.7,
    "code_defect_rate": 0.05,
    "defect_weights": {
        "crack": 3,
        "particle": 4,
        "scratch": 3,
        "missing_cap": 1,
        "cap_tilt": 1,
        "low_fill": 1,
    },
}
BLISTER_TRAIN: dict[str, Any] = {"scenario": "blisters", "items": 500, "defect_rate": 0.7}
TRAIN_SETS: list[dict[str, Any]] = [
    *({**VIAL_TRAIN, "seed": s} for s in range(1001, 1009)),
    *({**BLISTER_TRAIN, "seed": s} for s in range(1101, 1105)),
]
TEST_SETS: list[dict[str, Any]] = [
    {"scenario": "vials", "seed": 2001, "items": 300, "defect_rate": 0.5},
    {"scenario": "blisters", "seed": 2002, "items": 150, "defect_rate": 0.5},
]
CALIBRATION: list[dict[str, Any]] = [
    {"scenario": "vials", "seed": 3001, "items": 48},
    {"scenario": "blisters", "seed": 3002, "items": 24},
]
#: `edge model verify`'s fixed image set: not the calibration images, which the INT8
#: ranges were fitted to (agreement there would flatter the quantised model)
VERIFY: list[dict[str, Any]] = [
    {"scenario": "vials", "seed": 3101, "items": 64, "defect_rate": 0.5},
    {"scenario": "blisters", "seed": 3102, "items": 32, "defect_rate": 0.5},
]
TRAIN_ARGS = {
    # small defects (a particle is ~6 px at 320): no mosaic, mild scale jitter
    "mosaic": 0.0,
    "close_mosaic": 0,
    "scale": 0.2,
    "translate": 0.05,
    "warmup_epochs": 1,
}
#: one run from scratch. On a GPU, `--hours` bounds the run instead (ultralytics then sets
#: the epoch count from the first epoch's time, and the card records the count it ran).
STAGES: list[dict[str, Any]] = [{"epochs": 120, "args": TRAIN_ARGS}]


def _export_one(kw: dict[str, Any], out: Path) -> Path:
    from edge.config import SimulatorSource
    from edge.sim.export import export

    d = out / f"{kw['scenario']}-{kw['seed']}"
    if not (d / "data.yaml").is_file():
        cfg = SimulatorSource(realtime=False, **{k: v for k, v in kw.items() if k != "items"})
        export(cfg, d, kw["items"])
    return d


def export_sets(sets: list[dict[str, Any]], out: Path) -> list[Path]:
    """One simulator export per entry, in parallel processes (an export is CPU-bound)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(len(sets), os.cpu_count() or 1)) as pool:
        return list(pool.map(_export_one, sets, [out] * len(sets)))


def step_data(work: Path) -> dict[str, Any]:
    from edge.train import dataset

    raw = export_sets(TRAIN_SETS, work / "raw")
    man = dataset.prepare(raw, work / "dataset", val_fraction=0.05, seed=0)
    export_sets(TEST_SETS, work / "test")
    for d in (work / "test").iterdir():
        dataset.write_manifest(d)
    return man


def stage_dir(work: Path, i: int) -> Path:
    return work / ("train" if i == 0 else f"train{i + 1}")


def final_weights(work: Path) -> Path:
    return stage_dir(work, len(STAGES) - 1) / "run" / "weights" / "best.pt"


def step_train(
    work: Path,
    device: str = "cpu",
    workers: int = 0,
    batch: int = 16,
    hours: float | None = None,
    cache: bool = False,
) -> Path:
    """Train the stages in turn, each from the previous stage's best weights.

    A stage whose best.pt exists is not trained again (the step can be resumed).
    """
    from edge.train.train import train

    def progress(ev: dict[str, Any]) -> None:
        print(json.dumps(ev), flush=True)

    weights: str | Path = ARCH_PATH
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
                batch=batch,
                workers=workers,
                device=device,
                extra={
                    **stage["args"],
                    **({"time": hours} if hours else {}),
                    **({"cache": "ram"} if cache else {}),
                },
            )
        weights = best
    return Path(weights)


def training_record(weights: Path) -> dict[str, Any]:
    """What the run did, read from its own files (args.yaml, results.csv) for the card."""
    import csv

    import yaml

    run = Path(weights).parent.parent
    rec: dict[str, Any] = {}
    if (run / "environment.json").is_file():
        rec["environment"] = json.loads((run / "environment.json").read_text())
    if (run / "args.yaml").is_file():
        args = yaml.safe_load((run / "args.yaml").read_text())
        rec.update({k: args.get(k) for k in ("device", "batch", "epochs", "time", "workers")})
    if (run / "results.csv").is_file():
        with open(run / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        rec["epochs_run"] = len(rows)
        if rows:
            last = {k.strip(): v for k, v in rows[-1].items()}
            rec["last_epoch_map50"] = float(last.get("metrics/mAP50(B)", "nan"))
    return rec


def build_image_set(
    out: Path, sets: list[dict[str, Any]] = CALIBRATION, size: int = IMGSZ
) -> dict[str, Any]:
    """Calibration (or verification) images from the simulator, letterboxed to the input size."""
    import tempfile

    import cv2

    from edge.inference.yolo import letterbox
    from edge.train import dataset

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for d in export_sets(sets, Path(tmp)):
            for p in sorted((d / "images").glob("*.png")):
                img = cv2.imread(str(p))
                t, _ = letterbox(img, size)
                small = (t[0].transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype("uint8")
                cv2.imwrite(str(out / f"{p.stem}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dataset.write_manifest(
        out,
        extra={
            "source": "simulator",
            "sets": sets,
            "letterboxed_to": size,
        },
    )


def step_package(
    work: Path,
    models: Path,
    calibration: Path,
    verify_set: Path,
    weights: Path | None = None,
    approve: bool = True,
) -> dict[str, Any]:
    from edge import taxonomy
    from edge.models import cards
    from edge.models.registry import ModelRegistry
    from edge.train import dataset, quantize
    from edge.train.detector_metrics import ap50_of_version
    from edge.train.train import export_onnx
    from edge.train.verify import verify

    weights = weights or final_weights(work)
    onnx_path = export_onnx(weights, work / "export" / "model.onnx", IMGSZ)
    reg = ModelRegistry(models)
    man = dataset.read_manifest(work / "dataset")
    d = reg.path(NAME, VERSION)
    if d.exists():
        shutil.rmtree(d)
    by = f"{cards.whoami()} via scripts/train-default-models.sh"
    reg.create(
        NAME,
        VERSION,
        onnx_path,
        by=by,
        classes=list(taxonomy.DETECTOR_CLASSES),  # the card keeps them: the model's truth
        input_size=IMGSZ,
        arch=ARCH,
        severities=taxonomy.detector_severities(),
        dataset={
            "manifest_sha256": man["sha256"],
            "files": man["count"],
            "simulator": TRAIN_SETS,
        },
        training={"imgsz": IMGSZ, "seed": 0, "stages": STAGES, **training_record(weights)},
    )
    if not (calibration / dataset.MANIFEST).is_file():
        build_image_set(calibration, CALIBRATION)
    if not (verify_set / dataset.MANIFEST).is_file():
        build_image_set(verify_set, VERIFY)
    quantize.quantize(d, calibration)
    metrics: dict[str, Any] = {}
    for t in sorted((work / "test").iterdir()):
        metrics[t.name] = ap50_of_version(d, t)
        metrics[t.name]["test_set"] = f"simulator {t.name}"
    card = cards.load_card(d)
    card.metrics = metrics
    cards.save_card(d, card)
    report = verify(d, verify_set)
    print(json.dumps({"verify": report["summary"]}), flush=True)
    if approve and report["passed"]:
        reg.approve(NAME, VERSION, by=by, reason="default model: verify passed, metrics in card")
    return {"metrics": metrics, "verify": report}


def step_reissue(
    models: Path,
    calibration: Path,
    verify_set: Path,
    work: Path,
    source: str,
    version: str = VERSION,
    reason: str = "",
) -> dict[str, Any]:
    """A new version from an earlier version's FP32 network, quantised again.

    The network and its provenance (dataset, training record) are the earlier version's;
    the INT8 file, its evaluation on the test sets and its verification are new. It stays
    a candidate: approval is the audited `edge model approve` (see models/README.md).
    """
    from edge.models import cards
    from edge.models.registry import ModelRegistry
    from edge.train import dataset, quantize
    from edge.train.detector_metrics import ap50_of_version
    from edge.train.verify import verify

    reg = ModelRegistry(models)
    old = reg.card(NAME, source)
    keep = {"arch", "severities", "dataset", "training"}
    fields = {k: v for k, v in old.model_dump(mode="json").items() if k in keep}
    by = f"{cards.whoami()} via scripts/train-default-models.sh reissue"
    reg.create(
        NAME,
        version,
        reg.path(NAME, source) / cards.FP32,
        classes=list(old.classes),
        input_size=old.input_size,
        by=by,
        reissued_from={
            "version": source,
            "fp32_sha256": old.files.get(cards.FP32),
            "int8_sha256": old.files.get(cards.INT8),
            "reason": reason,
        },
        **fields,
    )
    d = reg.path(NAME, version)
    card = cards.load_card(d)
    card.history[-1].reason = f"reissued from {source}: {reason}" if reason else source
    cards.save_card(d, card)
    quantize.quantize(d, calibration)
    tests = export_sets(TEST_SETS, work / "test")
    metrics: dict[str, Any] = {}
    for t in tests:
        dataset.write_manifest(t)
        metrics[t.name] = ap50_of_version(d, t)
        metrics[t.name]["test_set"] = f"simulator {t.name}"
    card = cards.load_card(d)
    card.metrics = metrics
    cards.save_card(d, card)
    report = verify(d, verify_set)
    return {"metrics": metrics, "verify": report}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["data", "train", "package", "all", "reissue"])
    ap.add_argument("--from", dest="source", help="reissue: the version whose FP32 is reused")
    ap.add_argument("--reason", default="", help="reissue: why (kept in the new card)")
    ap.add_argument("--work", type=Path, default=Path("runs/defaults"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--calibration", type=Path, default=Path("calibration/sim-v1"))
    ap.add_argument("--verify-set", type=Path, default=Path("calibration/verify-sim-v1"))
    ap.add_argument("--no-approve", action="store_true", help="leave the model a candidate")
    ap.add_argument("--device", default="cpu", help='"cpu" or a CUDA GPU index such as "0"')
    ap.add_argument("--workers", type=int, default=0, help="data loader processes")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hours", type=float, default=None, help="bound training by time")
    ap.add_argument("--cache", action="store_true", help="decoded images in RAM (GPU runs)")
    a = ap.parse_args(argv)
    if a.step in ("data", "all"):
        print(json.dumps({"dataset_manifest": step_data(a.work)["sha256"]}), flush=True)
    if a.step in ("train", "all"):
        best = step_train(a.work, a.device, a.workers, a.batch, a.hours, a.cache)
        print(json.dumps({"best": str(best)}), flush=True)
    if a.step == "reissue":
        if not a.source:
            ap.error("reissue needs --from VERSION")
        out = step_reissue(a.models, a.calibration, a.verify_set, a.work, a.source, reason=a.reason)
        print(json.dumps({"verify": out["verify"]["summary"]}), flush=True)
        print(json.dumps(out["metrics"], indent=1), flush=True)
    if a.step in ("package", "all"):
        out = step_package(a.work, a.models, a.calibration, a.verify_set, approve=not a.no_approve)
        print(json.dumps(out["metrics"], indent=1), flush=True)


if __name__ == "__main__":
    main()
