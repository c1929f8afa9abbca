"""A full or slow disk fails safe: nothing passes unrecorded, nothing dangles, it recovers.

Real SQLite files and real filesystems: a small tmpfs is mounted and filled for the
cases that need a disk that refuses writes (root only, as in CI). The free-space steps
are driven by a scripted free-space probe: the thresholds themselves are what is tested.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from disk_support import SmallFs, fill

from edge.alarms import Alarms
from edge.bus import Bus
from edge.config import RecordsConfig
from edge.domain import Frame, Item, Verdict
from edge.recorder import Recorder
from edge.stats import Stats
from edge.store.db import Database
from edge.store.images import ImageStore
from edge.store.verify import verify

STEPS_OFF = {"pass_images_min_free_mb": 0, "reject_images_min_free_mb": 0, "min_free_mb": 0}


@pytest.fixture
def small_fs():
    fs = SmallFs()
    yield fs
    fs.close()


def wait_for(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class Rig:
    """A recorder on real files, with what it emitted on the bus."""

    def __init__(self, state, sample_pass_every=0, **records):
        self.db = Database(state / "edge.db")
        self.images = ImageStore(state / "images")
        self.bus = Bus()
        self.alarms = Alarms(self.bus)
        self.stats = Stats()
        self.emitted: list[Item] = []
        self.bus.subscribe_sync("verdict", lambda _t, it: self.emitted.append(it))
        self.rec = Recorder(
            self.db,
            self.images,
            self.bus,
            self.stats,
            self.alarms,
            "edge-test",
            outbox=True,
            sample_pass_every=sample_pass_every,
            keep_reject_images=True,
            records=RecordsConfig(**records),
        )

    def item(self, seq, verdict=Verdict.PASS, image=True):
        now = time.monotonic()
        img = np.full((24, 32, 3), seq % 250, np.uint8) if image else None
        return Item(
            id=f"edge-test-{seq:09d}",
            seq=seq,
            t_trigger=now,
            deadline=now + 1,
            frame=Frame(img, now),
            verdict=verdict,
            reasons=[] if verdict is Verdict.PASS else ["CRACK"],
            t_final=now,
        )

    def rows(self):
        conn = self.db.connect()
        try:
            return {
                r["seq"]: dict(r)
                for r in conn.execute("SELECT seq, verdict, reasons, image_sha256 FROM items")
            }
        finally:
            conn.close()


def test_a_full_backlog_rejects_not_recorded_stops_the_line_and_records_them_later(tmp_path):
    rig = Rig(tmp_path, max_backlog=3, **STEPS_OFF)
    blocker = rig.db.connect()
    blocker.execute("BEGIN IMMEDIATE")  # a writer that holds the database: the recorder waits
    try:
        rig.rec.submit(rig.item(1))
        wait_for(rig.rec.queue.empty)  # the recorder holds item 1, waiting for the lock
        for seq in (2, 3, 4):
            rig.rec.submit(rig.item(seq))  # the backlog is now full
        rig.rec.submit(rig.item(5))  # beyond it: rejected at once, never waits, never passes
        rig.rec.submit(rig.item(6, Verdict.REJECT))
        out = {it.seq: it for it in rig.emitted}
        assert set(out) == {5, 6}  # nothing else is emitted before it is recorded
        assert all(
            out[s].verdict is Verdict.REJECT and out[s].reasons == ["NOT_RECORDED"] for s in (5, 6)
        )
        alarm = {a.code: a for a in rig.alarms.active()}["NOT_RECORDED"]
        assert alarm.line_stop and alarm.severity == "critical"
        up, why = rig.rec.health()
        assert not up and "backlog full" in why
        assert rig.stats.snapshot()["by_reason"] == {"NOT_RECORDED": 2}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: rig.rec.recorded == 6 and len(rig.emitted) == 6)
    rows = rig.rows()
    assert [rows[s]["verdict"] for s in range(1, 7)] == ["PASS"] * 4 + ["REJECT"] * 2
    assert rows[5]["reasons"] == '["NOT_RECORDED"]'  # recorded once the database took writes
    wait_for(lambda: not rig.alarms.is_active("NOT_RECORDED"))
    assert rig.rec.health()[0]
    rig.rec.close()
    assert verify(tmp_path)[0] == []


def test_when_the_disk_is_full_items_are_rejected_not_recorded_and_recorded_when_space_returns(
    tmp_path, small_fs
):
    state = small_fs.mount(tmp_path / "state", "4m")
    rig = Rig(state, **STEPS_OFF)
    ballast = fill(state)
    for seq in (1, 2, 3):
        rig.rec.submit(rig.item(seq))
    wait_for(lambda: len(rig.emitted) == 3)
    assert all(
        it.verdict is Verdict.REJECT and it.reasons == ["NOT_RECORDED"] for it in rig.emitted
    )
    assert rig.alarms.is_active("RECORD_FAILED") and rig.alarms.is_active("NOT_RECORDED")
    up, why = rig.rec.health()
    assert not up and "records cannot be written" in why and "full" in why
    assert rig.rows() == {}

    ballast.unlink()  # space comes back: the held rows are written, the alarms clear
    wait_for(lambda: len(rig.rows()) == 3)
    assert all(r["reasons"] == '["NOT_RECORDED"]' for r in rig.rows().values())
    wait_for(lambda: rig.rec.health()[0])
    assert not rig.alarms.is_active("RECORD_FAILED") and not rig.alarms.is_active("NOT_RECORDED")
    rig.rec.submit(rig.item(4))  # and the line records normally again
    wait_for(lambda: len(rig.rows()) == 4)
    assert rig.rows()[4]["verdict"] == "PASS"
    rig.rec.close()
    problems, counts = verify(state)
    assert problems == [] and counts["outbox"] == 4


def test_free_space_steps_give_up_pass_samples_then_reject_images_then_stop_the_line(tmp_path):
    rig = Rig(
        tmp_path,
        sample_pass_every=1,
        pass_images_min_free_mb=300,
        reject_images_min_free_mb=200,
        min_free_mb=100,
        disk_hysteresis_mb=20,
    )
    free = {"mb": 1000.0}
    rig.rec.disk.probe = lambda _path: free["mb"]
    rig.rec.disk.interval_s = 0.0
    seq = iter(range(1, 100))

    def step(mb):
        """Free space now `mb`: one PASS and one REJECT; which kept an image."""
        free["mb"] = mb
        p, r = rig.item(next(seq)), rig.item(next(seq), Verdict.REJECT)
        rig.rec.submit(p)
        rig.rec.submit(r)
        wait_for(lambda: p in rig.emitted and r in rig.emitted)
        return p.image_sha256 is not None, r.image_sha256 is not None

    def active():
        return {a.code: (a.severity, a.line_stop) for a in rig.alarms.active()}

    assert step(1000) == (True, True) and active() == {}
    assert step(250) == (False, True)
    assert active() == {"DISK_LOW_PASS_IMAGES": ("minor", False)}
    assert step(150) == (False, False)
    assert active()["DISK_LOW_REJECT_IMAGES"] == ("major", False)
    assert rig.rec.health()[0]  # the database's reserve still holds
    assert step(50) == (False, False)
    assert active()["DISK_LOW_RECORDS"] == ("critical", True)
    up, why = rig.rec.health()
    assert not up and "min_free_mb" in why
    assert step(110) == (False, False)  # not yet above the threshold plus the hysteresis
    assert "DISK_LOW_RECORDS" in active()
    assert step(130) == (False, False) and "DISK_LOW_RECORDS" not in active()
    assert step(330) == (True, True) and active() == {}  # space is back: images resume
    rig.rec.close()
    rows = rig.rows()
    kept = [s for s, r in sorted(rows.items()) if r["image_sha256"]]
    assert kept == [1, 2, 4, 13, 14]
    assert verify(tmp_path)[0] == []


def test_a_failed_image_write_leaves_no_temporary_file_and_no_row_naming_it(tmp_path, small_fs):
    small_fs.mount(tmp_path / "images", "256k")
    rig = Rig(tmp_path, **STEPS_OFF)
    fill(tmp_path / "images")
    items = [rig.item(s, Verdict.REJECT) for s in (1, 2, 3)]
    for it in items:
        rig.rec.submit(it)
    wait_for(lambda: len(rig.emitted) == 3)
    rig.rec.close()  # drains the image writer
    assert rig.rec.images_failed == 3
    assert list((tmp_path / "images").rglob("*.tmp")) == []
    assert all(r["image_sha256"] is None for r in rig.rows().values())
    assert all(r["verdict"] == "REJECT" for r in rig.rows().values())  # the verdicts are kept
    assert verify(tmp_path)[0] == []


def test_temporary_files_of_a_crashed_writer_are_swept_at_start(tmp_path):
    store = ImageStore(tmp_path / "images")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(gone.stdout)
    (tmp_path / "images" / "ab").mkdir()
    dead = tmp_path / "images" / "ab" / f".{'ab' * 32}.png.{dead_pid}.1.tmp"
    live = tmp_path / "images" / "ab" / f".{'ab' * 32}.png.{os.getppid()}.1.tmp"
    dead.write_bytes(b"half a png")
    live.write_bytes(b"being written")
    assert store.sweep_temp() == 1
    assert not dead.exists() and live.exists()


def _damaged_state(tmp_path):
    """A real state directory, then damaged in every way `records verify` must notice."""
    rig = Rig(tmp_path, sample_pass_every=1, **STEPS_OFF)
    for s in range(1, 7):
        rig.rec.submit(rig.item(s, Verdict.REJECT if s % 2 else Verdict.PASS))
    wait_for(lambda: len(rig.emitted) == 6)
    rig.rec.close()
    from edge.store.audit import AuditTrail

    audit = AuditTrail(rig.db)
    for i in range(3):
        audit.record("qa1", "batch.sign", target=f"B{i}")
    assert verify(tmp_path)[0] == []
    rows = rig.rows()
    conn = sqlite3.connect(tmp_path / "edge.db")
    # an image deleted, an image replaced by other pixels
    rig.images.path_for(rows[1]["image_sha256"]).unlink()
    other = cv2.imencode(".png", np.zeros((5, 5, 3), np.uint8))[1].tobytes()
    rig.images.path_for(rows[2]["image_sha256"]).write_bytes(other)
    # a row naming an image that was never written
    conn.execute("UPDATE items SET image_sha256 = ? WHERE seq = 3", ("f" * 64,))
    # a hole in the outbox sequence
    conn.execute("DELETE FROM outbox WHERE seq = 4")
    # an audit entry edited behind the trail's back
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for name in names:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE audit SET target = 'B9' WHERE id = 2")
    conn.commit()
    conn.close()
    # a temporary file of a write that never finished
    (rig.images.root / "ab").mkdir(exist_ok=True)
    (rig.images.root / "ab" / f".{'ab' * 32}.png.1.1.tmp").write_bytes(b"x")
    # a damaged database file
    serials = tmp_path / "serials.db"
    c = sqlite3.connect(serials)
    c.execute("CREATE TABLE s (k TEXT PRIMARY KEY, v TEXT)")
    c.executemany("INSERT INTO s VALUES (?, ?)", [(f"k{i:05d}", "v" * 50) for i in range(2000)])
    c.commit()
    c.close()
    with open(serials, "r+b") as f:
        f.seek(4096 * 3 + 200)
        f.write(os.urandom(2000))
    return rows


def test_records_verify_names_each_problem_with_its_row_and_exits_non_zero(tmp_path):
    rows = _damaged_state(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "records", "verify", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert f"items seq 1 (edge-test-000000001): image {rows[1]['image_sha256']}" in out
    assert "missing" in out
    assert f"items seq 2 (edge-test-000000002): image {rows[2]['image_sha256']}" in out
    assert "does not hash to its name" in out
    assert f"items seq 3 (edge-test-000000003): image {'f' * 64}: no images row" in out
    assert "outbox seq 4 missing between rows 3 and 5" in out
    assert "audit: entry 2" in out
    assert "temporary file left: images/ab/" in out
    assert "serials.db:" in out


def test_records_verify_exits_zero_on_whole_records(tmp_path):
    rig = Rig(tmp_path, sample_pass_every=1, **STEPS_OFF)
    for s in range(1, 5):
        rig.rec.submit(rig.item(s))
    wait_for(lambda: len(rig.emitted) == 4)
    rig.rec.close()
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "records", "verify", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "records verify: OK (4 items, 4 images, 4 outbox" in r.stdout


def test_a_pass_the_plc_missed_is_amended_later_when_the_disk_is_full_without_blocking(
    tmp_path, small_fs
):
    import threading

    from edge.config import parse_config
    from edge.line.plc.component import PLCOutput
    from edge.pipeline import Pipeline

    from fake_tools import ListSource, grey

    state = small_fs.mount(tmp_path / "state", "4m")
    cfg = parse_config(
        {
            "records": {"state_dir": str(state), "sample_pass_every": 0, **STEPS_OFF},
            "mqtt": {"enabled": True},  # amendments go to the outbox too
            "recipe": "t",
            "recipes": {"t": {"name": "t", "tools": [{"type": "behaviour"}]}},
        }
    )
    p = Pipeline(cfg, source=ListSource([grey()] * 2, paced=False))
    got: list[Item] = []
    p.bus.subscribe_sync("verdict", lambda _t, it: got.append(it))
    p.start()
    try:
        assert p.wait(60)
        item = next(it for it in got if it.verdict is Verdict.PASS)
        plc = PLCOutput(p, cfg.plc, adapter=None)
        plc._conn = p.db.connect()
        ballast = fill(state)
        t = threading.Thread(target=plc._amend, args=(item, "TIMEOUT"), daemon=True)
        t.start()
        t.join(5)
        assert not t.is_alive(), "the PLC's verdict thread waited for the disk"
        assert p.alarms.is_active("RECORD_FAILED")
        assert not p.recorder.health()[0]
        assert p.stats.snapshot()["by_reason"] == {"TIMEOUT": 1}
        ballast.unlink()
        wait_for(lambda: p.db.item(item.id)["verdict"] == "REJECT")
        assert p.db.item(item.id)["reasons"] == ["TIMEOUT"]
        wait_for(lambda: not p.alarms.is_active("RECORD_FAILED"))
        n = p.db.conn.execute("SELECT COUNT(*) FROM outbox WHERE item_id = ?", (item.id,))
        assert n.fetchone()[0] == 2  # the result, then its amendment
        plc._conn.close()
    finally:
        p.stop()


CRASH_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from edge.inspect import registry
from fake_tools import BehaviourParams
registry.TOOLS["behaviour"] = BehaviourParams
import numpy as np
from edge.config import parse_config
from edge.pipeline import Pipeline
from fake_tools import ListSource

cfg = parse_config({{
    "records": {{"state_dir": {state!r}, "sample_pass_every": 1, "pass_images_min_free_mb": 0,
                 "reject_images_min_free_mb": 0, "min_free_mb": 0}},
    "recipe": "t",
    "recipes": {{"t": {{"name": "t", "tools": [{{"type": "behaviour"}}]}}}},
}})
base = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)

def distinct():  # every image its own file: slow PNG encoding, so the writer lags
    for i in range(100000):
        img = base.copy()
        img[0, :3, 0] = (i % 256, i // 256 % 256, i // 65536)
        yield img

p = Pipeline(cfg, source=ListSource(distinct(), period_s=0.01))
p.bus.subscribe_sync("verdict", lambda _t, it: print("EMIT", it.id, flush=True))
p.start()
time.sleep(600)
"""


