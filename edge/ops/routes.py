"""HTTP routes for probes and scraping: /healthz, /readyz, /metrics.

`router(appliance)` is included by the web UI; the routes need no login (they reveal
counts and up/down, no product data), so bind the web UI to a trusted network.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from edge.ops import health
from edge.ops.metrics import CONTENT_TYPE, Metrics


def router(appliance: Any) -> APIRouter:
    r = APIRouter(tags=["ops"])
    metrics = Metrics.of(appliance)

    @r.get("/healthz")
    def healthz() -> JSONResponse:
        body = health.liveness(appliance)
        return JSONResponse(body, status_code=200 if body["alive"] else 503)

    @r.get("/readyz")
    def readyz() -> JSONResponse:
        body = health.readiness(appliance)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @r.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return r
