"""Who may command the line over MQTT, and as whom it is recorded: decided by the appliance.

Against a real Mosquitto with a password file and the example acl_file of the deployment
guide (`examples/mosquitto/acl`), or an anonymous one where that is the point.
"""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import ConfigError, parse_config
from edge.ops.metrics import Metrics
from edge.publish.refusals import SUMMARY_ACTION, RefusalLimiter

from mqtt_support import (
    ALL_COMMANDS,
    GOOD,
    Requester,
    appliance_login,
    make_pki,
    publish,
    wait_until,
)
from services import (  # noqa: F401
    BASE,
    EXAMPLES,
    PLANT_USERS,
    Line,
    Mosquitto,
    line_config,
    mosquitto,
    plant_broker,
)


@pytest.fixture
def make_line(tmp_path):
    lines = []

    def make(port, batch=True, images=(), **kw):
        line = Line(
            line_config(tmp_path / f"state{len(lines)}", period_s=0.02, mqtt_port=port, **kw),
            list(images),
            0.02,
            batch=batch,
        )
        lines.append(line)
        line.start()
        assert wait_until(lambda: line.mqtt.status()["up"])
        return line

    yield make
    for line in lines:
        line.stop()


def audit_users(line) -> set[str]:
    return {e["user"] for e in line.app.audit.entries()}


def mes_rows(line) -> list[dict]:
    return [e for e in line.app.audit.entries() if e["action"].startswith("mes.")]


# --------------------------------------------------------------------------- authenticated broker


