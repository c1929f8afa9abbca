"""Glass tool against simulator truth: per-class recall, false rejects on good vials, ms/item.

Renders vials in memory and runs only the glass tool (cracks, particles, scratches).
An item counts as caught when the tool reports the class's own code; "any" counts any
glass finding. A good item (no defect) with any glass finding is a false reject.

Run: python bench/glass.py --items 2000 --seed 7 --defect-rate 0.3
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from edge import taxonomy
from edge.config import SimulatorSource
from edge.inspect.base import Services, ToolContext
from edge.inspect.glass import GlassTool
from edge.sim.twin import LineSimulator

TARGETS = {c: taxonomy.reasons(c, "vials")[0] for c in ("crack", "particle", "scratch")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--defect-rate", type=float, default=0.3)
    ap.add_argument("--drift-per-hour", type=float, default=0.0)
    ap.add_argument("--show", type=int, default=5, help="list this many misses / false rejects")
    a = ap.parse_args()
    cfg = SimulatorSource(
        scenario="vials",
        seed=a.seed,
        realtime=False,
        defect_rate=a.defect_rate,
        drift_per_hour=a.drift_per_hour,
    )
    sim = LineSimulator(cfg)
    tool = GlassTool("glass", GlassTool.Params(), Services())
    total, hit, anyhit, flagged = Counter(), Counter(), Counter(), Counter()
    misses, fps = [], []
    spent = 0.0
    for i in range(a.items):
        img, truth = sim.render(i)
        ctx = ToolContext(item_id=truth["id"], seq=i, deadline=time.monotonic() + 1)
        t0 = time.perf_counter()
        res = tool.inspect(img, ctx)
        spent += time.perf_counter() - t0
        codes = {f.code for f in res.findings}
        cls = truth["defects"][0]["class"] if truth["defects"] else "good"
        total[cls] += 1
        if codes:
            flagged[cls] += 1
        if cls in TARGETS:
            anyhit[cls] += bool(codes)
            hit[cls] += TARGETS[cls] in codes
            if TARGETS[cls] not in codes:
                misses.append((i, cls, sorted(codes)))
        elif cls == "good" and codes:
            fps.append((i, [(f.code, f.message, f.bbox) for f in res.findings]))
    print(f"items {a.items}  seed {a.seed}  defect_rate {a.defect_rate}")
    for cls in TARGETS:
        n = max(1, total[cls])
        print(
            f"  {cls:9s} n={total[cls]:4d}  recall {hit[cls] / n:7.2%}  "
            f"(any glass finding {anyhit[cls] / n:7.2%})"
        )
    g = max(1, total["good"])
    print(f"  good      n={total['good']:4d}  false rejects {flagged['good'] / g:7.3%}")
    for cls in sorted(set(total) - set(TARGETS) - {"good"}):
        print(f"  {cls:12s} n={total[cls]:4d}  flagged by glass {flagged[cls] / total[cls]:6.1%}")
    print(f"  {spent / a.items * 1000:.2f} ms/item (glass tool only)")
    for m in misses[: a.show]:
        print("  miss", m)
    for f in fps[: a.show]:
        print("  false reject", f)


if __name__ == "__main__":
    main()
