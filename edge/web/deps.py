"""What every route shares: the web context, the session/role/CSRF check, e-signatures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from edge.store import signatures
from edge.store.audit import AuditTrail
from edge.web.auth import Session, Sessions, UserStore, csrf_ok

log = logging.getLogger(__name__)

COOKIE = "edge_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ALL_ROLES = ("operator", "technician", "qa", "admin")

#: Which role reaches what (the OpenAPI walk in the tests holds the routes to this).
LINE_VIEW = ALL_ROLES
LINE_CONTROL = ("operator",)
ALARM_ACK = ("operator", "technician")
TECH = ("technician",)
MODELS_VIEW = ("technician", "qa")
QA = ("qa",)
REPORTS_VIEW = ("operator", "technician", "qa")
ADMIN = ("admin",)

HOME = {
    "operator": "/hmi",
    "technician": "/tech/images",
    "qa": "/qa/audit",
    "admin": "/admin/users",
}


@dataclass
class WebContext:
    appliance: Any
    audit: AuditTrail
    users: UserStore
    sessions: Sessions
    hub: Any
    templates: Jinja2Templates
    state_dir: Path
    jobs: Any = None
    shadow: Any = None
    login_key: bytes = b""  # signs the login form's CSRF token (login.py)

    @property
    def pipeline(self) -> Any:
        return self.appliance.pipeline


def ctx_of(request: Request) -> WebContext:
    return request.app.state.ctx


class LoginRequired(HTTPException):
    def __init__(self, detail: str):
        super().__init__(401, detail)


def require(*roles: str):
    """Dependency: a live session with one of `roles`; CSRF token on state-changing methods."""
    allowed = set(roles)

    async def dep(request: Request) -> Session:
        ctx = ctx_of(request)
        s, why = ctx.sessions.get(request.cookies.get(COOKIE))
        if s is None:
            if why == "expired":
                log.warning("expired session refused: %s %s", request.method, request.url.path)
                raise LoginRequired("session expired: log in again")
            raise LoginRequired("login required")
        if s.role not in allowed:
            log.warning(
                "%s (%s) refused %s %s", s.username, s.role, request.method, request.url.path
            )
            raise HTTPException(403, f"the {s.role} role may not do this")
        if request.method not in SAFE_METHODS:
            token = request.headers.get("x-csrf-token")
            ctype = request.headers.get("content-type", "")
            if token is None and ctype.startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                form = await request.form()
                v = form.get("csrf_token")
                token = v if isinstance(v, str) else None
            if not csrf_ok(s, token):
                log.warning(
                    "CSRF token refused for %s: %s %s", s.username, request.method, request.url.path
                )
                ctx.audit.record(
                    s.username,
                    "security.csrf_refused",
                    target=f"{request.method} {request.url.path}",
                    reason="missing or wrong CSRF token",
                )
                raise HTTPException(403, "CSRF token missing or wrong: reload the page")
        request.state.session = s
        return s

    return dep


class Signed(BaseModel):
    """The body of every e-signed action: the signer's password again, and a reason."""

    password: str = Field(..., min_length=1, max_length=256)
    reason: str = Field(..., min_length=3, max_length=500)


def esign(
    ctx: WebContext, s: Session, password: str, reason: str, meaning: str, target: str
) -> dict[str, Any]:
    """An electronic signature: the signer re-enters the password and gives a reason.

    Stored (name, time, meaning, reason) in the signatures table and in the audit trail.
    Raises HTTPException 403 when the password is wrong (counts towards lockout).
    """
    if not (reason or "").strip():
        raise HTTPException(422, "a signature needs a reason")
    try:
        # counted per signer: only the signer's own sessions can try their password here
        return signatures.sign(
            ctx.audit, ctx.users.authenticate, s.username, password, reason, meaning, target
        )
    except signatures.SignatureRefused as exc:
        raise HTTPException(403, str(exc)) from None


def signatures_for(ctx: WebContext, target: str) -> list[dict[str, Any]]:
    return signatures.for_target(ctx.audit.db, target)


def page(request: Request, name: str, **data: Any):
    """Render a template with the session, its CSRF token and the nav for its role."""
    ctx = ctx_of(request)
    s: Session | None = getattr(request.state, "session", None)
    return ctx.templates.TemplateResponse(
        request,
        name,
        {
            "session": s,
            "csrf": s.csrf if s else "",
            "station": ctx.pipeline.cfg.station.id,
            "nav": nav_for(s.role if s else None),
            **data,
        },
    )


def nav_for(role: str | None) -> list[tuple[str, str]]:
    items = [
        ("/hmi", "Line", LINE_VIEW),
        ("/tech/images", "Images", TECH),
        ("/tech/datasets", "Datasets", TECH),
        ("/tech/train", "Training", TECH),
        ("/tech/anomaly", "Teach", TECH),
        ("/models", "Models", MODELS_VIEW),
        ("/products", "Products", MODELS_VIEW),
        ("/recipes", "Recipes", MODELS_VIEW),
        ("/reports", "Reports", REPORTS_VIEW),
        ("/deviations", "Deviations", REPORTS_VIEW),
        ("/qa/audit", "Audit", QA),
        ("/admin/users", "Users", ADMIN),
    ]
    return [(href, label) for href, label, roles in items if role in roles]
