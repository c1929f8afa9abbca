"""The challenge test: known-bad and known-good units judged before a batch may start.

On a real line the challenge units are physical packs fed through the machine; here the
simulator renders them on demand (`edge.sim.twin`) with the batch's own GTIN, lot and expiry,
and they go through the same `edge.judge.judge` with the recipe the batch will run. Every
unit must get its expected verdict, and a known-bad unit its expected reason; one that does
not fails the challenge, raises CHALLENGE_FAILED and keeps the batch from starting. Each run
is recorded (`challenge_runs`: every unit, expected against got) and the batch record points
at the run that let it start.

The units are judged by their own tool instances, built without the serial registry, so a
challenge unit's serial is never claimed as a released pack (a physical challenge unit goes
round again at every batch start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge import taxonomy
from edge.config import Recipe, SimulatorSource, ViewConfig
from edge.domain import BatchState
from edge.recipes.products import ChallengeUnit, Product
from edge.store import recipes as store

GOOD_UNITS = 3
SEED_OFFSET = 7919  # challenge units are drawn apart from the line's own simulated items


class ChallengeFailed(RuntimeError):
    """The challenge did not pass: the batch must not start. `run` is the recorded run."""

    def __init__(self, message: str, run: dict[str, Any]):
        super().__init__(message)
        self.run = run


def default_set(recipe: Recipe) -> list[ChallengeUnit]:
    """The scenario's standard challenge set, limited to what the recipe's tools check."""
    if recipe.scenario is None:
        return []
    types = {t.type for t in recipe.tools}
    bad = [
        ChallengeUnit(defect=d, expect="REJECT", reason=taxonomy.reasons(d, recipe.scenario)[0])
        for d in taxonomy.product(recipe.scenario).challenge
        if set(taxonomy.CHALLENGE_TOOLS.get(d, ())) & types
    ]
    if not bad:
        return []
    return [*bad, ChallengeUnit(defect=None, expect="PASS", count=GOOD_UNITS)]


def _sim_config(base: SimulatorSource, defect: str | None) -> SimulatorSource:
    known = taxonomy.DETECTOR_CLASSES + taxonomy.CODE_DEFECTS + taxonomy.PRINT_DEFECTS
    weights = {c: (1.0 if c == defect else 0.0) for c in known}
    code = defect in taxonomy.CODE_DEFECTS
    printed = defect in taxonomy.PRINT_DEFECTS
    phys = defect is not None and not code and not printed
    return base.model_copy(
        update={
            "seed": base.seed + SEED_OFFSET,
            "defect_rate": 1.0 if phys or (code and base.scenario != "vials") else 0.0,
            "code_defect_rate": 1.0 if code else 0.0,
            "print_defect_rate": 1.0 if printed else 0.0,
            "defect_weights": weights,
            "process_drift": [],
            "drift_per_hour": 0.0,
        }
    )


@dataclass
class ChallengeResult:
    passed: bool
    units: int
    results: list[dict[str, Any]] = field(default_factory=list)
    recipe: str = ""
    recipe_version: int | None = None
    id: int | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["ok"]]

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "units": self.units,
            "recipe": self.recipe,
            "recipe_version": self.recipe_version,
            "run": self.id,
            "failures": self.failures,
        }

    def why(self) -> str:
        return "; ".join(
            f"{f['unit']}: expected {f['expect']}"
            + (f" {f['expect_reason']}" if f["expect_reason"] else "")
            + f", got {f['verdict']} {','.join(f['reasons']) or '-'}"
            for f in self.failures
        )


def run_challenge(
    recipe: Recipe,
    tools: list[Any],
    units: list[ChallengeUnit],
    batch: BatchState,
    sim_base: SimulatorSource,
    timeout_s: float = 10.0,
    on_unit: Callable[[int, int, dict[str, Any]], None] | None = None,
    views: list[ViewConfig] | None = None,
) -> ChallengeResult:
    """Judge every challenge unit with `recipe` and its `tools`; never raises for a unit.
    `on_unit(done, total, result)` after each unit (the touchscreen shows the progress).
    A station with several `views` sees each unit as it sees an item: every view rendered
    and judged with its own tools, then one decision (`judge_views`)."""
    from edge.judge import judge, judge_views
    from edge.line.views import simulated_view
    from edge.sim.twin import LineSimulator

    views = list(views or [])
    results: list[dict[str, Any]] = []
    total = sum(u.count for u in units)
    for spec in units:
        cfg = _sim_config(sim_base, spec.defect)
        sims = [LineSimulator(cfg, batch=batch)]
        if views:
            sims = [
                LineSimulator(simulated_view(cfg, views, k), batch=batch) for k in range(len(views))
            ]
        for k in range(spec.count):
            shots = [sim.render(k) for sim in sims]
            image, truth = shots[0]
            got_defect = (truth["defects"] or [{}])[0].get("class") or (
                spec.defect if truth["code"] and spec.defect in taxonomy.CODE_DEFECTS else None
            )
            name = f"{spec.defect or 'good'}#{k + 1}"

            if views:
                verdict, reasons, _ = judge_views(
                    {
                        v.name: judge(
                            recipe,
                            [t for t in tools if v.tools is None or t.name in v.tools],
                            img,
                            _ctx(name, batch, timeout_s),
                            True,
                        )
                        for v, (img, _) in zip(views, shots, strict=True)
                    }
                )
            else:
                verdict, reasons, _ = judge(
                    recipe, tools, image, _ctx(name, batch, timeout_s), True
                )
            ok = verdict.value == spec.expect and (
                spec.expect == "PASS" or spec.reason is None or spec.reason in reasons
            )
            if got_defect != spec.defect and spec.defect not in taxonomy.CODE_DEFECTS:
                ok = False  # the simulator could not make this unit: never a silent pass
                reasons = [*reasons, f"(simulated {got_defect}, not {spec.defect})"]
            results.append(
                {
                    "unit": name,
                    "defect": spec.defect,
                    "expect": spec.expect,
                    "expect_reason": spec.reason if spec.expect == "REJECT" else None,
                    "verdict": verdict.value,
                    "reasons": list(reasons),
                    "ok": ok,
                }
            )
            if on_unit is not None:
                on_unit(len(results), total, results[-1])
    passed = bool(results) and all(r["ok"] for r in results)
    return ChallengeResult(passed, len(results), results, recipe.name)


def _ctx(name: str, batch: BatchState, timeout_s: float) -> Any:
    from edge.inspect.base import ToolContext

    return ToolContext(
        item_id=f"challenge-{name}",
        seq=0,
        deadline=time.monotonic() + timeout_s,
        batch=batch,
        now=time.time(),
    )


def record(db: Any, result: ChallengeResult, batch: BatchState, by: str | None) -> int:
    result.id = store.add_challenge_run(
        db,
        {
            "gtin": batch.gtin,
            "lot": batch.lot,
            "recipe": result.recipe,
            "recipe_version": result.recipe_version,
            "passed": result.passed,
            "units": result.units,
            "results": result.results,
            "by": by,
        },
    )
    return result.id


def units_for(product: Product | None, recipe: Recipe) -> list[ChallengeUnit]:
    return list(product.challenge) if product is not None else default_set(recipe)
