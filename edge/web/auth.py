"""Users, roles, passwords (argon2), login sessions and CSRF tokens.

Roles: operator (HMI), technician (datasets, training), qa (approve models, audit,
sign reports), admin (users). A session is a random token in an HttpOnly SameSite
cookie, kept in the database (a restart of the web process logs nobody out) and
expired after the idle timeout; each session has its own CSRF token that every
state-changing request must echo. Repeated wrong passwords lock the account for the
client that sent them (`throttle.py`), and every refusal reads the same. Every user change
and every lockout goes to the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.web.throttle import MAX_FAILED, WINDOW_S, LoginThrottle

log = logging.getLogger(__name__)

ROLES = ("operator", "technician", "qa", "admin")
MIN_PASSWORD = 8
#: One answer for every refused login: unknown user, wrong password, locked, disabled.
REFUSED = "login refused: wrong user name or password, or the account is locked or disabled"
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")

_hasher = PasswordHasher()


class AuthError(Exception):
    """Login or signature refused; `why` is for the log and audit, the message for the user."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if password.strip() != password or not password.strip():
        raise ValueError("a password may not start or end with spaces")


class TooManyAttempts(AuthError):
    """This client failed too often lately; it may try again in `wait_s`."""

    def __init__(self, wait_s: float):
        mins = max(1, round(wait_s / 60))
        super().__init__(
            f"too many failed logins from this address: try again in {mins} min", "rate limit"
        )
        self.wait_s = wait_s


