"""Teaching a product from good images: `edge anomaly fit` (teaching side: needs torch).

good folders -> checks (enough images, one size, ROI inside) -> FP32 feature ONNX built
for the model's input size, ended by a projection on the main axes of the good patches
-> INT8 feature file calibrated on the good images -> patch features of every good image
as the line will compute them (INT8) -> k-fold held-out scores -> threshold at the
target false-reject rate -> coreset memory of all good patches -> a *candidate* in the
model registry (approval is a separate, audited step after `verify`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.anomaly import threshold as thr
from edge.anomaly.features import FeatureExtractor, preprocess
from edge.anomaly.memory import MemoryIndex, coreset_of_sketch, sketch
from edge.anomaly.model import MEMORY, TASK, AnomalySpec, crop, score_map
from edge.anomaly.teach_set import MIN_GOOD
from edge.models import cards
from edge.models.registry import ModelRegistry
from edge.train.dataset import IMAGE_EXT, manifest_hash, sha256_file

log = logging.getLogger(__name__)


class FitError(ValueError):
    """Good images the method cannot be fitted on; the message says why."""


@dataclass
class FitOptions:
    input_hw: tuple[int, int] = (512, 768)
    #: backbone blocks tapped: 4 (stride 8, 40 channels; the grid), 7 (stride 16, 80) and
    #: 10 (stride 16, 112). On VisA capsules (bench/anomaly.py) blocks 4 and 10 alone
    #: scored image AUROC 0.948 (fit on 20) and 0.968 (fit on 150); with block 7, 0.970
    #: and 0.992.
    layers: tuple[int, ...] = (4, 7, 10)
    pool: int = 1
    memory_size: int = 2000
    sigma: float = 0.75
    knn: int = 1
    margin: int = 1
    #: principal axes kept (0: the backbone's features as they are)
    projection: int = 96
    #: features.PREPROCESS: how a region becomes the network's input
    preprocess: str = "linear"
    target_frr: float = 0.01
    folds: int = 10
    seed: int = 0
    threads: int = 1
    calibration_images: int = 16


@dataclass
class GoodSet:
    paths: list[Path]
    images: list[np.ndarray]
    manifest: dict[str, Any] = field(default_factory=dict)


def good_files(dirs: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FitError(f"good-image folder {d} does not exist")
        files += sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)
    return files


def load_good(
    dirs: list[str | Path], roi: tuple[int, int, int, int] | None = None, n: int | None = None
) -> GoodSet:
    """Read the good images (with `n`: n evenly spaced picks in name order) and check them."""
    files = good_files(dirs)
    if n is not None and 0 < n < len(files):
        files = [files[int(round(i))] for i in np.linspace(0, len(files) - 1, n)]
    if len(files) < MIN_GOOD:
        raise FitError(
            f"{len(files)} good images in {[str(d) for d in dirs]}: at least {MIN_GOOD} are "
            "needed (held-out scores for the threshold come from them)"
        )
    images, sizes = [], {}
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise FitError(f"unreadable image {p}")
        sizes.setdefault((img.shape[1], img.shape[0]), []).append(p.name)
        images.append(img)
    if len(sizes) > 1:
        detail = ", ".join(f"{w}x{h}: {len(v)} (e.g. {v[0]})" for (w, h), v in sizes.items())
        raise FitError(f"good images of mixed sizes ({detail}): one camera set-up per model")
    try:
        crop(images[0], roi)
    except ValueError as exc:
        raise FitError(str(exc)) from None
    shas = {f"{i}/{p.name}": sha256_file(p) for i, p in enumerate(files)}
    man = {"count": len(files), "sha256": manifest_hash(shas), "files": shas}
    return GoodSet(files, images, man)


def extract_with_sketch(
    ex: FeatureExtractor,
    images: list[np.ndarray],
    roi: tuple[int, int, int, int] | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's features and the sketch of its unprojected features (the coreset is
    chosen on those: see memory.sketch), without keeping the unprojected features."""
    feats, sketches = [], []
    for img in images:
        f, raw = ex.run_both(crop(img, roi))
        feats.append(f)
        sketches.append(sketch(raw[None], seed)[0])
    return np.stack(feats), np.stack(sketches)


def extract_all(
    ex: FeatureExtractor, images: list[np.ndarray], roi: tuple[int, int, int, int] | None
) -> np.ndarray:
    return np.stack([ex.run(crop(img, roi)) for img in images])


