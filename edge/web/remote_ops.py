"""/healthz, /readyz and /metrics of the web process, answered by the line process.

Its own module, with its imports at module level: FastAPI resolves each route's annotations
(postponed by `from __future__ import annotations`) in the module's globals when it builds
the OpenAPI document, so a name imported inside a function there breaks `/openapi.json`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from edge.ops.metrics import CONTENT_TYPE


def ops_router(remote: Any) -> APIRouter:
    """The probe routes of the web process; `remote` calls into the line process."""
    r = APIRouter(tags=["ops"])

    @r.get("/healthz")
    def healthz() -> JSONResponse:
        body = remote.call("liveness")
        return JSONResponse(body, status_code=200 if body["alive"] else 503)

    @r.get("/readyz")
    def readyz() -> JSONResponse:
        body = remote.call("readiness")
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @r.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(remote.call("metrics"), media_type=CONTENT_TYPE)

    return r
