"""The challenge at shift change: configured shift start times (local) run the challenge again
at the first item after each; a failure holds the batch out of EXECUTE with a line-stop alarm
and is recorded, as the interval challenge does."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from types import SimpleNamespace

import pytest
from test_challenge import approve_broken_vials, close, vials_config

from edge.app import Appliance
from edge.config import ConfigError, parse_config
from edge.line.packml import PackMLComponent
from edge.recipes.component import build, shift_crossed

SHIFTS = ["06:00", "14:00", "22:00"]


def at(h: int, m: int, s: int = 0, day: int = 2) -> dt.datetime:
    return dt.datetime(2026, 12, day, h, m, s).astimezone()


def item(when: dt.datetime, batch: str | None = "B1") -> SimpleNamespace:
    return SimpleNamespace(wall_trigger=when.timestamp(), batch=batch)


def test_a_shift_start_between_two_items_is_found_and_only_then():
    assert shift_crossed(SHIFTS, at(13, 59, 50), at(14, 0, 5)) == "14:00"
    assert shift_crossed(SHIFTS, at(14, 0, 5), at(14, 0, 6)) is None  # the same shift
    assert shift_crossed(SHIFTS, at(13, 59), at(14, 0)) == "14:00"  # at the minute itself
    assert shift_crossed(SHIFTS, at(21, 59), at(6, 1, day=3)) == "06:00"  # the line was off
    assert shift_crossed([], at(13, 59), at(14, 1)) is None


def test_shift_times_are_checked_in_the_config():
    cfg = parse_config({"challenge": {"shifts": ["22:00", "06:00"]}})
    assert cfg.challenge.shifts == ["06:00", "22:00"]
    for bad in (["6:00"], ["24:00"], ["06:00", "06:00"]):
        with pytest.raises(ConfigError, match=r"challenge\.shifts"):
            parse_config({"challenge": {"shifts": bad}})


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_a_challenge_failing_at_shift_change_holds_the_batch_and_is_recorded(tmp_path):
    approve_broken_vials(tmp_path)  # low fill passes: every challenge of this line fails
    cfg = vials_config(tmp_path, challenge={"at_batch_start": False, "shifts": SHIFTS})
    app = Appliance(cfg, components=False)
    packml = PackMLComponent(app)
    packml.start()
    try:
        assert app.pipeline.batch is not None
        assert wait_for(lambda: packml.machine.state.value == "Execute")
        schedule = build(app)
        assert schedule.every_s is None and schedule.shifts == SHIFTS

        assert schedule.on_item(item(at(13, 58))) is None  # the first item: nothing to compare
        assert schedule.on_item(item(at(13, 59))) is None
        assert not schedule.run_due()  # nothing due, nothing run
        assert schedule.on_item(item(at(14, 0, 1))) == "14:00"
        assert schedule.run_due()

        alarm = next(a for a in app.pipeline.alarms.active() if a.code == "CHALLENGE_FAILED")
        assert alarm.line_stop and "shift 14:00 challenge failed" in alarm.message
        assert "low_fill#1" in alarm.message
        assert wait_for(lambda: packml.machine.state.value == "Held")
        db = sqlite3.connect(tmp_path / "edge.db")
        by, passed, results = db.execute(
            "SELECT by, passed, results FROM challenge_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert (by, passed) == ("system:shift 14:00", 0)
        assert [r["unit"] for r in json.loads(results) if not r["ok"]] == ["low_fill#1"]
        audit = db.execute(
            "SELECT reason FROM audit WHERE action = 'challenge.failed' ORDER BY id DESC"
        ).fetchone()
        assert "shift 14:00" in audit[0]
        assert schedule.status()["last_shift"] == "14:00"
    finally:
        packml.stop()
        close(app)


def test_the_shift_challenge_runs_on_its_own_thread_at_the_first_item_after_the_shift(tmp_path):
    cfg = vials_config(tmp_path, challenge={"shifts": SHIFTS})
    app = Appliance(cfg, components=False)
    schedule = build(app)
    schedule.start()
    try:
        runs = schedule.runs
        app.pipeline.bus.publish("verdict", item(at(5, 59, 58)))
        app.pipeline.bus.publish("verdict", item(at(6, 0, 2)))
        assert wait_for(lambda: schedule.runs == runs + 1, 60)
        assert schedule.status()["last"]["passed"] is True  # the shipped recipe passes
        assert not app.pipeline.alarms.is_active("CHALLENGE_FAILED")
    finally:
        schedule.stop()
        close(app)
