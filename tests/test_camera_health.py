"""Camera health in maintenance and /metrics: alarms before the inspection degrades."""

from __future__ import annotations

import time
from pathlib import Path

from fake_gige import fake_gige_fixture, lossy_gige_fixture  # noqa: F401 (fixtures)

from edge.config import load_config, parse_config
from edge.domain import Verdict

ROOT = Path(__file__).resolve().parent.parent


def _appliance(state: Path, serial: str, items: int):
    from edge.app import Appliance
    from edge.ops import camera_health, maintenance, metrics

    recipes = load_config(ROOT / "examples" / "gige-fake.yaml").model_dump(mode="json")["recipes"]
    cfg = parse_config(
        {
            "records": {"state_dir": str(state), "sample_pass_every": 0},
            "pipeline": {"deadline_ms": 1000},  # what is tested here is not the timing
            "source": {
                "type": "genicam",
                "serial": serial,
                "rate_per_min": 300,
                "frame_timeout_ms": 150,
                "lost_after": 99,  # a busy machine's late frame must not reopen the camera here
                "items": items,
                "exposure_us": 10000,
                "gain": 0,
            },
            "recipe": "camera-check",
            "recipes": recipes,
            "ops": {"camera": {"poll_s": 0.3}, "maintenance": {"bucket_s": 0, "min_points": 3}},
            "web": {"enabled": False},
        }
    )
    app = Appliance(cfg, components=False)
    app.components = [metrics.build(app), maintenance.build(app), camera_health.build(app)]
    return app


def _wait(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_exposure_changed_on_the_camera_alarms_while_items_still_pass(fake_gige, tmp_path):
    app = _appliance(tmp_path, fake_gige.serial, items=40)
    items = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: items.append(it))
    app.start()
    try:
        assert _wait(lambda: len(items) >= 10)
        assert not app.pipeline.alarms.is_active("CAMERA_SETTINGS_DRIFT")
        # someone turns the exposure down with a vendor tool: images get darker, slowly
        app.pipeline.source._link.cam.cam.set_exposure_time(7000.0)
        n_before = len(items)
        assert _wait(lambda: app.pipeline.alarms.is_active("CAMERA_SETTINGS_DRIFT"), 5)
        alarm = next(a for a in app.pipeline.alarms.active() if a.code == "CAMERA_SETTINGS_DRIFT")
        assert "exposure (7000 instead of 10000)" in alarm.message
        text = app.components[0].render().decode()
        assert app.pipeline.wait(30)
    finally:
        app.stop()
    after = [it for it in items[n_before + 3 :] if it.frame.image is not None]
    assert len(after) >= 5
    assert not [it for it in after if "LIGHTING" in it.reasons], "the exposure tool still passes"
    assert sum(it.verdict is Verdict.PASS for it in after) >= 5
    cam = fake_gige.serial
    assert f'edge_camera_exposure_microseconds{{camera="{cam}"}} 7000.0' in text
    assert f'edge_camera_connected{{camera="{cam}"}} 1.0' in text
    frames = [ln for ln in text.splitlines() if ln.startswith("edge_camera_frames_total{")]
    assert frames and float(frames[0].split()[-1]) >= 10
    assert 'edge_camera_frame_rate{camera="' in text


def test_lost_packets_raise_the_link_alarm_and_never_pass_an_item(lossy_gige, tmp_path):
    app = _appliance(tmp_path, lossy_gige.serial, items=25)
    items = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: items.append(it))
    app.start()
    try:
        assert _wait(lambda: app.pipeline.alarms.is_active("CAMERA_RESENDS"), 15)
        text = app.components[0].render().decode()
        assert app.pipeline.wait(30)
    finally:
        app.stop()
    lost = [ln for ln in text.splitlines() if ln.startswith("edge_camera_missing_packets_total{")]
    assert lost and float(lost[0].split()[-1]) > 0
    assert all(it.frame.image is not None for it in items if it.verdict is Verdict.PASS)


class _WarmCamera:
    """A camera that reports DeviceTemperature (the fake one has none): the health contract."""

    cfg = None

    def __init__(self) -> None:
        self.temp = 45.0

    def poll_device(self) -> dict:
        return {"temperature_c": self.temp}

    def health(self) -> dict:
        return {"camera": "cam1", "connected": True, "fps": 10.0, "received_packets": 0}


