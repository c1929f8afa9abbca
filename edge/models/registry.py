"""The model registry under change control, and the one way to open a model for running.

    models/<name>/<version>/{model.onnx, model.int8.onnx, card.yaml, ...}   (see `cards`)

A version is `candidate` when made, `approved` after `verify` passed and someone
approved it, `retired` when replaced or withdrawn. At most one version per name is
approved. Approval and rollback are audited actions: the caller passes an audit hook
(the audit trail's `record`), called before the card changes.

Every runtime that runs a model (the line's tools, the shadow job, the evaluations, the
TensorRT engine build) opens it with `open_model`: the approved version (or the one
named), every file it will read checked against the card's SHA-256. Only an evaluation
that decides nothing passes `allow_unapproved=True`; the line never does. The rule lives
here, not with training, so that nothing on the line imports `edge.train`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.models.cards import (
    CARD,
    FP32,
    INT8,
    AuditHook,
    HistoryEvent,
    ModelCard,
    ModelError,
    load_card,
    now_iso,
    save_card,
    sha256_file,
    whoami,
)

__all__ = ["ModelRegistry", "OpenedModel", "Precision", "Roots", "model_roots", "open_model"]

Precision = Literal["int8", "fp32"]


@dataclass(frozen=True)
class OpenedModel:
    """A model version the caller may run: its card and the checked files.

    `path` is the file to run (INT8 or FP32 by the precision asked for); every file named
    in `checked` matched its SHA-256 on the card when opened.
    """

    card: ModelCard
    dir: Path
    path: Path
    checked: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return self.card.files[self.path.name]

    @property
    def info(self) -> dict[str, str]:
        """What every result records of the model that decided (name, version, SHA-256)."""
        return {"name": self.card.name, "version": self.card.version, "sha256": self.sha256}

    def file(self, name: str) -> Path:
        """Another file of the version; only one that was checked when opened."""
        if name not in self.checked:
            raise ModelError(
                f"model {self.card.name} {self.card.version}: {name} was not checked when opened"
            )
        return self.dir / name

    def load_detector(self, backend_cfg: Any = None, *, wait: bool = True) -> Any:
        """The file to run loaded on the configured detector backend (`edge.inference`)."""
        from edge.inference.base import create_backend

        return create_backend(backend_cfg).load(
            self.path, self.card.input_size, self.card.classes, wait=wait, boxes=self.card.boxes
        )


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\-_]", v))


#: what a registry is opened on: one folder, or the writable folder then read-only ones
Roots = str | Path | Sequence[str | Path]

#: where a read-only version's status changes are kept, inside the writable root
OVERLAY = ".shipped"


class ModelRegistry:
    """The model folders: one writable root, then read-only roots searched after it.

    The appliance's registry is `[<state>/models, <shipped models>]`: candidates are
    written only to the state directory, and the models that ship with the project stay
    as shipped (a read-only install, a clean checkout). A shipped version whose status
    changes (retired when a newer one is approved, re-approved by a rollback) keeps its
    files where they are; its new card is kept in the writable root under `.shipped/`.
    """

    def __init__(self, root: Roots = "models"):
        roots = [root] if isinstance(root, str | Path) else list(root)
        if not roots:
            raise ValueError("a model registry needs at least one folder")
        self.root = Path(roots[0])
        self.read_only = [Path(r) for r in roots[1:] if Path(r).resolve() != self.root.resolve()]

    @property
    def roots(self) -> list[Path]:
        return [self.root, *self.read_only]

    # -- reading
    def names(self) -> list[str]:
        return sorted(
            {
                p.name
                for r in self.roots
                if r.is_dir()
                for p in r.iterdir()
                if p.is_dir() and not p.name.startswith(".")
            }
        )

    def versions(self, name: str) -> list[str]:
        vs = {p.name for r in self.roots if (r / name).is_dir() for p in (r / name).iterdir()}
        return sorted((v for v in vs if (self.path(name, v) / CARD).is_file()), key=_version_key)

    def path(self, name: str, version: str) -> Path:
        """The version's folder: in the first root that has it, else where it would be made."""
        for r in self.roots:
            if (r / name / version / CARD).is_file():
                return r / name / version
        return self.root / name / version

    def writable(self, name: str, version: str) -> bool:
        return self.path(name, version).parent.parent == self.root

    def _overlay(self, name: str, version: str) -> Path:
        return self.root / OVERLAY / name / version

    def card(self, name: str, version: str) -> ModelCard:
        d = self.path(name, version)
        if not d.is_dir():
            known = self.versions(name)
            roots = ", ".join(str(r) for r in self.roots)
            raise ModelError(f"no model {name!r} version {version!r} in {roots} (known: {known})")
        if not self.writable(name, version) and (self._overlay(name, version) / CARD).is_file():
            return load_card(self._overlay(name, version))
        return load_card(d)

    def save(self, card: ModelCard) -> None:
        """Write a card back: in place when writable, else into the overlay."""
        if self.writable(card.name, card.version):
            save_card(self.path(card.name, card.version), card)
        else:
            d = self._overlay(card.name, card.version)
            d.mkdir(parents=True, exist_ok=True)
            save_card(d, card)

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

    def open_model(
        self,
        name: str,
        version: str | None = None,
        *,
        allow_unapproved: bool = False,
        precision: Precision = "int8",
        with_files: Sequence[str] = (),
        task: str | None = None,
    ) -> OpenedModel:
        """The model a runtime may run, checked: the approved version, or the one named.

        Raises ModelError for: unknown model, no approved version, a named version that is
        not approved (unless `allow_unapproved`: an evaluation that decides nothing may run
        a named candidate), the file to run or any of `with_files` (an anomaly model's
        memory, the FP32 reference beside the INT8 file) missing or not matching its SHA-256,
        a card of another `task` than the one asked for (None: any).
        """
        if not self.versions(name):
            raise ModelError(
                f"no model named {name!r} in {', '.join(map(str, self.roots))} "
                f"(known: {self.names()})"
            )
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
        if task is not None and card.task != task:
            raise ModelError(f"{card.name} {card.version} is a {card.task!r} model, not {task!r}")
        run = INT8 if precision == "int8" else FP32
        checked = tuple(dict.fromkeys([run, *with_files]))
        problems = self.check_files(card, list(checked))
        if problems:
            raise ModelError(f"model {card.name} {card.version}: " + "; ".join(problems))
        d = self.path(card.name, card.version)
        return OpenedModel(card=card, dir=d, path=d / run, checked=checked)

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
        if card.status == "failed":
            raise ModelError(
                f"refusing to approve {name} {version}: the job that made it failed "
                f"({(card.model_dump().get('failure') or {}).get('error', 'no reason recorded')})"
            )
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
            self.save(previous)
        card.status = "approved"
        self._event(card, "approve", by, reason)
        self.save(card)
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
        self.save(card)
        return card

    def mark_failed(self, name: str, version: str, error: str, by: str | None = None) -> ModelCard:
        """The job making this candidate failed: it is kept for the record but never offered
        for approval or evaluation (`discard` removes it)."""
        by = by or whoami()
        card = self.card(name, version)
        if card.status != "candidate":
            raise ModelError(f"{name} {version} is {card.status}: only a candidate can fail")
        card.status = "failed"
        card.failure = {"at": now_iso(), "error": error[:2000]}
        self._event(card, "fail", by, error[:500])
        self.save(card)
        return card

    def discard(
        self,
        name: str,
        version: str,
        by: str | None = None,
        reason: str = "",
        audit: AuditHook | None = None,
    ) -> None:
        """Remove a candidate or failed version the technician does not want (audited).

        Approved and retired versions are the record of what ran on the line and are never
        removed; shipped (read-only) versions are never touched.
        """
        import shutil

        by = by or whoami()
        card = self.card(name, version)
        if card.status not in ("candidate", "failed"):
            raise ModelError(
                f"{name} {version} is {card.status}: only a candidate or a failed version "
                "can be discarded (approved and retired versions are the line's record)"
            )
        if not self.writable(name, version):
            raise ModelError(f"{name} {version} ships with the project and is read-only")
        if audit is not None:
            audit(
                "model.discard",
                {
                    "name": name,
                    "version": version,
                    "status": card.status,
                    "sha256": card.files.get(INT8) or card.files.get(FP32),
                    "by": by,
                    "reason": reason,
                },
            )
        shutil.rmtree(self.path(name, version))

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
        self.save(current)
        target.status = "approved"
        self._event(target, "approve", by, reason or f"rollback from {current.version}")
        self.save(target)
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

        if version in self.versions(name):
            raise ModelError(f"{name} {version} already exists: versions are never overwritten")
        d = self.root / name / version
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


