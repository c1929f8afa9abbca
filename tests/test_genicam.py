"""A GigE Vision camera on the line: a real device (Aravis's fake camera) on loopback.

The fake camera streams a 512x512 grey ramp whose brightness follows exposure and gain;
it is started and killed by the tests (`fake_gige.py`). Skipped only when the binary or
the Aravis binding is missing (scripts/test.sh installs both).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_gige import fake_gige_fixture, lossy_gige_fixture  # noqa: F401 (fixtures)
from pydantic import ValidationError

from edge.capture.genicam_config import GenICamSource
from edge.config import ConfigError, load_config, parse_config
from edge.domain import Reason, Verdict

ROOT = Path(__file__).resolve().parent.parent
# 300 items/min, and a frame later than 150 ms is missing: below the pitch, so the alarm
# comes within one pitch, and above the fake camera's own delay (a 25 Hz tick) with room
# for a busy shared machine
PITCH_S = 0.2


def source_cfg(serial: str, **kw) -> GenICamSource:
    base = {"serial": serial, "rate_per_min": 300, "frame_timeout_ms": 150}
    base.update(kw)
    return GenICamSource(**base)


def edge_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_frame_ids_unwrap_across_the_16_bit_wrap():
    """GigE Vision 1.x block ids run 1..65535 and start again at 1: the count goes on."""
    from edge.capture.genicam import _Link

    link = _Link(cam=None, gen=1)  # type: ignore[arg-type]
    seen = [link.unwrap(f) for f in (65533, 65534, 65535, 1, 2, 4)]
    assert seen == [65533, 65534, 65535, 65536, 65537, 65539]


def test_software_trigger_frames_carry_trigger_count_frame_id_and_device_time(fake_gige):
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(source_cfg(fake_gige.serial, items=15))
    frames = list(src.frames())
    assert [f.encoder for f in frames] == list(range(1, 16))
    assert all(f.image is not None and f.image.shape == (512, 512, 3) for f in frames)
    ids = [f.frame_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 15)), "one frame per trigger, in order"
    ts = [f.device_ts_ns for f in frames]
    assert all(b > a for a, b in itertools.pairwise(ts)), "device timestamps advance"
    assert all(f.name == f"{fake_gige.serial}#t{f.encoder}/f{f.frame_id}" for f in frames)
    h = src.health()
    assert (h["frames"], h["missing"], h["late"], h["unmatched"]) == (15, 0, 0, 0)


def test_exposure_change_reaches_the_camera_and_the_image(fake_gige):
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(source_cfg(fake_gige.serial, items=16, exposure_us=10000, gain=0))
    means = []
    for f in src.frames():
        means.append(float(f.image.mean()))
        if f.encoder == 6:
            src.set_exposure(3000)  # the fake scales its ramp by 1 + gain + log10(t / 10 ms)
            assert src.poll_device()["exposure_us"] == pytest.approx(3000)
    assert means[0] == pytest.approx(127, abs=3)
    assert means[-1] == pytest.approx(127 * (1 + __import__("math").log10(0.3)), abs=4)


def _pipeline_cfg(state: Path, serial: str, items: int, **source):
    return parse_config(
        {
            "records": {"state_dir": str(state), "sample_pass_every": 0},
            "pipeline": {"workers": 2, "deadline_ms": 500, "stall_timeout_s": 5},
            "source": {
                "type": "genicam",
                "serial": serial,
                "rate_per_min": 300,
                "items": items,
                "frame_timeout_ms": 150,
                "reconnect_backoff_s": [0.2, 0.5],
                **source,
            },
            "recipe": "camera-check",
            "recipes": load_config(ROOT / "examples" / "gige-fake.yaml").model_dump(mode="json")[
                "recipes"
            ]
            | {},
            "plc": {"type": "none"},
            "web": {"enabled": False},
        }
    )


def test_pulling_the_camera_mid_run_rejects_its_items_alarms_within_a_pitch_and_recovers(
    fake_gige, tmp_path
):
    from edge.app import Appliance

    cfg = _pipeline_cfg(tmp_path, fake_gige.serial, items=80)
    app = Appliance(cfg, components=False)
    items, alarms = [], []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: items.append(it))
    app.pipeline.bus.subscribe_sync("alarm", lambda _t, ev: alarms.append(ev))
    app.start()

    ready_while_away = []

    def pull_and_return():
        from edge.ops.health import camera

        while len(items) < 20:
            time.sleep(0.01)
        fake_gige.kill()
        t_kill = time.monotonic()
        while (
            not app.pipeline.alarms.is_active("CAMERA_NO_FRAME") and time.monotonic() < t_kill + 5
        ):
            time.sleep(0.01)
        ready_while_away.append(camera(app)["up"])  # /readyz's camera check
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t_kill)))
        fake_gige.start()

    helper = threading.Thread(target=pull_and_return)
    helper.start()
    assert app.pipeline.wait(60)
    helper.join()
    app.stop()

    items.sort(key=lambda it: it.encoder)
    assert [it.encoder for it in items] == list(range(1, 81)), "every trigger is an item"
    for it in items:  # no PASS without its frame
        if it.verdict is Verdict.PASS:
            assert it.frame.image is not None and it.frame.frame_id is not None
        if it.frame.image is None:
            assert it.verdict is Verdict.REJECT
            assert it.reasons == [Reason.MISSING_VIEW.value]
    missing = [it for it in items if it.frame.image is None]
    assert len(missing) >= 7, "the outage lasted at least 1.5 s at 5 items/s"
    first = missing[0]
    raised = [a for a in alarms if a["code"] == "CAMERA_NO_FRAME" and a["event"] == "raised"]
    assert raised, "the camera alarm is raised"
    delay = raised[0]["raised_utc"] - first.wall_trigger
    assert 0 <= delay < PITCH_S, f"alarm {delay * 1000:.0f} ms after the item lost its frame"
    back = next(
        it.encoder for it in items if it.encoder > first.encoder and it.frame.image is not None
    )
    after = [it for it in items if it.encoder >= back]
    assert sum(it.verdict is Verdict.PASS for it in after) >= 10, "the line recovers"
    assert all(it.verdict is Verdict.PASS for it in after if it.frame.image is not None)
    assert any(a["code"] == "CAMERA_NO_FRAME" and a["event"] == "cleared" for a in alarms)
    assert app.pipeline.stats.snapshot()["deadline_misses"] == 0
    assert app.pipeline.source.health()["reconnects"] >= 1
    assert ready_while_away == [False], "not ready while items reject for want of frames"


def test_a_camera_that_is_not_found_is_a_clear_error(fake_gige, tmp_path):
    r = edge_cli("camera", "snap", "--serial", "NO-SUCH-CAM", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2
    assert "camera serial=NO-SUCH-CAM not found" in r.stderr
    assert f"Aravis-Fake-{fake_gige.serial}" in r.stderr, "the message lists what is there"

    from edge.alarms import Alarms
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(source_cfg("NO-SUCH-CAM", reconnect_backoff_s=(0.2, 0.2)))
    alarms = Alarms()
    src.bind(alarms)
    got = []
    t = threading.Thread(target=lambda: got.extend(src.frames()))
    t.start()
    end = time.monotonic() + 10
    while not alarms.is_active("CAMERA_NO_FRAME") and time.monotonic() < end:
        time.sleep(0.05)
    src.stop()
    t.join(10)
    (alarm,) = alarms.active()
    assert "camera serial=NO-SUCH-CAM not found" in alarm.message and alarm.severity == "critical"
    assert got == [], "the trigger clock waits for the camera: nothing judged, nothing passed"


def test_a_wrong_pixel_format_is_a_clear_error(fake_gige, tmp_path):
    with pytest.raises(ValidationError, match="pixel_format 'Mono12Packed' is not supported"):
        source_cfg(fake_gige.serial, pixel_format="Mono12Packed")
    with pytest.raises(ConfigError, match="Mono12Packed"):
        _pipeline_cfg(tmp_path, fake_gige.serial, 5, pixel_format="Mono12Packed")

    from edge.app import Appliance

    # supported here, not offered by this camera: the line does not start and says why
    cfg = _pipeline_cfg(tmp_path, fake_gige.serial, 5, pixel_format="BGR8")
    app = Appliance(cfg, components=False)
    app.start()
    assert app.pipeline.wait(20)
    app.stop()
    fault = [a for a in app.pipeline.alarms.history() if a.code == "CAMERA_FAULT"]
    assert fault and "pixel format 'BGR8' is not offered" in fault[0].message
    assert "Mono8" in fault[0].message, "the message lists the formats the camera offers"
    assert app.pipeline.stats.snapshot()["passed"] == 0


def test_hardware_trigger_sets_the_input_line_and_waits_for_it(fake_gige):
    from edge.capture import aravis

    cam = aravis.Camera(source_cfg(fake_gige.serial, trigger="line", trigger_source="Line0"))
    try:
        s = cam.settings()
        assert (s["TriggerMode"], s["TriggerSource"], s["TriggerActivation"]) == (
            "On",
            "Line0",
            "RisingEdge",
        )
        assert cam.pop(0.5) is None, "no pulse on the line, no frame"
    finally:
        cam.close()
    with pytest.raises(aravis.CameraError, match=r"TriggerSource 'Line7' .*offered: Line0"):
        aravis.Camera(source_cfg(fake_gige.serial, trigger="line", trigger_source="Line7"))


def test_camera_list_and_snap(fake_gige, tmp_path):
    r = edge_cli("camera", "list", "--json")
    assert r.returncode == 0, r.stderr
    cams = json.loads(r.stdout)
    assert any(c["serial"] == fake_gige.serial and c["address"] == "127.0.0.1" for c in cams)
    out = tmp_path / "snap.png"
    r = edge_cli("camera", "snap", "--serial", fake_gige.serial, "--out", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["width"], info["height"], info["serial"]) == (512, 512, fake_gige.serial)
    import cv2

    assert cv2.imread(str(out)).shape == (512, 512, 3)


def test_a_late_frame_is_discarded_never_given_to_the_next_item(fake_gige):
    """A frame timeout shorter than the camera's delay: most frames come after their item was
    rejected. Each is counted and dropped; a frame that is used belongs to its own trigger.

    1 ms is below what a trigger command, the exposure and the stream's round trip take even
    on loopback (20 ms was not: an idle machine answered within it)."""
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(source_cfg(fake_gige.serial, items=30, frame_timeout_ms=1, lost_after=99))
    frames = list(src.frames())
    assert [f.encoder for f in frames] == list(range(1, 31))
    used = [f for f in frames if f.image is not None]
    late = src.health()["late"]
    assert late >= 5, "the fake camera takes longer than 1 ms for most frames"
    assert len(used) + src.health()["missing"] == 30
    # one frame per trigger: frame id minus trigger count is the same for every frame used
    assert len({f.frame_id - f.encoder for f in used}) <= 1
    for f in frames:
        if f.image is None:
            assert f.reason == "MISSING_VIEW"


def test_free_running_camera_numbers_items_by_frame_id(fake_gige):
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(source_cfg(fake_gige.serial, trigger="free", rate_per_min=1200, items=20))
    frames = list(src.frames())
    assert [f.encoder for f in frames] == list(range(1, 21))
    ids = [f.frame_id for f in frames if f.image is not None]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_camera_opens_by_its_ip_address(fake_gige):
    from edge.capture import aravis

    cam = aravis.Camera(source_cfg(None, address="127.0.0.1"))
    try:
        assert cam.serial == fake_gige.serial
    finally:
        cam.close()


def test_a_camera_reopened_on_its_own_clock_starts_a_new_count_epoch(fake_gige):
    """Free run (as a hardware trigger): while the camera is away nobody counts what passes,
    so the frames after it is back carry a new count epoch, for the multi-view matcher to
    re-anchor that view (`edge.line.views`) instead of trusting a count that is behind."""
    from edge.capture.genicam import GenICamCapture

    src = GenICamCapture(
        source_cfg(
            fake_gige.serial,
            trigger="free",
            rate_per_min=1200,
            items=40,
            reconnect_backoff_s=(0.2, 0.5),
        )
    )
    frames = []

    def pull_and_return():
        while len(frames) < 10:
            time.sleep(0.01)
        fake_gige.kill()
        time.sleep(1.5)
        fake_gige.start()

    helper = threading.Thread(target=pull_and_return)
    helper.start()
    for f in src.frames():
        frames.append(f)
    helper.join()
    epochs = [f.count_epoch for f in frames]
    assert epochs[:10] == [0] * 10
    assert epochs == sorted(epochs) and epochs[-1] >= 1, "the camera came back: a new epoch"
    back = epochs.index(epochs[-1])
    assert len(frames) - back >= 5, "it streams again"
    counts = [f.encoder for f in frames]
    assert counts == sorted(set(counts)), "counts still rise within the source"
    assert src.health()["reconnects"] >= 1
