"""`edge model build-engine`: the TensorRT engine of an approved model, built ahead of time.

An engine build takes minutes on a Jetson; at service start it would run under the unit's
start timeout and restart limit. So it is built when the model arrives on the device: by
the installer (when TensorRT is present) and right after `edge model approve` (when the
config's backend is TensorRT). At start the service then only loads it. Only an approved
model whose file matches its card is built: no engine comes from an unverified file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.models.registry import ModelRegistry


def tensorrt_config(config: Any) -> Any:
    """The config's TensorRT backend settings; TensorRT defaults with the engine cache under
    the config's state directory when the config runs another backend."""
    from edge.config import TensorRTBackend

    be = config.inference.backend
    if be.type == "tensorrt":
        return be
    return TensorRTBackend(cache_dir=Path(config.records.state_dir) / "engines")


def build_engine(
    models_dir: str | Path, name: str, version: str | None, backend_cfg: Any
) -> dict[str, Any]:
    """Build (or find in the cache) the engine of an approved model. Raises ModelError or
    BackendError with the reason."""
    from edge.inference.tensorrt import TensorRTBackend

    precision = "int8" if getattr(backend_cfg, "int8", True) else "fp32"
    opened = ModelRegistry(models_dir).open_model(name, version, precision=precision)
    card, path = opened.card, opened.path
    be = TensorRTBackend(backend_cfg)
    t0 = time.monotonic()
    be.load(path, card.input_size, card.classes, wait=True)
    try:
        return {
            "name": card.name,
            "version": card.version,
            "model": str(path),
            "engine": str(be.engine_path),
            "key": be.key,
            "providers": list(be.providers),
            "seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        be.close()
