"""One plugin pattern for tools, sources, inference backends and PLC adapters.

Each plugin has a config class (a pydantic model in a light module: the schema, nothing
heavy imported) that names its implementation in a class variable, `impl =
"package.module:Class"`. A kind's registry is the set of its config classes: the
discriminated union in the config for sources, backends and PLC adapters (`table` reads
it), the tool table of `edge.inspect.registry` for tools. So validating a config imports
only schemas, and an implementation is imported only when it is chosen: one whose library
is missing here (TensorRT on a CPU box, a camera SDK) is reported when picked, with a
clear error, not at start-up and not while checking a file that does not use it.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Mapping
from typing import Any


class PluginError(RuntimeError):
    pass


def load(kind: str, table: Mapping[str, str], key: str) -> Any:
    """The implementation named for `key` in `table` ({type key: "module:Class"}), imported now."""
    try:
        target = table[key]
    except KeyError:
        raise PluginError(f"unknown {kind} type {key!r} (known: {sorted(table)})") from None
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise PluginError(f"{kind} {key!r} names no implementation (module:Class): {target!r}")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise PluginError(f"{kind} {key!r} is not available here: {exc}") from exc


def members(union: Any) -> list[type]:
    """The config classes of a discriminated union (`Annotated[Union[A, B], Field(...)]`)."""
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return list(typing.get_args(union)) or [union]


def type_key(config_cls: type) -> str:
    """A config class's `type` (the default of its `type: Literal[...]` field)."""
    return str(config_cls.model_fields["type"].default)  # type: ignore[attr-defined]


def table(union: Any) -> dict[str, str]:
    """{type key: implementation} of a union's config classes that name one (`impl`)."""
    return {type_key(c): c.impl for c in members(union) if getattr(c, "impl", None)}
