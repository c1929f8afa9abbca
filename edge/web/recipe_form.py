"""The recipe editor's forms, made from the tools' parameter models, and its field checks.

Each tool type's parameters are a pydantic model (`edge/inspect/params/`); the editor's
fields are read from it (kind, bounds, default, description), so a new parameter appears in
the editor without a template change. A draft is checked the same way: every parameter by
its model, every region against the image it was drawn on, and each problem is keyed by its
field (`tools.0.min_level_mm`) with a sentence a technician reads beside that field.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import annotated_types as at
from pydantic import ValidationError

from edge.inspect.registry import TOOLS, params_class
from edge.web.errors import field_message

#: the keys of a recipe entry that are not the tool's parameters
SPEC_KEYS = ("type", "name")


def _unwrap(ann: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return (args[0] if len(args) == 1 else ann), len(args) < len(typing.get_args(ann))
    return ann, False


def _kind(ann: Any) -> tuple[str, dict[str, Any]]:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is bool:
        return "bool", {}
    if ann in (int, float):
        return ann.__name__, {}
    if ann is str:
        return "text", {}
    if origin is typing.Literal:
        return "choice", {"options": [str(a) for a in args]}
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "choice", {"options": [str(m.value) for m in ann]}
    if origin is tuple and len(args) == 4 and all(a is int for a in args):
        return "region", {}
    if origin is tuple and len(args) == 2 and all(a in (int, float) for a in args):
        return "pair", {"of": "int" if all(a is int for a in args) else "float"}
    return "json", {}


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, at.Ge):
            out["min"] = m.ge
        elif isinstance(m, at.Gt):
            out["min"], out["above"] = m.gt, True
        elif isinstance(m, at.Le):
            out["max"] = m.le
        elif isinstance(m, at.Lt):
            out["max"], out["below"] = m.lt, True
    return out


def fields_of(type_key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per parameter of the tool type: how to show it and its value in `params`."""
    cls = params_class(type_key)
    out = []
    for key, f in cls.model_fields.items():
        ann, optional = _unwrap(f.annotation)
        kind, extra = _kind(ann)
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        value = params.get(key, default)
        out.append(
            {
                "key": key,
                "label": key.replace("_", " "),
                "kind": kind,
                "optional": optional,
                "help": f.description or "",
                "default": _plain(default),
                "value": _plain(value),
                "present": key in params,
                "required": f.is_required(),
                **_bounds(f.metadata),
                **extra,
            }
        )
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, enum.Enum):
        return v.value
    return v


def tool_forms(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The editor's view of a recipe's tools: each tool's type, name and fields."""
    out = []
    for t in tools:
        params = {k: v for k, v in t.items() if k not in SPEC_KEYS}
        known = t.get("type") in TOOLS
        out.append(
            {
                "type": t.get("type"),
                "name": t.get("name"),
                "fields": fields_of(t["type"], params) if known else [],
                "raw": None if known else t,
            }
        )
    return out


def new_tool_forms() -> list[dict[str, Any]]:
    """A form for each tool type a technician may add to a recipe: its parameters at their
    defaults (required ones empty, said beside the field when saved or previewed empty)."""
    return [{"type": k, "fields": fields_of(k, {})} for k in sorted(TOOLS)]


def _inside(box: Any, size: tuple[int, int] | None) -> str | None:
    """Why a region (x, y, w, h) is not a rectangle inside the image; None when it is."""
    try:
        x, y, w, h = (int(v) for v in box)
    except (TypeError, ValueError):
        return None  # the parameter model says what is wrong with its shape
    if w <= 0 or h <= 0:
        return "the region needs a width and a height of at least 1 pixel"
    if x < 0 or y < 0:
        return "the region starts outside the image (x and y must be 0 or more)"
    if size is not None and (x + w > size[0] or y + h > size[1]):
        return (
            f"the region reaches outside the image ({size[0]} × {size[1]} pixels): "
            f"it ends at {x + w}, {y + h}"
        )
    return None


def check_tools(tools: list[dict[str, Any]], image_size: tuple[int, int] | None) -> dict[str, str]:
    """Every problem of the tools, keyed by field (`tools.I.KEY`), as a sentence."""
    problems: dict[str, str] = {}
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") not in TOOLS:
            kind = t.get("type") if isinstance(t, dict) else None
            problems[f"tools.{i}.type"] = f"there is no tool type {kind!r}"
            continue
        params = {k: v for k, v in t.items() if k not in SPEC_KEYS}
        try:
            params_class(t["type"]).model_validate(params)
        except ValidationError as exc:
            for e in exc.errors():
                loc = [str(x) for x in e.get("loc", ())]
                key = f"tools.{i}." + (loc[0] if loc else "type")
                part = f"value {int(loc[1]) + 1}: " if len(loc) > 1 and loc[1].isdigit() else ""
                problems.setdefault(key, part + field_message(e))
        for f in fields_of(t["type"], params):
            v = params.get(f["key"])
            if v is None or f"tools.{i}.{f['key']}" in problems:
                continue
            boxes = [v] if f["kind"] == "region" else []
            if f["key"] == "regions" and isinstance(v, dict):  # named rectangles
                boxes = list(v.values())
            for box in boxes:
                why = _inside(box, image_size)
                if why:
                    problems[f"tools.{i}.{f['key']}"] = why
                    break
    return problems
