"""Record before emit: a crash never loses a verdict the line acted on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edge.store.db import MIGRATIONS, Database, migrate, schema_version

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from edge.inspect import registry
    from fake_tools import BehaviourParams
    registry.TOOLS["behaviour"] = BehaviourParams
    from edge.config import parse_config
    from edge.pipeline import Pipeline
    from fake_tools import ListSource, grey

    cfg = parse_config({{
        "records": {{"state_dir": {state!r}, "sample_pass_every": 3, "synchronous": "NORMAL"}},
        "mqtt": {{"enabled": True}},
        "recipe": "t",
        "recipes": {{"t": {{"name": "t", "tools": [
            {{"type": "behaviour", "sleep_ms": 2, "find": "LOW_FILL", "find_when_mean_below": 100}}]}}}},
    }})
    images = [grey(50 if i % 4 == 0 else 200) for i in range(100000)]
    p = Pipeline(cfg, source=ListSource(images, period_s=0.002))

    def emit(_topic, item):
        # what a PLC/MQTT output would act on: only ever after the commit
        sys.stdout.write(f"EMIT {{item.id}} {{item.verdict.value}}\\n")
        sys.stdout.flush()

    p.bus.subscribe_sync("verdict", emit)
    p.start()
    time.sleep(600)
    """
)


def test_every_emitted_verdict_survives_sigkill(tmp_path):
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=tests, state=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    emitted: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        while len(emitted) < 200 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, item_id, verdict = line.split()
            emitted[item_id] = verdict
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # whatever was on the pipe when the process died was emitted too
    for line in proc.stdout.read().splitlines():
        if line.startswith("EMIT "):
            _, item_id, verdict = line.split()
            emitted[item_id] = verdict
    assert len(emitted) >= 200, "the child did not run"
    conn = sqlite3.connect(tmp_path / "edge.db")
    rows = dict(conn.execute("SELECT id, verdict FROM items").fetchall())
    missing = [i for i in emitted if i not in rows]
    assert not missing, f"{len(missing)} emitted verdicts are not in the database"
    assert all(rows[i] == v for i, v in emitted.items())
    # and each recorded result has its outbox message, gap-free
    seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == len(rows)


def test_migrations_apply_once_and_refuse_a_newer_schema(tmp_path):
    db = Database(tmp_path / "a.db")
    conn = db.connect()
    assert schema_version(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)  # idempotent
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    try:
        migrate(conn)
    except RuntimeError as exc:
        assert "newer than this software" in str(exc)
    else:
        raise AssertionError("an older appliance must refuse a newer database")
