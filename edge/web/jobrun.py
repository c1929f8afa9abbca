"""Child-process entry for long jobs: `python -m edge.web.jobrun KIND JOB_DIR`.

Runs at the lowest CPU priority with one thread, reads `job.json`, writes progress
events to `progress.jsonl`. Every job ends with a "finished" or "failed" event.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.ops.priority import run_in_background

if TYPE_CHECKING:
    from edge.config import Recipe


#: calibration photos a training job quantises with (evenly spread over the training set)
CALIBRATION_IMAGES = 64


class Progress:
    def __init__(self, d: Path):
        self.path = d / "progress.jsonl"

    def __call__(self, ev: dict[str, Any]) -> None:
        ev = {**ev, "utc": time.time()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(ev, default=str) + "\n")
        print(json.dumps(ev, default=str), flush=True)


def run_train(args: dict[str, Any], d: Path, progress: Progress) -> dict[str, Any]:
    """Train on a frozen dataset version, export, register a candidate, choose its operating
    threshold on the validation photos, quantise, verify at that threshold."""
    from edge.models.registry import ModelRegistry
    from edge.train.dataset import (
        MIN_EXAMPLES,
        class_counts,
        labelled_pairs,
        read_class_names,
        read_manifest,
        too_few,
        verify_manifest,
    )
    from edge.train.quantize import quantize
    from edge.train.sizes import proposed_imgsz
    from edge.train.starts import HEAD_ONLY
    from edge.train.threshold import operating_threshold
    from edge.train.verify import verify

    data = Path(args["dataset"])
    problems = verify_manifest(data)
    if problems:
        raise RuntimeError("dataset does not match its manifest: " + "; ".join(problems[:5]))
    man = read_manifest(data)
    names = read_class_names(data)
    minimum = int(args.get("min_examples") or MIN_EXAMPLES)
    few = too_few(class_counts(labelled_pairs(data / "labels" / "train"), names), minimum)
    if few:  # refused before anything is made: no candidate is left behind
        raise ValueError("; ".join(few))
    imgsz = int(args.get("imgsz") or 0) or proposed_imgsz(data)
    start = chosen_start(args, names)
    if start["start"] in HEAD_ONLY:  # a frozen backbone and a trained head
        onnx_path, training, shape = _train_head_only(args, d, data, imgsz, start, man, progress)
    else:  # the shipped detector fine-tuned whole (ultralytics)
        onnx_path, training = _train_shipped(args, d, data, imgsz, names, man, progress)
        shape = {}
    training["start"] = start
    reg = ModelRegistry(args["models_dir"])
    name = args.get("model_name") or "defects"
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    card = reg.create(
        name,
        version,
        onnx_path,
        classes=read_class_names(data),
        input_size=imgsz,
        by=args.get("by"),
        dataset={"path": str(data), "manifest_sha256": man.get("sha256"), "version": data.name},
        training={"job": d.name, "imgsz": imgsz, "minutes": args.get("minutes"), **training},
        **shape,
        product=args.get("product"),
        # the class list is the labelled dataset's, set by the technician; QA approves it
        # with the model (shown on the card)
        classes_from={"dataset": data.name, "by": args.get("by")},
    )
    model_dir = reg.path(name, version)
    try:  # from here a failure leaves a version that must never be offered for approval
        progress({"stage": "quantizing", "name": name, "version": version})
        # 64 photos spread over the set: ranges settle well before that, and each photo
        # is two passes over every activation of the model at full size
        quantize(model_dir, data / "images" / "train", limit=CALIBRATION_IMAGES)
        # the threshold the model runs at, chosen on validation photos only (the card
        # holds it; the defect tool and verify read it there)
        progress({"stage": "threshold", "name": name, "version": version})
        chosen = operating_threshold(model_dir, data / "images" / "val")
        progress({"stage": "threshold", "conf": chosen["conf"], "rule": chosen["rule"]})
        progress({"stage": "verifying", "name": name, "version": version})
        rep = verify(model_dir, data / "images" / "val")
    except BaseException as exc:
        reg.mark_failed(name, version, f"{type(exc).__name__}: {exc}", by=args.get("by"))
        raise
    return {"name": card.name, "version": version, "verify": rep.get("summary")}


def chosen_start(args: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The start asked for (`args["start"]`: shipped or imagenet), else the proposal
    (`edge.train.starts.propose`); an architecture asked for by name is a shipped-style
    (ultralytics) run. Returns {start, proposed, why}."""
    from edge.train.starts import STARTS, propose, shipped_classes

    proposal = propose(names, shipped_classes(args["models_dir"]))
    asked = args.get("start") or ("shipped" if args.get("arch") else None)
    if asked is not None and asked not in STARTS:
        raise ValueError(f"unknown training start {asked!r} (known: {', '.join(STARTS)})")
    return {
        "start": asked or proposal["start"],
        "proposed": proposal["start"],
        "why": proposal["why"],
    }


