"""Latency and accuracy of each approved model, FP32 vs INT8, measured in one run.

    python bench/models.py [--models models] [--threads 2] [--runs 300] [--test DIR ...] [--json]

Latency of one batch-1 forward pass at the card's input size on ONNX Runtime (TensorRT
too with --tensorrt where present): medians from FP32 and INT8 interleaved in blocks, so
that load from other processes hits both alike, and `speedup` = FP32 median / INT8
median from this run; p99 from each model run alone, as the line runs it (see
`latencies`). AP50: mean over classes on labelled test sets (default: simulator exports
with seeds never used in training, 100 vials + 100 blisters).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import OnnxBackend, TensorRTBackend
from edge.inference.base import Backend, BackendError, create_backend
from edge.models.cards import FP32
from edge.models.registry import ModelRegistry
from edge.train.detector_metrics import ap50_of_backend


def default_test_sets(out: Path, items: int) -> list[Path]:
    from edge.config import SimulatorSource
    from edge.sim.export import export

    dirs = []
    for scenario, seed in (("vials", 2001), ("blisters", 2002)):
        d = out / f"{scenario}-{seed}"
        export(
            SimulatorSource(scenario=scenario, seed=seed, defect_rate=0.5, realtime=False), d, items
        )
        dirs.append(d)
    return dirs


def latencies(
    backends: dict[str, Backend], size: int, runs: int, block: int = 20
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(interleaved, alone): batch-1 latencies in ms of each backend.

    Interleaved blocks give the medians and the speed-up (drift on a shared machine hits
    both alike). The tail is measured alone, as the line runs one model on every item:
    interleaved, the idle session's ONNX Runtime threads still spin for a while after
    their block and take a core from the other (INT8 p99 22-23 ms interleaved, 12-13
    alone, in the same minute).
    """
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, size, size), dtype=np.float32)

    def timed(be: Backend) -> float:
        t = time.perf_counter()
        be.run(x)
        return (time.perf_counter() - t) * 1000

    for be in backends.values():  # warm-up
        for _ in range(10):
            be.run(x)
    inter: dict[str, list[float]] = {k: [] for k in backends}
    while min(len(v) for v in inter.values()) < runs:
        for k, be in backends.items():
            be.run(x)  # untimed: the other model's block has just had the caches
            inter[k] += [timed(be) for _ in range(block)]
    alone = {}
    for k, be in backends.items():
        for _ in range(10):
            be.run(x)
        alone[k] = [timed(be) for _ in range(runs)]
    return inter, alone


def ap50(be: Backend, test_sets: list[Path]) -> float:
    vals = []
    for t in test_sets:
        vals += list(ap50_of_backend(be, t)["ap50"].values())
    return round(float(np.mean(vals)), 4) if vals else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--name", action="append", help="model name (default: every approved model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--test", type=Path, action="append", help="labelled test set(s)")
    ap.add_argument("--test-items", type=int, default=100, help="items per generated test set")
    ap.add_argument("--no-ap", action="store_true", help="latency only")
    ap.add_argument("--tensorrt", action="store_true", help="also TensorRT (needs a GPU)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    reg = ModelRegistry(a.models)
    # detectors only: an anomaly model (`task: anomaly`) has its own bench, bench/anomaly.py
    detectors = [n for n in reg.names() if reg.card(n, reg.versions(n)[-1]).task != "anomaly"]
    names = a.name or [n for n in detectors if reg.approved(n)] or detectors
    if not names:
        print(f"no approved models in {a.models}", file=sys.stderr)
        return 1
    tmp = tempfile.TemporaryDirectory()
    test_sets = a.test or ([] if a.no_ap else default_test_sets(Path(tmp.name), a.test_items))
    results = {}
    for name in names:
        # the approved version; else the newest (benchmarking a candidate before approval)
        card = reg.approved(name) or reg.card(name, reg.versions(name)[-1])
        # both files checked against the card, as the line opens a model
        opened = reg.open_model(card.name, card.version, allow_unapproved=True, with_files=(FP32,))
        cfg = OnnxBackend(threads=a.threads, providers=["CPUExecutionProvider"])
        bes: dict[str, Backend] = {
            "fp32": create_backend(cfg).load(
                opened.file(FP32), card.input_size, card.classes, boxes=card.boxes
            ),
            "int8": opened.load_detector(cfg),
        }
        if a.tensorrt:
            try:
                bes["tensorrt"] = opened.load_detector(TensorRTBackend())
            except BackendError as exc:
                print(f"tensorrt: {exc}", file=sys.stderr)
        lat, alone = latencies(bes, card.input_size, a.runs)
        res: dict = {"version": card.version, "status": card.status}
        for k, be in bes.items():
            v, solo = np.array(lat[k]), np.array(alone[k])
            res[k] = {
                "median_ms": round(float(np.median(v)), 2),
                "p99_ms": round(float(np.percentile(solo, 99)), 2),
                "p99_interleaved_ms": round(float(np.percentile(v, 99)), 2),
                "ap50": ap50(be, test_sets) if test_sets else None,
            }
        res["speedup"] = round(res["fp32"]["median_ms"] / res["int8"]["median_ms"], 2)
        if res["fp32"]["ap50"] is not None:
            res["ap50_drop_points"] = round((res["fp32"]["ap50"] - res["int8"]["ap50"]) * 100, 2)
        results[name] = res
        for be in bes.values():
            be.close()
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        for name, r in results.items():
            print(f"{name} {r['version']}  ({a.threads} threads, batch 1)")
            for k in [k for k in r if isinstance(r[k], dict)]:
                v = r[k]
                ap_s = f"  AP50 {v['ap50']:.3f}" if v["ap50"] is not None else ""
                print(f"  {k:8} median {v['median_ms']:6.2f} ms  p99 {v['p99_ms']:6.2f} ms{ap_s}")
            print(f"  INT8 speedup {r['speedup']:.2f}x")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
