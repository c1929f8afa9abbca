"""A restart never resumes the open batch silently: the audit trail and the batch report say so.

The appliance is stopped cleanly once, started again on its state directory (the batch
resumes), then "killed" (no stop) and started again. QA reads the batch report from the web
UI in its own process, as it ships.
"""

from __future__ import annotations

import json
import sqlite3

import httpx

from edge.app import Appliance
from edge.config import BatchConfig
from edge.domain import BatchState
from edge.web.isolated import IsolatedWeb

import web_support as ws
from fake_tools import ListSource


def _run(app) -> None:
    app.start()
    assert app.pipeline.wait(60)


def test_a_restart_resumes_the_open_batch_audited_and_shown_in_the_batch_report(tmp_path):
    first = ws.appliance(tmp_path)
    bid = first.pipeline.start_batch(BatchState("L7", "09506000134352", "271231"), by="olga")
    _run(first)
    first.stop()  # a clean stop, the batch stays open

    second = ws.appliance(tmp_path)  # restart on the same state directory
    assert second.pipeline.batch is not None and second.pipeline.batch.id == bid
    _run(second)
    # no stop: the process is killed; the next start must say so
    third = ws.appliance(tmp_path)
    ws.add_users(third)
    audit = third.audit

    resumed = audit.entries(action="batch.resume", target=bid)
    assert [e["user"] for e in resumed] == ["system", "system"]
    assert "clean stop" in resumed[0]["reason"]
    assert "no stop recorded" in resumed[1]["reason"]
    starts = audit.entries(action="appliance.start")
    assert [e["target"] for e in starts] == [None, bid, bid]  # the batch started after the first
    assert len(audit.entries(action="appliance.stop")) == 1
    ok, problems = audit.verify()
    assert ok, problems

    web = IsolatedWeb(third)
    third.start()
    web.start()
    try:
        with httpx.Client(base_url=web.url, timeout=20) as c:
            r = ws.post_login(c, "quinn", "qa-secret-1")
            assert r.status_code in (200, 303), r.text
            report = c.get(f"/api/reports/{bid}").json()
    finally:
        third.stop()
        web.stop()
    actions = [(e["action"], e["user"]) for e in report["audit"]]
    assert actions.count(("batch.resume", "system")) == 2
    assert actions.count(("appliance.start", "system")) == 2
    assert ("appliance.stop", "system") in actions


def test_a_batch_the_config_starts_at_start_up_is_audited_and_ends_the_open_one(tmp_path):
    first = ws.appliance(tmp_path)
    old = first.pipeline.start_batch(BatchState("L7", "09506000134352", "271231"), by="olga")
    first.stop()
    cfg = ws.config(tmp_path).model_copy(update={"batch": BatchConfig(lot="L8")})
    second = Appliance(cfg, source=ListSource([]), components=False)
    new = second.pipeline.batch.id
    assert new != old
    assert second.audit.entries(action="batch.stop", target=old)[0]["user"] == "config"
    started = second.audit.entries(action="batch.start", target=new)
    assert started and json.loads(started[0]["new"])["lot"] == "L8"
    assert not second.audit.entries(action="batch.resume")
    second.stop()


def test_an_audit_trail_that_cannot_be_written_raises_an_alarm_and_the_line_still_starts(
    tmp_path, monkeypatch
):
    from edge.store.audit import AuditTrail

    def full_disk(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AuditTrail, "record", full_disk)
    app = ws.appliance(tmp_path)
    assert app.pipeline.alarms.is_active("AUDIT_FAILED")
    _run(app)
    app.stop()
