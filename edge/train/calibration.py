"""INT8 calibration ranges, one tensor at a time, that a degenerate tensor cannot break.

ONNX Runtime's histogram calibrators (percentile, entropy) build one histogram over all
tensors of a model and fail as a whole on one bad tensor: a nearly constant activation
(a channel a short training run left dead, a bias-only branch) makes numpy refuse
`Too many bins for data range. Cannot create 2048 finite-sized bins.`, and a job that
trained for an hour ends with no INT8 model. So the ranges are computed here, per tensor:

1. a first pass records each tensor's min and max (what min-max calibration is);
2. a tensor whose values hardly vary (spread <= `NEAR_CONSTANT` of its magnitude, or all
   zero) keeps its min-max range: a percentile or an entropy threshold of a constant *is*
   its magnitude, and their histograms are what fail on it;
3. the others get a histogram over a fixed range [0, max|x|] (symmetric, as TensorRT's
   explicit quantisation needs) in a second pass, and the chosen method's threshold;
   should that method still fail on a tensor, the tensor falls back to min-max too.

Every tensor that did not get the chosen method is reported with its reason, and the
quantiser records them on the model card, so whoever approves the model sees that a
part of it was calibrated differently. The ranges are handed to ONNX Runtime's quantiser
as a calibration cache, so the Q/DQ file itself is written exactly as before.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

#: spread (max - min) at or below this fraction of max|x| makes a tensor "near-constant"
NEAR_CONSTANT = 1e-3
#: histogram bins for the percentile and entropy thresholds (ONNX Runtime's default)
BINS = 2048
#: the percentile the detector has been calibrated with (see edge.train.quantize)
PERCENTILE = 99.999
#: at most this many fallen-back tensors are named on a card (the count is always exact)
LISTED = 50


class _Stats:
    __slots__ = ("finite", "hi", "hist", "lo")

    def __init__(self) -> None:
        self.lo, self.hi, self.hist, self.finite = np.inf, -np.inf, None, True


def _run(session, reader, names: list[str]):
    """Yield {tensor: array} for each calibration sample."""
    outputs = [o.name for o in session.get_outputs()]
    idx = [outputs.index(n) for n in names]
    while True:
        feed = reader.get_next()
        if not feed:
            return
        res = session.run(None, feed)
        yield {n: np.asarray(res[i]) for n, i in zip(names, idx, strict=True)}


def _percentile(hist: np.ndarray, amax: float) -> float:
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    i = int(np.searchsorted(cdf, PERCENTILE / 100.0))
    return min(float(amax), (i + 1) * amax / len(hist))


def _entropy(values: list[np.ndarray], amax: float) -> float:
    from onnxruntime.quantization.calibrate import HistogramCollector

    hist = np.zeros(BINS, np.int64)
    edges = np.linspace(-amax, amax, BINS + 1, dtype=np.float32)
    for v in values:
        hist += np.histogram(v, BINS, range=(-amax, amax))[0]
    col = HistogramCollector("entropy", True, BINS, 128, PERCENTILE, "same")
    lo, hi = col.get_entropy_threshold((hist, edges, -amax, amax, np.float32(amax)), 128)
    t = float(max(abs(float(lo)), abs(float(hi))))
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"entropy threshold {t}")
    return t


def ranges(
    fp32_path: str | Path, reader: Any, method: str
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Symmetric threshold per calibrated tensor, and the tensors that fell back to min-max.

    `reader` is a CalibrationDataReader; it is rewound for the second pass when it can
    be, else its samples are kept in memory (calibration sets are small).
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory(prefix="edge-calib-") as tmp:
        cal = create_calibrator(
            Path(fp32_path),
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"symmetric": True},
        )
        names = sorted(cal.tensors_to_calibrate)
        session = cal.infer_session
        kept: list[dict] | None = None
        if not hasattr(reader, "rewind"):
            kept = []
            reader = _Kept(reader, kept)
        stats = {n: _Stats() for n in names}
        samples = 0
        for out in _run(session, reader, names):
            samples += 1
            for n, v in out.items():
                s = stats[n]
                if v.size == 0:
                    continue
                if not np.all(np.isfinite(v)):
                    s.finite = False
                    v = v[np.isfinite(v)]
                    if v.size == 0:
                        continue
                s.lo, s.hi = min(s.lo, float(v.min())), max(s.hi, float(v.max()))
        if not samples:
            raise ValueError("no calibration samples")
        thresholds: dict[str, float] = {}
        fallbacks: list[dict[str, str]] = []
        histogrammed: list[str] = []
        for n in names:
            s = stats[n]
            if s.lo > s.hi:  # never saw a value
                s.lo = s.hi = 0.0
            amax = max(abs(s.lo), abs(s.hi))
            thresholds[n] = amax
            if method == "minmax":
                continue
            if amax == 0.0 or (s.hi - s.lo) <= NEAR_CONSTANT * amax:
                fallbacks.append(
                    {
                        "tensor": n,
                        "method": "minmax",
                        "reason": f"near-constant: values in [{s.lo:.6g}, {s.hi:.6g}]",
                    }
                )
                continue
            histogrammed.append(n)
        if histogrammed:
            reader = _Replay(kept) if kept is not None else reader
            reader.rewind()
            if method == "percentile":
                for n in histogrammed:
                    stats[n].hist = np.zeros(BINS, np.int64)
                for out in _run(session, reader, histogrammed):
                    for n, v in out.items():
                        a = np.abs(v[np.isfinite(v)])
                        stats[n].hist += np.histogram(a, BINS, range=(0.0, thresholds[n]))[0]
                for n in histogrammed:
                    thresholds[n] = _percentile(stats[n].hist, thresholds[n])
            else:  # entropy: its search needs the signed histogram
                values: dict[str, list[np.ndarray]] = {n: [] for n in histogrammed}
                for out in _run(session, reader, histogrammed):
                    for n, v in out.items():
                        values[n].append(v[np.isfinite(v)].ravel())
                for n in histogrammed:
                    try:
                        thresholds[n] = min(thresholds[n], _entropy(values[n], thresholds[n]))
                    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
                        fallbacks.append(
                            {"tensor": n, "method": "minmax", "reason": f"entropy failed: {exc}"}
                        )
                    values[n] = []
        for n in names:
            if not stats[n].finite:
                fallbacks.append(
                    {"tensor": n, "method": method, "reason": "non-finite values ignored"}
                )
        del session, cal
    return thresholds, fallbacks


_PATCH = threading.Lock()


def cache_supported(quantize_static: Any) -> bool:
    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


@contextlib.contextmanager
def precomputed(thresholds: dict[str, float], method: str):
    """Keyword arguments that make `quantize_static` use these ranges, not calibrate again.

    ONNX Runtime >= 1.2x reads them from a calibration cache file; older releases (the
    Jetson's wheels lag) get them from a stand-in for the calibrator `quantize_static`
    creates, swapped in under a lock for the length of the call.
    """
    q = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not the function
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    enum = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    data = TensorsData(
        enum,
        {
            n: TensorData(lowest=np.array(-t, np.float32), highest=np.array(t, np.float32))
            for n, t in thresholds.items()
        },
    )
    if cache_supported(q.quantize_static):
        from onnxruntime.quantization.calibrate import save_tensors_data

        with tempfile.TemporaryDirectory(prefix="edge-quant-") as tmp:
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(data, cache)
            yield {"calibration_data_reader": None, "calibration_cache_path": str(cache)}
        return

    class _Given:
        def collect_data(self, reader: Any) -> None:
            pass

        def compute_data(self):
            return data

    with _PATCH:
        original = q.create_calibrator
        q.create_calibrator = lambda *a, **k: _Given()
        try:
            yield {"calibration_data_reader": _Replay([])}
        finally:
            q.create_calibrator = original


def summary(fallbacks: list[dict[str, str]]) -> dict[str, Any]:
    """What the card records: how many tensors fell back, and the first few by name."""
    return {"count": len(fallbacks), "tensors": fallbacks[:LISTED]}


class _Kept:
    """A reader without rewind: pass its samples through and keep them for pass two."""

    def __init__(self, reader: Any, kept: list[dict]):
        self.reader, self.kept = reader, kept

    def get_next(self):
        s = self.reader.get_next()
        if s:
            self.kept.append(s)
        return s


class _Replay:
    def __init__(self, kept: list[dict]):
        self.kept = kept
        self._it = iter(kept)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.kept)
