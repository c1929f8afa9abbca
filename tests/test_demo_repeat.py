"""A demo looks the same every time it is started; a restart goes on with new serials.

The simulated serialisation system hands out serials once per GTIN on a state directory,
as a real line's does: the pictures and defects are the seeded ones, the serials continue.
A pack that really repeats is still a duplicate (tests/test_restart.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.app import Appliance
from edge.config import parse_config
from edge.domain import Verdict
from edge.sim.serialisation import SerialCursor

from services import free_port

ROOT = Path(__file__).resolve().parents[1]


def _demo(folder: Path) -> dict:
    """`edge demo --items 200 --headless --json` as a user types it, in `folder`."""
    env = {k: v for k, v in os.environ.items() if k != "EDGE_STATE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--items", "200", "--headless", "--json"]
        + ["--port", str(free_port())],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_edge_demo_started_twice_in_one_folder_rejects_no_more_the_second_time(tmp_path):
    first = _demo(tmp_path)
    second = _demo(tmp_path)
    assert first["items"] == second["items"] == 200
    # the batch started once its challenge passed; the second run resumes it
    assert first["challenge"]["passed"] and first["challenge"]["units"] >= 5
    assert second["challenge"] == first["challenge"]
    # a deadline missed on a loaded machine is a false reject too, but not this test's
    # subject: the second run may not reject good packs for any other reason
    assert second["false_rejects"] - second["deadline_misses"] <= first["false_rejects"] + 2, (
        first,
        second,
    )
    # no pack of the second run is taken for one of the first run's
    dup = [r["by_reason"].get("DUPLICATE_SERIAL", 0) for r in (first, second)]
    assert dup[1] <= dup[0], (first, second)
    assert second["escapes"] == 0


def _appliance(state: Path, items: int):
    cfg = parse_config(
        {
            "records": {"state_dir": str(state)},
            "source": {
                "type": "simulator",
                "scenario": "cartons",
                "items": items,
                "realtime": False,
                "defect_rate": 0.15,
                "defect_weights": {"duplicate_serial": 1.0, "damaged_code": 1.0},
            },
            "pipeline": {"deadline_ms": 3000},
            "web": {"enabled": False},
        }
    )
    return Appliance(cfg, components=False)


def _run(app) -> list:
    got = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
    app.start()
    assert app.pipeline.wait(240)
    app.stop()
    return sorted(got, key=lambda i: i.seq)


def _serials(items) -> list[str]:
    return [c.gs1["21"] for it in items for c in it.codes if c.gs1 and "21" in c.gs1]


def test_a_restart_on_its_state_directory_prints_new_serials_and_the_same_defects(tmp_path):
    first = _run(_appliance(tmp_path, 60))
    second = _run(_appliance(tmp_path, 60))

    def truth(items):
        return [[d["class"] for d in it.frame.truth["defects"]] for it in items]

    assert truth(first) == truth(second)  # the same line, the same defects
    assert [it.verdict for it in first] == [it.verdict for it in second]
    planted = [it for it in second if "duplicate_of" in it.frame.truth]
    assert planted, "the run must plant duplicate serials"
    for it in second:  # a planted duplicate is still caught; nothing else is one
        dup = "DUPLICATE_SERIAL" in it.reasons
        assert dup == ("duplicate_of" in it.frame.truth), (it.id, it.reasons)
        assert it.verdict is (Verdict.REJECT if it.frame.truth["defects"] else Verdict.PASS)
    assert not set(_serials(first)) & set(_serials(second))


def test_the_serial_cursor_goes_on_where_it_stopped_and_never_hands_a_number_twice(tmp_path):
    cursor = SerialCursor(tmp_path / "serialisation.json")
    assert cursor.next("04006380079199", 5) == 5  # a new GTIN starts at the seeded base
    cursor.reserve("04006380079199", 40)
    again = SerialCursor(tmp_path / "serialisation.json")  # after a restart
    assert again.next("04006380079199", 5) == 40
    assert again.next("09506000134352", 5) == 5  # serials are per GTIN
    again.reserve("04006380079199", 10)  # never moves back
    assert again.next("04006380079199", 5) == 40