def _train_head_only(
    args: dict[str, Any],
    d: Path,
    data: Path,
    imgsz: int,
    start: dict[str, Any],
    man: dict[str, Any],
    progress: Progress,
) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """A head on a frozen backbone (`edge.train.starts.HEAD_ONLY`), written as the FP32
    ONNX; the epochs asked for bound the head's (its own default when more are asked).
    Returns the file, the training record and the card's `arch` and `boxes`."""
    from edge.train.patch_detector import PatchOptions
    from edge.train.starts import head_only_trainer

    options = dict(args.get("head") or {})
    if args.get("epochs"):  # a bound: the head's schedule is its own default at most
        options.setdefault("epochs", min(int(args["epochs"]), PatchOptions().epochs))
    progress(
        {
            "stage": "training",
            "dataset": data.name,
            "start": start["start"],
            "imgsz": imgsz,
            "validation_defect_images": (man.get("split") or {})
            .get("val", {})
            .get("defect_images"),
        }
    )
    rec = head_only_trainer(start["start"])(
        data,
        d / "model.onnx",
        imgsz,
        minutes=args.get("minutes"),
        options=options,
        on_progress=progress,
        threads=int(args.get("threads") or 1),
    )
    progress({"stage": "exporting"})
    training = {"arch": rec["arch"], "start_weights": rec["start_weights"], "head": rec["head"]}
    return d / "model.onnx", training, {"arch": rec["arch"], "boxes": rec["boxes"]}


def _train_shipped(
    args: dict[str, Any],
    d: Path,
    data: Path,
    imgsz: int,
    names: list[str],
    man: dict[str, Any],
    progress: Progress,
) -> tuple[Path, dict[str, Any]]:
    """The shipped detector (or a named architecture) trained on crops at the model's
    scale with ultralytics, exported to the FP32 ONNX."""
    from edge.train.tiles import TILE, crop_dataset
    from edge.train.train import export_onnx, train

    # small defects on large photos: train on crops at the model's scale (edge.train.tiles)
    crops = crop_dataset(data, d / "crops", imgsz) if args.get("tiles", True) else None
    # the starting network's normalisation measured on what training will feed it
    seen = (d / "crops" if crops else data) / "images" / "train"
    start = _start_weights(args, d, names, seen, TILE if crops else imgsz)
    settings = _few_image_settings(args)
    progress(
        {
            "stage": "training",
            "dataset": data.name,
            "start": "shipped",
            "epochs": int(args.get("epochs", 1)),
            "imgsz": imgsz,
            "crops": crops,
            "validation_defect_images": (man.get("split") or {})
            .get("val", {})
            .get("defect_images"),
        }
    )
    best = train(
        d / "crops" if crops else data,
        arch=start["arch"],
        imgsz=TILE if crops else imgsz,
        epochs=int(args.get("epochs", 1)),
        seed=int(args.get("seed", 0)),
        out=d / "run",
        on_progress=progress,
        batch=int(args.get("batch", 8)),
        threads=int(args.get("threads") or 1),
        extra=settings,
    )
    progress({"stage": "exporting"})
    training = {
        "epochs": int(args.get("epochs", 1)),
        "arch": args.get("arch"),
        "crops": {"tile": TILE, **crops} if crops else None,
        "start_weights": start["record"],
        "settings": settings,
    }
    return export_onnx(best, d / "model.onnx", imgsz=imgsz), training


