"""The one seam between messages and the wire: topic names and payload encoding.

Messages are plain dicts (each with `schema` and `version`); an Encoding turns them
into a topic and bytes. JSON over the ISA-95 unified namespace is the only one now;
Sparkplug B (protobuf, its own topic tree) is a second class here, not an edit of the
publisher.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from edge.config import StationConfig

#: message kinds: result, counters, state, alarm, status, and cmd/<name> (+ responses)
KINDS = ("result", "counters", "state", "alarm", "status")


class Encoding(Protocol):
    name: str

    def topic(self, kind: str) -> str: ...
    def command_filter(self) -> str: ...
    def command_name(self, topic: str) -> str | None: ...
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

    def command_filter(self) -> str:
        return f"{self.base}/cmd/+"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None

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
