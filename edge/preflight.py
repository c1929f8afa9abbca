"""Before the line starts: build what the config names, so a bad model is a config error.

A config can be valid YAML with valid keys and still name a model that is not in the
registry, not approved, or whose file no longer matches its card. Those are found only by
building the tools (the detector resolves and loads its model at construction). `edge config
check` builds them here and reports each bad tool with its key path; `edge run` and `edge
demo` report the same lines (from the same `ToolBuildError`) and exit 2 instead of a
traceback.
"""

from __future__ import annotations

import importlib.util

from edge.config import AppConfig, OnnxBackend, Recipe, default_recipes
from edge.inspect.base import Services
from edge.inspect.registry import ToolBuildError, build_tools


def named_recipes(cfg: AppConfig) -> list[tuple[str, Recipe]]:
    """The active recipe and every recipe the config itself defines or changes.

    The shipped defaults the config leaves alone and does not run are not built: they are
    checked by the project's own tests, and a plant that never runs them need not carry
    their models.
    """
    active = cfg.active_recipe()
    shipped = default_recipes()
    out = []
    for key, recipe in cfg.recipes.items():
        if recipe is active or shipped.get(key) != recipe:
            out.append((key, recipe))
    return out


def backend_missing(cfg: AppConfig) -> str | None:
    """Why the configured inference backend cannot load here (a Jetson config checked on a
    workstation), or None. The models are then loaded on ONNX Runtime for the check: the
    same file, its card and hashes; the TensorRT engine is built on the target."""
    b = cfg.inference.backend
    if b.type == "tensorrt":
        missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
        if missing:
            return f"the {b.type} backend is not installed here ({', '.join(missing)})"
    return None


def tool_problems(cfg: AppConfig) -> list[str]:
    """One line per tool that cannot be built, with its key path; [] when all can."""
    backend = OnnxBackend(threads=1) if backend_missing(cfg) else cfg.inference.backend
    from edge.models.registry import model_roots

    # the registry the line will open: models approved on the appliance, then shipped ones
    roots = model_roots(cfg.records.state_dir, cfg.inference.models_dir)
    services = Services(models_dir=roots, backend=backend)
    lines: list[str] = []
    for key, recipe in named_recipes(cfg):
        try:
            tools = build_tools(recipe, services)
        except ToolBuildError as exc:
            lines.extend(exc.lines(f"recipes.{key}"))
            continue
        for tool in tools:
            tool.close()
    return lines
