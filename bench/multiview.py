"""Several cameras per item at line rate: deadline misses and verdict latency.

Runs the simulated vial line with N views per item (`examples/vials-3views.yaml`: three
cameras around the vial, the front one running the whole recipe, the side ones the glass,
fill, cap and label tools), then the same line with one camera, each for `--seconds`, and
prints for both: items, deadline misses, MISSING_VIEW rejects, frames that matched no item,
verdict p50/p99, and the machine's load average (the numbers mean little without it).

Run: python bench/multiview.py [--rate 600] [--seconds 20] [--config examples/vials-3views.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from edge.cli import _override
from edge.config import load_config
from edge.domain import Reason
from edge.pipeline import Pipeline


def run(config: str, rate: float, seconds: float, single: bool) -> dict:
    items = max(int(rate / 60 * seconds), 20)
    state = Path(tempfile.mkdtemp(prefix="bench-mv-"))
    cfg = load_config(config)
    views = [] if single else [v.model_dump(mode="json") for v in cfg.views]
    cfg = _override(
        cfg,
        views=views,
        **{
            "source.rate_per_min": rate,
            "source.items": items,
            "source.realtime": True,
            "records.state_dir": str(state),
            "plc": {"type": "none"},
            "mqtt.enabled": False,
            "web.enabled": False,
        },
    )
    p = Pipeline(cfg)
    from edge.domain import BatchState

    if p.recipe.require_batch and p.batch is None:
        p.start_batch(
            BatchState(
                lot=p.source.batch.lot, gtin=p.source.batch.gtin, expiry=p.source.batch.expiry
            )
        )
    load0 = os.getloadavg()
    t0 = time.monotonic()
    p.run(timeout=seconds * 3 + 60)
    wall = time.monotonic() - t0
    s = p.stats.snapshot()
    shutil.rmtree(state, ignore_errors=True)
    return {
        "views": len(cfg.views) or 1,
        "rate_set": rate,
        "items": s["items"],
        "seconds": round(wall, 1),
        "deadline_misses": s["deadline_misses"],
        "missing_view": s["by_reason"].get(Reason.MISSING_VIEW.value, 0),
        "unmatched_frames": p.matcher.unmatched if p.matcher else 0,
        "rejected": s["rejected"],
        "false_rejects": s["false_rejects"],
        "escapes": s["escapes"],
        "verdict_p50_ms": s["p50_ms"],
        "verdict_p99_ms": s["p99_ms"],
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/vials-3views.yaml")
    ap.add_argument("--rate", type=float, default=600.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-single", action="store_true", help="skip the one-camera comparison")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"cpus: {os.cpu_count()}", flush=True)
    results = [run(a.config, a.rate, a.seconds, single=False)]
    print(json.dumps(results[-1]), flush=True)
    if not a.no_single:
        results.append(run(a.config, a.rate, a.seconds, single=True))
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
