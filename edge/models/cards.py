"""Model cards: what a model version is, what it was made from, and the hash of each file.

    models/<name>/<version>/model.onnx        FP32 reference (static shape, opset >= 17)
    models/<name>/<version>/model.int8.onnx   INT8 Q/DQ, the artefact every runtime loads
    models/<name>/<version>/card.yaml         this card

The card is the record the line trusts: a file is run only when its SHA-256 is the one
the card lists (`edge.models.registry`). Unknown keys are kept, so a card written by a
newer version (signatures, an `anomaly` section) is never silently trimmed.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge.inference.config import BoxRule

FP32 = "model.onnx"
INT8 = "model.int8.onnx"
CARD = "card.yaml"

#: `failed`: a job that made the version did not finish (quantising, verifying); it can
#: never be approved, only discarded
Status = Literal["candidate", "approved", "retired", "failed"]
AuditHook = Callable[[str, dict[str, Any]], None]  # (action, details)
#: the score threshold of a model whose card records none (models made before the
#: operating threshold was chosen on validation photos, e.g. the shipped ones)
DEFAULT_CONF = 0.25


class ModelError(RuntimeError):
    """A model that must not be loaded or approved; the message says why."""


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: str
    by: str
    action: str
    reason: str = ""


class ModelCard(BaseModel):
    """card.yaml. Unknown keys are kept (a card is a record, never silently trimmed)."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    status: Status = "candidate"
    task: str = "detect"
    arch: str = "yolo11n.yaml"
    input_size: int = Field(320, ge=32)
    classes: list[str]
    boxes: BoxRule = Field(
        "nms", description="how the raw boxes become detections (edge.inference.config.BoxRule)"
    )
    severities: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="file name -> SHA-256")
    dataset: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    verify: dict[str, Any] = Field(default_factory=dict)
    operating_threshold: dict[str, Any] = Field(
        default_factory=dict,
        description="score threshold chosen on the validation photos (`conf`), the rule "
        "and what it gave there (edge.train.threshold)",
    )
    created: str = ""
    created_by: str = ""
    history: list[HistoryEvent] = Field(default_factory=list)


def operating_conf(card: ModelCard) -> float:
    """The score threshold the model runs at: the one chosen on its validation photos when
    the card records one, else `DEFAULT_CONF`. The defect tool, verify and the benches read
    it here, so a model is judged at one threshold everywhere."""
    conf = (card.operating_threshold or {}).get("conf")
    return float(conf) if conf is not None else DEFAULT_CONF


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def whoami() -> str:
    return os.environ.get("EDGE_USER") or getpass.getuser()


def load_card(model_dir: str | Path) -> ModelCard:
    p = Path(model_dir) / CARD
    if not p.is_file():
        raise ModelError(f"no {CARD} in {model_dir}")
    try:
        data = yaml.safe_load(p.read_text())
        return ModelCard.model_validate(data)
    except Exception as exc:
        raise ModelError(f"unreadable model card {p}: {exc}") from exc


def save_card(model_dir: str | Path, card: ModelCard) -> None:
    p = Path(model_dir) / CARD
    tmp = p.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, width=100))
    tmp.replace(p)


def refresh_hashes(model_dir: str | Path) -> ModelCard:
    """Re-hash the files of a *candidate* (after quantising); approved cards are frozen."""
    card = load_card(model_dir)
    if card.status != "candidate":
        raise ModelError(f"{card.name} {card.version} is {card.status}: its files are frozen")
    for f in (FP32, INT8):
        if (Path(model_dir) / f).is_file():
            card.files[f] = sha256_file(Path(model_dir) / f)
    save_card(model_dir, card)
    return card
