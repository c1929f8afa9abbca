"""Logs for the journal: one JSON object per line, item ids as fields, no images, no secrets."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest

from edge.config import parse_config
from edge.ops import logs
from edge.ops.logs import VerdictLog
from edge.pipeline import Pipeline

from fake_tools import ListSource, grey


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure(logging.INFO, stream=stream, json_format=True)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(ln) for ln in stream.getvalue().splitlines() if ln.strip()]


def test_each_log_line_is_json_with_extra_fields(captured):
    logging.getLogger("edge.test").warning(
        "gate late for %s", "edge-01-000000042", extra={"item_id": "edge-01-000000042"}
    )
    (rec,) = lines(captured)
    assert rec["level"] == "warning" and rec["logger"] == "edge.test"
    assert rec["msg"] == "gate late for edge-01-000000042"
    assert rec["item_id"] == "edge-01-000000042"
    assert rec["ts"].endswith("Z")


def test_secrets_are_redacted_wherever_they_appear(captured):
    log = logging.getLogger("edge.test")
    log.error("broker login failed: password=hunter2 user=line7")
    log.error("connecting to mqtts://line7:hunter2@broker:8883")
    log.error("config %s", {"mqtt": {"username": "line7", "password": "hunter2"}})
    log.error("token rotated", extra={"session_key": "hunter2", "api_token": "hunter2"})
    out = captured.getvalue()
    assert "hunter2" not in out
    assert out.count("***") >= 5
    assert "line7" in out  # only the secret goes, not the context


def test_image_data_never_reaches_the_log(captured):
    img = np.full((480, 640, 3), 7, np.uint8)
    logging.getLogger("edge.test").error(
        "frame %s", img, extra={"image": img, "raw": b"\x00" * 900}
    )
    (rec,) = lines(captured)
    assert rec["msg"] == "frame <array 480x640x3 uint8>"
    assert rec["image"] == "<array 480x640x3 uint8>"
    assert rec["raw"] == "<900 bytes>"
    assert len(json.dumps(rec)) < 400


def test_rejects_are_logged_with_their_item_id_and_reasons(tmp_path, captured):
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "recipe": "t",
            "recipes": {
                "t": {
                    "name": "t",
                    "tools": [
                        {"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}
                    ],
                }
            },
        }
    )
    p = Pipeline(cfg, source=ListSource([grey(200), grey(50), grey(200)], paced=False))
    vlog = VerdictLog(p)
    p.run(timeout=30)  # stop() closes the bus, which drains the log subscriber
    rejects = [r for r in lines(captured) if r["logger"] == "edge.line" and "item_id" in r]
    assert len(rejects) == 1
    assert rejects[0]["reasons"] == ["LOW_FILL"]
    assert rejects[0]["item_id"].endswith("000000002")
    assert vlog.status()["enabled"] is True


def test_the_journal_gets_json_and_a_terminal_gets_text(monkeypatch):
    monkeypatch.delenv("EDGE_LOG_FORMAT", raising=False)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert logs.wants_json()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logs.wants_json()
    monkeypatch.setenv("EDGE_LOG_FORMAT", "json")
    assert logs.wants_json()
