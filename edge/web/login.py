"""Logging in and out: the login form's own CSRF token, per-client limits, cookie flags.

Before there is a session there is no session CSRF token, so the login form carries its
own: a random nonce in an HttpOnly SameSite cookie, and in the form the nonce's HMAC under
the web UI's key (`web.session_key_file`). A page on another site can neither read the
form's token nor send the cookie, so it cannot log a browser into an account of its
choosing (login CSRF); a cookie planted from a sibling host does not help without the key.

Cookies get `Secure` when the request came over TLS (`web.secure_cookies`: auto, always,
never); TLS terminated by a reverse proxy counts only for `web.trusted_proxies`, whose
X-Forwarded-Proto and X-Forwarded-For the server then believes (see `make_server`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from edge.publish.secrets import SecretError, read_secret
from edge.web.auth import AuthError, Session, TooManyAttempts
from edge.web.deps import ALL_ROLES, COOKIE, HOME, WebContext, ctx_of, page, require

log = logging.getLogger(__name__)

router = APIRouter()

LOGIN_COOKIE = "edge_login"
MIN_KEY_CHARS = 32
_NONCE = re.compile(r"^[A-Za-z0-9_-]{32}$")
EXPIRED = "the login form expired or came from another page: log in again"


def login_key(web_cfg: Any) -> bytes:
    """The key that signs login-form tokens: `web.session_key_file`, else random per start."""
    if web_cfg.session_key_file is None:
        return secrets.token_bytes(32)
    try:
        key = read_secret(web_cfg.session_key_file)
    except SecretError as exc:
        raise ValueError(f"web.session_key_file: {exc}") from None
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(
            f"web.session_key_file: the key has {len(key)} characters, at least "
            f"{MIN_KEY_CHARS} are needed (e.g. `python3 -c 'import secrets; "
            "print(secrets.token_hex(32))'`)"
        )
    return key.encode()


def form_token(key: bytes, nonce: str) -> str:
    mac = hmac.new(key, b"login-csrf:" + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def client_of(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client else "unknown"


def secure(request: Request) -> bool:
    mode = ctx_of(request).pipeline.cfg.web.secure_cookies
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def safe_next(nxt: str) -> str:
    """Only local paths: a login link must not send the user to another site."""
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


def _form(request: Request, status: int = 200, **data: Any) -> Response:
    """The login page with a token for this browser's nonce (a new nonce when it has none)."""
    ctx = ctx_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if not _NONCE.match(nonce):
        nonce = secrets.token_urlsafe(24)
    data.setdefault("no_users", False)
    resp = page(request, "login.html", login_csrf=form_token(ctx.login_key, nonce), **data)
    resp.status_code = status
    resp.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/login",
        max_age=12 * 3600,
    )
    return resp


@router.get("/login")
def login_page(request: Request, next: str = "/", why: str = "") -> Response:
    ctx = ctx_of(request)
    return _form(request, next=safe_next(next), error=why, no_users=ctx.users.count() == 0)


@router.post("/login")
def login(
    request: Request,
    username: str = Form(..., max_length=64),
    password: str = Form(..., max_length=256),
    next: str = Form("/"),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    ctx: WebContext = ctx_of(request)
    client = client_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if not (
        _NONCE.match(nonce)
        and hmac.compare_digest(csrf_token.encode(), form_token(ctx.login_key, nonce).encode())
    ):
        log.warning("login form token refused from %s (user %s)", client, username[:64])
        return _form(request, 403, next=safe_next(next), error=EXPIRED, username=username)
    try:
        user = ctx.users.authenticate(username.strip().lower(), password, client=client)
    except TooManyAttempts as exc:
        resp = _form(request, 429, next=safe_next(next), error=str(exc), username=username)
        resp.headers["Retry-After"] = str(int(exc.wait_s) + 1)
        return resp
    except AuthError as exc:
        return _form(request, next=safe_next(next), error=str(exc), username=username)
    s = ctx.sessions.create(user)
    ctx.audit.record(s.username, "session.login", target=s.username, new={"client": client})
    dest = safe_next(next)
    if dest == "/":
        dest = HOME.get(s.role, "/")
    resp = RedirectResponse(dest, status_code=303)
    resp.set_cookie(
        COOKIE,
        s.token,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/",
        max_age=int(ctx.pipeline.cfg.web.session_timeout_min * 60 * 8),
    )
    return resp


@router.post("/logout")
def logout(request: Request, s: Session = Depends(require(*ALL_ROLES))) -> Response:
    ctx = ctx_of(request)
    ctx.sessions.drop(request.cookies.get(COOKIE))
    ctx.audit.record(s.username, "session.logout", target=s.username)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/", secure=secure(request), httponly=True, samesite="strict")
    return resp
