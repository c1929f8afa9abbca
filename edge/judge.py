"""Run a recipe's tools on one image, then decide: the one place "inspect, then decide" is written.

The line (`Pipeline.judge_item`), the item-level evaluation of a model change
(`edge.train.line_eval`) and shadow mode (`edge.web.jobrun`) all judge an image here, so a
verdict in an evaluation or a shadow run is the verdict the line would give: the same tools
in recipe order, the same deadline rule, the same positive-release rule (`edge.decide`).

It is on the line's hot path: the loop the line ran before, moved here, not wrapped (one
function call per item more, nothing per tool).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edge.decide import decide
from edge.domain import Action, Finding, Reason, Severity, ToolResult, Verdict

if TYPE_CHECKING:
    from edge.config import Recipe
    from edge.inspect.base import Tool, ToolContext


def judge(
    recipe: Recipe,
    tools: Sequence[Tool],
    image: np.ndarray | None,
    ctx: ToolContext,
    batch_ok: bool = True,
) -> tuple[Verdict, list[str], list[ToolResult]]:
    """(verdict, reasons, tool results) of one image. Never raises for a bad image or tool.

    An image that is not one (None, empty, wrong rank) is REJECT IMAGE_ERROR without
    running a tool. Tools run in recipe order until `ctx.deadline` (monotonic) passes:
    after it no more CPU is spent, and a tool that did not run makes the item REJECT
    TOOL_MISSING (the line's tracker has already rejected it as TIMEOUT). `batch_ok`
    False (the recipe needs a batch and none is running) rejects as NO_BATCH.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        return Verdict.REJECT, [Reason.IMAGE_ERROR.value], []
    results: list[ToolResult] = []
    for tool in tools:
        if time.monotonic() >= ctx.deadline:
            break
        results.append(tool.run(image, ctx))
    verdict, reasons = decide(recipe, [t.name for t in tools], results, batch_ok)
    return verdict, reasons, results


def judge_views(
    judged: dict[str, tuple[Verdict, list[str], list[ToolResult]]],
) -> tuple[Verdict, list[str], list[ToolResult]]:
    """One decision over an item's views, each judged by `judge` above: PASS only if every
    view passed. Every result and finding is marked with its view, so the records and the
    result message say which camera saw what; a view that rejected without a finding (an
    unreadable image, a tool that did not run) gets one naming the view."""
    reasons: list[str] = []
    results: list[ToolResult] = []
    for view, (verdict, view_reasons, view_results) in judged.items():
        for r in view_results:
            r.view = view
            for f in r.findings:
                f.view = view
        results.extend(view_results)
        for code in view_reasons:
            if code not in reasons:
                reasons.append(code)
        rejecting = any(f.action is Action.REJECT for r in view_results for f in r.findings)
        if verdict is Verdict.REJECT and not rejecting:
            why = ", ".join(view_reasons) or Reason.TOOL_MISSING.value
            f = Finding("views", why.split(",")[0], f"view {view!r}: {why}", view=view)
            f.severity, f.action = Severity.CRITICAL, Action.REJECT
            results.append(ToolResult(tool="views", version="1", findings=[f], view=view))
            if not view_reasons:
                reasons.append(Reason.TOOL_MISSING.value)
    if reasons:
        return Verdict.REJECT, reasons, results
    return Verdict.PASS, [], results
