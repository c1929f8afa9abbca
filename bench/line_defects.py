"""Escape and false-reject rates of a recipe's tools on simulator items, with and without the detector.

    python bench/line_defects.py [--scenario vials] [--items 1000] [--seed 4001] [--json]

Exports a labelled set with a seed never used in training, runs the recipe's tools in
order on every image (as the pipeline does, without the real-time loop), decides each
item with the pipeline's positive-release rule, and scores the verdicts against the
simulator's truth. The recipe is run twice: as shipped (classic tools + detector) and
without the `defects` tool, so the detector's share shows in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import taxonomy
from edge.config import OnnxBackend, SimulatorSource, ToolSpec, default_recipes
from edge.inspect.base import Services
from edge.sim.export import export
from edge.train.line_eval import line_evaluate

DEFAULT_SEEDS = {"vials": 4001, "blisters": 4002}
#: detector classes reported per scenario when the recipe has no `defects` tool yet
SCENARIO_CLASSES = {sc: list(taxonomy.product(sc).defects) for sc in ("vials", "blisters")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=["vials", "blisters"])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--seed", type=int, help="default: 4001 vials, 4002 blisters")
    ap.add_argument("--defect-rate", type=float, default=0.1)
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = {}
    tmp = tempfile.TemporaryDirectory()
    for scenario in a.scenario or ["vials", "blisters"]:
        seed = a.seed or DEFAULT_SEEDS[scenario]
        folder = Path(tmp.name) / scenario
        export(
            SimulatorSource(
                scenario=scenario, seed=seed, defect_rate=a.defect_rate, realtime=False
            ),
            folder,
            a.items,
        )
        recipe = default_recipes()[scenario]
        services = Services(models_dir=a.models, backend=OnnxBackend(threads=a.threads))
        res = {"seed": seed, "items": a.items}
        classic = [s for s in recipe.tools if s.type != "defects"]
        detector = [s for s in recipe.tools if s.type == "defects"] or [
            ToolSpec(type="defects", model="defects", classes=SCENARIO_CLASSES[scenario])
        ]
        variants = {
            "with_detector": recipe.model_copy(update={"tools": detector + classic}),
            "classic_only": recipe.model_copy(update={"tools": classic}),
        }
        for label, rec in variants.items():
            res[label] = line_evaluate(rec, services, folder)
        out[scenario] = res
    tmp.cleanup()
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        for sc, r in out.items():
            print(f"{sc} (seed {r['seed']}, {r['items']} items)")
            for label in ("with_detector", "classic_only"):
                if label in r:
                    v = r[label]
                    print(
                        f"  {label:14} critical escapes {v['critical_escapes']}/{v['critical_items']}"
                        f" ({v['critical_escape_rate']:.2%})  false rejects {v['false_rejects']}/"
                        f"{v['expected_pass']} ({v['false_reject_rate']:.2%})  {v['ms_per_item']} ms/item"
                    )
                    if v["missed"]:
                        print(f"    missed: {v['missed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
