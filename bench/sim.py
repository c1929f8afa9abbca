"""Simulator speed: frames per second per scenario on one core (render only, no I/O).

Run: OMP_NUM_THREADS=1 python bench/sim.py [--frames N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2

from edge.config import SimulatorSource
from edge.sim.twin import LineSimulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--defect-rate", type=float, default=0.1)
    ap.add_argument("--code-defect-rate", type=float, default=0.05)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    print(f"{'scenario':10s} {'frames':>7s} {'fps':>8s} {'ms/frame':>9s}  (one core, 640x480)")
    for scenario in ("vials", "blisters", "cartons"):
        cfg = SimulatorSource(
            scenario=scenario,
            seed=args.seed,
            defect_rate=args.defect_rate,
            code_defect_rate=args.code_defect_rate if scenario != "blisters" else 0.0,
            realtime=False,
        )
        sim = LineSimulator(cfg)
        sim.render(0)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.frames):
            sim.render(i)
        dt = time.perf_counter() - t0
        print(
            f"{scenario:10s} {args.frames:7d} {args.frames / dt:8.1f} {1000 * dt / args.frames:9.2f}"
        )


if __name__ == "__main__":
    main()
