"""Changeover and batch start: the product's approved recipe, then the challenge test.

`Changeover.start` is what the touchscreen and the MES command `start_batch` do by GTIN:
the GTIN, lot (GS1 AI 10) and expiry (AI 17) are checked (each refusal says why), the
product must be approved and its recipe have an approved version, items triggered before
the changeover are let finish, the line switches to the product's recipe, and the batch
starts only once the challenge passed (`gate`, installed as the pipeline's `before_batch`,
so a batch the config or a restart starts is challenged the same way).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edge.config import Recipe, SimulatorSource
from edge.domain import BatchState
from edge.recipes import challenge
from edge.recipes.batch_start import expiry_problem, gtin_problem, lot_problem
from edge.recipes.book import RecipeNotApproved
from edge.recipes.products import ProductMaster

log = logging.getLogger(__name__)

ALARM = "CHALLENGE_FAILED"


class ChangeoverRefused(ValueError):
    """A changeover that must not happen; `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Changeover:
    """Changeover by GTIN and the challenge gate of one pipeline."""

    def __init__(self, pipeline: Any, audit: Any = None, challenge_on: bool = True):
        self.p = pipeline
        self.audit = audit
        self.challenge_on = challenge_on
        book = pipeline.recipe_book
        self.products = ProductMaster(
            pipeline.db, audit, recipe_approved=lambda n: book.docs.approved(n) is not None
        )
        self._tools: dict[tuple[str, int], list[Any]] = {}
        self.last: challenge.ChallengeResult | None = None

    # ------------------------------------------------------------------ the gate

    def _sim_base(self, recipe: Recipe, scenario: str | None) -> SimulatorSource | None:
        src = self.p.cfg.source
        scenario = scenario or recipe.scenario
        if src.type == "simulator" and (scenario is None or src.scenario == scenario):
            return src
        return SimulatorSource(scenario=scenario) if scenario else None

    def _tools_for(self, recipe: Recipe, version: int) -> list[Any]:
        from edge.inspect.base import Services
        from edge.inspect.registry import build_tools

        key = (recipe.name, version)
        if key not in self._tools:
            s = self.p.services
            svc = Services(models_dir=s.models_dir, backend=s.backend, state_dir=s.state_dir)
            self._tools[key] = build_tools(recipe, svc)  # no serial registry, no grade trend
        return self._tools[key]

    def run(self, batch: BatchState, by: str | None = None) -> challenge.ChallengeResult | None:
        """Run and record the challenge of `batch` with the recipe the line runs now."""
        product = self.products.approved(batch.gtin) if batch.gtin else None
        recipe, stamp = self.p.recipe, self.p.stamp
        units = challenge.units_for(product, recipe)
        if not units:
            self.last = None
            return None
        base = self._sim_base(recipe, product.scenario if product else None)
        if base is None:
            res = challenge.ChallengeResult(False, 0, [], recipe.name)
            res.results.append(
                {
                    "unit": "(set)",
                    "defect": None,
                    "expect": "-",
                    "expect_reason": None,
                    "verdict": "-",
                    "reasons": ["no simulated product renders this challenge set"],
                    "ok": False,
                }
            )
        else:
            try:
                tools = self._tools_for(recipe, stamp.version)
            except Exception as exc:  # a model missing, a tool that cannot start: a failure
                tools, res = None, challenge.ChallengeResult(False, 0, [], recipe.name)
                res.results.append(
                    {
                        "unit": "(tools)",
                        "defect": None,
                        "expect": "-",
                        "expect_reason": None,
                        "verdict": "-",
                        "reasons": [f"the recipe's tools cannot run: {exc}"],
                        "ok": False,
                    }
                )
            if tools is not None:
                res = challenge.run_challenge(
                    recipe, tools, units, batch, base, views=self.p.cfg.views
                )
        res.recipe_version = stamp.version
        challenge.record(self.p.db, res, batch, by)
        self.last = res
        return res

    def gate(self, batch: BatchState) -> dict[str, Any]:
        """Pipeline.before_batch: the batch starts only when the challenge passed."""
        if not self.challenge_on:
            return {}
        res = self.run(batch)
        if res is None:
            return {}
        alarms = self.p.alarms
        if not res.passed:
            msg = (
                f"challenge failed for lot {batch.lot} with recipe {res.recipe} "
                f"v{res.recipe_version}: {res.why()}"
            )
            alarms.raise_(ALARM, msg, "major", False)
            if self.audit is not None:
                self.audit.record(
                    "system",
                    "challenge.failed",
                    f"lot:{batch.lot}",
                    new=res.summary(),
                    reason="the batch cannot start",
                )
            raise challenge.ChallengeFailed(msg, res.summary())
        if alarms.is_active(ALARM):
            alarms.clear(ALARM)
        return {"challenge_id": res.id}

    def summary(self) -> dict[str, Any] | None:
        """The challenge of the batch running now (this run's, or the one a resumed batch
        passed when it started): passed, units, and the failures when it failed."""
        from edge.store import recipes as store

        if self.last is not None:
            out: dict[str, Any] = {"passed": self.last.passed, "units": self.last.units}
            if not self.last.passed:
                out["failures"] = self.last.failures
            return out
        b = self.p.batch
        row = self.p.db.batch(b.id) if b is not None and b.id else None
        run = (
            store.challenge_run(self.p.db, row["challenge_id"])
            if row and row.get("challenge_id")
            else None
        )
        return {"passed": run["passed"], "units": run["units"]} if run else None

    # ------------------------------------------------------------------ changeover

    def check(self, gtin: str, lot: str, expiry: str) -> Any:
        """The approved product of `gtin` once GTIN, lot and expiry are valid GS1."""
        for field, problem in (
            ("gtin", gtin_problem(gtin)),
            ("lot", lot_problem(lot)),
            ("expiry", expiry_problem(expiry)),
        ):
            if problem:
                raise ChangeoverRefused("invalid", f"{field}: {problem}")
        product = self.products.approved(gtin)
        if product is None:
            raise ChangeoverRefused(
                "unknown_product", f"GTIN {gtin.zfill(14)} has no approved product"
            )
        if self.p.recipe_book.docs.approved(product.recipe) is None:
            raise ChangeoverRefused(
                "recipe_not_approved",
                f"product {product.gtin} names recipe {product.recipe!r}, which has no "
                "approved version",
            )
        return product

    def start(
        self,
        gtin: str,
        lot: str,
        expiry: str,
        by: str | None = None,
        source: str = "local",
        wait_s: float | None = None,
    ) -> str:
        """Change over to the product of `gtin` and start its batch (challenge first)."""
        product = self.check(gtin, lot, expiry)
        p = self.p
        mark = p._seq  # items triggered before the changeover finish on the old recipe
        end = time.monotonic() + (wait_s if wait_s is not None else p.deadline_s + 5)
        while p.tracker.in_flight_before(mark):
            if time.monotonic() > end:
                raise ChangeoverRefused("items_in_flight", "items in flight did not finish")
            time.sleep(0.01)
        approved = p.recipe_book.docs.approved(product.recipe)
        if p.recipe.name != product.recipe or p.stamp.version != approved["version"]:
            try:
                p.set_recipe(product.recipe)
            except RecipeNotApproved as exc:
                raise ChangeoverRefused("recipe_not_approved", str(exc)) from None
            except Exception as exc:  # its tools cannot be built (a model missing, ...)
                raise ChangeoverRefused(
                    "recipe_unusable", f"recipe {product.recipe!r} cannot run: {exc}"
                ) from None
        try:
            return p.start_batch(BatchState(lot, product.gtin, expiry), by=by, source=source)
        except challenge.ChallengeFailed as exc:
            raise ChangeoverRefused("challenge_failed", str(exc)) from None
