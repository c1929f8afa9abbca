"""CPU per item of the OCV tool's recognition: one run per line, or the item's lines in one run.

    python bench/ocv_speed.py [--scenario cartons-label] [--items 60] [--seed 17] [--rounds 3]
    python bench/ocv_speed.py --station examples/ocv-cartons.yaml [--items 20]

Renders `--items` good items (a `-label` scenario: through the label/print camera), decodes
each code with the barcode tool and cuts out the item's text lines as the `ocv` tool does;
then times, in one run and interleaved per item (so that the machine's load falls on all
alike), the recognition of those lines in three ways, each with one intra-op thread:

* `lines`: one network run per line (the tool as shipped);
* `batch`: the lines resized to the network's height and padded with paper to the widest
  one, one run of a batch of N;
* `concat`: the lines side by side, a gap of paper between them, one run of one long line.

CPU is `time.thread_time` of the calling thread (the run stays on it with one intra-op
thread), so other processes on the machine count little. Also reports whether each way's
readings verify as the per-line ones do (the same findings per item).

`--station CONFIG`: instead, the thread CPU per item of each tool of a simulated station's
active recipe, each in its view (and the simulator's per frame), on good items: what the
station costs a core at its rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ocv import LABEL, ocv_params  # noqa: E402
from edge.config import SimulatorSource  # noqa: E402
from edge.domain import BatchState, Finding  # noqa: E402
from edge.inspect.barcode import BarcodeTool, to_grey  # noqa: E402
from edge.inspect.base import Services, ToolContext  # noqa: E402
from edge.inspect.ocv import OcvTool  # noqa: E402
from edge.sim.twin import LineSimulator  # noqa: E402


def station_cpu(config: str, items: int) -> dict:
    """Mean thread CPU (ms) per item of each tool in its view, and of rendering a frame."""
    from edge.config import load_config
    from edge.inspect.registry import build_tools
    from edge.line.views import simulated_view

    cfg = load_config(config)
    good = {"realtime": False, "defect_rate": 0.0, "code_defect_rate": 0.0}
    src = cfg.source.model_copy(update={**good, "print_defect_rate": 0.0})
    views = cfg.views or []
    sims = [
        LineSimulator(simulated_view(src, views, k) if views else src, BatchState(id="B"))
        for k in range(max(1, len(views)))
    ]
    tools = {t.name: t for t in build_tools(cfg.active_recipe(), Services())}
    cpu: dict[str, list[float]] = {}
    for i in range(items):
        for k, sim in enumerate(sims):
            t0 = time.thread_time()
            img, truth = sim.render(i)
            cpu.setdefault("simulator (per frame)", []).append(time.thread_time() - t0)
            ctx = ToolContext(
                item_id=truth["id"], seq=i, deadline=time.monotonic() + 5, batch=sim.batch, now=0
            )
            view = views[k] if views else None
            names = view.tools if view is not None and view.tools is not None else list(tools)
            for name in names:
                t0 = time.thread_time()
                tools[name].run(img, ctx)
                label = f"{view.name}/{name}" if view is not None else name
                cpu.setdefault(label, []).append(time.thread_time() - t0)
    return {
        "station": config,
        "items": items,
        "cpu_ms_mean": {k: round(1000 * statistics.fmean(v), 2) for k, v in cpu.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="cartons-label")
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the items")
    ap.add_argument("--station", default=None, help="a station config: CPU per tool instead")
    args = ap.parse_args()
    if args.station:
        print(json.dumps(station_cpu(args.station, args.items), indent=1))
        return 0
    label = args.scenario.endswith(LABEL)
    scenario = args.scenario.removesuffix(LABEL)
    views = {"views": 2, "view": 1, "label_view": 1} if label else {}
    cfg = SimulatorSource(
        **views,
        scenario=scenario,
        seed=args.seed,
        defect_rate=0.0,
        code_defect_rate=0.0,
        print_defect_rate=0.0,
        realtime=False,
    )
    sim = LineSimulator(cfg, BatchState(id=f"{scenario}-batch"))
    reader = BarcodeTool(
        "barcode", BarcodeTool.Params(symbologies=["DataMatrix"], check_serial=False), Services()
    )
    modes = ("lines", "batch", "concat")
    tools = {
        m: OcvTool("ocv", ocv_params(args.scenario, f"paddle:runs={m}"), Services()) for m in modes
    }
    items = []
    for i in range(args.items):
        img, truth = sim.render(i)
        ctx = ToolContext(
            item_id=truth["id"], seq=i, deadline=time.monotonic() + 5, batch=sim.batch, now=0
        )
        reader.inspect(img, ctx)
        items.append((to_grey(img, 40_000_000), ctx))
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    verdicts: dict[str, list[list[str]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for grey, ctx in items:
            for m in modes:
                t0 = time.thread_time()
                reading = tools[m].read(grey, ctx)
                cpu[m].append((time.thread_time() - t0) * 1000.0)
                if r == 0:
                    found = (
                        [reading] if isinstance(reading, Finding) else tools[m].verify(reading, ctx)
                    )
                    verdicts[m].append(sorted(f.code for f in found))
    base = statistics.fmean(cpu["lines"])
    out = {
        "scenario": args.scenario,
        "items": args.items,
        "rounds": args.rounds,
        "lines_per_item": len(tools["lines"].specs),
        "modes": {
            m: {
                "cpu_ms_mean": round(statistics.fmean(v), 2),
                "cpu_ms_p50": round(float(np.percentile(v, 50)), 2),
                "cpu_ms_p99": round(float(np.percentile(v, 99)), 2),
                "vs_lines": round(statistics.fmean(v) / base, 3),
                "rejected": sum(bool(x) for x in verdicts[m]),
                "same_verdicts_as_lines": sum(
                    a == b for a, b in zip(verdicts[m], verdicts["lines"], strict=True)
                ),
            }
            for m, v in cpu.items()
        },
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