def _start_weights(
    args: dict[str, Any], d: Path, names: list[str], images: Path, size: int
) -> dict[str, Any]:
    """Train from the project's approved detector (its weights read back from the shipped
    ONNX: nothing is downloaded; its class outputs rebuilt for the dataset's `names`, its
    normalisation measured on the training `images`), unless an architecture is asked for
    by name."""
    from edge.train.start_weights import shipped_start, statistics_images

    arch = args.get("arch")
    if arch is None and args.get("start", "shipped") == "shipped":
        rec = shipped_start(
            args["models_dir"],
            d / "start.pt",
            class_names=names,
            images=statistics_images(images, size),
        )
        if rec is not None:
            return {"arch": str(d / "start.pt"), "record": rec}
    return {"arch": arch or "yolo11n.yaml", "record": None}


def _few_image_settings(args: dict[str, Any]) -> dict[str, Any]:
    """Fine-tuning settings for tens of photos, and a time budget in minutes when one is
    given.

    Augmentations: flips both ways, small colour and scale changes, no mosaic of four
    photos (it shrinks small defects further). Optimiser: one AdamW step per batch at a
    fine-tuning rate, a short warm-up, no raised bias rate: ultralytics' defaults are for
    training from scratch on thousands of images (gradients summed over 64 images before a
    step, i.e. one step in eight batches here; three epochs of warm-up; biases at 0.1
    first), and in a few minutes on a CPU they leave a handful of steps, most of them in
    the warm-up, and the starting class biases knocked off."""
    batch = int(args.get("batch", 8))
    extra: dict[str, Any] = {
        "optimizer": "AdamW",
        "lr0": 0.002,
        "nbs": batch,
        "warmup_epochs": 0.5,
        "warmup_bias_lr": 0.0,
        "fliplr": 0.5,
        "flipud": 0.5,
        "degrees": 10.0,
        "scale": 0.2,
        "mosaic": 0.0,
        "hsv_v": 0.2,
        "patience": 0,
    }
    if args.get("minutes"):
        extra["time"] = float(args["minutes"]) / 60.0
    return extra


def run_evaluate(args: dict[str, Any], d: Path, progress: Progress) -> dict[str, Any]:
    """Candidate against the approved model on a test set that training never saw."""
    from edge.models.registry import ModelRegistry
    from edge.train.detector_metrics import ap50_of_version

    reg = ModelRegistry(args["models_dir"])
    name, test_dir = args["name"], args["test_dir"]
    out: dict[str, Any] = {"name": name, "test_dir": test_dir}
    for role in ("candidate", "approved"):
        v = args.get(role)
        if not v:
            continue
        progress({"stage": "evaluating", "model": role, "version": v})
        out[role] = {
            "version": v,
            **ap50_of_version(reg.path(name, v), test_dir, precisions=("int8",)),
        }
    cand = (out.get("candidate") or {}).get("int8") or {}
    appr = (out.get("approved") or {}).get("int8") or {}
    min_map = float(args.get("min_map50", 0.5))
    max_drop = float(args.get("max_class_drop", 0.05))
    failures = []
    if cand.get("map50", 0.0) < min_map:
        failures.append(f"mAP50 {cand.get('map50', 0.0):.3f} < {min_map}")
    for cls, ap in (appr.get("ap50") or {}).items():
        c = (cand.get("ap50") or {}).get(cls, 0.0)
        if c < ap - max_drop:
            failures.append(f"AP50 of {cls} falls {ap:.3f} -> {c:.3f}")
    criteria: dict[str, Any] = {"min_map50": min_map, "max_class_drop": max_drop}
    if args.get("recipe") and args.get("line_dir"):
        failures += _line_evaluate(args, out, criteria, progress)
    out["acceptance"] = {"passed": not failures, "failures": failures, "criteria": criteria}
    return out


