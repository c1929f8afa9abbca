"""Broker credentials come from files (systemd LoadCredential), never from the YAML in clear."""

from __future__ import annotations

import subprocess
import time

import pytest

from edge.config import ConfigError, parse_config
from edge.publish.secrets import SecretError, read_secret

from services import Line, Mosquitto, line_config


def test_a_relative_secret_is_read_from_the_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("mqtt-password") == "s3cret"


def test_an_empty_or_missing_secret_is_a_clear_error(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(tmp_path / "empty")
    with pytest.raises(SecretError, match="cannot read secret file"):
        read_secret(tmp_path / "missing")


def test_a_password_inline_in_the_yaml_is_refused():
    with pytest.raises(ConfigError, match=r"mqtt\.password"):
        parse_config({"mqtt": {"enabled": True, "username": "edge", "password": "hunter2"}})


@pytest.fixture
def auth_broker(tmp_path):
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed")
    folder = tmp_path / "broker"
    folder.mkdir()
    pwfile = folder / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "edge", "right"],
        check=True,
        capture_output=True,
    )
    b = Mosquitto(folder)
    text = b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    b.conf.write_text(text + f"password_file {pwfile}\n")
    b.start()
    yield b
    b.stop()


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_the_broker_password_comes_from_a_file_and_a_refusal_is_an_alarm(
    auth_broker, tmp_path, password
):
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    cfg = line_config(tmp_path / "state", period_s=0.02, mqtt_port=auth_broker.port)
    cfg.mqtt.username = "edge"
    cfg.mqtt.password_file = secret
    line = Line(cfg, [], 0.02, batch=False).start()
    try:
        if password == "right":
            assert wait_until(lambda: line.mqtt.status()["up"])
        else:
            assert wait_until(lambda: line.pipeline.alarms.is_active("MQTT_OFFLINE"))
            assert "refused" in line.mqtt.status()["detail"]
            assert not line.mqtt.status()["up"]
    finally:
        line.stop()
