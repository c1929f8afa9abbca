"""Every route needs a session and the right role: walked over the OpenAPI route list.

The walk runs against the web UI as it ships (its own process, real HTTP on its port) and
against the in-process layout (`web.isolated: false`): each has its own probe routes.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from edge.web.server import create_app

import web_support as ws

PUBLIC = {"/login", "/healthz", "/readyz", "/metrics"}
ALL = {"operator", "technician", "qa", "admin"}

#: The plant's access matrix, written out here rather than read from the code.
EXPECTED: list[tuple[str, str, set[str]]] = [
    ("POST", r"^/api/line/batch/", {"operator"}),
    ("POST", r"^/api/line/deviations/.+/ack$", {"operator", "technician"}),
    ("POST", r"^/api/deviations/.+/investigate$", {"technician", "qa"}),
    ("POST", r"^/api/line/alarms/", {"operator", "technician"}),
    ("*", r"^/(hmi|api/line/|images/|api/me|openapi\.json|logout|$)", ALL),
    ("GET", r"^/api/jobs/", {"technician", "qa"}),
    ("POST", r"^/api/jobs/", {"technician"}),
    ("*", r"^/(tech/|api/tech/)", {"technician"}),
    ("POST", r"^/api/models/.+/(approve|rollback)$", {"qa"}),
    ("POST", r"^/api/(recipes|products)/.+/approve$", {"qa"}),
    ("POST", r"^/api/recipes/.+/preview$", {"technician", "qa"}),
    ("GET", r"^/recipes", {"technician", "qa"}),
    ("POST", r"^/api/products$", {"technician"}),
    ("POST", r"^/api/products/import$", {"technician"}),
    ("GET", r"^/products/new$", {"technician"}),
    ("GET", r"^/products", {"technician", "qa"}),
    ("GET", r"^/api/(recipes|products)", {"technician", "qa"}),
    ("POST", r"^/api/models/.+/discard$", {"technician"}),  # a failed job's leftover
    ("*", r"^/(models|api/models/)", {"technician", "qa"}),
    ("POST", r"^/api/reports/.+/sign$", {"qa"}),
    ("*", r"^/(reports|api/reports/)", {"operator", "technician", "qa"}),
    ("GET", r"^/deviations$", {"operator", "technician", "qa"}),
    ("*", r"^/(qa/|api/qa/)", {"qa"}),
    ("*", r"^/(admin/|api/admin/)", {"admin"}),
]


def allowed(method: str, path: str) -> set[str]:
    for m, pattern, roles in EXPECTED:
        if m in ("*", method) and re.search(pattern, path):
            return roles
    raise AssertionError(f"route {method} {path} is missing from the access matrix")


@dataclass
class Layout:
    name: str
    client: Callable[[], httpx.Client]


@pytest.fixture(scope="module", params=["own process", "in process"])
def app(request, tmp_path_factory):
    from edge.inspect import registry

    from fake_tools import BehaviourParams

    tmp = tmp_path_factory.mktemp("routes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.TOOLS, "behaviour", BehaviourParams)
        appl = ws.appliance(tmp, imgs=[])
        ws.add_users(appl)
        if request.param == "own process":
            with ws.web_process(appl) as web:
                yield Layout(request.param, lambda: ws.http(web))
        else:
            appl.start()
            in_process = create_app(appl)
            yield Layout(request.param, lambda: TestClient(in_process))
            appl.stop()


def routes(app) -> list[tuple[str, str]]:
    with app.client() as c:
        ws.login(c, "ada")
        r = c.get("/openapi.json")
        assert r.status_code == 200, f"{app.name}: /openapi.json gave {r.status_code}: {r.text}"
        spec = r.json()
    out = []
    for path, ops in spec["paths"].items():
        for method in ops:
            out.append((method.upper(), path))
    return sorted(out)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_route_list_is_served_to_logged_in_users_only(app):
    with app.client() as c:
        assert c.get("/openapi.json").status_code == 401
        for user in ws.PASSWORDS:
            ws.login(c, user)
            r = c.get("/openapi.json")
            assert r.status_code == 200, f"{app.name}: {user} got {r.status_code}: {r.text}"
            assert "/hmi" in r.json()["paths"]
            assert {"/healthz", "/readyz", "/metrics"} <= set(r.json()["paths"])


def test_every_route_refuses_nobody_and_the_wrong_roles_and_admits_the_right_ones(app):
    rs = routes(app)
    assert len(rs) > 30
    clients = {}
    for role, user in ws.USER_OF_ROLE.items():
        c = app.client()
        clients[role] = (c, ws.login(c, user))
    nobody = app.client()
    checked = 0
    for method, path in rs:
        url = concrete(path)
        if path in PUBLIC:
            continue
        r = nobody.request(method, url, json={})
        assert r.status_code == 401, f"{method} {path} without a session gave {r.status_code}"
        roles = allowed(method, path)
        for role, (c, csrf) in clients.items():
            if role in roles and (path in ("/logout", "/api/line/events")):
                continue  # would end the session / stream forever; covered elsewhere
            r = c.request(method, url, json={}, headers={"x-csrf-token": csrf})
            if role in roles:
                assert r.status_code not in (401, 403), f"{role} refused {method} {path}: {r.text}"
            else:
                assert r.status_code == 403, f"{role} reached {method} {path}: {r.status_code}"
            checked += 1
    assert checked > 100


def test_static_files_and_the_login_page_need_no_session(app):
    with app.client() as c:
        assert c.get("/login").status_code == 200
        assert c.get("/static/hmi.js").status_code == 200
        assert c.get("/static/../auth.py").status_code == 404


def test_every_route_annotation_resolves_where_fastapi_reads_it(tmp_path):
    """FastAPI evaluates each endpoint's postponed annotations in its module's globals (for
    OpenAPI and for responses): a name imported inside a function is not there. Checked for
    both layouts' apps, route by route, so the next such route names itself."""
    from edge.web.remote_ops import ops_router

    appl = ws.appliance(tmp_path, imgs=[])
    apps = {"own process": create_app(appl, ops=ops_router(None)), "in process": create_app(appl)}
    checked = 0
    for name, a in apps.items():
        for r in endpoints(a.routes):
            try:
                typing.get_type_hints(r.endpoint)
            except NameError as exc:
                raise AssertionError(f"{name}: {r.path} {r.endpoint.__qualname__}: {exc}") from None
            checked += 1
    assert checked > 60


def endpoints(routes: list) -> list[APIRoute]:
    """Every API route, included routers walked (FastAPI keeps them as nodes)."""
    out = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif getattr(r, "original_router", None) is not None:
            out += endpoints(r.original_router.routes)
    return out
