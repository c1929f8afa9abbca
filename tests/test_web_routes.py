"""Every route needs a session and the right role: walked over the OpenAPI route list."""

from __future__ import annotations

import re

import pytest
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


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from edge.inspect import registry

    tmp = tmp_path_factory.mktemp("routes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.TOOLS, "behaviour", "fake_tools:BehaviourTool")
        appl = ws.appliance(tmp, imgs=[])
        ws.add_users(appl)
        appl.start()
        yield create_app(appl)
        appl.stop()


def routes(app) -> list[tuple[str, str]]:
    with TestClient(app) as c:
        ws.login(c, "ada")
        spec = c.get("/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method in ops:
            out.append((method.upper(), path))
    return sorted(out)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_route_list_is_served_to_logged_in_users_only(app):
    with TestClient(app) as c:
        assert c.get("/openapi.json").status_code == 401
        ws.login(c, "olga")
        assert "/hmi" in c.get("/openapi.json").json()["paths"]


def test_every_route_refuses_nobody_and_the_wrong_roles_and_admits_the_right_ones(app):
    rs = routes(app)
    assert len(rs) > 30
    clients = {}
    for role, user in ws.USER_OF_ROLE.items():
        c = TestClient(app)
        clients[role] = (c, ws.login(c, user))
    nobody = TestClient(app)
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
    with TestClient(app) as c:
        assert c.get("/login").status_code == 200
        assert c.get("/static/hmi.js").status_code == 200
        assert c.get("/static/../auth.py").status_code == 404
