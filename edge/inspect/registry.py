"""Tool types by recipe key: each key's parameter model, which names its tool (`impl`).

A new tool is a parameter model in `edge/inspect/params/` (light: no image or inference
library), its tool module, and one line here. Validating a recipe reads only the
parameter models; a tool's own module (OpenCV, zxing-cpp, a model runtime) is imported
when the tool is built, and one that cannot be imported here is a clear error then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge import plugins
from edge.inspect.base import ToolParams
from edge.inspect.params import (
    anomaly,
    barcode,
    cap_top,
    defects,
    exposure,
    glass,
    measure,
    ocv,
)

if TYPE_CHECKING:
    from edge.config import Recipe, ToolSpec
    from edge.inspect.base import Services, Tool

TOOLS: dict[str, type[ToolParams]] = {
    "fill_level": measure.FillParams,
    "cap": measure.CapParams,
    "cap_top": cap_top.CapTopParams,
    "label": measure.LabelParams,
    "pockets": measure.PocketParams,
    "barcode": barcode.BarcodeParams,
    "defects": defects.DefectParams,
    "glass": glass.GlassParams,
    "exposure": exposure.ExposureParams,
    "ocv": ocv.OcvParams,
    "anomaly": anomaly.AnomalyParams,
}


def params_class(type_key: str) -> type[ToolParams]:
    """The parameter model of a tool type (no tool module imported)."""
    try:
        return TOOLS[type_key]
    except KeyError:
        raise plugins.PluginError(
            f"unknown tool type {type_key!r} (known: {sorted(TOOLS)})"
        ) from None


def tool_class(type_key: str) -> type[Tool]:
    """The tool a type key names, its module imported now (PluginError if it cannot be)."""
    return plugins.load("tool", {type_key: params_class(type_key).impl}, type_key)


def measurement_units() -> dict[str, str]:
    """Every measurement name a registered tool can report, with its unit."""
    units: dict[str, str] = {}
    for key in TOOLS:
        try:
            units.update(tool_class(key).measures)
        except plugins.PluginError:  # a tool whose library is not installed measures nothing here
            continue
    return units


def validate_tool_spec(spec: ToolSpec) -> None:
    """Raise ValueError naming the tool when its parameters do not fit its model."""
    from pydantic import ValidationError

    try:
        params = params_class(spec.type)
    except plugins.PluginError as exc:
        raise ValueError(str(exc)) from None
    try:
        params.model_validate(spec.params)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"tool {spec.name or spec.type!r}: {details}") from None


class ToolBuildError(RuntimeError):
    """Tools of a recipe that cannot be built (a model missing or unapproved, a file that
    does not match its card, a backend that cannot load it): every one, by its index."""

    def __init__(self, recipe: str, problems: list[tuple[int, str, str]]):
        self.recipe = recipe
        self.problems = problems  # (index in the recipe's tools, tool name, why)
        super().__init__("; ".join(self.lines()))

    def lines(self, where: str | None = None) -> list[str]:
        """One line per bad tool, with its key path (`recipes.NAME.tools.I`)."""
        base = where or f"recipes.{self.recipe}"
        return [f"{base}.tools.{i} ({name}): {why}" for i, name, why in self.problems]


def build_tools(recipe: Recipe, services: Services) -> list[Tool]:
    """Every tool of the recipe, built (models resolved and loaded), or ToolBuildError."""
    tools: list[Tool] = []
    problems: list[tuple[int, str, str]] = []
    for i, spec in enumerate(recipe.tools):
        name = spec.name or spec.type
        try:
            cls = tool_class(spec.type)
            tools.append(cls(name, params_class(spec.type).model_validate(spec.params), services))
        except Exception as exc:  # reported with the others: the line must not start
            why = str(exc).removeprefix(f"tool {name!r}: ")
            problems.append((i, name, why or type(exc).__name__))
    if problems:
        for t in tools:
            try:
                t.close()
            except Exception:
                pass
        raise ToolBuildError(recipe.name, problems)
    return tools