class UserStore:
    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit
        self.throttle = LoginThrottle()
        self._dummy: str | None = None  # a hash to verify against for unknown users (timing)

    def get(self, username: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return dict(row) if row else None

    def list(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT username, full_name, role, disabled, failed, locked_until, created_utc "
            "FROM users ORDER BY username"
        ).fetchall()
        return [dict(r) for r in rows]

    def count(self) -> int:
        return int(self.db.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def create(
        self, username: str, full_name: str, role: str, password: str, by: str, reason: str = ""
    ) -> dict[str, Any]:
        if not _USERNAME.match(username or ""):
            raise ValueError("user name: 2-32 characters, lower-case letters, digits, . _ -")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not full_name.strip():
            raise ValueError("a user needs a full name (it appears in signatures)")
        check_password_policy(password)
        if self.get(username):
            raise ValueError(f"user {username!r} already exists")
        now = time.time()
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO users (username, full_name, role, pw_hash, created_utc,"
                " password_changed_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (username, full_name.strip(), role, _hasher.hash(password), now, now),
            )
        self.audit.record(
            by,
            "user.create",
            target=username,
            new={"full_name": full_name.strip(), "role": role},
            reason=reason or None,
        )
        return self.get(username) or {}

    def set_role(self, username: str, role: str, by: str, reason: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        u = self._must(username)
        with self.db.transaction() as c:
            c.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
        self.audit.record(by, "user.role", username, old=u["role"], new=role, reason=reason)

    def set_disabled(self, username: str, disabled: bool, by: str, reason: str) -> None:
        u = self._must(username)
        with self.db.transaction() as c:
            c.execute(
                "UPDATE users SET disabled = ?, failed = 0, locked_until = NULL WHERE username = ?",
                (int(disabled), username),
            )
            if disabled:  # ends the user's sessions in every process (see Sessions.get)
                c.execute("DELETE FROM sessions WHERE username = ?", (username,))
        self.audit.record(
            by,
            "user.disable" if disabled else "user.enable",
            username,
            old={"disabled": bool(u["disabled"])},
            new={"disabled": disabled},
            reason=reason,
        )

    def set_password(self, username: str, password: str, by: str, reason: str) -> None:
        self._must(username)
        check_password_policy(password)
        with self.db.transaction() as c:
            c.execute(
                "UPDATE users SET pw_hash = ?, password_changed_utc = ?, failed = 0,"
                " locked_until = NULL WHERE username = ?",
                (_hasher.hash(password), time.time(), username),
            )
            c.execute("DELETE FROM sessions WHERE username = ?", (username,))
        self.audit.record(by, "user.password", username, reason=reason)  # never the password

    def _must(self, username: str) -> dict[str, Any]:
        u = self.get(username)
        if u is None:
            raise ValueError(f"no user {username!r}")
        return u

    def authenticate(
        self, username: str, password: str, *, purpose: str = "login", client: str = "local"
    ) -> dict:
        """The user, when the password is right and the account usable; AuthError otherwise.

        Every refusal says the same (`REFUSED`): unknown user, wrong password, disabled, or
        locked for this client; only `why` (log, audit) tells them apart, and one argon2
        verification runs in each case, so neither text nor timing reveals an account.
        Failures count per client and per account and client (`LoginThrottle`).
        """
        wait = self.throttle.client_wait_s(client)
        if wait:
            self._log_refusal(username or "-", purpose, f"client {client} over its budget")
            raise TooManyAttempts(wait)
        u = self.get(username or "")
        if self._dummy is None:
            self._dummy = _hasher.hash(secrets.token_hex(16))
        right = False
        try:
            right = _hasher.verify(u["pw_hash"] if u else self._dummy, password or "-")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass
        why = ""
        if u is None:
            why = "unknown user"
        elif self.throttle.locked(username, client):
            why = "account locked for this client"
        elif u["disabled"]:
            why = "account disabled"
        elif not right:
            why = "wrong password"
        if why:
            self._log_refusal(username or "-", f"{purpose} from {client}", why)
            if self.throttle.failed(username or "-", client) and u is not None:
                self.audit.record(
                    "system",
                    "user.lockout",
                    username,
                    new={"locked_minutes": int(WINDOW_S // 60), "client": client},
                    reason=f"{MAX_FAILED} failed {purpose}s in a row from {client}",
                )
            raise AuthError(REFUSED, why)
        self.throttle.succeeded(username, client)
        assert u is not None
        if u["failed"] or u["locked_until"]:  # from versions that locked accounts outright
            with self.db.transaction() as c:
                c.execute(
                    "UPDATE users SET failed = 0, locked_until = NULL WHERE username = ?",
                    (username,),
                )
        if _hasher.check_needs_rehash(u["pw_hash"]):
            with self.db.transaction() as c:
                c.execute(
                    "UPDATE users SET pw_hash = ? WHERE username = ?",
                    (_hasher.hash(password), username),
                )
        return u

    def _log_refusal(self, username: str, purpose: str, why: str) -> None:
        log.warning("%s refused for %s: %s", purpose, username, why)


# --------------------------------------------------------------------------- sessions


@dataclass
class Session:
    token: str
    username: str
    full_name: str
    role: str
    csrf: str
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)


class Sessions:
    """Login sessions with an idle timeout, kept in the database so that a restart of the
    web process (by the line's watchdog, or an update) does not log the panels out.

    Only a SHA-256 of each token is stored: a copy of the database opens no session.
    Role and name are read from the users table when a session is loaded, so a session
    never outlives its user's disabling or keeps an old role. Requests are served from
    memory; `last_seen` reaches the database at most every `PERSIST_S`, so the idle
    timeout after a restart is at most that much shorter, never longer.
    """

    PERSIST_S = 30.0

    def __init__(self, timeout_min: float, db: Database | None = None):
        self.timeout_s = timeout_min * 60.0
        self._by_token: dict[str, Session] = {}
        self._persisted: dict[str, float] = {}  # token -> last_seen written to the database
        self._lock = threading.Lock()
        self._conn = db.connect() if db is not None else None
        if self._conn is not None:
            # touches run on the event loop: never wait long for the recorder's write lock
            self._conn.execute("PRAGMA busy_timeout=200")

    def create(self, user: dict[str, Any]) -> Session:
        s = Session(
            token=secrets.token_urlsafe(32),
            username=user["username"],
            full_name=user["full_name"],
            role=user["role"],
            csrf=secrets.token_urlsafe(24),
        )
        with self._lock:
            self._by_token[s.token] = s
            self._write(
                "INSERT INTO sessions (token_sha256, username, csrf, created_utc, last_seen_utc)"
                " VALUES (?, ?, ?, ?, ?)",
                (_digest(s.token), s.username, s.csrf, s.created, s.last_seen),
            )
            self._write(
                "DELETE FROM sessions WHERE last_seen_utc < ?", (s.created - self.timeout_s,)
            )
            self._persisted[s.token] = s.last_seen
        return s

    def get(self, token: str | None, *, touch: bool = True) -> tuple[Session | None, str]:
        """(session, "") or (None, why): why is "none", "unknown" or "expired"."""
        if not token:
            return None, "none"
        now = time.time()
        with self._lock:
            s = self._by_token.get(token) or self._load(token)
            if s is None:
                return None, "unknown"
            if now - s.last_seen > self.timeout_s:
                self._forget(token)
                return None, "expired"
            if touch:
                s.last_seen = now
                if now - self._persisted.get(token, 0.0) >= self.PERSIST_S:
                    n = self._write(
                        "UPDATE sessions SET last_seen_utc = ? WHERE token_sha256 = ?",
                        (now, _digest(token)),
                    )
                    if n == 0:  # ended elsewhere: user disabled or password changed
                        self._forget(token)
                        return None, "unknown"
                    self._persisted[token] = now
            return s, ""

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._forget(token or "")

    def drop_user(self, username: str) -> None:
        with self._lock:
            for t in [t for t, s in self._by_token.items() if s.username == username]:
                self._forget(t)
            self._write("DELETE FROM sessions WHERE username = ?", (username,))

    def update_user(self, username: str, role: str) -> None:
        with self._lock:
            for s in self._by_token.values():
                if s.username == username:
                    s.role = role

    def _load(self, token: str) -> Session | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT s.*, u.full_name, u.role, u.disabled FROM sessions s"
            " JOIN users u USING (username) WHERE s.token_sha256 = ?",
            (_digest(token),),
        ).fetchone()
        if row is None or row["disabled"]:
            return None
        s = Session(
            token=token,
            username=row["username"],
            full_name=row["full_name"],
            role=row["role"],
            csrf=row["csrf"],
            created=row["created_utc"],
            last_seen=row["last_seen_utc"],
        )
        self._by_token[token] = s
        self._persisted[token] = s.last_seen
        return s

    def _forget(self, token: str) -> None:
        self._by_token.pop(token, None)
        self._persisted.pop(token, None)
        self._write("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))

    def _write(self, sql: str, params: tuple[Any, ...]) -> int | None:
        """Rows changed; None when not written. Best effort: a session in memory stays
        valid while the database is busy or full."""
        if self._conn is None:
            return None
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            log.warning("session store not updated (%s): %s", sql.split()[0], exc)
            return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_ok(session: Session, supplied: str | None) -> bool:
    # as bytes: compare_digest refuses (TypeError) str that is not ASCII
    return bool(supplied) and hmac.compare_digest(session.csrf.encode(), (supplied or "").encode())
