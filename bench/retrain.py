"""Retraining on a real product's photos, end to end, through the web job's own code.

Labels the bad photos from their masks (one box per connected region of a mask), builds a
dataset version (`edge.train.dataset.prepare`: stratified, defect images in validation),
then runs the training job's function (`edge.web.jobrun.run_train`: shipped starting
weights, proposed input size, INT8 quantisation, verify) and the evaluation job's
(`run_evaluate`: AP50 on the held-out photos), and counts on the held-out photos:

    image_recall     test-bad photos with at least one detection above the model's threshold
                     (its operating threshold, chosen on validation photos, from its card)
    false_flag_rate  test-good photos with any such detection
    map50            the evaluation job's INT8 mAP50 on the test set (labelled from masks)
    train_minutes    wall time of the training job (train, export, quantise, verify)
    int8_ok          the INT8 Q/DQ file was made and recorded on the card
    verify_passed    `edge model verify` (INT8 against FP32) passed

Masks are looked up by the photo's stem (`000.JPG` -> `000.png`) in --masks. Nothing is
written into the repository: the dataset, the candidate and the test set live in --work.

Run (VisA capsules, split every 4th photo by name to test, as bench/anomaly_split.py):
    python bench/retrain.py --bad B --masks M --good G --test-bad TB --test-good TG \
        [--minutes 15] [--work DIR] --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import yaml

from edge.train.dataset import GOOD_VAL_FRACTION, IMAGE_EXT, prepare
from edge.train.yolo_labels import box_line


def photos(d: str | Path) -> list[Path]:
    return sorted(p for p in Path(d).iterdir() if p.suffix.lower() in IMAGE_EXT)


def mask_boxes(mask_path: Path) -> tuple[list[list[float]], int, int]:
    """One xywh pixel box per connected region of a mask (any non-zero pixel)."""
    m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ValueError(f"unreadable mask {mask_path}")
    n, _lab, stats, _c = cv2.connectedComponentsWithStats((m > 0).astype("uint8"), 8)
    boxes = [[float(x), float(y), float(w), float(h)] for x, y, w, h, _a in stats[1:n]]
    return boxes, m.shape[1], m.shape[0]


def labelled_folder(out: Path, bad: list[Path], good: list[Path], masks: Path, split: str):
    """images/<split>/ and labels/<split>/ (YOLO), bad photos boxed from their masks."""
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    boxes_total = 0
    for kind, files in (("bad", bad), ("good", good)):
        for p in files:
            stem = f"{kind}_{p.stem}"
            link = out / "images" / split / f"{stem}{p.suffix.lower()}"
            if not link.exists():
                link.symlink_to(p.resolve())
            lines = []
            if kind == "bad":
                mask = next(iter(sorted(masks.glob(f"{p.stem}.*"))), None)
                if mask is None:
                    raise FileNotFoundError(f"no mask for {p.name} in {masks}")
                boxes, w, h = mask_boxes(mask)
                lines = [box_line(0, b, w, h) for b in boxes]
                boxes_total += len(lines)
            (out / "labels" / split / f"{stem}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    return boxes_total


def flagged(opened: Any, files: list[Path], threshold: float) -> int:
    be = opened.load_detector()
    try:
        n = 0
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            n += bool(be.infer(img, conf=threshold))
        return n
    finally:
        be.close()


def run(a: argparse.Namespace) -> dict[str, Any]:
    from edge.models.cards import operating_conf
    from edge.models.registry import ModelRegistry, model_roots
    from edge.web.jobrun import Progress, run_evaluate, run_train

    work = Path(a.work or tempfile.mkdtemp(prefix="retrain-"))
    masks = Path(a.masks)
    raw, ds, test = work / "raw", work / "dataset" / "ds-bench", work / "test"
    train_boxes = labelled_folder(raw, photos(a.bad), photos(a.good), masks, "all")
    (raw / "data.yaml").write_text(yaml.safe_dump({"names": {0: a.cls}}))
    prepare([raw], ds, val_fraction=0.2, seed=0, good_fraction=a.good_val)  # as the web job
    test_bad, test_good = photos(a.test_bad), photos(a.test_good)
    labelled_folder(test, test_bad, test_good, masks, "val")
    (test / "data.yaml").write_text(yaml.safe_dump({"names": {0: a.cls}}))
    repo_models = Path(__file__).resolve().parent.parent / "models"
    roots = [str(p) for p in model_roots(work / "state", repo_models)]
    job = work / "job"
    job.mkdir(parents=True, exist_ok=True)
    args = {
        "dataset": str(ds),
        "models_dir": roots,
        "model_name": a.product,
        "product": a.product,
        "epochs": 300,
        "minutes": a.minutes,
        "batch": a.batch,
        "threads": a.threads,
        "imgsz": a.imgsz,
        "start": a.start,
        "head": json.loads(a.head) if a.head else None,
        "by": "bench",
    }
    t0 = time.monotonic()
    res = run_train(args, job, Progress(job))
    train_minutes = (time.monotonic() - t0) / 60
    reg = ModelRegistry(roots)
    card = reg.card(a.product, res["version"])
    ev = run_evaluate(
        {
            "name": a.product,
            "candidate": res["version"],
            "test_dir": str(test / "images" / "val"),
            "models_dir": roots,
        },
        job,
        Progress(job),
    )
    opened = reg.open_model(a.product, res["version"], allow_unapproved=True)
    tb = sorted((test / "images" / "val").glob("bad_*"))
    tg = sorted((test / "images" / "val").glob("good_*"))
    threshold = operating_conf(card)  # the one the defect tool runs this model at
    hits, flags = flagged(opened, tb, threshold), flagged(opened, tg, threshold)
    return {
        "image_recall": round(hits / max(len(tb), 1), 4),
        "false_flag_rate": round(flags / max(len(tg), 1), 4),
        "map50": ((ev.get("candidate") or {}).get("int8") or {}).get("map50"),
        "train_minutes": round(train_minutes, 2),
        "int8_ok": bool(card.quantization) and (opened.dir / "model.int8.onnx").is_file(),
        "verify_passed": bool((card.verify or {}).get("passed")),
        "verify": (card.verify or {}).get("summary"),
        "verify_rule": (card.verify or {}).get("rule"),
        "threshold": threshold,
        "threshold_rule": card.operating_threshold.get("rule"),
        "threshold_validation": card.operating_threshold.get("validation"),
        "imgsz": card.input_size,
        "start": ((card.training or {}).get("start") or {}).get("start"),
        "arch": card.arch,
        "start_weights": (card.training or {}).get("start_weights"),
        "head": (card.training or {}).get("head"),
        "calibration_fallbacks": (card.quantization.get("calibration_fallbacks") or {}).get(
            "count"
        ),
        "split": {
            "train_bad": len(photos(a.bad)),
            "train_good": len(photos(a.good)),
            "train_boxes": train_boxes,
            "test_bad": len(test_bad),
            "test_good": len(test_good),
        },
        "work": str(work),
        "load": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("--bad", "--masks", "--good", "--test-bad", "--test-good"):
        ap.add_argument(name, required=True)
    ap.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    ap.add_argument("--class", dest="cls", default="capsule_defect")
    ap.add_argument("--product", default="capsules", help="the model's name")
    ap.add_argument("--imgsz", type=int, default=0, help="0: proposed from the box sizes")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--start",
        choices=["shipped", "imagenet"],
        help="where training starts (default: the training job's proposal for the classes)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--head", help="head-only start's options as JSON (patch_detector.PatchOptions)"
    )
    ap.add_argument(
        "--good-val",
        type=float,
        default=GOOD_VAL_FRACTION,
        help="share of the good photos put in validation (default: the web's, "
        f"{GOOD_VAL_FRACTION})",
    )
    ap.add_argument("--work", help="working folder (default: a new temporary one)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = run(a)
    print(json.dumps(out) if a.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
