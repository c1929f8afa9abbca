"""Electronic signatures: who signed what, when, meaning what, and why.

The home of the `signatures` table. A signature is taken by the web layer (password
again and a reason, `edge.web.deps.esign`) and recorded here and in the audit trail,
whose entry hash it carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.store.db import Database


def add(db: Database, sig: dict[str, Any]) -> None:
    """Record a signature: username, full_name, meaning, target, reason, ts_utc, audit_hash."""
    with db.transaction() as c:
        c.execute(
            "INSERT INTO signatures (username, full_name, meaning, target, reason, ts_utc,"
            " audit_hash) VALUES (:username, :full_name, :meaning, :target, :reason, :ts_utc,"
            " :audit_hash)",
            sig,
        )


def for_target(db: Database, target: str) -> list[dict[str, Any]]:
    """Every signature on one record (e.g. `batch:<id>`, `model:<name>/<version>`), in order."""
    rows = db.conn.execute(
        "SELECT * FROM signatures WHERE target = ? ORDER BY id", (target,)
    ).fetchall()
    return [dict(r) for r in rows]


class SignatureRefused(Exception):
    """A signature not given: wrong password, locked or disabled account, no reason, wrong role."""


def sign(
    audit: Any,
    authenticate: Callable[..., dict[str, Any]],
    username: str,
    password: str,
    reason: str,
    meaning: str,
    target: str,
    roles: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An electronic signature: the signer gives the password again and a reason.

    The one way a signature is made, in the web UI (`edge.web.deps.esign`) and on the command
    line (`edge recipe approve`): `authenticate` is `Users.authenticate` (counts towards the
    lockout); the signature goes into the audit trail and this table with the entry's hash.
    `roles`, when given, are the roles whose signature means something here (QA approves).
    """
    from edge.store.audit import utc_now

    if not (reason or "").strip():
        raise SignatureRefused("a signature needs a reason")
    try:
        user = authenticate(username, password, purpose="signature", client=f"esign:{username}")
    except Exception as exc:
        why = getattr(exc, "why", None)
        audit.record(username or "?", "esign.refused", target=target, reason=why or str(exc))
        shown = why if why and type(exc).__name__ != "TooManyAttempts" else str(exc)
        raise SignatureRefused(f"signature refused: {shown}") from None
    if roles and user["role"] not in roles:
        audit.record(
            username, "esign.refused", target=target, reason=f"role {user['role']} may not sign"
        )
        raise SignatureRefused(
            f"signature refused: {meaning} needs the role {' or '.join(roles)}, "
            f"{username} is {user['role']}"
        )
    sig = {
        "username": user["username"],
        "full_name": user["full_name"],
        "meaning": meaning,
        "target": target,
        "reason": reason.strip(),
        "ts_utc": utc_now(),
    }
    entry = audit.record(username, "esign", target=target, new=sig, reason=reason.strip())
    sig["audit_hash"] = entry["hash"]
    add(audit.db, sig)
    return sig