#: a model name: what a registry folder and a recipe's `model:` may be called
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


def product_model_name(recipe: Any) -> str:
    """The detector model of a product: the one its recipe's detector tool runs, else a
    name made from the product (recipe) name, so that each product has its own model and
    approving one never retires another's (until a product master names them)."""
    for tool in getattr(recipe, "tools", None) or []:
        if getattr(tool, "type", None) == "defects" and tool.params.get("model"):
            return str(tool.params["model"])
    slug = re.sub(r"[^a-z0-9_-]+", "-", str(getattr(recipe, "name", recipe)).lower()).strip("-_")
    if not slug or not slug[0].isalpha():
        slug = "p-" + slug
    return slug[:32].rstrip("-_")


def model_roots(state_dir: str | Path, models_dir: str | Path) -> list[Path]:
    """The appliance's registry: `<state>/models` (candidates are made there, cards change
    there), then the configured models folder (what ships with the project), read-only."""
    return [Path(state_dir) / "models", Path(models_dir)]


def open_model(
    name: str,
    version: str | None = None,
    *,
    allow_unapproved: bool = False,
    models_dir: Roots = "models",
    precision: Precision = "int8",
    with_files: Sequence[str] = (),
    task: str | None = None,
) -> OpenedModel:
    """`ModelRegistry(models_dir).open_model(...)`: the one way to open a model for running."""
    return ModelRegistry(models_dir).open_model(
        name,
        version,
        allow_unapproved=allow_unapproved,
        precision=precision,
        with_files=with_files,
        task=task,
    )
