"""Shared set-up for the web UI tests: a real appliance on a list source, real users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

import edge.web.auth
from edge.app import Appliance
from edge.config import parse_config

from fake_tools import ListSource, grey

PASSWORDS = {
    "olga": ("operator", "Olga Operator", "op-secret-1"),
    "tom": ("technician", "Tom Technician", "tech-secret-1"),
    "quinn": ("qa", "Quinn Quality", "qa-secret-1"),
    "ada": ("admin", "Ada Admin", "admin-secret-1"),
}
# Still argon2id, with a small cost: the production parameters take ~1 s per hash on a
# shared 2-core machine, and every test creates four users.
edge.web.auth._hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

USER_OF_ROLE = {role: u for u, (role, _n, _p) in PASSWORDS.items()}


def config(tmp_path, **web: Any):
    return parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 2},
            "pipeline": {"workers": 1, "deadline_ms": 1000},
            "recipe": "t",
            "recipes": {
                "t": {
                    "name": "t",
                    "tools": [{"type": "behaviour", "find": "CRACK", "find_when_mean_below": 100}],
                    "classes": {"CRACK": {"severity": "critical", "action": "reject"}},
                }
            },
            "web": {"port": 0, **web},
            "inference": {"models_dir": str(tmp_path / "models")},
        }
    )


def images(n: int = 6) -> list:
    """Alternating good (bright) and cracked (dark) items, each image distinct."""
    return [grey(150 + i % 100) if i % 2 == 0 else grey(20 + i % 70) for i in range(n)]


def appliance(tmp_path, imgs=None, period_s: float = 0.0, **web: Any) -> Appliance:
    src = ListSource(images() if imgs is None else imgs, period_s=period_s, paced=period_s > 0)
    return Appliance(config(tmp_path, **web), source=src, components=False)


def add_users(app: Any) -> None:
    from edge.web.auth import UserStore

    users = UserStore(app.pipeline.db, app.audit)
    for u, (role, name, pw) in PASSWORDS.items():
        if users.get(u) is None:
            users.create(u, name, role, pw, by="shell:test", reason="test set-up")


def login_form(client: Any, username: str, password: str, **extra: Any) -> dict[str, str]:
    """The fields a browser posts from the login page it was served (its CSRF token too)."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    m = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert m, "the login form has no CSRF token"
    return {"username": username, "password": password, "csrf_token": m.group(1), **extra}


def post_login(client: Any, username: str, password: str, **kw: Any) -> Any:
    """Log in as a browser does: fetch the form, post it back."""
    next_ = kw.pop("next", "/")
    return client.post("/login", data=login_form(client, username, password, next=next_), **kw)


def login(client: TestClient, username: str, password: str | None = None) -> str:
    """Log in through the form; returns the session's CSRF token."""
    pw = password or PASSWORDS[username][2]
    r = post_login(client, username, pw, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/api/me").json()["csrf"]


@contextmanager
def web_process(appl: Any) -> Iterator[Any]:
    """The web UI as it ships: in its own process beside the running line (`web.isolated`)."""
    from edge.web.isolated import IsolatedWeb

    web = IsolatedWeb(appl)
    appl.start()
    web.start()
    try:
        assert web.status()["up"], web.status()
        yield web
    finally:
        appl.stop()
        web.stop()


def http(web: Any, **kw: Any) -> httpx.Client:
    """A browser's view of the web process: real HTTP on its port."""
    return httpx.Client(base_url=web.url, timeout=30, **kw)


def http_from(web: Any, address: str, **kw: Any) -> httpx.Client:
    """A browser on another machine: the connection comes from `address` (any 127.x.y.z)."""
    return http(web, transport=httpx.HTTPTransport(local_address=address), **kw)