def _line_evaluate(
    args: dict[str, Any], out: dict[str, Any], criteria: dict[str, Any], progress: Progress
) -> list[str]:
    """Item by item through the whole recipe, candidate and approved each pinned in turn."""
    from edge.config import OnnxBackend, Recipe
    from edge.inspect.base import Services
    from edge.train.line_eval import acceptance_failures, line_evaluate

    recipe = Recipe.model_validate(args["recipe"])
    criteria.update(recipe.acceptance.model_dump())
    failures: list[str] = []
    for role in ("candidate", "approved"):
        if role not in out:
            continue
        progress({"stage": "line", "model": role, "version": out[role]["version"]})
        services = Services(models_dir=args["models_dir"], backend=OnnxBackend(threads=1))
        line = line_evaluate(
            recipe, services, args["line_dir"], out[role]["version"], args.get("limit")
        )
        out[role]["line"] = line
        if role == "candidate":
            failures += [f"items: {f}" for f in acceptance_failures(recipe, line)]
    return failures


def _shadow_recipe(args: dict[str, Any], version: str) -> Recipe:
    """The recipe a shadow run judges with, the model pinned to `version`: the line's recipe
    (`args["recipe"]`) when one of its tools runs the model, else the model alone (a
    detector reporting the reject classes it knows, or an anomaly tool)."""
    from edge.config import Recipe, ToolSpec
    from edge.models.registry import ModelRegistry
    from edge.train.line_eval import pin_model

    name = args["name"]
    if args.get("recipe"):
        pinned = pin_model(Recipe.model_validate(args["recipe"]), name, version)
        if pinned is not None:
            return pinned
    card = ModelRegistry(args["models_dir"]).card(name, version)
    params: dict[str, Any] = {"model": name, "version": version}
    if card.task != "anomaly":
        known = [c for c in args.get("reject_classes") or [] if c in card.classes]
        params["classes"] = known or None
    tool = ToolSpec(type="anomaly" if card.task == "anomaly" else "defects", name=name, **params)
    return Recipe(name=f"{name} alone", tools=[tool])


def run_shadow(args: dict[str, Any], d: Path, progress: Progress) -> dict[str, Any]:
    """Candidate beside the approved model on recorded images; drives nothing.

    Each image is judged twice as the line would judge it (`edge.judge`: the recipe's tools,
    then the positive-release rule), once with each version pinned; the models are opened
    like the line opens them (files checked against their cards), a candidate allowed.
    """
    from edge import untrusted_images
    from edge.config import OnnxBackend
    from edge.inspect.base import Services, ToolContext
    from edge.inspect.registry import build_tools
    from edge.judge import judge
    from edge.store.db import Database
    from edge.store.images import ImageStore
    from edge.train.line_eval import evaluation_services

    name = args["name"]
    state = Path(args["state_dir"])
    db = Database(state / "edge.db")
    store = ImageStore(state / "images")
    shas = db.recent_images(int(args.get("limit", 200)))
    services = evaluation_services(
        Services(models_dir=args["models_dir"], backend=OnnxBackend(threads=1))
    )
    roles = ("approved", "candidate")
    recipes = {r: _shadow_recipe(args, args[r]) for r in roles}
    runs: dict[str, Any] = {}
    try:
        for r in roles:
            runs[r] = build_tools(recipes[r], services)
        diffs, n = [], 0
        for sha in shas:
            data = store.get(sha)
            if data is None:
                continue
            try:  # the store may hold uploads: size from the header before decoding
                img = untrusted_images.decode(data, untrusted_images.LARGEST)
            except untrusted_images.ImageRefused as exc:
                progress({"stage": "shadow", "skipped": sha, "why": str(exc)})
                continue
            verdicts, reasons = {}, {}
            for r in roles:  # a context of its own for each: nothing shared between the two
                ctx = ToolContext(
                    item_id=sha[:16], seq=n, deadline=time.monotonic() + 60, now=time.time()
                )
                verdict, reasons[r], _ = judge(recipes[r], runs[r], img, ctx)
                verdicts[r] = verdict.value
            n += 1
            if verdicts["approved"] != verdicts["candidate"]:
                diffs.append({"image": sha, "verdicts": verdicts, "reasons": reasons})
            if n % 20 == 0:
                progress({"stage": "shadow", "images": n, "differ": len(diffs)})
    finally:
        for tools in runs.values():
            for tool in tools:
                tool.close()
    return {
        "name": name,
        "approved": args["approved"],
        "candidate": args["candidate"],
        "recipe": recipes["candidate"].name,
        "images": n,
        "differ": len(diffs),
        "diffs": diffs[:200],
    }