def test_a_warming_camera_alarms_at_its_limit_and_is_trended(tmp_path):
    """Stand-in for a camera that exposes DeviceTemperature; proves the rule and the trend
    feed, not that a given camera model reports its temperature this way."""
    from edge.alarms import Alarms
    from edge.bus import Bus
    from edge.ops.camera_health import CameraHealth
    from edge.ops.config import CameraHealthConfig, MaintenanceConfig
    from edge.ops.maintenance import Maintenance

    class App:
        pass

    app = App()
    app.pipeline = App()
    app.pipeline.source = _WarmCamera()
    app.pipeline.bus = Bus()
    app.pipeline.alarms = Alarms(app.pipeline.bus)
    maint = Maintenance(app, MaintenanceConfig(bucket_s=0, min_points=3))
    app.components = [maint]
    health = CameraHealth(app, CameraHealthConfig(max_temperature_c=55))
    for temp in (45.0, 48.0, 51.0, 54.0):
        app.pipeline.source.temp = temp
        health.poll()
    assert not app.pipeline.alarms.is_active("CAMERA_TEMPERATURE")
    trend = maint.trends[("camera_temperature_c", "cam1")]
    assert trend.last is not None and trend.last.slope_per_h > 0
    app.pipeline.source.temp = 56.0
    health.poll()
    assert app.pipeline.alarms.is_active("CAMERA_TEMPERATURE")
    app.pipeline.source.temp = 50.0
    health.poll()
    assert not app.pipeline.alarms.is_active("CAMERA_TEMPERATURE")
    app.pipeline.bus.close()


class _Camera(_WarmCamera):
    def __init__(self, label: str, temp: float) -> None:
        self.label, self.temp = label, temp

    def health(self) -> dict:
        return {"camera": self.label, "connected": True, "fps": 10.0, "received_packets": 0}


def test_every_camera_of_a_multi_view_station_is_watched_and_named_in_its_alarm(tmp_path):
    """Three cameras: the one above the vial overheats. Its alarm names its view, the others
    stay quiet, and /metrics lists every camera (not only the first view's)."""
    from edge.alarms import Alarms
    from edge.bus import Bus
    from edge.ops.camera_health import CameraHealth
    from edge.ops.config import CameraHealthConfig
    from edge.ops.metrics import Metrics

    class App:
        pass

    app = App()
    app.pipeline = App()
    cams = {"front": _Camera("CAM-1", 40.0), "left": _Camera("CAM-2", 41.0)}
    cams["top"] = _Camera("CAM-3", 42.0)
    app.pipeline.view_sources = cams
    app.pipeline.source = cams["front"]
    app.pipeline.bus = Bus()
    app.pipeline.alarms = Alarms(app.pipeline.bus)
    app.components = []
    health = CameraHealth(app, CameraHealthConfig(max_temperature_c=55))
    health.poll()
    cams["top"].temp = 58.0
    health.poll()
    active = {a.code for a in app.pipeline.alarms.active()}
    assert active == {"CAMERA_TEMPERATURE_TOP"}
    alarm = app.pipeline.alarms.active()[0]
    assert "CAM-3 (view top)" in alarm.message
    status = health.status()
    assert status["up"] and set(status["cameras"]) == {"front", "left", "top"}
    text = Metrics.of(app).render().decode()
    for label, temp in (("CAM-1", 40.0), ("CAM-2", 41.0), ("CAM-3", 58.0)):
        assert f'edge_camera_temperature_celsius{{camera="{label}"}} {temp}' in text
    cams["top"].temp = 50.0
    health.poll()
    assert not app.pipeline.alarms.active()
    app.pipeline.bus.close()


def test_each_view_image_is_trended_for_lamp_and_dirt(tmp_path):
    """A simulated station with two views: brightness and contrast trended per camera."""
    from edge.app import Appliance
    from edge.ops import maintenance

    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "source": {"type": "simulator", "scenario": "vials", "items": 12, "realtime": False},
            "views": [{"name": "front"}, {"name": "side", "tools": ["glass"]}],
            "pipeline": {"view_wait_ms": 900, "deadline_ms": 1500},
            "ops": {"maintenance": {"bucket_s": 0, "min_points": 3, "sample_every": 1}},
            "challenge": {"at_batch_start": False},
            "web": {"enabled": False},
        }
    )
    app = Appliance(cfg, components=False)
    maint = maintenance.build(app)
    app.components = [maint]
    app.start()
    try:
        assert app.pipeline.wait(60)
    finally:
        app.stop()
    cams = {cam for (measure, cam) in maint.trends if measure == "brightness"}
    assert cams == {"front", "side"}
