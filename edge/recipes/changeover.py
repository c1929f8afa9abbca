"""Changeover and batch start: the product's approved recipe, then the challenge test.

`Changeover.start` is what the touchscreen and the MES command `start_batch` do by GTIN:
the GTIN, lot (GS1 AI 10) and expiry (AI 17) are checked (each refusal says why), the
product must be approved and its recipe have an approved version, items triggered before
the changeover are let finish, the line switches to the product's recipe, and the batch
starts only once the challenge passed (`gate`, installed as the pipeline's `before_batch`,
so a batch the config or a restart starts is challenged the same way).
"""

from __future__ import annotations

import json
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
CAMERA_ALARM = "CAMERA_SETTINGS_REFUSED"


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
        #: the changeover in progress (or the last one): phase, items in flight, units judged
        self.progress: dict[str, Any] = {}
        self._reporting = False  # a changeover runs: the challenge reports unit by unit
        self._undo_camera: list[tuple[Any, Any, Any]] = []  # (set_exposure, exposure, gain)
        self._camera_before: dict[str, Any] | None = None

    def _report(self, **kw: Any) -> None:
        """The changeover's progress, replaced whole and published for the touchscreen."""
        self.progress = {**self.progress, **kw, "t": time.time()}
        self.p.bus.publish("batch", {"event": "changeover", **self.progress})

    def _on_unit(self, done: int, total: int, result: dict[str, Any]) -> None:
        failed = list(self.progress.get("failures") or [])
        if not result["ok"]:
            failed.append(result)
        self._report(phase="challenge", units_done=done, units_total=total, failures=failed)

    # ------------------------------------------------------------------ the gate

    def _sim_base(self, recipe: Recipe, scenario: str | None) -> SimulatorSource | None:
        live = getattr(self.p.source, "cfg", None)  # with the exposure the camera runs now
        src = live if isinstance(live, SimulatorSource) else self.p.cfg.source
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
                on_unit = self._on_unit if self._reporting else None
                res = challenge.run_challenge(
                    recipe, tools, units, batch, base, on_unit=on_unit, views=self.p.cfg.views
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

    def apply_camera(self, product: Any) -> dict[str, Any] | None:
        """The product's exposure and gain on every camera of the line, each read back.

        None when the product leaves the cameras as they are. A camera that refuses a value
        (outside its bounds, not connected, a source that cannot set exposure) refuses the
        changeover; the cameras already changed get their previous values back."""
        cam = product.camera
        if cam.exposure_us is None and cam.gain is None:
            return None
        p = self.p
        sources = self._sources()
        applied: dict[str, Any] = {}
        self._undo_camera = []
        for name, src in sources.items():
            setter = getattr(src, "set_exposure", None)
            try:
                if setter is None:
                    raise ValueError(
                        f"a {getattr(src.cfg, 'type', 'source')} source cannot set exposure or gain"
                    )
                old = (getattr(src.cfg, "exposure_us", None), getattr(src.cfg, "gain", None))
                applied[name] = setter(cam.exposure_us, cam.gain)
                self._undo_camera.append((setter, *old))
            except Exception as exc:
                self._restore_camera()
                raise ChangeoverRefused(
                    "camera_refused",
                    f"camera {name} refused the settings of product {product.gtin} "
                    f"(exposure {cam.exposure_us} us, gain {cam.gain}): "
                    f"{getattr(exc, 'message', None) or exc}",
                ) from None
        self._camera_before, p.camera_settings = p.camera_settings, applied
        return applied

    def _sources(self) -> dict[str, Any]:
        p = self.p
        return dict(p.view_sources) or {getattr(p.source, "label", "camera"): p.source}

    def resume_camera(self) -> None:
        """After a restart, the open batch's cameras get the settings it ran with (kept in its
        record), before the first item: a resumed batch never runs on the config's exposure.
        A camera that cannot take them raises a line-stop alarm."""
        p = self.p
        row = p.db.batch(p.batch.id) if p.batch is not None and p.batch.id else None
        saved = json.loads(row["camera"]) if row and row.get("camera") else None
        if not saved:
            return
        sources = self._sources()
        for name, values in saved.items():
            try:
                src = sources[name]
                src.set_exposure(values.get("exposure_us"), values.get("gain"), at_connect=True)
            except Exception as exc:
                msg = (
                    f"camera {name} did not take the settings batch {p.batch.id} runs with "
                    f"({values}): {getattr(exc, 'message', None) or exc!r}"
                )
                log.error("%s", msg)
                p.alarms.raise_(CAMERA_ALARM, msg, "critical", True)
        p.camera_settings = saved

    def _restore_camera(self) -> None:
        """The cameras back to what they ran before this changeover (best effort, logged)."""
        undo, self._undo_camera = self._undo_camera, []
        for setter, exposure, gain in reversed(undo):
            try:
                setter(exposure, gain)  # None: the simulator's nominal; a camera's own value
            except Exception:
                log.exception("camera settings not restored")

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
        n = int(self.progress.get("n", 0)) + 1  # the touchscreen follows its own changeover
        self.progress = {"n": n, "gtin": gtin, "lot": lot, "phase": "checking", "failures": []}
        try:
            bid = self._start(gtin, lot, expiry, by, source, wait_s)
        except ChangeoverRefused as exc:
            self._report(phase="refused", code=exc.code, message=str(exc))
            raise
        finally:
            self._reporting = False
        last = self.last
        self._report(
            phase="started",
            batch=bid,
            units_done=last.units if last else 0,
            units_total=last.units if last else 0,
        )
        return bid

    def _start(
        self, gtin: str, lot: str, expiry: str, by: str | None, source: str, wait_s: float | None
    ) -> str:
        product = self.check(gtin, lot, expiry)
        self._report(product=product.name, recipe=product.recipe)
        p = self.p
        mark = p._seq  # items triggered before the changeover finish on the old recipe
        end = time.monotonic() + (wait_s if wait_s is not None else p.deadline_s + 5)
        shown = -1
        while n := p.tracker.in_flight_before(mark):
            if n != shown:
                shown = n
                self._report(phase="waiting", in_flight=n)
            if time.monotonic() > end:
                raise ChangeoverRefused("items_in_flight", f"{n} items in flight did not finish")
            time.sleep(0.01)
        self._report(phase="camera", in_flight=0)
        before = p.active
        camera = self.apply_camera(product)
        try:
            return self._switch(product, lot, expiry, by, source, camera)
        except Exception:  # refused (or failed): nothing of that product stays on the line
            p.restore(before)
            if camera is not None:
                self._restore_camera()
                p.camera_settings = self._camera_before
            raise

    def _switch(
        self, product: Any, lot: str, expiry: str, by: str | None, source: str, camera: Any
    ) -> str:
        """The product's recipe, then its batch once the challenge passed."""
        p = self.p
        if camera is not None and self.audit is not None:
            self.audit.record(
                by or "system", "camera.settings", f"product:{product.gtin}", new=camera
            )
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
        self._reporting = True
        self._report(phase="challenge", units_done=0, units_total=None)
        try:
            return p.start_batch(BatchState(lot, product.gtin, expiry), by=by, source=source)
        except challenge.ChallengeFailed as exc:
            raise ChangeoverRefused("challenge_failed", str(exc)) from None
