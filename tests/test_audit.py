"""The audit trail: append-only, hash-chained, and any edit or deletion is found."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from edge.store.audit import AuditTrail
from edge.store.db import Database


@pytest.fixture
def trail(tmp_path):
    db = Database(tmp_path / "edge.db")
    t = AuditTrail(db)
    t.record("olga", "batch.start", "B1", old=None, new={"lot": "L1"}, reason="shift start")
    t.record("olga", "alarm.ack", "CAMERA_STALL", old={"acked_by": None}, new={"acked_by": "olga"})
    t.record("quinn", "model.approve", "defects/2", old="candidate", new="approved", reason="QA ok")
    return t


def raw(trail: AuditTrail) -> sqlite3.Connection:
    """A connection as someone with the file would have one: triggers dropped."""
    c = sqlite3.connect(trail.db.path, isolation_level=None)
    c.execute("DROP TRIGGER audit_no_update")
    c.execute("DROP TRIGGER audit_no_delete")
    return c


def test_each_entry_carries_the_hash_of_the_one_before(trail):
    rows = trail.entries()
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev_hash"] == "0" * 64
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]
    assert rows[0]["ts_utc"].endswith("+00:00")  # UTC, from the appliance clock
    assert rows[0]["new"] == '{"lot":"L1"}' and rows[0]["reason"] == "shift start"
    assert trail.verify() == (True, [])


def test_the_database_refuses_updates_and_deletes_of_audit_entries(trail):
    c = sqlite3.connect(trail.db.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        c.execute("UPDATE audit SET user = 'mallory' WHERE id = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        c.execute("DELETE FROM audit WHERE id = 2")


def test_an_edited_entry_is_found(trail):
    raw(trail).execute("UPDATE audit SET new = '\"rejected\"' WHERE id = 3")
    ok, problems = trail.verify()
    assert not ok
    assert any("entry 3" in p and "edited" in p for p in problems)


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(trail):
    from edge.store.audit import entry_hash

    c = raw(trail)
    row = dict(
        zip(
            [
                "id",
                "ts_utc",
                "user",
                "action",
                "target",
                "old",
                "new",
                "reason",
                "prev_hash",
                "hash",
            ],
            c.execute("SELECT * FROM audit WHERE id = 1").fetchone(),
            strict=False,
        )
    )
    row["user"] = "mallory"
    c.execute("UPDATE audit SET user = ?, hash = ? WHERE id = 1", ("mallory", entry_hash(row)))
    ok, problems = trail.verify()
    assert not ok and any("entry 2" in p and "link" in p for p in problems)


def test_a_deleted_entry_is_found_in_the_middle_and_at_the_end(trail):
    c = raw(trail)
    c.execute("DELETE FROM audit WHERE id = 2")
    ok, problems = trail.verify()
    assert not ok and any("entry 2" in p and "deleted" in p for p in problems)


def test_deleting_the_newest_entry_is_found(trail):
    raw(trail).execute("DELETE FROM audit WHERE id = 3")
    ok, problems = trail.verify()
    assert not ok and any("head" in p for p in problems)


def test_exports_carry_every_entry_and_the_verification(trail):
    csv_text = trail.export_csv()
    assert csv_text.splitlines()[0].startswith("id,ts_utc,user,action")
    assert len(csv_text.strip().splitlines()) == 4
    assert '"verified": true' in trail.export_json()


def test_edge_audit_verify_passes_on_a_real_run_and_fails_after_one_edit(tmp_path):
    from fastapi.testclient import TestClient

    from edge.cli import app as cli_app
    from edge.web.cli import register
    from edge.web.server import create_app

    import web_support as ws

    register(cli_app)
    appl = ws.appliance(tmp_path)
    ws.add_users(appl)
    appl.start()
    appl.pipeline.wait(20)
    client = TestClient(create_app(appl))
    csrf = ws.login(client, "olga")
    h = {"x-csrf-token": csrf}
    assert client.post("/api/line/batch/start", json={"lot": "L42"}, headers=h).status_code == 200
    assert client.post("/api/line/batch/stop", json={"reason": "end"}, headers=h).status_code == 200
    appl.stop()

    runner = CliRunner()
    res = runner.invoke(cli_app, ["audit", "verify", "--state-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "chain intact" in res.output

    c = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    c.execute("DROP TRIGGER audit_no_update")
    c.execute("UPDATE audit SET reason = 'nothing happened' WHERE action = 'batch.stop'")
    c.close()
    res = runner.invoke(cli_app, ["audit", "verify", "--state-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "edited" in res.output
