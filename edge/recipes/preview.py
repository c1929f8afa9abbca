"""Preview of a recipe draft: which verdicts would change against the approved version.

Before a technician saves a draft (and before QA approves it), the draft and the approved
version judge the same images: the line's last N recorded images of that recipe, each with
the batch it ran in, and the product's challenge units. Both are judged by `edge.judge`
with tools built as the line builds them (`build_tools`, approved models only), so a change
shown here is the change the line would make after the changeover.

A preview decides nothing and records nothing: it reads the database through a read-only
connection (it cannot write an item, an outbox message or a serial), builds its tools
without the serial registry or the grade trend, and runs in a job process at the lowest
priority (`edge.web.jobrun`), never in the line's process and never on its recipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.domain import BatchState

if TYPE_CHECKING:
    from edge.config import Recipe, SimulatorSource, ViewConfig
    from edge.inspect.base import Services, Tool
    from edge.recipes.products import ChallengeUnit

#: most images a preview judges (each is judged twice)
MAX_IMAGES = 2000
#: most changed images a preview returns (the counts cover every image)
MAX_ROWS = 500

Progress = Callable[[dict[str, Any]], None]


class PreviewError(RuntimeError):
    """The preview cannot run (a recipe's tools cannot be built): said as a sentence."""


def build(recipe: Recipe, services: Services, role: str) -> list[Tool]:
    from edge.inspect.registry import ToolBuildError, build_tools

    try:
        return build_tools(recipe, services)
    except ToolBuildError as exc:
        raise PreviewError(
            f"the {role} recipe's tools cannot run: " + "; ".join(exc.lines(role))
        ) from None


def close(tools: Sequence[Tool]) -> None:
    for t in tools:
        try:
            t.close()
        except Exception:
            pass


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if old["verdict"] != new["verdict"]:
        return "verdict"
    if sorted(old["reasons"]) != sorted(new["reasons"]):
        return "reasons"
    return None


def _judged(
    recipe: Recipe,
    tools: Sequence[Tool],
    shots: dict[str, Any],
    ctx: Any,
    views: Sequence[ViewConfig],
) -> dict[str, Any]:
    """One item judged as the line judges it: a one-camera item's image with every tool; a
    station's item view by view, each with its own tools, then one decision."""
    from edge.judge import judge, judge_views

    if not views:
        verdict, reasons, _ = judge(recipe, tools, shots[""], ctx, True)
    else:
        verdict, reasons, _ = judge_views(
            {
                v.name: judge(
                    recipe,
                    [t for t in tools if v.tools is None or t.name in v.tools],
                    shots[v.name],
                    ctx,
                    True,
                )
                for v in views
            }
        )
    return {"verdict": verdict.value, "reasons": list(reasons)}


def _shots(
    store: Any, row: dict[str, Any], views: Sequence[ViewConfig]
) -> tuple[dict[str, Any], str | None]:
    """The item's images to judge (view -> image; "" for a one-camera item), or why not.

    A station's item is judged from each view's own image: its composite (the views side by
    side) judged with every tool would run the top camera's tools on the front camera's
    pixels. An item kept without its views' images is skipped, saying so."""
    from edge import untrusted_images

    wanted = (
        {v.name: row["views"].get(v.name) for v in views} if views else {"": row["image_sha256"]}
    )
    missing = [name for name, sha in wanted.items() if not sha]
    if missing:
        return {}, f"no image of view {missing[0]!r} was kept for this item"
    shots = {}
    for name, sha in wanted.items():
        data = store.get(sha)
        if data is None:
            return {}, "the image file is missing"
        try:
            shots[name] = untrusted_images.decode(data, untrusted_images.LARGEST)
        except untrusted_images.ImageRefused as exc:
            return {}, str(exc)
    return shots, None


def on_images(
    approved: Recipe,
    draft: Recipe,
    services: Services,
    state_dir: str | Path,
    limit: int,
    progress: Progress | None = None,
    timeout_s: float = 10.0,
    views: Sequence[ViewConfig] | None = None,
) -> dict[str, Any]:
    """Judge the last `limit` recorded images of the approved recipe with both versions.

    Each image is judged with the batch its item ran in (lot, expiry and GTIN are what the
    code checks compare with) and that item's time, so only the recipe differs between the
    two verdicts; on a station with several `views`, each view's own image with that view's
    tools. Returns counts over every image and the changed ones, image by image."""
    from edge.inspect.base import ToolContext
    from edge.store import items
    from edge.store.db import read_only
    from edge.store.images import ImageStore

    state = Path(state_dir)
    conn = read_only(state / "edge.db")
    try:
        rows = items.recorded_images(conn, approved.name, min(limit, MAX_IMAGES))
    finally:
        conn.close()
    store = ImageStore(state / "images")
    runs = {"approved": build(approved, services, "approved")}
    try:
        runs["draft"] = build(draft, services, "draft")
        out: list[dict[str, Any]] = []
        n = verdicts = agree = 0
        skipped: list[dict[str, str]] = []
        for row in rows:
            sha = row["image_sha256"]
            shots, why = _shots(store, row, views or [])
            if why:
                skipped.append({"image": sha, "why": why})
                continue
            batch = BatchState(row["lot"], row["gtin"], row["expiry"], row["batch_id"])
            judged = {}
            for role, recipe in (("approved", approved), ("draft", draft)):
                ctx = ToolContext(  # a context of its own for each: nothing shared
                    item_id=f"preview-{row['id']}",
                    seq=n,
                    deadline=time.monotonic() + timeout_s,
                    batch=batch if row["batch_id"] else None,
                    now=float(row["trigger_utc"]),
                )
                judged[role] = _judged(recipe, runs[role], shots, ctx, views or [])
            n += 1
            agree += judged["approved"]["verdict"] == row["verdict"]
            kind = _changed(judged["approved"], judged["draft"])
            if kind:
                verdicts += kind == "verdict"
                if len(out) < MAX_ROWS:
                    out.append(
                        {
                            "image": sha,
                            "item": row["id"],
                            "recorded": {"verdict": row["verdict"], "reasons": row["reasons"]},
                            "old": judged["approved"],
                            "new": judged["draft"],
                            "change": kind,
                        }
                    )
            if progress is not None and n % 20 == 0:
                progress({"stage": "preview", "images": n, "of": len(rows), "changed": len(out)})
    finally:
        for tools in runs.values():
            close(tools)
    return {
        "images": n,
        "asked": limit,
        "changed": len(out),
        "verdict_changes": verdicts,
        # the approved version giving the line's own verdicts says the preview judges the
        # images as the line did (a model or view set changed since would show here; a
        # duplicate serial cannot: the preview has no serial registry)
        "recorded_agree": agree,
        "rows": out,
        "skipped": skipped[:20],
    }


def on_challenge(
    approved: Recipe,
    draft: Recipe,
    services: Services,
    units: list[ChallengeUnit],
    batch: BatchState,
    sim_base: SimulatorSource,
    views: list[ViewConfig] | None = None,
) -> dict[str, Any]:
    """Both versions on the product's challenge units: whether the draft would pass the
    challenge at batch start, and each unit whose verdict or reasons change (each view of a
    station with several judged with its own tools, as at batch start)."""
    from edge.recipes.challenge import run_challenge

    results = {}
    for role, recipe in (("approved", approved), ("draft", draft)):
        tools = build(recipe, services, role)
        try:
            results[role] = run_challenge(recipe, tools, units, batch, sim_base, views=views)
        finally:
            close(tools)
    rows = []
    for old, new in zip(results["approved"].results, results["draft"].results, strict=True):
        o = {"verdict": old["verdict"], "reasons": old["reasons"]}
        n = {"verdict": new["verdict"], "reasons": new["reasons"]}
        rows.append(
            {
                "unit": new["unit"],
                "expect": new["expect"],
                "expect_reason": new["expect_reason"],
                "old": o,
                "new": n,
                "ok": new["ok"],
                "change": _changed(o, n),
            }
        )
    return {
        "units": len(rows),
        "approved_passed": results["approved"].passed,
        "draft_passed": results["draft"].passed,
        "why": results["draft"].why(),
        "rows": rows,
    }


def challenge_setup(
    recipe: Recipe, product: Any, source: SimulatorSource | None
) -> tuple[list[ChallengeUnit], BatchState, SimulatorSource] | None:
    """The challenge units, batch and simulator a preview renders for `recipe`, as the
    batch start would (`edge challenge run`): the product's set, else the scenario's
    standard set; None when nothing can render them."""
    from edge.config import SimulatorSource
    from edge.recipes.challenge import units_for
    from edge.sim.twin import LineSimulator

    units = units_for(product, recipe)
    scenario = (product.scenario if product else None) or recipe.scenario
    if not units or scenario is None:
        return None
    base = (
        source
        if source is not None and source.scenario == scenario
        else SimulatorSource(scenario=scenario)
    )
    sim = LineSimulator(base).batch
    gtin = product.gtin if product else sim.gtin
    return units, BatchState(sim.lot, gtin, sim.expiry), base
