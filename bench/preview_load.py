"""Does a recipe preview slow the line? p99 trigger->verdict with and without a 500-image preview.

First a vial line records `--images` items with every image kept (unpaced, the preview's
material). Then the line runs at `--rate` items/min with the shipped detector, as configured
(pass images sampled), and a recipe preview (the vials recipe with a tighter fill tolerance
against the approved one, on the last `--images` stored images and the challenge set) runs
in its job process, exactly as the editor starts it. Phases alternate, "base" (the job frozen
with SIGSTOP) and "load" (running), in ABBA order over several rounds, so that the machine's
own drift falls on both sides; a preview that finishes is followed by another. Prints p50/p99
latency and deadline misses per condition, pooled over the rounds, and the p99 ratio, all
measured in one run.

Run: nice -n -10 python bench/preview_load.py [--images 500] [--seconds 30] [--rounds 4] [--rate 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from abba import alternate, p99_ratio, phase

from edge.app import Appliance
from edge.cli import _override
from edge.config import load_config
from edge.recipes.book import recipe_content


def record_images(cfg: Any, n: int) -> float:
    """The preview's material: `n` items of the vial line, every image kept."""
    fill = _override(
        cfg,
        **{
            "source.realtime": False,
            "source.items": n,
            "records.sample_pass_every": 1,
            "pipeline.deadline_ms": 10000,
        },
    )
    t = time.monotonic()
    appl = Appliance(fill, components=False)
    appl.start()
    try:
        appl.pipeline.wait(1800)
    finally:
        appl.stop()
    return time.monotonic() - t


def preview_args(appl: Appliance, state: Path, images: int) -> dict[str, Any]:
    """What the editor's preview route hands the job (`edge.web.recipe_editor`)."""
    from edge.models.registry import model_roots

    doc = appl.pipeline.recipe_book.docs.approved(appl.pipeline.recipe.name)
    draft = recipe_content(appl.pipeline.recipe)
    fill = next(t for t in draft["tools"] if t["type"] == "fill_level")
    fill["min_level_mm"] = fill.get("min_level_mm", 30.5) + 2.0
    roots = model_roots(state, appl.cfg.inference.models_dir)
    return {
        "approved": doc["content"],
        "approved_version": doc["version"],
        "draft": draft,
        "limit": images,
        "state_dir": str(state.resolve()),
        "models_dir": [str(p.resolve()) for p in roots],
        "challenge": {"product": None, "source": appl.cfg.source.model_dump(mode="json")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=500, help="stored images the preview judges")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=4, help="base/load pairs (ABBA order)")
    ap.add_argument("--rate", type=float, default=600.0, help="items per minute")
    ap.add_argument("--config", default=None)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="edge-previewload-"))
    cfg = _override(
        load_config(a.config),
        **{
            "records.state_dir": str(tmp),
            "source.rate_per_min": a.rate,
            "source.items": None,
            "web.enabled": False,
            "mqtt.enabled": False,
        },
    )
    fill_s = record_images(cfg, a.images)

    from edge.web.jobs import Jobs

    appl = Appliance(cfg)
    lat: list[tuple[float, float, bool]] = []
    lock = threading.Lock()

    def on_verdict(_t: str, item) -> None:
        with lock:
            lat.append((time.monotonic(), item.latency_ms or 0.0, bool(item.timed_out)))

    appl.pipeline.bus.subscribe_sync("verdict", on_verdict)
    appl.start()
    jobs = Jobs(tmp / "jobs")
    args = preview_args(appl, tmp, a.images)
    started: list[str] = []

    def ensure_job() -> str:
        """The preview running now, or a new one when the last has ended."""
        if started and jobs.status(started[-1], log_tail=0)["state"] == "running":
            return started[-1]
        started.append(jobs.start("preview", args, by="bench"))
        return started[-1]

    def judged(jid: str) -> int:
        ev = jobs.status(jid, log_tail=0)
        res = ev.get("result") or {}
        if res:
            return int(res.get("images", 0))
        d = tmp / "jobs" / jid / "progress.jsonl"
        n = 0
        for line in d.read_text().splitlines() if d.is_file() else []:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("stage") == "preview":
                    n = max(n, int(e.get("images", 0)))
        return n

    jid = ensure_job()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and judged(jid) == 0:
        if jobs.status(jid, log_tail=0)["state"] != "running":
            break
        time.sleep(0.5)  # measure while it judges, not while it imports and builds tools

    def freeze(on: bool) -> None:
        st = jobs.status(started[-1], log_tail=0)
        if st["state"] == "running" and st["pid"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(st["pid"]), signal.SIGSTOP if on else signal.SIGCONT)

    windows = alternate(a.rounds, a.seconds, freeze, before_load=ensure_job)
    runs = [
        {"job": j, "state": jobs.status(j, log_tail=0)["state"], "images": judged(j)}
        for j in started
    ]
    last = jobs.status(started[-1], log_tail=0)
    if last["state"] == "running":
        jobs.cancel(started[-1])
    finished = [jobs.status(j, log_tail=0).get("result") for j in started]
    appl.stop()

    base, load = phase(lat, windows["base"]), phase(lat, windows["load"])
    ratio = p99_ratio(base, load)
    done = next((f for f in finished if f), None)
    print(
        json.dumps(
            {
                "rate_per_min": a.rate,
                "rounds": a.rounds,
                "seconds_per_phase": a.seconds,
                "stored_images": a.images,
                "recording_s": round(fill_s, 1),
                "previews": runs,
                "a_finished_preview": {
                    k: done[k] for k in ("images", "changed", "verdict_changes") if k in done
                }
                if done
                else None,
                "without_preview": base,
                "with_preview": load,
                "p99_ratio": ratio,
                "load_average": os.getloadavg(),
            },
            indent=1,
        )
    )
    sys.exit(0 if load["deadline_misses"] == 0 else 1)


if __name__ == "__main__":
    main()
