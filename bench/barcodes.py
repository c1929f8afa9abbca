"""Decode a public barcode corpus with three readers side by side, in one run.

    python bench/barcodes.py [--corpus DIR] [--json] [--repeat N] [--deadline-ms MS]

Readers, all given the same greyscale image (decoded once with OpenCV):
  edge      this project's BarcodeTool decode path (fast pass + deadline-bounded retry
            ladder; default symbologies; no batch checks, no grading)
  zxingcpp  zxingcpp.read_barcodes with its defaults, except text_mode=Plain so its text
            is comparable byte for byte (the text mode changes no detection)
  pyzbar    pyzbar.decode with its defaults

Corpus layout: <kind>/<folder>/<image> with <stem>.txt (exact UTF-8 text, GS as 0x1D)
or <stem>.bin (raw bytes) beside each image; `negatives/` holds images with no code.

Counting rules (printed with the results):
  decoded       an image counts when any of the reader's results equals the expected
                bytes exactly (.txt: the text as UTF-8; .bin: the decoder's raw bytes)
  wrong         an image with an expected file where the reader returned results and
                none matched, or a `*.error` image (a symbol damaged beyond its error
                correction, meant to fail) from which the reader returned anything
  false pos.    a `negatives/` image from which the reader returned anything
  ean13-5       zxing's "blurry" set (zxing itself expects 0 reads): counted like any
                other folder, so it lowers every reader's total alike
  unloadable    images OpenCV cannot decode count as no read for every reader
  timing        per image, the fastest of --repeat runs (the machine is shared; the
                minimum is the least noisy estimate); median and p99 over all images
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
READERS = ("edge", "zxingcpp", "pyzbar")


def image_stem(p: Path) -> tuple[str, bool] | None:
    """(stem, meant_to_fail) for an image file, None for anything else."""
    name = p.name
    fail = name.endswith(".error")
    if fail:
        name = name[: -len(".error")]
    for ext in IMAGE_EXT:
        if name.lower().endswith(ext):
            return name[: -len(ext)], fail
    return None


def load_corpus(root: Path) -> list[dict[str, Any]]:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # counted, named
    items = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        rel = folder.relative_to(root).as_posix()
        negative = rel.startswith("negatives/")
        for img in sorted(folder.iterdir()):
            st = image_stem(img)
            if st is None:
                continue
            stem, fail = st
            expected, kind = None, None
            for ext in (".txt", ".bin"):
                f = folder / (stem + ext)
                if f.exists() and not fail and not negative:
                    expected, kind = f.read_bytes(), ext
                    break
            grey = cv2.imdecode(np.fromfile(str(img), np.uint8), cv2.IMREAD_GRAYSCALE)
            items.append(
                {
                    "folder": rel,
                    "name": img.name,
                    "grey": grey,
                    "expected": expected,
                    "kind": kind,
                    "fail": fail,
                    "negative": negative,
                }
            )
    return items


def make_readers(deadline_ms: float) -> dict[str, Any]:
    import zxingcpp
    from pyzbar import pyzbar

    from edge.inspect.barcode import BarcodeTool
    from edge.inspect.base import Services, ToolContext

    tool = BarcodeTool("barcode", BarcodeTool.Params(), Services())

    def edge(grey: np.ndarray) -> list[tuple[bytes, bytes]]:
        ctx = ToolContext(item_id="bench", seq=0, deadline=time.monotonic() + deadline_ms / 1e3)
        return [(d.text.encode("utf-8"), d.raw) for d in tool.read(grey, ctx)]

    def zx(grey: np.ndarray) -> list[tuple[bytes, bytes]]:
        rs = zxingcpp.read_barcodes(grey, text_mode=zxingcpp.TextMode.Plain)
        return [(r.text.encode("utf-8"), bytes(r.bytes)) for r in rs]

    def zb(grey: np.ndarray) -> list[tuple[bytes, bytes]]:
        return [(z.data, z.data) for z in pyzbar.decode(grey)]

    return {"edge": edge, "zxingcpp": zx, "pyzbar": zb}


def run(root: Path, repeat: int, deadline_ms: float) -> dict[str, Any]:
    items = load_corpus(root)
    readers = make_readers(deadline_ms)
    stats: dict[str, Any] = {}
    for name in READERS:
        stats[name] = {
            "decoded": 0,
            "expected": 0,
            "wrong": 0,
            "false_positives": 0,
            "times": [],
            "folders": {},
            "wrong_images": [],
            "fp_images": [],
        }
    unloadable = []
    for it in items:
        if it["grey"] is None:
            unloadable.append(f"{it['folder']}/{it['name']}")
        for name in READERS:
            s = stats[name]
            f = s["folders"].setdefault(it["folder"], {"decoded": 0, "expected": 0})
            if it["expected"] is not None:
                s["expected"] += 1
                f["expected"] += 1
            if it["grey"] is None:
                continue
            best = float("inf")
            got: list[tuple[bytes, bytes]] = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                got = readers[name](it["grey"])
                best = min(best, time.perf_counter() - t0)
            s["times"].append(best * 1000.0)
            where = f"{it['folder']}/{it['name']}"
            if it["negative"]:
                if got:
                    s["false_positives"] += 1
                    s["fp_images"].append(where)
                continue
            if it["fail"]:
                if got:
                    s["wrong"] += 1
                    s["wrong_images"].append(where)
                continue
            if it["expected"] is None:
                continue
            idx = 0 if it["kind"] == ".txt" else 1
            if any(g[idx] == it["expected"] for g in got):
                s["decoded"] += 1
                f["decoded"] += 1
            elif got:
                s["wrong"] += 1
                s["wrong_images"].append(where)
    out: dict[str, Any] = {"readers": {}}
    for name in READERS:
        s = stats[name]
        t = sorted(s["times"])
        out["readers"][name] = {
            "decoded": s["decoded"],
            "expected": s["expected"],
            "wrong": s["wrong"],
            "false_positives": s["false_positives"],
            "median_ms": round(statistics.median(t), 3) if t else None,
            "p99_ms": round(t[min(len(t) - 1, int(0.99 * len(t)))], 3) if t else None,
            "folders": s["folders"],
        }
        if s["wrong_images"] or s["fp_images"]:
            out["readers"][name]["wrong_images"] = s["wrong_images"]
            out["readers"][name]["fp_images"] = s["fp_images"]
    out["notes"] = {
        "images": len(items),
        "unloadable": unloadable,
        "error_images": sum(1 for it in items if it["fail"]),
        "negatives": sum(1 for it in items if it["negative"]),
        "repeat": repeat,
        "deadline_ms": deadline_ms,
        "rules": "decoded = exact bytes; *.error and negatives: any read is wrong / a false "
        "positive; zxing_ean13-5 (blurry) counted like any folder; unloadable = no read",
    }
    return out


def print_table(res: dict[str, Any]) -> None:
    r = res["readers"]
    folders = sorted(r["edge"]["folders"])
    head = f"{'folder':42s}" + "".join(f"{n:>12s}" for n in READERS)
    print(head)
    print("-" * len(head))
    for f in folders:
        row = f"{f:42s}"
        for n in READERS:
            d = r[n]["folders"][f]
            row += f"{d['decoded']:>7d}/{d['expected']:<4d}" if d["expected"] else f"{'-':>12s}"
        print(row)
    print("-" * len(head))

    def line(label: str, fn: Any) -> None:
        print(f"{label:42s}" + "".join(f"{fn(r[n]):>12s}" for n in READERS))

    line("total decoded/expected", lambda x: f"{x['decoded']}/{x['expected']}")
    line("wrong reads", lambda x: str(x["wrong"]))
    line("false positives (negatives/)", lambda x: str(x["false_positives"]))
    line("median ms/image", lambda x: f"{x['median_ms']:.2f}")
    line("p99 ms/image", lambda x: f"{x['p99_ms']:.2f}")
    zx = r["zxingcpp"]["median_ms"]
    print(
        f"{'median ratio to zxingcpp':42s}"
        + "".join(f"{r[n]['median_ms'] / zx:>12.2f}" for n in READERS)
    )
    n = res["notes"]
    print()
    print(
        f"{n['images']} images, {n['negatives']} negatives, {n['error_images']} *.error "
        f"(must not read), unloadable: {n['unloadable'] or 'none'}; timing = fastest of "
        f"{n['repeat']} runs per image; edge deadline {n['deadline_ms']:.0f} ms per image"
    )
    print("rules:", n["rules"])
    for name in READERS:
        for k in ("wrong_images", "fp_images"):
            if r[name].get(k):
                print(f"{name} {k}: {', '.join(r[name][k])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "barcodes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeat", type=int, default=3, help="runs per image (fastest counts)")
    ap.add_argument("--deadline-ms", type=float, default=250.0, help="edge time budget per image")
    args = ap.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus}")
    res = run(args.corpus, max(1, args.repeat), args.deadline_ms)
    if args.json:
        print(json.dumps(res))
    else:
        print_table(res)


if __name__ == "__main__":
    main()
