"""Logging in over the web: the form's own CSRF token, one answer for every refusal, limits
per client that let nobody lock a person out, and cookies marked Secure behind TLS.
Against the web UI in its own process, from several client addresses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from fastapi.testclient import TestClient

from edge.web.auth import REFUSED, UserStore
from edge.web.isolated import IsolatedWeb
from edge.web.server import create_app
from edge.web.throttle import CLIENT_MAX_FAILED, MAX_FAILED

import web_support as ws


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from edge.inspect import registry

    from fake_tools import BehaviourParams

    tmp = tmp_path_factory.mktemp("login")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.TOOLS, "behaviour", BehaviourParams)
        appl = ws.appliance(tmp, imgs=[])
        ws.add_users(appl)
        UserStore(appl.pipeline.db, appl.audit).set_disabled("quinn", True, "shell:t", "left")
        with ws.web_process(appl) as w:
            w.appl = appl
            yield w


def error_of(r) -> str:
    m = re.search(r'<p class="error" id="login-error">([^<]*)</p>', r.text)
    assert m, r.text[:500]
    return m.group(1)


def test_a_login_needs_the_token_of_the_form_this_browser_was_served(web):
    with ws.http_from(web, "127.0.0.2") as c, ws.http_from(web, "127.0.0.2") as other:
        # a page on another site posts the form blind: no token, no login cookie
        r = c.post(
            "/login",
            data={"username": "olga", "password": "op-secret-1"},
            follow_redirects=False,
        )
        assert r.status_code == 403 and "edge_session" not in c.cookies
        assert "expired or came from another page" in error_of(r)
        # nor does a token from another browser's form fit this browser's cookie
        stolen = ws.login_form(other, "olga", "op-secret-1")
        c.cookies.set("edge_login", "A" * 32, path="/login")  # planted, with no key to sign
        r = c.post("/login", data=stolen, follow_redirects=False)
        assert r.status_code == 403 and "edge_session" not in c.cookies
        forged = {**ws.login_form(c, "olga", "op-secret-1"), "csrf_token": "jé-ñ"}
        assert c.post("/login", data=forged).status_code == 403  # not a 500
        # the form as served logs in
        r = ws.post_login(c, "olga", "op-secret-1", follow_redirects=False)
        assert r.status_code == 303 and "edge_session" in c.cookies
        login_cookie = [h for h in r.headers.get_list("set-cookie") if "edge_session" in h]
        assert login_cookie and "secure" not in login_cookie[0].lower()  # plain http here
        r = c.post("/api/line/batch/stop", json={}, headers={"x-csrf-token": b"\xe9t\xe9"})
        assert r.status_code == 403


def test_every_refused_login_reads_the_same_and_guesses_lock_only_the_guessing_client(web):
    with ws.http_from(web, "127.0.0.3") as a, ws.http_from(web, "127.0.0.4") as b:
        for _ in range(MAX_FAILED):
            r = ws.post_login(a, "tom", "guess-1234")
            assert r.status_code == 200 and error_of(r) == REFUSED
        answers = {
            "unknown user": ws.post_login(a, "nobody", "whatever-1"),
            "wrong password": ws.post_login(a, "olga", "not-her-password"),
            "disabled account, right password": ws.post_login(a, "quinn", "qa-secret-1"),
            "locked for this client, right password": ws.post_login(a, "tom", "tech-secret-1"),
        }
        for why, r in answers.items():
            assert (r.status_code, error_of(r)) == (200, REFUSED), why
            assert "edge_session" not in a.cookies, why
        # the guesses came from a: tom at his own panel still logs in
        r = ws.post_login(b, "tom", "tech-secret-1", follow_redirects=False)
        assert r.status_code == 303, error_of(r)
    lockouts = web.appl.audit.entries(action="user.lockout")
    assert [(e["target"], '"client":"127.0.0.3"' in e["new"]) for e in lockouts] == [("tom", True)]


def test_a_client_that_keeps_failing_is_held_off_whatever_names_it_tries(web):
    with ws.http_from(web, "127.0.0.5") as c, ws.http_from(web, "127.0.0.6") as d:
        for i in range(CLIENT_MAX_FAILED):
            r = ws.post_login(c, "ada", f"guess-{i:04d}")
            assert r.status_code == 200, r.status_code
        r = ws.post_login(c, "olga", "op-secret-1", follow_redirects=False)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 60
        assert "too many failed logins from this address" in error_of(r)
        assert "edge_session" not in c.cookies
        r = ws.post_login(d, "olga", "op-secret-1", follow_redirects=False)
        assert r.status_code == 303


def test_cookies_are_secure_behind_tls_from_a_trusted_proxy_only(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[], trusted_proxies=["127.0.0.1"])
    ws.add_users(appl)

    def session_cookie(c, **headers) -> str:
        form = ws.login_form(c, "olga", "op-secret-1")
        r = c.post("/login", data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 303, error_of(r)
        return next(h for h in r.headers.get_list("set-cookie") if "edge_session" in h).lower()

    tls = {"x-forwarded-proto": "https"}
    with ws.web_process(appl) as web:
        with ws.http_from(web, "127.0.0.1") as proxy:
            assert "secure" in session_cookie(proxy, **tls)
            assert "secure" not in session_cookie(proxy)  # the proxy says plain http
        with ws.http_from(web, "127.0.0.2") as direct:  # not a proxy: its header is not believed
            assert "secure" not in session_cookie(direct, **tls)
        # the proxy's X-Forwarded-For is the client: one user's guesses lock one address only
        with ws.http_from(web, "127.0.0.1") as proxy:
            for _ in range(MAX_FAILED):
                ws.post_login(proxy, "tom", "guess-5678", headers={"x-forwarded-for": "10.0.0.7"})
            r = ws.post_login(
                proxy,
                "tom",
                "tech-secret-1",
                headers={"x-forwarded-for": "10.0.0.7"},
                follow_redirects=False,
            )
            assert r.status_code == 200
            r = ws.post_login(
                proxy,
                "tom",
                "tech-secret-1",
                headers={"x-forwarded-for": "10.0.0.8"},
                follow_redirects=False,
            )
            assert r.status_code == 303
    assert '"client":"10.0.0.7"' in appl.audit.entries(action="user.lockout")[0]["new"]


def test_secure_cookies_always_marks_them_on_plain_http(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[], secure_cookies="always")
    ws.add_users(appl)
    # TLS ends before the server (which sees plain http); the browser talks https
    with TestClient(create_app(appl), base_url="https://testserver") as c:
        r = ws.post_login(c, "olga", "op-secret-1", follow_redirects=False)
        assert r.status_code == 303
        assert all("secure" in h.lower() for h in r.headers.get_list("set-cookie"))


def test_the_session_key_file_signs_the_login_form(tmp_path):
    key = "k" * 64
    (tmp_path / "web-session-key").write_text(key + "\n")
    appl = ws.appliance(tmp_path, imgs=[], session_key_file=str(tmp_path / "web-session-key"))
    with TestClient(create_app(appl)) as c:
        token = ws.login_form(c, "olga", "x")["csrf_token"]
        nonce = c.cookies["edge_login"]
    mac = hmac.new(key.encode(), b"login-csrf:" + nonce.encode(), hashlib.sha256).digest()
    assert token == base64.urlsafe_b64encode(mac).decode().rstrip("=")

    (tmp_path / "short").write_text("too-short\n")
    for path, says in ((tmp_path / "missing", "cannot read"), (tmp_path / "short", "at least 32")):
        bad = ws.appliance(tmp_path / f"s-{path.name}", imgs=[], session_key_file=str(path))
        with pytest.raises(ValueError, match=says):
            create_app(bad)
    # in the shipped layout the web process says so, and the line is not held up
    bad = ws.appliance(tmp_path / "p", imgs=[], session_key_file=str(tmp_path / "missing"))
    web = IsolatedWeb(bad)
    web.start()
    try:
        st = web.status()
        assert not st["up"] and "session_key_file" in st["detail"]
    finally:
        web.stop()
