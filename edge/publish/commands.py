"""Commands from MES: start_batch, stop_batch, change_recipe.

Every command is size-capped, checked against who may send it (`edge.publish.policy`),
parsed, validated with pydantic, checked against the line's state, audited, and only
then applied; the answer is `ok` or a precise error (code, message, details). A command
that fails any step changes nothing. The audit trail names the identity the broker
authenticated (`mqtt:<identity>`); the payload's `by` is kept as `claimed_by` beside it.
Refusals are audited through a `RefusalLimiter`, so a flood cannot fill the trail.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.domain import BatchState
from edge.publish.policy import COMMAND_NAMES, CommandPolicy, Refused, Sender
from edge.publish.refusals import RefusalLimiter
from edge.recipes.batch_start import Gtin, expiry_problem, lot_problem
from edge.recipes.challenge import ChallengeFailed
from edge.recipes.changeover import ChangeoverRefused

log = logging.getLogger(__name__)

RESPONSE_SCHEMA = "edge-inspect/cmd-response"
RESPONSE_VERSION = 1


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    by: str | None = Field(
        None,
        max_length=64,
        description="who the sender says asked: recorded as claimed_by, never as the audit user",
    )
    reason: str | None = Field(None, max_length=200)


class StartBatch(_Cmd):
    gtin: Gtin
    lot: str
    expiry: str = Field(description="YYMMDD as printed in AI (17)")
    recipe: str | None = None

    @field_validator("lot")
    @classmethod
    def _lot(cls, v: str) -> str:
        problem = lot_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("expiry")
    @classmethod
    def _expiry(cls, v: str) -> str:
        problem = expiry_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class StopBatch(_Cmd):
    pass


class ChangeRecipe(_Cmd):
    recipe: str = Field(min_length=1, max_length=64)


COMMANDS: dict[str, type[_Cmd]] = {
    "start_batch": StartBatch,
    "stop_batch": StopBatch,
    "change_recipe": ChangeRecipe,
}
assert tuple(COMMANDS) == COMMAND_NAMES  # one list of commands (the policy's config names them)


class CommandError(Exception):
    def __init__(self, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class CommandHandler:
    """Applies MES commands to the appliance (`app.pipeline`, `app.audit`)."""

    def __init__(self, app: Any, max_bytes: int, policy: CommandPolicy, refusals: RefusalLimiter):
        self.app = app
        self.max_bytes = max_bytes
        self.policy = policy
        self.refusals = refusals
        self.accepted = 0

    def handle(self, name: str, payload: bytes, sender: Sender) -> dict[str, Any]:
        resp: dict[str, Any] = {
            "schema": RESPONSE_SCHEMA,
            "version": RESPONSE_VERSION,
            "command": name,
            "ok": False,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "sender": {"user": sender.audit_user, "authenticated": sender.authenticated},
        }
        claims = sender.claims(_claimed_by(payload, self.max_bytes))
        if claims:
            resp["sender"].update(claims)
        try:
            self._check_size(payload)
            if name not in COMMANDS:
                raise CommandError(
                    "unknown_command",
                    f"unknown command {name!r} (known: {', '.join(sorted(COMMANDS))})",
                )
            try:
                self.policy.check(sender, name)
            except Refused as exc:
                raise CommandError(exc.code, exc.message) from None
            cmd = self._parse(name, payload)
            result = self._apply(name, cmd, sender.audit_user, claims)
        except CommandError as exc:
            resp["error"] = {"code": exc.code, "message": exc.message}
            if exc.details is not None:
                resp["error"]["details"] = exc.details
            self.refusals.refused(
                sender.audit_user, f"mes.{name[:64]}.refused", exc.code, exc.message, claims or None
            )
            return resp
        except Exception as exc:  # a bug or a full disk: say so, change nothing more
            log.exception("MES command %s failed", name)
            resp["error"] = {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
            return resp
        self.accepted += 1
        resp["ok"] = True
        resp["result"] = result
        return resp

    # ------------------------------------------------------------------

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.max_bytes:
            raise CommandError(
                "too_large",
                f"command payload is {len(payload)} bytes; the limit is {self.max_bytes}",
            )

    def _parse(self, name: str, payload: bytes) -> _Cmd:
        model = COMMANDS[name]
        try:
            data = json.loads(payload.decode("utf-8")) if payload.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError("bad_json", f"payload is not UTF-8 JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError("bad_json", "payload must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(root)", "error": e["msg"]}
                for e in exc.errors()
            ]
            msg = "; ".join(f"{d['field']}: {d['error']}" for d in details)
            raise CommandError("invalid", msg, details) from None

    def _recipe_known(self, name: str) -> None:
        """A recipe MES may choose: defined, with an approved version."""
        known = set(self.app.cfg.recipes) | set(self.app.pipeline.recipe_book.docs.names())
        if name not in known:
            raise CommandError(
                "unknown_recipe",
                f"recipe {name!r} is not defined (known: {', '.join(sorted(known))})",
            )
        if self.app.pipeline.recipe_book.docs.approved(name) is None:
            raise CommandError("recipe_not_approved", f"recipe {name!r} has no approved version")

    def _start_product(self, cmd: StartBatch, user: str, claims: dict[str, str]) -> dict[str, Any]:
        """start_batch by GTIN: the product's approved recipe, then the challenge."""
        changeover = self.app.changeover
        try:
            product = changeover.check(cmd.gtin, cmd.lot, cmd.expiry)
        except ChangeoverRefused as exc:
            raise CommandError(exc.code, str(exc)) from None
        if cmd.recipe is not None and cmd.recipe != product.recipe:
            raise CommandError(
                "recipe_mismatch",
                f"product {product.gtin} runs recipe {product.recipe!r}, not {cmd.recipe!r}",
            )
        new = {"gtin": cmd.gtin, "lot": cmd.lot, "expiry": cmd.expiry, "recipe": product.recipe}
        self._audit(user, "mes.start_batch", cmd.lot, None, {**new, **claims}, cmd.reason)
        try:
            bid = changeover.start(cmd.gtin, cmd.lot, cmd.expiry, by=user, source="mes")
        except ChangeoverRefused as exc:
            details = None
            last = changeover.last
            if exc.code == "challenge_failed" and last is not None:
                details = last.failures
            raise CommandError(exc.code, str(exc), details) from None
        stamp = self.app.pipeline.stamp
        return {"batch": bid, **new, "recipe_version": stamp.version, **self._challenge()}

    def _challenge(self) -> dict[str, Any]:
        last = getattr(getattr(self.app, "changeover", None), "last", None)
        return {"challenge": {"passed": last.passed, "units": last.units}} if last else {}

    def _apply(self, name: str, cmd: _Cmd, user: str, claims: dict[str, str]) -> dict[str, Any]:
        p = self.app.pipeline
        if isinstance(cmd, StartBatch):
            if p.batch is not None:
                raise CommandError(
                    "batch_running",
                    f"batch {p.batch.id} (lot {p.batch.lot}) is running; stop it first",
                )
            changeover = getattr(self.app, "changeover", None)
            if changeover is not None and changeover.products.approved(cmd.gtin) is not None:
                return self._start_product(cmd, user, claims)
            if cmd.recipe is not None:
                self._recipe_known(cmd.recipe)
            new = {
                "gtin": cmd.gtin,
                "lot": cmd.lot,
                "expiry": cmd.expiry,
                "recipe": cmd.recipe or p.recipe.name,
            }
            self._audit(user, "mes.start_batch", cmd.lot, None, {**new, **claims}, cmd.reason)
            if cmd.recipe is not None and cmd.recipe != p.recipe.name:
                p.set_recipe(cmd.recipe)
            try:
                batch = BatchState(cmd.lot, cmd.gtin, cmd.expiry)
                bid = p.start_batch(batch, by=user, source="mes")
            except ChallengeFailed as exc:
                last = getattr(self.app.changeover, "last", None)
                raise CommandError(
                    "challenge_failed", str(exc), last.failures if last else None
                ) from None
            return {"batch": bid, **new, **self._challenge()}
        if isinstance(cmd, StopBatch):
            if p.batch is None:
                raise CommandError("no_batch", "no batch is running")
            old = {"batch": p.batch.id, "lot": p.batch.lot}
            self._audit(user, "mes.stop_batch", p.batch.lot, old, claims or None, cmd.reason)
            bid = p.stop_batch(by=user)
            return {"batch": bid}
        if isinstance(cmd, ChangeRecipe):
            self._recipe_known(cmd.recipe)
            if p.batch is not None:
                raise CommandError(
                    "batch_running",
                    f"batch {p.batch.id} is running; the recipe changes between batches",
                )
            old = p.recipe.name
            new_recipe: Any = {"recipe": cmd.recipe, **claims} if claims else cmd.recipe
            self._audit(user, "mes.change_recipe", "recipe", old, new_recipe, cmd.reason)
            p.set_recipe(cmd.recipe)
            return {"recipe": cmd.recipe, "previous": old}
        raise CommandError("unknown_command", f"unknown command {name!r}")

    def _audit(
        self, user: str, action: str, target: Any, old: Any, new: Any, reason: str | None
    ) -> None:
        audit = getattr(self.app, "audit", None)
        if audit is None:
            return
        try:
            audit.record(user=user, action=action, target=target, old=old, new=new, reason=reason)
        except Exception as exc:
            raise CommandError("not_audited", f"cannot write the audit trail: {exc}") from None


def _claimed_by(payload: bytes, max_bytes: int) -> str | None:
    """The payload's `by`, read leniently so that a refused command's claim is kept too."""
    if len(payload) > max_bytes:
        return None
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    by = data.get("by") if isinstance(data, dict) else None
    return by[:64] if isinstance(by, str) and by.strip() else None