def test_a_crash_while_images_are_being_written_leaves_no_row_naming_a_missing_file(tmp_path):
    import signal
    from pathlib import Path

    state = tmp_path / "state"
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD.format(tests=tests, state=str(state))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        n, end = 0, time.monotonic() + 120
        while n < 300 and time.monotonic() < end:  # PNG encoding of noise lags the commits
            if proc.stdout.readline().startswith("EMIT"):
                n += 1
        assert n == 300
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    problems = [p for p in verify(state)[0] if not p.startswith("temporary file")]
    assert problems == []  # no row names an image that is not on disk
    rows = Database(state / "edge.db").conn.execute(
        "SELECT COUNT(*), COUNT(image_sha256) FROM items"
    )
    total, with_image = rows.fetchone()
    assert total >= 300 and 0 < with_image < total  # the writer was behind at the kill
    rig = Rig(state, **STEPS_OFF)  # the next start sweeps what the killed writer left
    rig.rec.close()
    assert verify(state)[0] == []


def test_config_check_refuses_free_space_steps_out_of_order(tmp_path):
    cfg = tmp_path / "steps.yaml"
    cfg.write_text("records:\n  pass_images_min_free_mb: 100\n  reject_images_min_free_mb: 500\n")
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=120,
    )
    assert r.returncode == 2
    assert "records:" in r.stderr and "pass_images_min_free_mb >= reject_images_min_free_mb" in (
        r.stderr
    )


def test_a_held_row_that_was_recorded_after_all_does_not_block_the_records(tmp_path):
    from edge.record import item_row

    rig = Rig(tmp_path, **STEPS_OFF)
    row = item_row(rig.item(7), "edge-test")  # a commit that reported failure but went through
    with rig.db.transaction() as c:
        rig.db.insert_items(c, [row], outbox=True)
    with rig.rec._lock:
        rig.rec._pending.append(row)
    rig.rec.submit(rig.item(8))
    wait_for(lambda: len(rig.rows()) == 2)
    assert rig.rec.failing is None and rig.rec.health()[0]
    rig.rec.close()
    assert verify(tmp_path)[0] == []
