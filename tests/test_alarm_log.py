"""The alarm log: what the line raised, who acknowledged it and when it cleared, kept across restarts."""

from __future__ import annotations

from fastapi.testclient import TestClient

from edge.domain import BatchState
from edge.store.alarm_log import RESTART, AlarmLog
from edge.web.server import create_app

import web_support as ws


def test_alarms_raised_acknowledged_and_cleared_are_in_the_log_after_a_restart(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    alarms = appl.pipeline.alarms
    alarms.raise_("BIN_FULL", "reject bin full", "major")
    alarms.ack("BIN_FULL", "olga")
    alarms.clear("BIN_FULL")
    alarms.raise_("PLC_LINK_LOST", "no answer from the PLC", "critical", line_stop=True)
    appl.stop()  # PLC_LINK_LOST is still active when the process ends

    again = ws.appliance(tmp_path, imgs=[])
    log = {a["code"]: a for a in AlarmLog(again.pipeline.db).history()}
    bin_full = log["BIN_FULL"]
    assert (bin_full["acked_by"], bin_full["active"]) == ("olga", False)
    assert bin_full["raised_utc"] <= bin_full["acked_utc"] <= bin_full["cleared_utc"]
    plc = log["PLC_LINK_LOST"]
    assert plc["line_stop"] and not plc["active"] and plc["cleared_by"] == RESTART
    again.stop()


def test_a_batch_report_lists_the_alarms_of_its_batch_even_after_a_restart(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    appl.pipeline.alarms.raise_("CAMERA_STALL", "before the batch", "major")
    appl.pipeline.alarms.clear("CAMERA_STALL")
    bid = appl.pipeline.start_batch(BatchState("LOTA", None, None))
    appl.pipeline.alarms.raise_("BIN_FULL", "reject bin full", "major")
    appl.pipeline.alarms.ack("BIN_FULL", "olga")
    appl.pipeline.stop_batch()
    appl.stop()

    again = ws.appliance(tmp_path, imgs=[])
    c = TestClient(create_app(again))
    ws.login(c, "quinn")
    rep = c.get(f"/api/reports/{bid}").json()
    assert [(a["code"], a["acked_by"]) for a in rep["alarms"]] == [("BIN_FULL", "olga")]
    assert "BIN_FULL" in c.get(f"/reports/{bid}").text
    again.stop()
