"""Positive release: an item passes only if every configured tool ran and found nothing that rejects."""

from __future__ import annotations

from edge.config import Recipe
from edge.domain import Action, Reason, ToolResult, Verdict


def decide(
    recipe: Recipe, tool_names: list[str], results: list[ToolResult], batch_ok: bool = True
) -> tuple[Verdict, list[str]]:
    reasons: list[str] = []

    def add(code: str) -> None:
        if code not in reasons:
            reasons.append(code)

    if not batch_ok:
        add(Reason.NO_BATCH.value)
    ran = {r.tool for r in results}
    for r in results:
        if r.error is not None:
            add(Reason.TOOL_ERROR.value)
        for f in r.findings:
            rule = recipe.rule(f.code)
            f.severity, f.action = rule.severity, rule.action
            if rule.action is Action.REJECT:
                add(f.code)
    if any(name not in ran for name in tool_names):
        add(Reason.TOOL_MISSING.value)
    if not tool_names:
        add(Reason.TOOL_MISSING.value)  # a recipe with no tools proves nothing
    return (Verdict.REJECT, reasons) if reasons else (Verdict.PASS, [])
