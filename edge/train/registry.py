"""Model registry under change control.

    models/<name>/<version>/model.onnx        FP32 reference (static shape, opset >= 17)
    models/<name>/<version>/model.int8.onnx   INT8 Q/DQ, the artefact every runtime loads
    models/<name>/<version>/card.yaml         what it is, what it was made from, how good it is

A version is `candidate` when made, `approved` after `verify` passed and someone
approved it, `retired` when replaced or withdrawn. At most one version per name is
approved; the line loads only that one, after checking every file's SHA-256 against
the card. Approval and rollback are audited actions: the caller passes an audit hook
(the audit trail's `record`), called before the card changes.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

FP32 = "model.onnx"
INT8 = "model.int8.onnx"
CARD = "card.yaml"

Status = Literal["candidate", "approved", "retired"]
AuditHook = Callable[[str, dict[str, Any]], None]  # (action, details)


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
    severities: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="file name -> SHA-256")
    dataset: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    verify: dict[str, Any] = Field(default_factory=dict)
    created: str = ""
    created_by: str = ""
    history: list[HistoryEvent] = Field(default_factory=list)


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


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\-_]", v))


class ModelRegistry:
    """The models/ folder."""

    def __init__(self, root: str | Path = "models"):
        self.root = Path(root)

    # -- reading
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def versions(self, name: str) -> list[str]:
        d = self.root / name
        if not d.is_dir():
            return []
        vs = [p.name for p in d.iterdir() if (p / CARD).is_file()]
        return sorted(vs, key=_version_key)

    def path(self, name: str, version: str) -> Path:
        return self.root / name / version

    def card(self, name: str, version: str) -> ModelCard:
        d = self.path(name, version)
        if not d.is_dir():
            known = self.versions(name)
            raise ModelError(
                f"no model {name!r} version {version!r} in {self.root} (known: {known})"
            )
        return load_card(d)

    def list(self) -> list[ModelCard]:
        return [self.card(n, v) for n in self.names() for v in self.versions(n)]

    def approved(self, name: str) -> ModelCard | None:
        ok = [
            c for c in (self.card(name, v) for v in self.versions(name)) if c.status == "approved"
        ]
        return ok[-1] if ok else None

    def check_files(self, card: ModelCard, files: list[str] | None = None) -> list[str]:
        """SHA-256 of each file against the card (empty: all match)."""
        d = self.path(card.name, card.version)
        problems = []
        for fname in files or sorted(card.files):
            want = card.files.get(fname)
            p = d / fname
            if want is None:
                problems.append(f"{fname}: not listed in the card")
            elif not p.is_file():
                problems.append(f"{fname}: missing")
            elif (got := sha256_file(p)) != want:
                problems.append(
                    f"{fname}: SHA-256 {got[:12]}… does not match the card's {want[:12]}…"
                )
        return problems

    def resolve(
        self,
        name: str,
        version: str | None = None,
        precision: str = "int8",
        allow_unapproved: bool = False,
    ) -> tuple[ModelCard, Path]:
        """The approved model the line may load, checked: (card, path of the file to run).

        Raises ModelError for: unknown model, no approved version, a named version that is
        not approved, a file missing or not matching its SHA-256. `allow_unapproved` is for
        evaluations that decide nothing (a named candidate may load; its files are checked).
        """
        if not self.versions(name):
            raise ModelError(f"no model named {name!r} in {self.root} (known: {self.names()})")
        if version is None:
            card = self.approved(name)
            if card is None:
                raise ModelError(f"model {name!r} has no approved version in {self.root}")
        else:
            card = self.card(name, version)
            if card.status != "approved" and not allow_unapproved:
                raise ModelError(
                    f"model {name} {version} is {card.status}, not approved: the line loads only "
                    "approved models"
                )
        fname = INT8 if precision == "int8" else FP32
        problems = self.check_files(card, [fname])
        if problems:
            raise ModelError(f"model {card.name} {card.version}: " + "; ".join(problems))
        return card, self.path(card.name, card.version) / fname

    # -- change control
    def _event(self, card: ModelCard, action: str, by: str, reason: str, **extra: Any) -> None:
        card.history.append(
            HistoryEvent(at=now_iso(), by=by, action=action, reason=reason, **extra)
        )

    def approve(
        self,
        name: str,
        version: str,
        by: str | None = None,
        reason: str = "",
        audit: AuditHook | None = None,
    ) -> ModelCard:
        """Approve a verified version; the approved version before it is retired."""
        by = by or whoami()
        card = self.card(name, version)
        if card.status == "approved":
            raise ModelError(f"{name} {version} is already approved")
        problems = self.check_files(card, [FP32, INT8])
        if problems:
            raise ModelError(f"refusing to approve {name} {version}: " + "; ".join(problems))
        v = card.verify or {}
        if not v.get("passed"):
            raise ModelError(
                f"refusing to approve {name} {version}: `edge model verify` has not passed "
                f"({v.get('summary') or 'not run'})"
            )
        if v.get("int8_sha256") and v["int8_sha256"] != card.files.get(INT8):
            raise ModelError(
                f"refusing to approve {name} {version}: verified a different INT8 file"
            )
        previous = self.approved(name)
        if audit is not None:
            audit(
                "model.approve",
                {
                    "name": name,
                    "version": version,
                    "sha256": card.files.get(INT8),
                    "replaces": previous.version if previous else None,
                    "by": by,
                    "reason": reason,
                },
            )
        if previous is not None:
            previous.status = "retired"
            self._event(previous, "retire", by, f"replaced by {version}")
            save_card(self.path(name, previous.version), previous)
        card.status = "approved"
        self._event(card, "approve", by, reason)
        save_card(self.path(name, version), card)
        return card

    def retire(
        self,
        name: str,
        version: str,
        by: str | None = None,
        reason: str = "",
        audit: AuditHook | None = None,
    ) -> ModelCard:
        by = by or whoami()
        card = self.card(name, version)
        if audit is not None:
            audit("model.retire", {"name": name, "version": version, "by": by, "reason": reason})
        card.status = "retired"
        self._event(card, "retire", by, reason)
        save_card(self.path(name, version), card)
        return card

    def rollback(
        self, name: str, by: str | None = None, reason: str = "", audit: AuditHook | None = None
    ) -> ModelCard:
        """Retire the approved version and re-approve the one approved before it.

        The earlier version must still verify (files intact, verify passed).
        """
        by = by or whoami()
        current = self.approved(name)
        if current is None:
            raise ModelError(f"model {name!r} has no approved version to roll back from")
        earlier = [
            c
            for c in (self.card(name, v) for v in self.versions(name))
            if c.version != current.version
            and c.status == "retired"
            and any(e.action == "approve" for e in c.history)
        ]
        candidates = [c for c in earlier if _version_key(c.version) < _version_key(current.version)]
        if not candidates:
            raise ModelError(f"model {name!r}: no earlier approved version to roll back to")
        target = candidates[-1]
        problems = self.check_files(target, [FP32, INT8])
        if problems or not (target.verify or {}).get("passed"):
            raise ModelError(
                f"cannot roll back to {name} {target.version}: "
                + ("; ".join(problems) or "its verification did not pass")
            )
        if audit is not None:
            audit(
                "model.rollback",
                {
                    "name": name,
                    "from": current.version,
                    "to": target.version,
                    "sha256": target.files.get(INT8),
                    "by": by,
                    "reason": reason,
                },
            )
        current.status = "retired"
        self._event(current, "rollback", by, reason or f"rolled back to {target.version}")
        save_card(self.path(name, current.version), current)
        target.status = "approved"
        self._event(target, "approve", by, reason or f"rollback from {current.version}")
        save_card(self.path(name, target.version), target)
        return target

    # -- creation
    def create(
        self,
        name: str,
        version: str,
        fp32_path: str | Path,
        classes: list[str],
        input_size: int,
        by: str | None = None,
        **card_fields: Any,
    ) -> ModelCard:
        """A new candidate version from an exported FP32 ONNX."""
        import shutil

        d = self.path(name, version)
        if (d / CARD).exists():
            raise ModelError(f"{name} {version} already exists: versions are never overwritten")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fp32_path, d / FP32)
        card = ModelCard(
            name=name,
            version=version,
            status="candidate",
            input_size=input_size,
            classes=list(classes),
            files={FP32: sha256_file(d / FP32)},
            created=now_iso(),
            created_by=by or whoami(),
            **card_fields,
        )
        self._event(card, "create", card.created_by, "trained")
        save_card(d, card)
        return card


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
