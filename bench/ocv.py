"""The OCV tool on simulated vials and cartons with print defects, both OCR engines side by side.

    python bench/ocv.py [--items 2000] [--rate 0.3] [--seed 17] [--tess-items 200] [--json]
                        [--scenarios vials,vials-label,cartons,cartons-label]
                        [--engines paddle,tesseract]

Renders `--items` items per (scenario, font) with the line simulator: vials and cartons,
the solid and the dot-matrix (inkjet) font, each print defect class at an equal share of
`--rate`, no other defects. Each item goes through the barcode tool (its code and corners,
as on the line) and then the `ocv` tool once per engine: `paddle` (PP-OCRv4 recognition
from rapidocr-onnxruntime on ONNX Runtime) on every item, `tesseract` (Debian's
tesseract-ocr 5 via pytesseract) on the first `--tess-items` of each set (it costs
a process per line).

Reports per engine and set: per-defect recall (rejected by the ocv tool) and recall with
the truth's own reason, the escapes among wrong-text items (`OCV_MISMATCH` cases, which
must be 0), false rejects of good items, character accuracy on good items (1 - edit
distance / characters printed), and the tool's p50/p99 ms. The ocv parameters are the
default recipe's when it has an `ocv` tool, else `examples/ocv-<scenario>.yaml`'s (the
label or print camera's recipe; `--scenarios vials` or `cartons` reads the same layout in the
whole-item view).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import SimulatorSource, default_recipes, load_config  # noqa: E402
from edge.domain import BatchState, Finding, Reason  # noqa: E402
from edge.inspect.barcode import BarcodeTool, to_grey  # noqa: E402
from edge.inspect.base import Services, ToolContext  # noqa: E402
from edge.inspect.ocr import OcrUnavailable, PaddleRecognizer  # noqa: E402
from edge.inspect.ocv import OcvTool  # noqa: E402
from edge.sim.twin import LineSimulator  # noqa: E402
from edge.taxonomy import PRINT_DEFECTS, PRINT_REASONS  # noqa: E402

WRONG_TEXT = ("missing_char", "wrong_lot_print", "wrong_expiry_print")
#: a scenario named with this suffix (`vials-label`, `cartons-label`) is read by the label
#: (print) camera: the same items as the whole-item view, the code and text 3x (2x) larger
LABEL = "-label"


def ocv_params(scenario: str, engine: str) -> OcvTool.Params:
    """The `ocv` parameters of the default recipe, else of `examples/ocv-<scenario>.yaml`.

    `engine` may carry overrides after colons, `paddle:ocr_height=32:stretch=1.4`, so
    that settings are compared side by side on the same items in one run;
    `paddle:unsimplified` runs the recognition network as exported (the speed baseline).
    """
    engine, *overrides = engine.split(":")
    scenario = scenario.removesuffix(LABEL)  # the label camera: the product's print layout
    recipes = default_recipes()
    example = ROOT / "examples" / f"ocv-{scenario}.yaml"
    if example.is_file():
        recipes.update(load_config(example).recipes)
    specs = [
        t for r in recipes.values() if r.scenario == scenario for t in r.tools if t.type == "ocv"
    ]
    params = dict(specs[0].params)
    params["engine"] = engine
    for o in overrides:
        k, _, v = o.partition("=")
        if k != "unsimplified":
            params[k] = v
    return OcvTool.Params.model_validate(params)


def edits(a: str, b: str) -> int:
    """Levenshtein distance (the strings are one printed line: short)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def pct(v: list[float], q: float) -> float | None:
    if not v:
        return None
    s = sorted(v)
    return round(s[min(len(s) - 1, int(q / 100.0 * len(s)))], 2)


