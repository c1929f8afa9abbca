"""How early process control sees a drift, and how quiet it is on a stable line.

    python bench/spc.py [--kinds fill_level,cap_tilt,print_contrast] [--start 600]
                        [--stable-items 10000] [--seeds 2] [--json]

For each drift kind at a slow and a fast rate, the simulated line drifts from item `--start`
on (`edge sim --drift`); the default vials recipe (with its `spc` section) inspects it offline
(`edge inspect --deviations`), the same commands a user runs. Printed per run:

- `alert`: index of the first deviation alert on the drift's measurement (or its reject rate);
- `first_reject`: index of the first item that was good in truth and rejected for a reason the
  drift itself causes (LOW_FILL, CAP_TILT, LOW_GRADE/NO_READ);
- `lead` = first_reject - alert (goal: at least 200 items), `delay` = alert - start.

Then the stable line: `--seeds` runs of `--stable-items` items with no drift, every deviation
alert counted as false (goal: at most 1 per 20,000 items).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: kind -> (measurement, reasons the drift itself causes, slow and fast rate per 1000 items,
#:          items after the start by which the slow drift has surely made rejects)
KINDS: dict[str, tuple[str, set[str], tuple[float, float], int]] = {
    "fill_level": ("fill_level_mm", {"LOW_FILL"}, (-1.0, -4.0), 2600),
    "cap_tilt": ("cap_tilt_deg", {"CAP_TILT"}, (1.5, 6.0), 2800),
    "print_contrast": ("symbol_contrast", {"LOW_GRADE", "NO_READ"}, (-0.25, -1.0), 3600),
}


def _edge(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", "from edge.cli import main; main()", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _run(folder: Path, items: int, seed: int, drift: str | None) -> tuple[dict, list, list]:
    folder.mkdir(parents=True)
    # detection is measured here, not speed: a generous deadline keeps a busy machine's
    # timeouts (items with no measurements) out of the numbers; bench/line.py measures speed
    cfg = folder / "bench.yaml"
    cfg.write_text("pipeline:\n  deadline_ms: 30000\n")
    sim = ["sim", "--scenario", "vials", "--items", str(items), "--seed", str(seed)]
    sim += ["--out", str(folder / "sim")]
    if drift:
        sim += ["--drift", drift]
    _edge(*sim)
    _edge(
        "inspect",
        "--source",
        str(folder / "sim"),
        "--jsonl",
        str(folder / "pred.jsonl"),
        "--deviations",
        str(folder / "dev.jsonl"),
        "--config",
        str(cfg),
    )
    truth = {}
    for line in (folder / "sim" / "truth.jsonl").read_text().splitlines():
        t = json.loads(line)
        truth[t["id"]] = t
    pred = [json.loads(x) for x in (folder / "pred.jsonl").read_text().splitlines()]
    pred.sort(key=lambda r: truth[r["id"]]["index"])
    devs = [json.loads(x) for x in (folder / "dev.jsonl").read_text().splitlines()]
    return truth, pred, devs


def drift_run(kind: str, rate: float, start: int, seed: int, tmp: Path) -> dict:
    measure, reasons, _, span = KINDS[kind]
    slow = KINDS[kind][2][0]
    items = start + int(span * slow / rate) + 100
    truth, pred, devs = _run(tmp / f"{kind}{rate}", items, seed, f"{kind}:{rate}:{start}")
    watch = {measure} | {f"rate:{r}" for r in reasons}
    alert = next((d["index"] for d in devs if d["measure"] in watch), None)
    first = next(
        (
            truth[r["id"]]["index"]
            for r in pred
            if r["verdict"] == "REJECT"
            and not truth[r["id"]]["defects"]
            and reasons & set(r["reasons"])
        ),
        None,
    )
    return {
        "kind": kind,
        "per_1000": rate,
        "start": start,
        "items": items,
        "alert": alert,
        "first_reject": first,
        "lead": (first - alert) if alert is not None and first is not None else None,
        "delay": (alert - start) if alert is not None else None,
        "other_alerts_before": [
            f"{d['measure']}@{d['index']}"
            for d in devs
            if d["measure"] not in watch and (alert is None or d["index"] < alert)
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--start", type=int, default=600, help="first drifting item")
    ap.add_argument("--seed", type=int, default=6101)
    ap.add_argument("--stable-items", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=2, help="stable runs")
    ap.add_argument("--rates", choices=["both", "slow", "fast"], default="both")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out: dict = {"drifts": [], "stable": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for kind in a.kinds.split(","):
            slow, fast = KINDS[kind][2]
            for rate in {"both": (slow, fast), "slow": (slow,), "fast": (fast,)}[a.rates]:
                r = drift_run(kind, rate, a.start, a.seed, tmp)
                out["drifts"].append(r)
                if not a.json:
                    print(r, flush=True)
        false = 0
        for s in range(a.seeds):
            _, _, devs = _run(tmp / f"stable{s}", a.stable_items, a.seed + 100 + s, None)
            false += len(devs)
            out["stable"].setdefault("per_seed", []).append([d["measure"] for d in devs])
        n = a.seeds * a.stable_items
        out["stable"].update(
            items=n,
            false_alerts=false,
            per_10000=round(false * 10_000 / max(1, n), 3),
        )
    # the goal is stated for slow drifts (the first rate of each kind); the fast rate (4x) is
    # printed beside it to show where early warning runs out
    leads = [r["lead"] for r in out["drifts"] if r["per_1000"] == KINDS[r["kind"]][2][0]]
    out["goal_met"] = bool(
        leads
        and all(v is not None and v >= 200 for v in leads)
        and out["stable"]["false_alerts"] * 20_000 <= max(1, out["stable"]["items"])
    )
    print(json.dumps(out, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
