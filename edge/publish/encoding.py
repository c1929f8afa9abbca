"""The one seam between messages and the wire: topic names and payload encoding.

Messages are plain dicts (each with `schema` and `version`); an Encoding turns them
into a topic and bytes: JSON over the ISA-95 unified namespace. Sparkplug B is not a
second Encoding but a component of its own (`edge.publish.sparkplug`): it is a session
protocol (births, deaths, bdSeq, seq, rebirth, a primary host's state), not only another
way of writing the same messages.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from edge.config import StationConfig

#: message kinds: result, counters, state, alarm, status, and cmd/<identity>/<name> (+ responses)
KINDS = ("result", "counters", "state", "alarm", "status")


class Encoding(Protocol):
    name: str

    def topic(self, kind: str) -> str: ...
    def command_filters(self) -> list[str]: ...
    def command_route(self, topic: str) -> tuple[str | None, str] | None: ...
    def command_topic(self, identity: str, command: str) -> str: ...
    def response_topic(self, identity: str | None, command: str) -> str: ...
    def encode(self, kind: str, message: dict[str, Any]) -> bytes: ...


class JsonEncoding:
    """`<enterprise>/<site>/<area>/<line>/<cell>/inspection/<kind>`, UTF-8 JSON payloads."""

    name = "json"

    def __init__(self, station: StationConfig):
        self.base = "/".join(
            (
                station.enterprise,
                station.site,
                station.area,
                station.line,
                station.cell,
                "inspection",
            )
        )

    def topic(self, kind: str) -> str:
        return f"{self.base}/{kind}"

    def command_filters(self) -> list[str]:
        """`cmd/<identity>/<name>`, and `cmd/<name>` only to answer that an identity is missing."""
        return [f"{self.base}/cmd/+/+", f"{self.base}/cmd/+"]

    def command_route(self, topic: str) -> tuple[str | None, str] | None:
        """(identity, command) of a command topic; identity None for the form without one.

        The identity level is the one the broker's ACL ties to the publisher's
        authenticated name (`pattern write <base>/cmd/%u/#`), see `edge.publish.policy`.
        """
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) == 1 and parts[0]:
            return None, parts[0]
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
        return None

    def command_topic(self, identity: str, command: str) -> str:
        return f"{self.base}/cmd/{identity}/{command}"

    def response_topic(self, identity: str | None, command: str) -> str:
        """Where an answer goes when the request names no MQTT 5 response topic."""
        if identity is None:
            return f"{self.base}/cmd/{command}/response"
        return f"{self.base}/cmd/{identity}/{command}/response"

    def encode(self, kind: str, message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


ENCODINGS = {"json": JsonEncoding}


def make_encoding(name: str, station: StationConfig) -> Encoding:
    return ENCODINGS[name](station)


def load_schema(name: str, version: int = 1) -> dict[str, Any]:
    """The JSON Schema of one payload (`result`, `status`, `cmd-start_batch`, ...) from the package."""
    from importlib import resources

    text = (
        resources.files("edge.publish").joinpath("schemas", f"{name}.v{version}.json").read_text()
    )
    return json.loads(text)
