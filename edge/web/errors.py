"""Errors reach people as sentences, not as Python messages.

Every state-changing request writes the database (a login writes its session and an
audit entry). When the disk is full or failing, SQLite raises `OperationalError`
("database or disk is full", "disk I/O error") and file writes raise `OSError`
(ENOSPC, EIO): those answer 503 and the user sees why and that the action was not done.
A form that does not validate answers 422 with one sentence naming each field and what it
must be; a refusal raised with a library's message (a `KeyError`'s quoted key, an
exception's class name) is cleaned up; a failed job's error is explained where the cause
is known; anything unexpected answers 500 with what to do, never a traceback. The cause
is always logged.
"""

from __future__ import annotations

import errno
import html
import logging
import re
import sqlite3
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

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


UNEXPECTED = (
    "The appliance could not complete this because of an unexpected error (logged at {when}"
    " UTC). Check whether it was done, try again, and tell maintenance if it happens again."
)

#: pydantic's messages, said as a technician reads them ("epochs must be at most 300")
_FIELD_MESSAGES: list[tuple[str, str]] = [
    (r"Input should be less than or equal to (.+)", "must be at most {0}"),
    (r"Input should be greater than or equal to (.+)", "must be at least {0}"),
    (r"Input should be less than (.+)", "must be less than {0}"),
    (r"Input should be greater than (.+)", "must be more than {0}"),
    (r"Input should be a multiple of (.+)", "must be a multiple of {0}"),
    (r"Input should be a valid integer.*", "must be a whole number"),
    (r"Input should be a valid number.*", "must be a number"),
    (r"Input should be a valid boolean.*", "must be yes or no"),
    (r"Input should be a valid string.*", "must be text"),
    (r"Input should be a valid list.*", "must be a list"),
    (r"Field required", "is missing"),
    (r"String should have at least (\d+) characters?", "needs at least {0} characters"),
    (r"String should have at most (\d+) characters?", "may have at most {0} characters"),
    (r"List should have at least (\d+) items?.*", "needs at least {0}"),
    (r"List should have at most (\d+) items?.*", "may have at most {0}"),
    (r"Input should be (.+)", "must be {0}"),
    (r"Value error, (.+)", "{0}"),
]

#: causes of failed jobs that a technician can act on, by the words of the failure
_FAILURES: list[tuple[str, str]] = [
    (
        r"Too many bins for data range|finite-sized bins",
        "Quantisation to INT8 failed: part of the model gives almost the same value on every"
        " calibration image. Train longer or on more varied images, then try again.",
    ),
    (
        r"CUDA out of memory|Cannot allocate memory|MemoryError",
        "The job ran out of memory. Use a smaller image size or batch, then try again.",
    ),
    (
        r"No space left on device",
        "The disk is full. Free space (or ask maintenance to), then try again.",
    ),
    (
        r"detects nothing",
        "The model found no defects on the check images: label more defect images (or train"
        " longer), then try again.",
    ),
]


def field_message(error: dict[str, Any]) -> str:
    """What is wrong with one field, said as a technician reads it ('must be at most 300'),
    for a message shown beside the field itself."""
    msg = str(error.get("msg", "is not valid"))
    for pattern, said in _FIELD_MESSAGES:
        m = re.fullmatch(pattern, msg)
        if m:
            return said.format(*m.groups())
    return msg


def field_sentence(error: dict[str, Any]) -> str:
    """One validation error as 'field must be …'."""
    loc = [str(x) for x in error.get("loc", ()) if x not in ("body", "query", "path", "form")]
    field = " ".join(loc).replace("_", " ") or "the request"
    return f"{field} {field_message(error)}"


def validation_sentence(errors: list[dict[str, Any]]) -> str:
    parts = [field_sentence(e) for e in errors[:6]]
    return ("Please check: " + "; ".join(parts) + ".") if parts else "The request is not valid."


def plain(detail: Any) -> Any:
    """A refusal's message without Python's wrapping: a `KeyError`'s quotes, an exception
    class name in front. Anything not a string is left as it is."""
    if not isinstance(detail, str):
        return detail
    text = detail.strip()
    m = re.fullmatch(r"(?:[A-Za-z_.]*(?:Error|Exception)): (.+)", text, flags=re.S)
    if m:
        text = m.group(1).strip()
    m = re.fullmatch(r"'([^']+)'", text) or re.fullmatch(r'"([^"]+)"', text)
    if m:
        text = f"{m.group(1)} was not found"
    return text


def explain_failure(error: str | None) -> str | None:
    """A failed job's error as a sentence a technician can act on, where the cause is known."""
    if not error:
        return None
    for pattern, sentence in _FAILURES:
        if re.search(pattern, error):
            return sentence
    first = plain(error.strip().splitlines()[-1] if error.strip() else error)
    return f"The job stopped: {first}"


TITLES = {403: "Not allowed", 404: "Not found", 409: "Not now", 422: "Please check"}


def answer(
    request: Request, status: int, msg: Any, headers: dict[str, str] | None = None
) -> Response:
    """The sentence as a page for a browser opening a page, as JSON for the page's scripts."""
    if isinstance(msg, str) and "text/html" in request.headers.get("accept", ""):
        title = TITLES.get(status, "Could not be done")
        body = (
            f"<!doctype html><meta charset=utf-8><title>{title}</title>"
            '<link rel="stylesheet" href="/static/app.css"><main class="card">'
            f"<h1>{title}</h1><p>{html.escape(msg)}</p>"
            '<p><a class="btn" href="javascript:history.back()">Back</a></p></main>'
        )
        return HTMLResponse(body, status_code=status, headers=headers)
    return JSONResponse({"detail": msg}, status_code=status, headers=headers)


def unexpected(request: Request, exc: BaseException) -> Response:
    when = time.strftime("%H:%M:%S", time.gmtime())
    log.exception("%s %s: unexpected %r", request.method, request.url.path, exc, exc_info=exc)
    return answer(request, 500, UNEXPECTED.format(when=when))


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return answer(request, exc.status_code, plain(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_input(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, 422, validation_sentence(list(exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected(request, exc)

    @app.exception_handler(sqlite3.OperationalError)
    async def _database(request: Request, exc: sqlite3.OperationalError) -> Response:
        return unavailable(request, exc)

    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: OSError) -> Response:
        if exc.errno in STORAGE_ERRNOS:
            return unavailable(request, exc)
        return unexpected(request, exc)
