"""The barcode tool on simulated cartons and vials with code defects: recall per reason.

    python bench/codes_sim.py [--items 5000] [--rate 0.05] [--seed 11] [--boxes]

Renders `--items` items (half vials, half cartons) with the line simulator, each code
defect class at `--rate` (so 8 classes x 5% = 40% of items carry one), no physical
defects, and runs the default recipe's barcode tool (its parameters) on each in order, with a serial registry
in a temporary file (one per scenario) and the simulator's batch.

Prints per defect class: items, rejected (escape = not rejected), rejected with the
truth's own reason code; and false rejects among good items. `missing_label` on vials
is the label tool's MISSING_LABEL; the barcode tool rejects it as NO_READ, which is
counted as a reject but not as its own reason. `--boxes` feeds the truth code box as
if the defect model had found it (default: the tool searches the whole frame).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import SimulatorSource, default_recipes  # noqa: E402
from edge.domain import BatchState, Detection  # noqa: E402
from edge.inspect.barcode import BarcodeTool  # noqa: E402
from edge.inspect.base import Services, ToolContext  # noqa: E402
from edge.sim.twin import LineSimulator  # noqa: E402
from edge.store.serials import SerialRegistry  # noqa: E402
from edge.taxonomy import CODE_DEFECTS  # noqa: E402


def run(items: int, rate: float, seed: int, boxes: bool, deadline_ms: float) -> int:
    per = collections.defaultdict(lambda: collections.Counter())
    false_rejects: list[tuple[str, list[str]]] = []
    times: list[float] = []
    rungs: collections.Counter[str] = collections.Counter()
    grades: list[float] = []
    weights = {c: 1.0 for c in CODE_DEFECTS}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in ("vials", "cartons"):
            n = items // 2 if scenario == "vials" else items - items // 2
            cfg = SimulatorSource(
                scenario=scenario,
                seed=seed + (scenario == "cartons"),
                defect_rate=0.0,
                code_defect_rate=min(1.0, rate * len(CODE_DEFECTS)),
                defect_weights=weights,
                realtime=False,
            )
            sim = LineSimulator(cfg, BatchState(id=f"{scenario}-batch"))
            registry = SerialRegistry(Path(tmp) / f"{scenario}-serials.db", synchronous="NORMAL")
            (spec,) = [t for t in default_recipes()[scenario].tools if t.type == "barcode"]
            params = BarcodeTool.Params.model_validate(spec.params)
            tool = BarcodeTool("barcode", params, Services(serials=registry))
            for i in range(n):
                img, truth = sim.render(i)
                detections = []
                if boxes and truth.get("code_bbox"):
                    detections = [
                        Detection.of({"cls": "code", "score": 0.9, "bbox": truth["code_bbox"]})
                    ]
                ctx = ToolContext(
                    item_id=truth["id"],
                    seq=i,
                    deadline=time.monotonic() + deadline_ms / 1000.0,
                    batch=sim.batch,
                    now=time.time(),
                    detections=detections,
                )
                t0 = time.perf_counter()
                res = tool.inspect(img, ctx)
                times.append((time.perf_counter() - t0) * 1000.0)
                got = sorted({f.code for f in res.findings})
                for c in res.codes:
                    rungs[c.rung] += 1
                    if c.grade is not None:
                        grades.append(c.grade)
                defect = truth["defects"][0]["class"] if truth["defects"] else None
                if defect is None:
                    per[(scenario, "good")]["items"] += 1
                    if got:
                        per[(scenario, "good")]["false_reject"] += 1
                        false_rejects.append((truth["id"], got))
                    continue
                c = per[(scenario, defect)]
                c["items"] += 1
                if got:
                    c["rejected"] += 1
                if set(truth["reasons"]) <= set(got):
                    c["own_reason"] += 1
                else:
                    c["other:" + ",".join(got)] += 1
            registry.close()
    print(
        f"{items} items, code defects at {rate:.0%} each ({len(CODE_DEFECTS)} classes), "
        f"detector boxes: {'truth code box' if boxes else 'none (whole frame)'}"
    )
    print(
        f"{'scenario':9s} {'class':18s} {'items':>6s} {'rejected':>9s} {'own reason':>11s}  notes"
    )
    total_bad = escapes = 0
    own_fail = 0
    for (scenario, cls), c in sorted(per.items()):
        if cls == "good":
            continue
        total_bad += c["items"]
        escapes += c["items"] - c["rejected"]
        notes = ", ".join(f"{k[6:]} x{v}" for k, v in c.items() if k.startswith("other:"))
        if c["own_reason"] < c["items"] and not (scenario == "vials" and cls == "missing_label"):
            own_fail += 1
        print(
            f"{scenario:9s} {cls:18s} {c['items']:>6d} {c['rejected']:>9d} "
            f"{c['own_reason']:>6d} ({c['own_reason'] / max(1, c['items']):>4.0%})  {notes}"
        )
    good = sum(c["items"] for (s, k), c in per.items() if k == "good")
    fr = sum(c["false_reject"] for (s, k), c in per.items() if k == "good")
    times.sort()
    print(
        f"escapes: {escapes} of {total_bad} defective items (escape rate {escapes / max(1, total_bad):.2%})"
    )
    print(f"false rejects: {fr} of {good} good items ({fr / max(1, good):.3%})")
    for item_id, got in false_rejects[:10]:
        print(f"  false reject {item_id}: {got}")
    print(
        f"tool time per item: median {times[len(times) // 2]:.1f} ms, "
        f"p99 {times[int(0.99 * (len(times) - 1))]:.1f} ms, max {times[-1]:.1f} ms; "
        f"rungs {dict(rungs)}; grade min {min(grades):.1f}, "
        f"mean {sum(grades) / len(grades):.2f}"
    )
    ok = escapes == 0 and fr <= 0.001 * good and own_fail == 0
    print("PASS" if ok else "FAIL", "(escape 0, false rejects <= 0.1%, each class its own reason)")
    return 0 if ok else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=0.05, help="probability of each code defect")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--boxes", action="store_true", help="feed truth code boxes as detections")
    ap.add_argument("--deadline-ms", type=float, default=250.0)
    args = ap.parse_args()
    sys.exit(run(args.items, args.rate, args.seed, args.boxes, args.deadline_ms))


if __name__ == "__main__":
    main()
