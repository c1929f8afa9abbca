"""Sparkplug B payloads, STATE messages and bdSeq, checked against Eclipse Tahu's decoder."""

from __future__ import annotations

import json

import pytest

from edge.publish.sparkplug_payload import (
    BdSeqStore,
    DataType,
    Metric,
    PayloadError,
    decode,
    encode,
)
from edge.publish.sparkplug_state import parse_state

from sparkplug_host import tahu  # noqa: F401


def test_every_datatype_reads_back_the_same_in_tahu(tahu):  # noqa: F811
    metrics = [
        Metric("i8", DataType.Int8, -5),
        Metric("i32", DataType.Int32, -2_000_000_000),
        Metric("i64", DataType.Int64, -7),
        Metric("u16", DataType.UInt16, 65535),
        Metric("u64", DataType.UInt64, 2**53 - 1),
        Metric("d", DataType.Double, 99.25),
        Metric("f", DataType.Float, 0.5),
        Metric("b", DataType.Boolean, True),
        Metric("s", DataType.String, "Wöhler, 2,5 ml"),
        Metric("t", DataType.DateTime, 1_767_225_600_123, historical=True),
        Metric("none", DataType.String, None),
    ]
    p = tahu.decode(encode(metrics, seq=255, timestamp_ms=1_767_225_600_000))
    assert (p["seq"], p["timestamp"]) == (255, 1_767_225_600_000)
    got = {m["name"]: m for m in p["metrics"]}
    for m in metrics:
        assert got[m.name]["type"] == m.datatype.name
        assert got[m.name]["value"] == m.value, m.name
        assert got[m.name]["timestamp"] == 1_767_225_600_000  # the message's, when not given
    assert got["t"]["isHistorical"] is True and "isHistorical" not in got["i8"]


def test_a_command_from_tahu_decodes_and_garbage_is_refused(tahu):  # noqa: F811
    data = tahu.encode(
        {
            "timestamp": 1,
            "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}],
        }
    )
    assert decode(data) == [("Node Control/Rebirth", None, True)]
    with pytest.raises(PayloadError):
        decode(b"\xff\xff\xff\xff")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"", "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b'{"online": "true", "timestamp": 1}', "'online'"),
        (b'{"online": true}', "'timestamp'"),
        (b'{"online": true, "timestamp": -1}', "'timestamp'"),
        (b'{"online": true, "timestamp": true}', "'timestamp'"),
        (b'{"online": true, "timestamp": 1.5}', "'timestamp'"),
    ],
)
def test_a_malformed_state_says_what_is_wrong(data, why):
    with pytest.raises(ValueError, match=why):
        parse_state(data)


def test_a_state_is_the_sparkplug_3_json():
    st = parse_state(json.dumps({"online": True, "timestamp": 1_700_000_000_000}).encode())
    assert (st.online, st.timestamp) == (True, 1_700_000_000_000)


def test_bdseq_counts_every_connect_wraps_at_256_and_survives_a_restart(tmp_path):
    path = tmp_path / "sparkplug-bdseq.json"
    store = BdSeqStore(path)
    assert [store.next() for _ in range(3)] == [0, 1, 2]
    assert BdSeqStore(path).next() == 3  # a restart goes on from the file
    path.write_text(json.dumps({"bdSeq": 255}))
    assert BdSeqStore(path).next() == 0
    path.write_text("garbage")
    assert BdSeqStore(path).next() == 0  # an unreadable file starts again at zero
    store = BdSeqStore(path)
    assert store.next() == 1
    store.undo()  # that CONNECT never reached a broker
    assert store.next() == 1 and BdSeqStore(path).next() == 2


@pytest.mark.parametrize(
    ("mqtt", "station", "says"),
    [
        ({"sparkplug": {"edge_node_id": "line/7"}}, {}, "mqtt.sparkplug.edge_node_id"),
        ({"sparkplug": {"group_id": "#"}}, {}, "mqtt.sparkplug.group_id"),
        ({}, {"site": "North/Plant"}, "set mqtt.sparkplug.group_id"),
        ({}, {"cell": "cell+1"}, "set mqtt.sparkplug.device_id"),
        ({"sparkplug": {"result_qos": 2}}, {}, "mqtt.sparkplug.result_qos"),
    ],
)
def test_a_sparkplug_id_that_cannot_be_a_topic_level_is_a_config_error(mqtt, station, says):
    from edge.config import ConfigError, parse_config

    data = {"station": station, "mqtt": {"enabled": True, "encoding": "sparkplug", **mqtt}}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert says in "\n".join(err.value.errors)
    data["mqtt"]["encoding"] = "json"  # the JSON topics alone do not need them
    if not mqtt:
        parse_config(data)
