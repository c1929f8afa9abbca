"""Item-level evaluation of a model change: the whole recipe, item by item, against truth.

AP per class says how well boxes are found; the plant cares whether each item gets the
right verdict once the detector sits beside the classic tools and the code checks. This
runs a recipe's tools on every image of a labelled item set (an `edge sim` export: images
plus `truth.jsonl` with each item's expected verdict and reasons), with the detector pinned
to a given model version, judges each item as the line does (`edge.judge`), and scores the
verdicts against truth (`edge.truth_eval`): escape, critical-escape and false-reject rates.

A candidate may be loaded here (it decides nothing on the line): the tools are built with
services that say so (`allow_unapproved_models`, read by the model tools when they open their
model with `edge.models.registry.open_model`); the line's services never do.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from edge.config import Recipe, ToolSpec
from edge.domain import BatchState
from edge.inspect.base import Services, ToolContext
from edge.inspect.registry import build_tools
from edge.judge import judge
from edge.truth_eval import read_jsonl, score_against_truth

#: what a summary keeps of `edge.truth_eval.score_against_truth`'s report
KEYS = (
    "items",
    "critical_items",
    "critical_escapes",
    "critical_escape_rate",
    "escapes",
    "escape_rate",
    "expected_pass",
    "false_rejects",
    "false_reject_rate",
)


def has_item_truth(folder: str | Path) -> bool:
    return (Path(folder) / "truth.jsonl").is_file()


def pin_detector(recipe: Recipe, version: str | None) -> Recipe:
    """The recipe with its `defects` tool(s) pinned to one model version (None: as it is)."""
    if version is None:
        return recipe
    tools = [
        ToolSpec(**{**s.model_dump(), "version": version}) if s.type == "defects" else s
        for s in recipe.tools
    ]
    return recipe.model_copy(update={"tools": tools})


def pin_model(recipe: Recipe, model: str, version: str) -> Recipe | None:
    """The recipe with every tool that runs `model` pinned to `version`; None when no tool
    of the recipe runs it (the recipe cannot tell that model's versions apart)."""
    if not any(s.params.get("model") == model for s in recipe.tools):
        return None
    tools = [
        ToolSpec(**{**s.model_dump(), "version": version}) if s.params.get("model") == model else s
        for s in recipe.tools
    ]
    return recipe.model_copy(update={"tools": tools})


def evaluation_services(services: Services) -> Services:
    """A copy of `services` for an evaluation that decides nothing: the model tools may open
    a named candidate (`open_model(allow_unapproved=True)`). The caller's services are left
    as they are, so line services handed in never gain the allowance."""
    return dataclasses.replace(services, allow_unapproved_models=True)


def predict(
    recipe: Recipe,
    services: Services,
    folder: str | Path,
    limit: int | None = None,
    on_item: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(truth, predictions) for the items of an `edge sim` export, the recipe deciding."""
    folder = Path(folder)
    truth = read_jsonl(folder / "truth.jsonl")[: limit or None]
    batch = BatchState()
    if (folder / "batch.json").is_file():
        b = json.loads((folder / "batch.json").read_text())
        batch = BatchState(lot=b.get("lot"), gtin=b.get("gtin"), expiry=b.get("expiry"))
    tools = build_tools(recipe, services)
    preds = []
    try:
        for i, t in enumerate(truth):
            img = cv2.imread(str(folder / t["image"]), cv2.IMREAD_COLOR)
            ctx = ToolContext(
                item_id=t["id"], seq=i, deadline=time.monotonic() + 60, batch=batch, now=time.time()
            )
            verdict, reasons, _ = judge(recipe, tools, img, ctx)
            preds.append({"id": t["id"], "verdict": verdict.value, "reasons": reasons})
            if on_item:
                on_item(i + 1, len(truth))
    finally:
        for tool in tools:
            tool.close()
    return truth, preds


def line_evaluate(
    recipe: Recipe,
    services: Services,
    folder: str | Path,
    version: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Item-level rates of the recipe (detector pinned to `version`) on an item set."""
    t0 = time.perf_counter()
    truth, preds = predict(
        pin_detector(recipe, version), evaluation_services(services), folder, limit
    )
    ev = score_against_truth(truth, preds)
    out = {k: ev[k] for k in KEYS if k in ev}
    out["ms_per_item"] = round((time.perf_counter() - t0) * 1000 / max(len(truth), 1), 1)
    out["recall"] = {r: v["recall"] for r, v in ev["per_reason"].items() if v["recall"] is not None}
    out["missed"] = {
        r: v["escaped_ids"][:5] for r, v in ev["per_reason"].items() if v["escaped_ids"]
    }
    return out


def acceptance_failures(recipe: Recipe, line: dict[str, Any]) -> list[str]:
    a = recipe.acceptance
    failures = []
    if line["critical_escape_rate"] > a.max_critical_escape_rate:
        failures.append(
            f"critical escape rate {line['critical_escape_rate']:.4f} > "
            f"{a.max_critical_escape_rate} ({line['critical_escapes']}/{line['critical_items']})"
        )
    if line["false_reject_rate"] > a.max_false_reject_rate:
        failures.append(
            f"false-reject rate {line['false_reject_rate']:.4f} > {a.max_false_reject_rate} "
            f"({line['false_rejects']}/{line['expected_pass']})"
        )
    return failures
