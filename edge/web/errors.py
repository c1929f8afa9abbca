"""Web requests that cannot be recorded answer 503 with a plain message, not a 500.

Every state-changing request writes the database (a login writes its session and an
audit entry). When the disk is full or failing, SQLite raises `OperationalError`
("database or disk is full", "disk I/O error") and file writes raise `OSError`
(ENOSPC, EIO). The user sees why and that the action was not done; the cause is logged.
"""

from __future__ import annotations

import errno
import html
import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

log = logging.getLogger(__name__)

#: errno values of a storage that cannot take writes
STORAGE_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS}

MESSAGE = (
    "The appliance cannot write its records right now ({cause}), so this action could not be"
    " recorded. Tell maintenance; when the alarm has cleared, check the result and try again."
)


def _cause(exc: BaseException) -> str:
    text = str(exc).lower()
    if "full" in text or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if "locked" in text or "busy" in text:
        return "the database is busy"
    if "read-only" in text or "readonly" in text or getattr(exc, "errno", None) == errno.EROFS:
        return "the storage is read-only"
    return "a disk or database error"


def unavailable(request: Request, exc: BaseException) -> Response:
    """503 with a message for people: an HTML page for a browser, JSON for the API."""
    msg = MESSAGE.format(cause=_cause(exc))
    log.error("%s %s: storage error: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": "60"}
    if "text/html" in request.headers.get("accept", ""):
        body = (
            "<!doctype html><title>Records unavailable</title>"
            f"<h1>Records unavailable</h1><p>{html.escape(msg)}</p>"
        )
        return HTMLResponse(body, status_code=503, headers=headers)
    return JSONResponse({"detail": msg}, status_code=503, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(sqlite3.OperationalError)
    async def _database(request: Request, exc: sqlite3.OperationalError) -> Response:
        return unavailable(request, exc)

    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: OSError) -> Response:
        if exc.errno in STORAGE_ERRNOS:
            return unavailable(request, exc)
        log.error("%s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)