def test_an_authorised_identity_starts_and_stops_a_batch_and_the_audit_names_it(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    line = make_line(plant_broker.port, batch=False, mqtt=appliance_login(tmp_path))
    mes = Requester(plant_broker.port, "mes1")
    try:
        resp = mes.send("start_batch", {**GOOD, "by": "qa1"}, user="admin1")
        assert resp["ok"], resp
        assert resp["sender"]["user"] == "mqtt:mes1" and resp["sender"]["authenticated"]
        assert mes.send("stop_batch", {"by": "qa1", "reason": "end of shift"})["ok"]
    finally:
        mes.close()
    rows = {e["action"]: e for e in mes_rows(line)}
    assert rows["mes.start_batch"]["user"] == "mqtt:mes1"
    assert rows["mes.stop_batch"]["user"] == "mqtt:mes1"
    # what the message said about itself is kept, labelled as a claim
    started = json.loads(rows["mes.start_batch"]["new"])
    assert started["claimed_by"] == "qa1" and started["claimed_user"] == "admin1"
    assert json.loads(rows["mes.stop_batch"]["new"]) == {"claimed_by": "qa1"}
    assert not audit_users(line) & {"qa1", "admin1", "mqtt:qa1", "mqtt:admin1"}
    batch = (
        line.pipeline.db.connect().execute("SELECT started_by, ended_by FROM batches").fetchone()
    )
    assert tuple(batch) == ("mqtt:mes1", "mqtt:mes1")


def test_an_identity_not_allowed_a_command_is_refused_and_no_row_names_the_claimed_by(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    login = appliance_login(tmp_path, allow={"mes1": ["start_batch"], "dashboard": []})
    line = make_line(plant_broker.port, mqtt=login)
    batch = line.pipeline.batch.id
    dash = Requester(plant_broker.port, "dashboard", reply_default=True)
    mes = Requester(plant_broker.port, "mes1")
    try:
        resp = dash.send("stop_batch", {"by": "qa1"}, user="admin1")
        assert not resp["ok"] and resp["error"]["code"] == "not_authorised"
        assert "'dashboard' may not send stop_batch" in resp["error"]["message"]
        # allowed some commands is not allowed all of them
        resp = mes.send("stop_batch", {"by": "qa1"})
        assert resp["error"]["code"] == "not_authorised"
    finally:
        dash.close()
        mes.close()
    assert line.pipeline.batch is not None and line.pipeline.batch.id == batch
    rows = mes_rows(line)
    assert [(e["user"], e["action"]) for e in rows] == [
        ("mqtt:dashboard", "mes.stop_batch.refused"),
        ("mqtt:mes1", "mes.stop_batch.refused"),
    ]
    assert json.loads(rows[0]["new"]) == {"claimed_by": "qa1", "claimed_user": "admin1"}
    assert not audit_users(line) & {"qa1", "admin1", "mqtt:qa1"}


def test_a_client_cannot_publish_commands_under_another_identity(plant_broker, make_line, tmp_path):  # noqa: F811
    """The example ACL is what makes the topic's identity the authenticated one."""
    line = make_line(plant_broker.port, mqtt=appliance_login(tmp_path))
    batch = line.pipeline.batch.id
    publish(
        plant_broker.port,
        f"{BASE}/cmd/mes1/stop_batch",
        {"by": "qa1"},
        username="dashboard",
        password=PLANT_USERS["dashboard"],
    )
    # a command from mes1 itself, answered after anything the broker let through before it
    mes = Requester(plant_broker.port, "mes1")
    try:
        assert mes.send("start_batch", GOOD)["error"]["code"] == "batch_running"
    finally:
        mes.close()
    assert line.pipeline.batch.id == batch
    assert [e["action"] for e in mes_rows(line)] == ["mes.start_batch.refused"]
    assert line.mqtt.status()["commands"]["refused"] == {"batch_running": 1}


def test_with_tls_client_certificates_the_identity_is_the_certificates_cn(make_line, tmp_path):
    """No passwords: the broker takes each client's CN as its name (use_identity_as_username)."""
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed")
    pki = make_pki(tmp_path / "pki", "edge-inspect", "mes1", "dashboard")
    ca, cert, key = pki["broker"]
    folder = tmp_path / "tls-broker"
    folder.mkdir()
    tls_options = [
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    acl = (EXAMPLES / "mosquitto" / "acl").read_text()
    broker = Mosquitto(folder, acl=acl, allow_anonymous=False, listener_options=tls_options)
    broker.start()
    try:
        ca, cert, key = pki["edge-inspect"]
        tls = {"ca_file": str(ca), "cert_file": str(cert), "key_file": str(key)}
        allow = {"mes1": ALL_COMMANDS}
        line = make_line(broker.port, batch=False, mqtt={"tls": tls, "commands": {"allow": allow}})
        assert line.mqtt.policy.authenticated  # a client certificate is a credential
        mes = Requester(broker.port, "mes1", tls=pki["mes1"])
        try:
            resp = mes.send("start_batch", {**GOOD, "by": "qa1"})
            assert resp["ok"] and resp["sender"]["user"] == "mqtt:mes1", resp
        finally:
            mes.close()
        # another certificate cannot publish under mes1's name
        publish(broker.port, f"{BASE}/cmd/mes1/stop_batch", {}, tls=pki["dashboard"])
        mes = Requester(broker.port, "mes1", tls=pki["mes1"])  # answered after it, if it came
        try:
            assert mes.send("start_batch", GOOD)["error"]["code"] == "batch_running"
        finally:
            mes.close()
        assert line.pipeline.batch is not None and line.pipeline.batch.lot == "A12B"
        assert [(e["user"], e["action"]) for e in mes_rows(line)] == [
            ("mqtt:mes1", "mes.start_batch"),
            ("mqtt:mes1", "mes.start_batch.refused"),
        ]
    finally:
        broker.stop()


def test_the_appliance_checks_that_the_broker_enforces_identities(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    line = make_line(plant_broker.port, mqtt=appliance_login(tmp_path))
    assert wait_until(lambda: line.mqtt.check.done)
    check = line.mqtt.status()["commands"]["broker_check"]
    assert check["problems"] == [] and len(check["notes"]) == 2, check
    assert line.mqtt.policy.trusted
    assert not line.pipeline.alarms.is_active("MQTT_IDENTITY_UNTRUSTED")


LAX_ACL = f"""# no per-identity pattern: every account may write every command topic
user edge-inspect
topic readwrite {BASE}/#
topic write mes/replies/#
user mes1
topic readwrite {BASE}/#
topic read mes/replies/mes1/#
"""


@pytest.mark.parametrize(
    ("broker_kw", "why"),
    [
        ({"users": PLANT_USERS, "acl": LAX_ACL}, "under another identity"),
        # a broker without a password file takes any user name at its word
        ({"allow_anonymous": True}, "unknown user name"),
    ],
    ids=["acl-without-identity-pattern", "no-password-check"],
)
def test_a_broker_that_does_not_enforce_identities_is_treated_as_anonymous(
    make_line, tmp_path, broker_kw, why
):
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed")
    folder = tmp_path / "lax-broker"
    folder.mkdir()
    broker = Mosquitto(folder, **broker_kw).start()
    try:
        line = make_line(broker.port, mqtt=appliance_login(tmp_path))
        assert wait_until(lambda: line.mqtt.check.done)
        assert line.pipeline.alarms.is_active("MQTT_IDENTITY_UNTRUSTED")
        assert not line.mqtt.policy.trusted
        mes = Requester(broker.port, "mes1")
        try:
            resp = mes.send("stop_batch", {"by": "qa1"})
        finally:
            mes.close()
        assert resp["error"]["code"] == "not_authorised" and why in resp["error"]["message"]
        assert resp["sender"]["user"] == "mqtt:anonymous"
        assert line.pipeline.batch is not None
        assert not audit_users(line) & {"mqtt:mes1", "qa1", "mqtt:qa1"}
    finally:
        broker.stop()


def test_the_form_without_an_identity_is_refused_and_says_where_commands_go(
    mosquitto,  # noqa: F811
    make_line,
):
    line = make_line(mosquitto.port, mqtt={"commands": {"anonymous": ALL_COMMANDS}})
    anon = Requester(mosquitto.port, "qa1", anonymous=True)
    try:
        resp = anon.send("stop_batch", {}, topic=f"{BASE}/cmd/stop_batch")
    finally:
        anon.close()
    assert resp["error"]["code"] == "no_identity"
    assert "cmd/<identity>/<command>" in resp["error"]["message"]
    assert line.pipeline.batch is not None


# --------------------------------------------------------------------------- anonymous broker


def test_on_an_anonymous_broker_commands_are_refused_with_a_warning_at_start(
    mosquitto,  # noqa: F811
    make_line,
    caplog,
):
    with caplog.at_level(logging.WARNING, logger="edge.publish.policy"):
        line = make_line(mosquitto.port)
    assert "without credentials" in caplog.text
    anon = Requester(mosquitto.port, "qa1", anonymous=True)
    try:
        resp = anon.send("stop_batch", {"by": "qa1"}, user="admin1")
    finally:
        anon.close()
    assert not resp["ok"] and resp["error"]["code"] == "not_authorised"
    assert "without credentials" in resp["error"]["message"]
    assert resp["sender"] == {
        "user": "mqtt:anonymous",
        "authenticated": False,
        "claimed_identity": "qa1",
        "claimed_user": "admin1",
        "claimed_by": "qa1",
    }
    assert line.pipeline.batch is not None
    rows = mes_rows(line)
    assert [(e["user"], e["action"]) for e in rows] == [
        ("mqtt:anonymous", "mes.stop_batch.refused")
    ]
    assert not audit_users(line) & {"qa1", "admin1", "mqtt:qa1"}


def test_commands_allowed_for_anonymous_are_recorded_as_anonymous_not_as_the_claim(
    mosquitto,  # noqa: F811
    make_line,
):
    line = make_line(mosquitto.port, mqtt={"commands": {"anonymous": ["stop_batch"]}})
    anon = Requester(mosquitto.port, "qa1", anonymous=True)
    try:
        assert anon.send("stop_batch", {"by": "qa1"})["ok"]
        assert anon.send("start_batch", GOOD)["error"]["code"] == "not_authorised"
    finally:
        anon.close()
    assert line.pipeline.batch is None
    stop = next(e for e in mes_rows(line) if e["action"] == "mes.stop_batch")
    assert stop["user"] == "mqtt:anonymous"
    assert json.loads(stop["new"]) == {"claimed_identity": "qa1", "claimed_by": "qa1"}


# --------------------------------------------------------------------------- ready for commands


def test_the_appliance_says_online_only_once_the_broker_has_its_command_subscription(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    """An MES sends its first command when it sees "online": the appliance must hear it."""
    line = make_line(plant_broker.port, mqtt=appliance_login(tmp_path))
    me = line.mqtt.client._client_id.decode()
    assert line.mqtt.status()["commands"]["listening"]
    seen = plant_broker.log.read_text().splitlines()  # in the order the broker handled them
    suback = next(i for i, s in enumerate(seen) if f"Sending SUBACK to {me}" in s)
    online = next(
        i for i, s in enumerate(seen) if f"Received PUBLISH from {me}" in s and "/status'" in s
    )
    assert suback < online, "\n".join(seen)
    mes = Requester(plant_broker.port, "mes1")
    try:
        resp = mes.send("stop_batch", {"by": "qa1"}, user="admin1")
    finally:
        mes.close()
    assert resp["ok"], resp


def test_a_command_subscription_the_broker_refuses_is_reported_not_silently_deaf(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    """Brokers that check subscriptions (not Mosquitto's acl_file, which filters at delivery)
    answer SUBACK with "Not authorized": the broker's answer is handed in here."""
    line = make_line(plant_broker.port, mqtt=appliance_login(tmp_path))
    pub = line.mqtt
    refused = [ReasonCode(PacketTypes.SUBACK, "Not authorized")]
    pub._on_subscribe(pub.client, None, pub._sub_mid, refused, None)
    st = pub.status()
    assert st["up"] is False and st["commands"]["listening"] is False
    assert "broker refused the command subscription (Not authorized)" in st["detail"]


# --------------------------------------------------------------------------- retained, flood


def test_a_retained_stop_batch_on_the_broker_is_ignored(plant_broker, make_line, tmp_path):  # noqa: F811
    stop = {"by": "qa1", "reason": "left on the broker"}
    publish(
        plant_broker.port,
        f"{BASE}/cmd/mes1/stop_batch",
        stop,
        username="mes1",
        password=PLANT_USERS["mes1"],
        retain=True,
    )
    line = make_line(plant_broker.port, mqtt=appliance_login(tmp_path))
    assert wait_until(lambda: line.mqtt.status()["commands"]["retained_ignored"] == 1)
    assert line.pipeline.batch is not None
    # published live with the retain flag, it is ignored too (it would replay at each connect)
    publish(
        plant_broker.port,
        f"{BASE}/cmd/mes1/stop_batch",
        stop,
        username="mes1",
        password=PLANT_USERS["mes1"],
        retain=True,
    )
    assert wait_until(lambda: line.mqtt.status()["commands"]["retained_ignored"] == 2)
    assert line.pipeline.batch is not None
    assert mes_rows(line) == []
    assert b"edge_mqtt_retained_commands_ignored_total 2.0" in Metrics.of(line.app).render()


def test_a_flood_of_refused_commands_writes_a_bounded_number_of_audit_rows(
    plant_broker,  # noqa: F811
    make_line,
    tmp_path,
):
    login = appliance_login(tmp_path, refusals_audited=5, refusal_interval_s=3600)
    line = make_line(plant_broker.port, mqtt=login)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv5)
    c.username_pw_set("dashboard", PLANT_USERS["dashboard"])
    c.connect("127.0.0.1", plant_broker.port)
    c.loop_start()
    n = 400
    try:
        for i in range(n):
            c.publish(f"{BASE}/cmd/dashboard/stop_batch", json.dumps({"by": f"qa{i}"}), qos=1)

        def all_seen():
            st = line.mqtt.status()["commands"]
            return sum(st["refused"].values()) + st["dropped"] == n

        assert wait_until(all_seen, 60), line.mqtt.status()["commands"]
    finally:
        c.disconnect()
        c.loop_stop()
    st = line.mqtt.status()["commands"]
    refused = st["refused"]["not_authorised"]
    assert st["refusals_not_audited"] == refused - 5
    assert line.pipeline.batch is not None
    assert len(mes_rows(line)) == 5  # one by one, the rest only counted until the interval ends
    metrics = Metrics.of(line.app).render().decode()
    assert f'edge_mqtt_commands_refused_total{{code="not_authorised"}} {float(refused)}' in metrics
    line.stop()  # the interval's summary is written at the latest when the appliance stops
    rows = line.app.audit.entries()
    summary = [e for e in rows if e["action"] == SUMMARY_ACTION]
    assert len(summary) == 1
    assert json.loads(summary[0]["new"])["refused"] == refused - 5
    assert len([e for e in rows if e["action"].startswith("mes.")]) == 6


def test_refusals_are_audited_at_most_limit_plus_one_rows_per_interval():
    rows: list[dict] = []

    class Audit:
        def record(self, **kw):
            rows.append(kw)

    now = [1000.0]
    lim = RefusalLimiter(Audit(), limit=3, interval_s=60, clock=lambda: now[0])
    for _interval in range(5):
        for _ in range(1000):
            lim.refused("mqtt:x", "mes.stop_batch.refused", "not_authorised", "no")
        now[0] += 61
    lim.flush()
    assert len(rows) == 5 * (3 + 1)
    summaries = [r for r in rows if r["action"] == SUMMARY_ACTION]
    assert [s["new"]["refused"] for s in summaries] == [997] * 5
    assert summaries[0]["new"]["by_code"] == {"not_authorised": 997}
    assert lim.total["not_authorised"] == 5000 and lim.not_audited == 4985


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("commands", "where"),
    [
        ({"allow": {"mes/1": ["stop_batch"]}}, "mqtt.commands.allow"),
        ({"allow": {"mes+": ["stop_batch"]}}, "mqtt.commands.allow"),
        ({"allow": {"mes1": ["launch_rocket"]}}, "mqtt.commands.allow.mes1"),
        ({"anonymous": ["*"]}, "mqtt.commands.anonymous"),
    ],
)
def test_a_bad_command_policy_is_a_config_error_with_its_key(commands, where):
    with pytest.raises(ConfigError) as exc:
        parse_config({"mqtt": {"enabled": True, "commands": commands}})
    assert any(where in e for e in exc.value.errors), exc.value.errors


def test_by_default_nobody_may_send_commands():
    cfg = parse_config({"mqtt": {"enabled": True, "username": "edge-inspect"}}).mqtt.commands
    assert cfg.enabled and cfg.allow == {} and cfg.anonymous == []
