"""The life cycle of a controlled document: draft, approved with a QA e-signature, retired.

One class serves recipes and products. Every change is an audit entry whose old and new
values are the keys that changed (`diff`), so QA reads "tools.0.max_level_mm: 35.5 -> 36"
rather than two blobs. A version's content never changes once stored; an edit is a new
version. Approval takes a signature made by `edge.store.signatures.sign` (password again,
a reason, the QA role) and a check the kind defines (a product's challenge set must be
complete); rollback re-approves the version approved before the current one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from edge.store import recipes as store
from edge.store.db import Database

#: The roles whose signature approves a controlled document.
APPROVER_ROLES = ("qa", "admin")


class DocumentError(ValueError):
    """A change the life cycle refuses (unknown version, not a draft, check failed)."""


class AuditUnwritten(RuntimeError):
    """The change is stored but its audit entry could not be written (disk full)."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as dotted keys (`tools.0.min_level_mm`), the leaves as they are."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each key whose value differs: {key: {"old": ..., "new": ...}} (missing is None)."""
    a, b = flatten(old or {}), flatten(new)
    return {
        k: {"old": a.get(k), "new": b.get(k)}
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    }


class Documents:
    """Versions of one kind of document, with their audited life cycle."""

    def __init__(
        self,
        db: Database,
        audit: Any,
        kind: str,
        check: Callable[[dict[str, Any]], list[str]] | None = None,
    ):
        self.db, self.audit, self.kind = db, audit, kind
        self.check = check or (lambda content: [])

    def target(self, name: str, version: int) -> str:
        return f"{self.kind}:{name}/v{version}"

    def _record(self, user: str, action: str, target: str, old: Any, new: Any, reason: str) -> Any:
        if self.audit is None:
            return None
        try:
            return self._write(user, action, target, old, new, reason)
        except (OSError, sqlite3.Error) as exc:
            raise AuditUnwritten(f"cannot write the audit trail: {exc}") from exc

    def _write(self, user: str, action: str, target: str, old: Any, new: Any, reason: str) -> Any:
        return self.audit.record(
            user=user,
            action=f"{self.kind}.{action}",
            target=target,
            old=old,
            new=new,
            reason=reason,
        )

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        return store.names(self.db, self.kind)

    def versions(self, name: str) -> list[dict[str, Any]]:
        return store.versions(self.db, self.kind, name)

    def get(self, name: str, version: int) -> dict[str, Any]:
        doc = store.get(self.db, self.kind, name, version)
        if doc is None:
            raise DocumentError(f"{self.kind} {name!r} has no version {version}")
        return doc

    def approved(self, name: str) -> dict[str, Any] | None:
        return store.approved(self.db, self.kind, name)

    def latest(self, name: str) -> dict[str, Any] | None:
        v = self.versions(name)
        return v[-1] if v else None

    # ------------------------------------------------------------------ changing

    def add_draft(
        self, name: str, content: dict[str, Any], by: str, reason: str = "", note: str = ""
    ) -> int:
        """A new draft version (or the existing version with exactly this content); `note`
        is kept with the version (where an editor's clone came from)."""
        same = store.by_hash(self.db, self.kind, name, store.content_hash(content))
        if same is not None and same["status"] != "retired":
            return int(same["version"])
        base = self.approved(name) or self.latest(name)
        version = store.add(self.db, self.kind, name, content, by, note=note)
        self._record(
            by,
            "draft",
            self.target(name, version),
            {k: d["old"] for k, d in diff(base and base["content"], content).items()},
            {k: d["new"] for k, d in diff(base and base["content"], content).items()},
            reason or (f"edited from v{base['version']}" if base else "new"),
        )
        return version

    def seed(self, name: str, content: dict[str, Any], by: str = "system:seed") -> int:
        """The first version of a name, approved as shipped (nothing to compare it with)."""
        version = store.add(
            self.db, self.kind, name, content, by, status="approved", note="seed version"
        )
        self._record(
            by,
            "seed",
            self.target(name, version),
            None,
            store.content_hash(content),
            "shipped with the software: the seed version",
        )
        return version

    def approve(self, name: str, version: int, signature: dict[str, Any]) -> dict[str, Any]:
        """Approve a draft with a signature (`edge.store.signatures.sign`, meaning approved)."""
        doc = self.get(name, version)
        if doc["status"] != "draft":
            raise DocumentError(f"{self.kind} {name} v{version} is {doc['status']}, not a draft")
        if signature.get("target") != self.target(name, version):
            raise DocumentError("the signature was made for another document")
        problems = self.check(doc["content"])
        if problems:
            raise DocumentError(
                f"refusing to approve {self.kind} {name} v{version}: " + "; ".join(problems)
            )
        before = self.approved(name)
        store.set_approved(self.db, self.kind, name, version, signature["username"])
        self._record(
            signature["username"],
            "approve",
            self.target(name, version),
            {k: d["old"] for k, d in diff(before and before["content"], doc["content"]).items()},
            {k: d["new"] for k, d in diff(before and before["content"], doc["content"]).items()},
            f"replaces v{before['version']}: {signature['reason']}"
            if before
            else signature["reason"],
        )
        return self.get(name, version)

    def retire(self, name: str, version: int, by: str, reason: str) -> None:
        doc = self.get(name, version)
        if doc["status"] == "retired":
            raise DocumentError(f"{self.kind} {name} v{version} is already retired")
        if not reason.strip():
            raise DocumentError("retiring needs a reason")
        store.set_retired(self.db, self.kind, name, version)
        self._record(by, "retire", self.target(name, version), doc["status"], "retired", reason)

    def rollback(self, name: str, by: str, reason: str) -> dict[str, Any]:
        """Retire the approved version and re-approve the newest one approved before it."""
        current = self.approved(name)
        if current is None:
            raise DocumentError(f"{self.kind} {name!r} has no approved version to roll back from")
        earlier = [
            d
            for d in self.versions(name)
            if d["ever_approved"] and d["version"] < current["version"]
        ]
        if not earlier:
            raise DocumentError(f"{self.kind} {name!r}: no earlier approved version")
        if not reason.strip():
            raise DocumentError("a rollback needs a reason")
        target = earlier[-1]
        store.set_approved(self.db, self.kind, name, target["version"], by)
        changes = diff(current["content"], target["content"])
        self._record(
            by,
            "rollback",
            self.target(name, target["version"]),
            {"version": current["version"], **{k: d["old"] for k, d in changes.items()}},
            {"version": target["version"], **{k: d["new"] for k, d in changes.items()}},
            reason,
        )
        return self.get(name, target["version"])

    def diff(self, name: str, a: int, b: int) -> dict[str, dict[str, Any]]:
        return diff(self.get(name, a)["content"], self.get(name, b)["content"])