def run_anomaly_fit(args: dict[str, Any], d: Path, progress: Progress) -> dict[str, Any]:
    """A good-only anomaly model from picked good images (`edge.anomaly.job`)."""
    from edge.anomaly.job import run_fit

    return run_fit(args, d, progress)


def run_preview(args: dict[str, Any], d: Path, progress: Progress) -> dict[str, Any]:
    """A recipe draft beside its approved version on recorded images and on the challenge
    units (`edge.recipes.preview`); reads the records, writes nothing but this job's files."""
    from edge.config import OnnxBackend, Recipe, SimulatorSource, ViewConfig
    from edge.inspect.base import Services
    from edge.recipes import preview
    from edge.recipes.products import Product

    approved = Recipe.model_validate(args["approved"])
    draft = Recipe.model_validate(args["draft"])
    services = Services(models_dir=args["models_dir"], backend=OnnxBackend(threads=1))
    # a station's cameras: each recorded item judged view by view, as the line did
    views = [ViewConfig.model_validate(v) for v in args.get("views") or []]
    progress({"stage": "preview", "images": 0, "of": int(args.get("limit", 50))})
    out: dict[str, Any] = {
        "recipe": draft.name,
        "against": {"name": approved.name, "version": args.get("approved_version")},
        **preview.on_images(
            approved,
            draft,
            services,
            args["state_dir"],
            int(args.get("limit", 50)),
            progress,
            views=views,
        ),
    }
    if args.get("challenge"):
        c = args["challenge"]
        product = Product.model_validate(c["product"]) if c.get("product") else None
        source = SimulatorSource.model_validate(c["source"]) if c.get("source") else None
        setup = preview.challenge_setup(approved, product, source)
        if setup is None:
            out["challenge"] = {"units": 0, "why": "no challenge set renders for this recipe"}
        else:
            progress({"stage": "challenge", "units": sum(u.count for u in setup[0])})
            out["challenge"] = preview.on_challenge(approved, draft, services, *setup, views=views)
    return out


RUNNERS = {
    "train": run_train,
    "evaluate": run_evaluate,
    "shadow": run_shadow,
    "anomaly_fit": run_anomaly_fit,
    "preview": run_preview,
}


def main(argv: list[str]) -> int:
    kind, d = argv[0], Path(argv[1])
    run_in_background(19)  # the line always comes first
    progress = Progress(d)
    meta = json.loads((d / "job.json").read_text())
    progress({"stage": "started", "kind": kind, "pid": os.getpid()})
    try:
        result = RUNNERS[kind]({**meta["args"], "by": meta.get("by")}, d, progress)
    except Exception as exc:
        traceback.print_exc()
        progress({"stage": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    progress({"stage": "finished", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
