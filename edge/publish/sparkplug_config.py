"""`mqtt.sparkplug`: the appliance as a Sparkplug B 3.0 edge node (`mqtt.encoding: sparkplug | both`).

Kept beside the edge node it configures; `edge.config` puts it under `mqtt`. The ids
default to the station's own names, so a plant of appliances configured with distinct
station ids needs nothing more: group = the site, edge node = the station id, device =
the inspection cell.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: a Sparkplug id is one topic level: UTF-8 without '/', '+', '#' (tck-id-topic-structure-*)
_ID = re.compile(r"^[^/+#\x00-\x1f]{1,64}$")


def _sparkplug_id(v: str) -> str:
    if not _ID.match(v):
        raise ValueError(
            f"Sparkplug id {v!r} must be one MQTT topic level (1 to 64 characters, "
            "no '/', '+', '#')"
        )
    return v


SparkplugId = Annotated[str, AfterValidator(_sparkplug_id)]


class SparkplugConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: SparkplugId | None = Field(None, description="None: the station's `site`")
    edge_node_id: SparkplugId | None = Field(None, description="None: the station's `id`")
    device_id: SparkplugId | None = Field(
        None, description="the inspection station's device; None: the station's `cell`"
    )
    primary_host_id: SparkplugId | None = Field(
        None,
        description="the SCADA/MES host whose `spBv1.0/STATE/<id>` gates publishing: while it "
        "is not online no birth is sent and results wait in the outbox, then are sent in order "
        "(marked historical). None: publish whenever the broker is there",
    )
    result_qos: Literal[0, 1] = Field(
        1,
        description="QoS of the DDATA that carry results. Sparkplug asks for 0; at 1 an outbox "
        "row is deleted only after the broker's PUBACK, as for JSON. At 0 it is deleted once "
        "written to the connection, and a connection lost within the keepalive can lose it "
        "(the host then sees a seq gap)",
    )
    rebirth_min_interval_s: float = Field(
        2.0,
        ge=0,
        description="a rebirth is answered at most once per interval; requests in between are "
        "merged into one (a rebirth storm costs one birth per interval)",
    )
    host_offline_alarm_s: float = Field(
        10.0, ge=0, description="raise SPARKPLUG_HOST_OFFLINE after waiting this long for the host"
    )

    def ids(self, station: Any) -> tuple[str, str, str]:
        """(group, edge node, device), the defaults from the station; ValueError naming the key."""
        out = []
        for key, own, default in (
            ("group_id", self.group_id, "site"),
            ("edge_node_id", self.edge_node_id, "id"),
            ("device_id", self.device_id, "cell"),
        ):
            value = own or getattr(station, default)
            if not _ID.match(value):
                raise ValueError(
                    f"mqtt.sparkplug.{key}: station.{default} {value!r} cannot be a Sparkplug id "
                    f"(one MQTT topic level, no '/', '+', '#'); set mqtt.sparkplug.{key}"
                )
            out.append(value)
        return out[0], out[1], out[2]
