"""The appliance's web server: HMI, technician pages, QA and admin, one FastAPI app.

Everything except the login page, static files and the health routes needs a
session with the right role (see `deps.require`); pages are server-rendered
Jinja2 with small vendored scripts, live data arrives over Server-Sent Events.
"""

from __future__ import annotations

import importlib
import logging
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from edge.store.audit import AuditTrail
from edge.web import (
    admin,
    anomaly,
    classes,
    datasets,
    deviations,
    errors,
    evidence,
    hmi,
    images,
    login,
    models,
    products,
    recipe_editor,
    recipes,
    reports,
    training,
    uploads,
)
from edge.web.auth import Session, Sessions, UserStore
from edge.web.deps import ALL_ROLES, HOME, LoginRequired, WebContext, require
from edge.web.hub import Hub
from edge.web.metrics_view import metric_tables

log = logging.getLogger(__name__)

_PKG = resources.files("edge.web")


def create_app(appliance: Any, *, hub: Hub | None = None, ops: Any = None) -> FastAPI:
    cfg = appliance.cfg
    db = appliance.pipeline.db
    audit = getattr(appliance, "audit", None) or AuditTrail(db)
    state_dir = Path(cfg.records.state_dir)
    templates = Jinja2Templates(directory=str(_PKG / "templates"))
    templates.env.globals["metric_tables"] = metric_tables  # the models page's figures
    templates.env.globals["plain_error"] = errors.explain_failure  # a failed candidate's cause
    ctx = WebContext(
        appliance=appliance,
        audit=audit,
        users=UserStore(db, audit),
        sessions=Sessions(cfg.web.session_timeout_min, db),
        hub=hub or Hub(appliance),
        templates=templates,
        state_dir=state_dir,
        login_key=login.login_key(cfg.web),
    )
    app = FastAPI(
        title="edge-inspect", version=_version(), docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.ctx = ctx
    errors.install(app)  # a full or failing disk: 503 with a plain message, not a 500
    app.mount("/static", StaticFiles(directory=str(_PKG / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            nxt = quote(request.url.path)
            return RedirectResponse(f"/login?next={nxt}&why={quote(exc.detail)}", status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=401)

    @app.get("/")
    def home(s: Session = Depends(require(*ALL_ROLES))) -> Response:
        return RedirectResponse(HOME.get(s.role, "/hmi"), status_code=303)

    @app.get("/openapi.json")
    def openapi(_s: Session = Depends(require(*ALL_ROLES))) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/me")
    def me(s: Session = Depends(require(*ALL_ROLES))) -> dict[str, Any]:
        return {"username": s.username, "full_name": s.full_name, "role": s.role, "csrf": s.csrf}

    app.include_router(login.router)
    app.include_router(hmi.router)
    app.include_router(evidence.router)
    # the technician's work, one router per task: images and labels, datasets, training, models
    app.include_router(images.router)
    app.include_router(classes.router)
    app.include_router(datasets.router)
    app.include_router(training.router)
    app.include_router(anomaly.router)
    app.include_router(models.router)
    app.include_router(recipes.router)
    app.include_router(products.router)
    app.include_router(recipe_editor.router)
    app.include_router(uploads.router)
    app.include_router(reports.router)
    app.include_router(deviations.router)
    app.include_router(admin.router)
    if ops is not None:  # the web UI in its own process asks the line for these
        app.include_router(ops)
    else:
        _include_ops(app, appliance)
    app.add_middleware(SecureHeaders)
    return app


def _include_ops(app: FastAPI, appliance: Any) -> None:
    """Health and metrics routes (public) from edge.ops.routes, when that module exists."""
    try:
        mod = importlib.import_module("edge.ops.routes")
    except ImportError:
        return
    try:
        app.include_router(mod.router(appliance))
    except Exception:
        log.exception("health/metrics routes could not be mounted")


_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    ),
]


class SecureHeaders:
    """Plain ASGI middleware (no buffering, so the event stream flows as it is written)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), *_HEADERS]}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def _version() -> str:
    try:
        from edge import __version__

        return str(__version__)
    except Exception:
        return "0"
