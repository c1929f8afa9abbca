"""Lazy lookup of plugin classes by their config `type` key.

Implementations are imported only when chosen, so a backend whose library is
missing here (TensorRT on a CPU box) is reported when picked, not at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any


class PluginError(RuntimeError):
    pass


def load(kind: str, table: dict[str, str], key: str) -> Any:
    try:
        target = table[key]
    except KeyError:
        raise PluginError(f"unknown {kind} type {key!r} (known: {sorted(table)})") from None
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise PluginError(f"{kind} {key!r} is not available here: {exc}") from exc