def image_scores(
    feats: np.ndarray, memory: np.ndarray, grid: tuple[int, int], opt: FitOptions
) -> np.ndarray:
    """Score (max of the heat map, as the line computes it) of each image against a memory."""
    index = MemoryIndex(memory)
    return np.array(
        [score_map(index.distances(f, opt.knn), grid, opt.sigma, opt.margin).max() for f in feats]
    )


def build_memory(
    feats: np.ndarray, size: int, seed: int = 0, sketched: np.ndarray | None = None
) -> np.ndarray:
    """The coreset of `feats` (images x patches x D), chosen on `sketched` (the same
    patches' sketch of the unprojected features; default: a sketch of `feats`)."""
    flat = feats.reshape(-1, feats.shape[-1])
    pts = sketch(feats, seed) if sketched is None else sketched
    return flat[coreset_of_sketch(pts, size, seed)]


def held_out_scores(
    feats: np.ndarray,
    grid: tuple[int, int],
    opt: FitOptions,
    sketched: np.ndarray | None = None,
) -> np.ndarray:
    """Each good image scored by a memory fitted without its fold.

    Ten folds by default: each memory then holds 90 % of the good images, so held-out
    scores sit close to what an unseen good unit scores against the memory of all of
    them (with 5 folds the held-out median was 1 % higher on VisA capsules, fit on 150).
    """
    n = len(feats)
    folds = max(2, min(opt.folds, n))
    order = np.random.default_rng(opt.seed).permutation(n)
    scores = np.zeros(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        size = max(1, int(round(opt.memory_size * len(train) / n)))
        pts = None if sketched is None else sketched[train]
        mem = build_memory(feats[train], size, opt.seed, pts)
        scores[test] = image_scores(feats[test], mem, grid, opt)
    return scores


def quantize_features(
    fp32: Path, int8: Path, calib: list[np.ndarray], exclude: list[str] | None = None
) -> dict[str, Any]:
    """INT8 Q/DQ through the project's quantiser (the detector's settings).

    `exclude`: nodes left in float (the projection: its 96 outputs span two orders of
    magnitude of variance, and one per-tensor INT8 scale left the weaker axes a few
    steps; on VisA capsules, fit on 20, image AUROC 0.959 quantised against 0.989 in
    float on the same features). The quantiser prints its progress; it goes to stderr so
    a `--json` stdout stays JSON.
    """
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        return _quantize(fp32, int8, calib, list(exclude or []))


def _quantize(
    fp32: Path, int8: Path, calib: list[np.ndarray], exclude: list[str]
) -> dict[str, Any]:
    from edge.train import quantize as q

    generic = getattr(q, "quantize_qdq", None)
    if generic is not None:
        return generic(fp32, int8, calib, nodes_to_exclude=exclude)
    # the same settings as the detector's `quantize_onnx`, for any input shape
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"images": x}

        def rewind(self) -> None:
            self.it = iter(calib)

    quantize_static(
        model_input=str(fp32),
        model_output=str(int8),
        calibration_data_reader=Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=exclude,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return {
        "format": "QDQ",
        "activations": "int8 symmetric",
        "weights": "int8 symmetric per-channel",
        "method": "percentile",
        "samples": len(calib),
    }


def calibration_set(
    good: GoodSet, roi: tuple[int, int, int, int] | None, opt: FitOptions
) -> list[np.ndarray]:
    """Evenly spaced good images, as the feature file sees them."""
    picks = np.linspace(0, len(good.images) - 1, min(opt.calibration_images, len(good.images)))
    h, w = opt.input_hw
    return [preprocess(crop(good.images[int(round(i))], roi), w, h, opt.preprocess) for i in picks]


@dataclass
class Fitted:
    """What a fit produced before it is written anywhere (the bench uses it directly)."""

    spec: AnomalySpec
    memory: np.ndarray
    held_out: np.ndarray
    outliers: list[str]
    fp32: Path
    int8: Path
    quantization: dict[str, Any]
    good: GoodSet


def fit_arrays(
    good: GoodSet,
    workdir: Path,
    roi: tuple[int, int, int, int] | None = None,
    opt: FitOptions | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> Fitted:
    from edge.anomaly.export import (
        BACKBONE,
        BACKBONE_LICENCE,
        PROJECTION,
        append_projection,
        export_features,
        principal_axes,
    )

    opt = opt or FitOptions()
    h, w = opt.input_hw
    fp32 = Path(workdir) / cards.FP32
    progress(f"exporting the {BACKBONE} feature extractor for {w}x{h}")
    fold = opt.preprocess == "linear"
    info = export_features(fp32, h, w, list(opt.layers), opt.pool, fold_std=fold)
    calib = calibration_set(good, roi, opt)
    dim = info["dim"]
    if 0 < opt.projection < dim:
        progress(f"projection on the {opt.projection} main axes of the good patches")
        ex = FeatureExtractor(fp32, threads=opt.threads, preprocess=opt.preprocess)
        sample = np.concatenate([ex.run_tensor(x) for x in calib])
        ex.close()
        dim = append_projection(fp32, *principal_axes(sample, opt.projection))
    grid = tuple(info["grid"])
    int8 = Path(workdir) / cards.INT8
    progress("INT8 feature file (calibrated on the good images)")
    exclude = [PROJECTION] if dim < info["dim"] else []
    quantization = quantize_features(fp32, int8, calib, exclude)
    # memory and held-out scores from the features the line computes (the INT8 file):
    # on VisA capsules a memory of FP32 features scored INT8 queries worse (image AUROC
    # 0.964 against 0.975, fit on 20) than a memory of the INT8 features themselves
    progress(f"extracting patch features of {len(good.images)} good images (INT8)")
    ex8 = FeatureExtractor(int8, opt.threads, preprocess=opt.preprocess, unprojected=True)
    feats, sketched = extract_with_sketch(ex8, good.images, roi, opt.seed)
    ex8.close()
    progress(f"held-out scores ({opt.folds}-fold)")
    held = held_out_scores(feats, grid, opt, sketched)
    threshold, far_idx = thr.threshold_without_outliers(held, opt.target_frr)
    far = [good.paths[i].name for i in far_idx]
    progress(f"memory: coreset of {opt.memory_size} patches")
    memory = build_memory(feats, opt.memory_size, opt.seed, sketched)
    ih, iw = good.images[0].shape[:2]
    spec = AnomalySpec(
        input_hw=(h, w),
        grid=grid,
        layers=list(opt.layers),
        roi=roi,
        image_size=(iw, ih),
        sigma=opt.sigma,
        knn=opt.knn,
        margin=opt.margin,
        pool=opt.pool,
        preprocess=opt.preprocess,
        threshold=threshold,
        threshold_method=thr.METHOD,
        target_frr=opt.target_frr,
        backbone=BACKBONE,
        backbone_licence=BACKBONE_LICENCE,
        memory_size=len(memory),
        feature_dim=dim,
        projection=dim if dim < info["dim"] else None,
        memory_features="INT8",
        folds=opt.folds,
        held_out={
            "n": len(held),
            "min": float(held.min()),
            "median": float(np.median(held)),
            "max": float(held.max()),
            "scores": [round(float(s), 4) for s in held],
        },
        good_images=good.manifest["count"],
        good_manifest_sha256=good.manifest["sha256"],
        outliers=far,
    )
    return Fitted(spec, memory, held, far, fp32, int8, quantization, good)


def fit(
    good_dirs: list[str | Path],
    name: str,
    version: str,
    models_dir: str | Path = "models",
    roi: tuple[int, int, int, int] | None = None,
    opt: FitOptions | None = None,
    by: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> cards.ModelCard:
    """Fit on good images and register the result as a candidate version."""
    opt = opt or FitOptions()
    registry = ModelRegistry(models_dir)
    if (registry.path(name, version) / cards.CARD).exists():
        raise FitError(f"{name} {version} already exists: versions are never overwritten")
    good = load_good(good_dirs, roi)
    with tempfile.TemporaryDirectory() as tmp:
        f = fit_arrays(good, Path(tmp), roi, opt, progress)
        card = registry.create(
            name,
            version,
            f.fp32,
            classes=["anomaly"],
            input_size=opt.input_hw[1],
            by=by,
            task=TASK,
            arch=f.spec.backbone,
            dataset={
                "good_dirs": [Path(d).as_posix() for d in good_dirs],
                "images": good.manifest["count"],
                "manifest_sha256": good.manifest["sha256"],
            },
            anomaly=f.spec.model_dump(mode="json"),
        )
        d = registry.path(name, version)
        shutil.copyfile(f.int8, d / cards.INT8)
    np.save(d / MEMORY, f.memory.astype(np.float32))
    card = cards.load_card(d)
    card.quantization = f.quantization
    card.calibration = {
        "source": "the good images",
        "images": min(opt.calibration_images, len(good.images)),
    }
    card.files[cards.INT8] = cards.sha256_file(d / cards.INT8)
    card.files[MEMORY] = cards.sha256_file(d / MEMORY)
    cards.save_card(d, card)
    return card
