"""Speed of the anomaly tool against the previous round's method, in one run (same load).

The previous method, rebuilt from the same code: blocks 4 and 10 averaged over 3x3, 152
features, the area resize and per-channel normalisation in numpy, the detector's CPU
rewrite (ReLU6 clips left in float), a 2,000 x 152 memory, map smoothed by 1 patch. The
current one is `edge anomaly fit`'s defaults. Both score the same photos alternately on
the same threads (decode excluded), so a shared, loaded machine slows both alike.

Run:

    python bench/anomaly_speed.py --good /tmp/visa/fit --images /tmp/visa/test_good --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge.anomaly.export import export_features
from edge.anomaly.features import preprocess
from edge.anomaly.fit import FitOptions, fit_arrays, good_files, load_good, quantize_features
from edge.anomaly.memory import MemoryIndex
from edge.anomaly.model import Scorer
from edge.inference import cpu_graph


class Previous:
    """The previous round's scoring path, for timing only (its memory: random good patches)."""

    def __init__(self, workdir: Path, good: list[np.ndarray], threads: int):
        import onnx
        import onnxruntime as ort

        fp32, int8 = workdir / "prev.onnx", workdir / "prev.int8.onnx"
        export_features(fp32, 512, 768, [4, 10], pool=3)
        quantize_features(fp32, int8, [preprocess(g, 768, 512, "area") for g in good[:8]])
        model = onnx.load(str(int8))  # the previous round's CPU rewrite: no clip fold
        cpu_graph.quantize_conv_biases(model)
        cpu_graph.qdq_activations_to_uint8(model)
        cpu_graph.fold_relu_into_qdq(model)
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = threads, 1, 3
        self.session = ort.InferenceSession(model.SerializeToString(), o)
        feats = np.concatenate([self.features(g) for g in good[:4]])
        pick = np.random.default_rng(0).choice(len(feats), 2000, replace=False)
        self.index = MemoryIndex(feats[pick], threads)

    def features(self, image: np.ndarray) -> np.ndarray:
        y = self.session.run(None, {"images": preprocess(image, 768, 512, "area")})[0][0]
        return np.ascontiguousarray(y.reshape(y.shape[0], -1).T)

    def score(self, image: np.ndarray) -> float:
        m = self.index.distances(self.features(image)).reshape(64, 96).astype(np.float32)
        return float(cv2.GaussianBlur(m, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--good", required=True, help="good images to fit on (the first --n-good)")
    ap.add_argument("--n-good", type=int, default=20)
    ap.add_argument("--images", required=True, help="photos to time (not fitted)")
    ap.add_argument("--n", type=int, default=50, help="photos timed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    a = ap.parse_args()
    cv2.setNumThreads(a.threads)
    good = load_good([a.good], None, a.n_good)
    photos = [cv2.imread(str(p)) for p in good_files([a.images])[: a.n]]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        f = fit_arrays(good, Path(tmp), None, FitOptions(threads=a.threads))
        current = Scorer.for_spec(f.int8, f.memory, f.spec, a.threads)
        previous = Previous(Path(tmp), good.images, a.threads)
        times: dict[str, list[float]] = {"previous": [], "current": []}
        for img in photos:
            for name, score in (("previous", previous.score), ("current", current.score)):
                t0 = time.perf_counter()
                score(img)
                times[name].append((time.perf_counter() - t0) * 1000.0)
    out = {
        k: {
            "ms_p50": round(float(np.median(v)), 1),
            "ms_p99": round(float(np.percentile(v, 99)), 1),
        }
        for k, v in times.items()
    }
    out["speedup_p50"] = round(out["previous"]["ms_p50"] / out["current"]["ms_p50"], 2)
    out.update(photos=len(photos), threads=a.threads, backend="onnxruntime-cpu", int8=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
