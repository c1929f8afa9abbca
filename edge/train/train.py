"""Offline, seeded training of a YOLO detector with ultralytics, ending in a candidate model.

ultralytics reaches for the network in several places even when told it is offline
(DNS probe on import, a font download when it checks a dataset, pip installs on export,
telemetry). `offline_env` closes every one of them *before* ultralytics is imported:
environment switches, a private config dir with a local font, settings `sync: False`.
The trained model is exported to a static-shape ONNX (opset 17, onnxslim-simplified)
and registered as a *candidate*: it decides nothing until verified and approved.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressFn = Callable[[dict[str, Any]], None]

OPSET = 17

#: the switches that keep ultralytics off the network (see offline_env)
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_VERBOSE": "false",
}


def _local_font() -> Path | None:
    """A TTF that ships with matplotlib (a dependency of ultralytics) to stand in for Arial."""
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return p if p.is_file() else None
    except ImportError:
        return None


def offline_env(config_dir: str | Path) -> Path:
    """Set every switch that keeps ultralytics offline; call before importing it.

    Returns the ultralytics config dir (holding the font and settings).
    """
    config_dir = Path(config_dir).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(OFFLINE_ENV)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["MPLCONFIGDIR"] = str(config_dir / "matplotlib")
    ul_dir = config_dir / "Ultralytics"
    dirs = [ul_dir]
    if "ultralytics" in sys.modules:  # imported earlier: its config dir is already fixed
        from ultralytics.utils import USER_CONFIG_DIR

        dirs.append(Path(USER_CONFIG_DIR))
    font = _local_font()
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if font is not None and not (d / name).exists():
                shutil.copyfile(font, d / name)
    if "ultralytics" in sys.modules:
        _settings_offline()
    return ul_dir


def _settings_offline() -> None:
    from ultralytics import settings

    settings.update({"sync": False, "hub": False} if "hub" in settings else {"sync": False})


def import_ultralytics(config_dir: str | Path):
    """Import ultralytics with the offline switches set; returns the YOLO class."""
    offline_env(config_dir)
    from ultralytics import YOLO

    _settings_offline()
    return YOLO


def train(
    data_dir: str | Path,
    arch: str = "yolo11n.yaml",
    imgsz: int = 320,
    epochs: int = 30,
    seed: int = 0,
    out: str | Path = "runs/train",
    on_progress: ProgressFn | None = None,
    batch: int = 16,
    workers: int = 0,
    threads: int | None = None,
    extra: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Path:
    """Train from scratch on a prepared dataset (`data.yaml` inside `data_dir`); returns best.pt.

    `on_progress` gets {"stage": "epoch", "epoch", "epochs", "metrics", "elapsed_s"} after
    every epoch (train + val), {"stage": "done", ...} at the end. Seeded; deterministic on
    the CPU (on a GPU, cuDNN kernels may differ from run to run in the last bits). `device`
    is ultralytics' own ("cpu", "0" for the first CUDA GPU); mixed precision stays off so
    that no AMP self-check tries to download weights.
    """
    data_dir = Path(data_dir).resolve()
    data_yaml = data_dir / "data.yaml"
    if not data_yaml.is_file():
        raise FileNotFoundError(f"no data.yaml in {data_dir} (prepare the dataset first)")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    YOLO = import_ultralytics(out / ".ultralytics")
    import torch

    if threads:
        torch.set_num_threads(threads)
    model = YOLO(arch)
    t0 = time.monotonic()

    def _epoch_end(trainer) -> None:
        if on_progress is None or trainer.epoch >= trainer.epochs:
            return  # the final validation of best.pt calls this once more
        metrics = {k: round(float(v), 4) for k, v in (trainer.metrics or {}).items()}
        on_progress(
            {
                "stage": "epoch",
                "epoch": int(trainer.epoch) + 1,
                "epochs": int(trainer.epochs),
                "metrics": metrics,
                "elapsed_s": round(time.monotonic() - t0, 1),
            }
        )

    model.add_callback("on_fit_epoch_end", _epoch_end)
    args: dict[str, Any] = {
        "data": str(data_yaml),
        "imgsz": imgsz,
        "epochs": epochs,
        "seed": seed,
        "deterministic": True,
        "device": device,
        "workers": workers,
        "batch": batch,
        "amp": False,
        "plots": False,
        # from an architecture yaml: random init (nothing is downloaded); from a local .pt:
        # continue from those weights
        "pretrained": str(Path(arch).resolve()) if str(arch).endswith(".pt") else False,
        "project": str(out),
        "name": "run",
        "exist_ok": True,
        "verbose": False,
        "cache": False,
    }
    args.update(extra or {})
    _write_environment(out / "run", device)
    results = model.train(**args)
    best = Path(model.trainer.best if model.trainer else "")
    if not best.is_file():
        best = Path(model.trainer.last)
    if on_progress is not None:
        on_progress(
            {
                "stage": "done",
                "best": str(best),
                "elapsed_s": round(time.monotonic() - t0, 1),
                "metrics": {
                    k: round(float(v), 4) for k, v in getattr(results, "results_dict", {}).items()
                }
                if results is not None
                else {},
            }
        )
    return best


def _write_environment(run: Path, device: str) -> None:
    """What the run ran on (args.yaml says only "0" for a GPU), for the model card."""
    import json
    import platform

    import torch
    import ultralytics

    on_gpu = device != "cpu" and torch.cuda.is_available()
    env = {
        "device_name": torch.cuda.get_device_name(int(device.split(",")[0]))
        if on_gpu
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "python": platform.python_version(),
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "environment.json").write_text(json.dumps(env, indent=1) + "\n")


def export_onnx(weights: str | Path, out_path: str | Path, imgsz: int = 320) -> Path:
    """Static-shape ONNX (batch 1, opset 17), simplified with onnxslim, at `out_path`."""
    weights = Path(weights).resolve()
    YOLO = import_ultralytics(weights.parent / ".ultralytics")
    model = YOLO(str(weights))
    exported = model.export(
        format="onnx",
        imgsz=imgsz,
        opset=OPSET,
        simplify=True,
        dynamic=False,
        batch=1,
        half=False,
        nms=False,
        device="cpu",
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, out_path)
    return out_path


def class_names_of(weights: str | Path) -> list[str]:
    YOLO = import_ultralytics(Path(weights).resolve().parent / ".ultralytics")
    names = YOLO(str(weights)).names
    return [names[i] for i in sorted(names)]
