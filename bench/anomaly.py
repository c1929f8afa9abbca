"""Good-only anomaly model on real photos: image and pixel AUROC, threshold, recall, speed.

Fits on the good folders only (the same `fit_arrays` as `edge anomaly fit`: k-fold
held-out scores give the threshold at the target false-reject rate), then scores unseen
good photos and anomalous photos with the INT8 feature file on ONNX Runtime (and the FP32
reference, for the parity figure). Prints one JSON object.

- image_auroc: test-good vs test-bad image scores (max of the smoothed map)
- pixel_auroc: every pixel of the test images (maps and masks at 1/4 resolution); a mask
  pixel > 0 is a defect; masks are found by the image's name stem
- threshold, recall (test-bad above it), false_reject_rate (test-good above it)
- ms_p50, ms_p99: per image, the whole tool's work (crop, resize, features, search,
  smoothing), decode excluded, on --threads threads
- fp32: the same figures with the FP32 reference feature file

Run (VisA capsules; bench/anomaly_split.py makes the fit / test-good split):

    python bench/anomaly_split.py ../shared/data/defects/visa_capsules/capsules/Data/Images/Normal /tmp/visa
    python bench/anomaly.py --good /tmp/visa/fit --n-good 20 --test-good /tmp/visa/test_good \
        --test-bad ../shared/data/defects/visa_capsules/capsules/Data/Images/Anomaly \
        --masks ../shared/data/defects/visa_capsules/capsules/Data/Masks/Anomaly --threads 1 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge.anomaly.fit import FitOptions, fit_arrays, good_files, load_good
from edge.anomaly.model import Scorer, crop

PIXEL_SCALE = 4


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    neg, pos = np.asarray(neg, np.float64).ravel(), np.asarray(pos, np.float64).ravel()
    s = np.concatenate([neg, pos])
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    ranks = (np.bincount(inv, ranks) / cnt)[inv]
    n1, n0 = len(pos), len(neg)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def full_map(heat: np.ndarray, shape: tuple[int, int], roi) -> np.ndarray:
    """The heat map at 1/PIXEL_SCALE of the image, the region placed where it was cut."""
    h, w = shape[0] // PIXEL_SCALE, shape[1] // PIXEL_SCALE
    x, y, rw, rh = roi if roi else (0, 0, shape[1], shape[0])
    out = np.full((h, w), float(heat.min()), np.float32)
    x0, y0 = x // PIXEL_SCALE, y // PIXEL_SCALE
    pw, ph = max(1, rw // PIXEL_SCALE), max(1, rh // PIXEL_SCALE)
    out[y0 : y0 + ph, x0 : x0 + pw] = cv2.resize(heat, (pw, ph), interpolation=cv2.INTER_LINEAR)
    return out


def evaluate(scorer: Scorer, good, bad, masks, roi, threshold: float) -> dict:
    times, gs, bs, pneg, ppos = [], [], [], [], []
    for kind, files in (("good", good), ("bad", bad)):
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            t0 = time.perf_counter()
            score, heat = scorer.score(crop(img, roi))
            times.append((time.perf_counter() - t0) * 1000.0)
            (gs if kind == "good" else bs).append(score)
            if masks is None:
                continue
            fm = full_map(heat, img.shape[:2], roi)
            mp = masks.get(p.stem) if kind == "bad" else None
            if mp is None:
                pneg.append(fm.ravel())
                continue
            mk = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
            mk = cv2.resize(mk, fm.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
            ppos.append(fm[mk])
            pneg.append(fm[~mk])
    gs, bs = np.array(gs), np.array(bs)
    out = {
        "image_auroc": round(auroc(gs, bs), 4),
        "threshold": round(threshold, 4),
        "recall": round(float((bs > threshold).mean()), 4),
        "false_reject_rate": round(float((gs > threshold).mean()), 4),
        "ms_p50": round(float(np.percentile(times, 50)), 1),
        "ms_p99": round(float(np.percentile(times, 99)), 1),
    }
    if ppos:
        out["pixel_auroc"] = round(auroc(np.concatenate(pneg), np.concatenate(ppos)), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--good", action="append", required=True, help="good-image folder (repeat)")
    ap.add_argument("--n-good", type=int, help="fit on N evenly spaced good images (name order)")
    ap.add_argument("--test-good", required=True, help="unseen good images")
    ap.add_argument("--test-bad", required=True, help="anomalous images")
    ap.add_argument("--masks", help="defect masks named like the test-bad images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--roi", help="x,y,w,h region of every image (default: whole image)")
    ap.add_argument("--input", default="768x512", help="feature model input WxH")
    ap.add_argument(
        "--layers", default=",".join(map(str, FitOptions.layers)), help="backbone blocks tapped"
    )
    ap.add_argument("--memory", type=int, default=FitOptions.memory_size, help="coreset size")
    ap.add_argument("--pool", type=int, default=FitOptions.pool, help="feature averaging, patches")
    ap.add_argument("--sigma", type=float, default=FitOptions.sigma)
    ap.add_argument("--knn", type=int, default=FitOptions.knn)
    ap.add_argument("--margin", type=int, default=FitOptions.margin, help="unscored outer patches")
    ap.add_argument(
        "--projection", type=int, default=FitOptions.projection, help="main axes kept (0: none)"
    )
    ap.add_argument("--target-frr", type=float, default=FitOptions.target_frr)
    ap.add_argument("--no-fp32", action="store_true", help="skip the FP32 reference pass")
    a = ap.parse_args()
    cv2.setNumThreads(a.threads)  # the resize is part of the tool's time on its threads
    say = (lambda s: None) if a.json else (lambda s: print(s, file=sys.stderr))
    roi = tuple(int(v) for v in a.roi.split(",")) if a.roi else None
    w, h = (int(v) for v in a.input.lower().split("x"))
    opt = FitOptions(
        input_hw=(h, w),
        layers=tuple(int(v) for v in a.layers.split(",")),
        pool=a.pool,
        memory_size=a.memory,
        sigma=a.sigma,
        knn=a.knn,
        margin=a.margin,
        projection=a.projection,
        target_frr=a.target_frr,
        threads=a.threads,
    )
    good = load_good(a.good, roi, a.n_good)
    test_good = good_files([a.test_good])
    test_bad = good_files([a.test_bad])
    fitted_names = {p.resolve() for p in good.paths}
    if fitted_names & {p.resolve() for p in test_good + test_bad}:
        sys.exit("error: a test image is also a fitted image")
    masks = None
    if a.masks:
        masks = {p.stem: p for p in Path(a.masks).iterdir() if p.is_file()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        f = fit_arrays(good, Path(tmp), roi, opt, progress=say)
        fit_s = time.perf_counter() - t0
        say("scoring with the INT8 feature file")
        s8 = Scorer.for_spec(f.int8, f.memory, f.spec, a.threads)
        res = evaluate(s8, test_good, test_bad, masks, roi, f.spec.threshold)
        res.update(backend="onnxruntime-cpu", int8=True)
        if not a.no_fp32:
            say("scoring with the FP32 feature file")
            s32 = Scorer.for_spec(f.fp32, f.memory, f.spec, a.threads)
            res["fp32"] = evaluate(s32, test_good, test_bad, masks, roi, f.spec.threshold)
    res.update(
        fit_images=len(good.paths),
        test_good=len(test_good),
        test_bad=len(test_bad),
        memory=len(f.memory),
        input=a.input,
        layers=a.layers,
        pool=a.pool,
        sigma=a.sigma,
        knn=a.knn,
        margin=a.margin,
        projection=f.spec.model_extra.get("projection"),
        feature_dim=f.spec.model_extra.get("feature_dim"),
        threads=a.threads,
        fit_s=round(fit_s, 1),
        held_out_max=round(float(f.held_out.max()), 4),
        outliers=f.outliers,
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
