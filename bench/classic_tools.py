"""Classic tools against simulator truth: per-class recall and the false-reject rate.

Renders N items per scenario (or reads an exported `edge sim` folder with --data),
runs the default recipe's classic tools (fill_level, cap, label, pockets) and prints,
per defect class, how many items the tools flagged, and how many good items they flagged.

Run: python bench/classic_tools.py --items 2000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import cv2

from edge import taxonomy
from edge.config import SimulatorSource, default_recipes
from edge.inspect.base import Services, ToolContext
from edge.inspect.registry import build_tools
from edge.sim.twin import LineSimulator

CLASSIC = {"fill_level", "cap", "label", "pockets"}
# what the classic tools are meant to catch (the rest waits for the detector and code reader)
_CAUGHT = {
    "vials": ["low_fill", "missing_cap", "cap_tilt", "missing_label"],
    "blisters": list(taxonomy.product("blisters").defects),
}
TARGETS = {sc: {c: taxonomy.reasons(c, sc)[0] for c in cs} for sc, cs in _CAUGHT.items()}


def items(scenario: str, n: int, seed: int, data: Path | None, **sim_args):
    if data is not None:
        for line in (data / "truth.jsonl").read_text().splitlines()[:n]:
            t = json.loads(line)
            yield cv2.imread(str(data / t["image"])), t
        return
    cfg = SimulatorSource(scenario=scenario, seed=seed, realtime=False, **sim_args)
    sim = LineSimulator(cfg)
    for i in range(n):
        yield sim.render(i)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=None, help="an exported simulator folder")
    ap.add_argument("--scenario", choices=sorted(TARGETS), action="append")
    ap.add_argument("--defect-rate", type=float, default=0.1, help="as the simulator's default")
    ap.add_argument("--code-defect-rate", type=float, default=0.05)
    ap.add_argument("--drift-per-hour", type=float, default=0.5, help="lighting drift")
    args = ap.parse_args()
    sim_args = {
        "defect_rate": args.defect_rate,
        "code_defect_rate": args.code_defect_rate,
        "drift_per_hour": args.drift_per_hour,
    }
    recipes = default_recipes()
    for scenario in args.scenario or sorted(TARGETS, reverse=True):
        recipe = recipes[scenario]
        recipe = recipe.model_copy(update={"tools": [t for t in recipe.tools if t.type in CLASSIC]})
        tools = build_tools(recipe, Services())
        seen: Counter = Counter()
        caught: Counter = Counter()
        flagged_codes: Counter = Counter()
        good = false_rejects = 0
        ms = 0.0
        for k, (img, truth) in enumerate(
            items(scenario, args.items, args.seed, args.data, **sim_args)
        ):
            ctx = ToolContext(item_id=truth["id"], seq=k, deadline=time.monotonic() + 10)
            t0 = time.perf_counter()
            codes = {f.code for tool in tools for f in tool.inspect(img, ctx).findings}
            ms += (time.perf_counter() - t0) * 1000
            if truth["expected"] == "PASS":
                good += 1
                if codes:
                    false_rejects += 1
                    flagged_codes.update(codes)
            for d in truth["defects"]:
                seen[d["class"]] += 1
                want = TARGETS[scenario].get(d["class"])
                if want and want in codes:
                    caught[d["class"]] += 1
        n = args.items
        print(
            f"== {scenario}: {n} items, seed {args.seed}, tools {[t.name for t in tools]}, "
            f"{ms / n:.2f} ms/item for all of them"
        )
        for cls in TARGETS[scenario]:
            if seen[cls]:
                print(
                    f"  {cls:16s} recall {caught[cls] / seen[cls]:7.2%}  ({caught[cls]}/{seen[cls]})"
                )
        print(
            f"  {'false rejects':16s} {false_rejects / max(1, good):7.2%}  ({false_rejects}/{good} good items)"
            + (f"  codes {dict(flagged_codes)}" if flagged_codes else "")
        )


if __name__ == "__main__":
    main()