def run_set(scenario: str, font: str, args, engines: dict[str, OcvTool]) -> dict[str, Any]:
    label = scenario.endswith(LABEL)
    scenario = scenario.removesuffix(LABEL)
    views = {"views": 2, "view": 1, "label_view": 1} if label else {}
    cfg = SimulatorSource(
        **views,
        scenario=scenario,
        seed=args.seed + (scenario == "cartons") + 2 * (font == "dotmatrix"),
        defect_rate=0.0,
        code_defect_rate=0.0,
        print_defect_rate=args.rate,
        print_font=font,
        realtime=False,
    )
    sim = LineSimulator(cfg, BatchState(id=f"{scenario}-batch"))
    reader = BarcodeTool(
        "barcode",
        BarcodeTool.Params(symbologies=["DataMatrix"], check_serial=False),
        Services(),
    )
    out: dict[str, Any] = {}
    stats = {
        e: {
            "per": collections.defaultdict(collections.Counter),
            "fr": [],
            "good": 0,
            "chars": 0,
            "edits": 0,
            "ms": [],
            "escapes": [],
            "mismatch_escapes": [],
        }
        for e in engines
    }
    for i in range(args.items):
        img, truth = sim.render(i)
        defect = truth["defects"][0]["class"] if truth["defects"] else None
        for e, tool in engines.items():
            if e.startswith("tesseract") and i >= args.tess_items:
                continue
            ctx = ToolContext(
                item_id=truth["id"],
                seq=i,
                deadline=time.monotonic() + 1.0,
                batch=sim.batch,
                now=time.time(),
            )
            reader.inspect(img, ctx)
            # what tool.inspect does, in its two steps, so the reading is kept for the
            # character accuracy without reading twice
            t0 = time.perf_counter()
            reading = tool.read(to_grey(img, 40_000_000), ctx)
            found = [reading] if isinstance(reading, Finding) else tool.verify(reading, ctx)
            st = stats[e]
            st["ms"].append((time.perf_counter() - t0) * 1000.0)
            got = sorted({f.code for f in found})
            if defect is None:
                st["good"] += 1
                if got:
                    st["fr"].append((truth["id"], [f.message for f in found][:2]))
                # character accuracy of the engine's own reading (before verification)
                reads = [] if isinstance(reading, Finding) else [r.text for r in reading.reads]
                for n, line in enumerate(truth["print"]["lines"]):
                    want = line.replace(" ", "")
                    st["chars"] += len(want)
                    got_line = reads[n].replace(" ", "") if n < len(reads) else ""
                    st["edits"] += min(len(want), edits(want, got_line))
            else:
                c = st["per"][defect]
                c["items"] += 1
                c["rejected"] += bool(got)
                c["own_reason"] += any(r.value in got for r in PRINT_REASONS[defect])
                if not got and defect in WRONG_TEXT:
                    st["escapes"].append(truth["id"])
                if not got and Reason.OCV_MISMATCH in PRINT_REASONS[defect]:
                    st["mismatch_escapes"].append(truth["id"])
    for e, st in stats.items():
        good = st["good"]
        out[e] = {
            "items": sum(c["items"] for c in st["per"].values()) + good,
            "defects": {
                d: {
                    "items": c["items"],
                    "recall": round(c["rejected"] / c["items"], 4) if c["items"] else None,
                    "own_reason": round(c["own_reason"] / c["items"], 4) if c["items"] else None,
                }
                for d, c in sorted(st["per"].items())
            },
            "wrong_text_escapes": len(st["escapes"]),
            "escaped_ids": st["escapes"][:10],
            # every class whose reason is OCV_MISMATCH (also smeared and broken characters)
            "mismatch_escapes": len(st["mismatch_escapes"]),
            "good": good,
            "false_rejects": len(st["fr"]),
            "false_reject_rate": round(len(st["fr"]) / good, 5) if good else None,
            "false_reject_examples": st["fr"][:5],
            "char_accuracy": round(1 - st["edits"] / st["chars"], 5) if st["chars"] else None,
            "p50_ms": pct(st["ms"], 50),
            "p99_ms": pct(st["ms"], 99),
            "mean_ms": round(statistics.fmean(st["ms"]), 2) if st["ms"] else None,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000, help="items per scenario and font")
    ap.add_argument("--rate", type=float, default=0.3, help="share of items with a print defect")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--tess-items", type=int, default=200)
    ap.add_argument(
        "--scenarios",
        default="vials,cartons",
        help="vials, cartons; vials-label, cartons-label: the same items through a label camera",
    )
    ap.add_argument("--fonts", default="solid,dotmatrix")
    ap.add_argument("--engines", default="paddle,tesseract")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report: dict[str, Any] = {
        "items": args.items,
        "rate": args.rate,
        "seed": args.seed,
        "defects": PRINT_DEFECTS,
        "sets": {},
    }
    for scenario in args.scenarios.split(","):
        engines: dict[str, OcvTool] = {}
        for e in args.engines.split(","):
            try:
                engines[e] = tool = OcvTool("ocv", ocv_params(scenario, e), Services())
                if "unsimplified" in e.split(":"):  # the network as exported: the baseline
                    p = tool.p
                    tool.ocr = PaddleRecognizer(
                        p.alphabet, p.threads, p.ocr_height, p.stretch, simplify=False
                    )
            except OcrUnavailable as exc:
                report.setdefault("unavailable", {})[e] = str(exc)
        for font in args.fonts.split(","):
            report["sets"][f"{scenario}/{font}"] = run_set(scenario, font, args, engines)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, per_engine in report["sets"].items():
        for e, r in per_engine.items():
            print(
                f"{name:18s} {e:9s} good {r['good']:5d} FR {r['false_rejects']:3d} "
                f"({100 * (r['false_reject_rate'] or 0):.2f} %) char acc {r['char_accuracy']} "
                f"escapes {r['wrong_text_escapes']} p50/p99 {r['p50_ms']}/{r['p99_ms']} ms"
            )
            for d, c in r["defects"].items():
                print(f"    {d:20s} n {c['items']:4d} recall {c['recall']} own {c['own_reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
