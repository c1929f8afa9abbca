"""Tool types by recipe key. A new tool is a new module plus one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge import plugins

if TYPE_CHECKING:
    from edge.config import Recipe, ToolSpec
    from edge.inspect.base import Services, Tool

TOOLS: dict[str, str] = {
    "fill_level": "edge.inspect.measure:FillLevelTool",
    "cap": "edge.inspect.measure:CapTool",
    "label": "edge.inspect.measure:LabelTool",
    "pockets": "edge.inspect.measure:PocketTool",
    "barcode": "edge.inspect.barcode:BarcodeTool",
    "defects": "edge.inspect.defects:DefectTool",
    "glass": "edge.inspect.glass:GlassTool",
    "anomaly": "edge.inspect.anomaly:AnomalyTool",
}


def tool_class(type_key: str) -> type[Tool]:
    return plugins.load("tool", TOOLS, type_key)


def validate_tool_spec(spec: ToolSpec) -> None:
    """Raise ValueError naming the tool when its parameters do not fit its model."""
    from pydantic import ValidationError

    try:
        cls = tool_class(spec.type)
    except plugins.PluginError as exc:
        raise ValueError(str(exc)) from None
    try:
        cls.Params.model_validate(spec.params)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"tool {spec.name or spec.type!r}: {details}") from None


def build_tools(recipe: Recipe, services: Services) -> list[Tool]:
    tools = []
    for spec in recipe.tools:
        cls = tool_class(spec.type)
        tools.append(cls(spec.name or spec.type, cls.Params.model_validate(spec.params), services))
    return tools
