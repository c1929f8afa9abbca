"""Structured logs: one JSON object per line on stdout/stderr, which journald keeps.

Fields: ts, level, logger, msg, and any `extra=` (item_id, code, ...). Two rules hold
for every record: no image data (arrays and bytes become a short placeholder) and no
secrets (keys that look like passwords, tokens or keys are redacted, and so are
`password=...` pairs inside messages).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|session[_-]?key|"
    r"credential|private[_-]?key|authorization|cookie",
    re.I,
)
SECRET_IN_TEXT = re.compile(
    r"(?P<k>\b(?:password|passwd|pwd|secret|token|api[_-]?key|session[_-]?key)\b\s*[=:]\s*)"
    r"(?P<q>['\"]?)(?P<v>[^\s'\",;&]+)",
    re.I,
)
URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?P<at>@)", re.I)
REDACTED = "***"

#: LogRecord attributes that are not `extra=` fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact_text(text: str) -> str:
    text = SECRET_IN_TEXT.sub(lambda m: f"{m['k']}{m['q']}{REDACTED}", text)
    return URL_PASSWORD.sub(lambda m: f"{m['pre']}{REDACTED}{m['at']}", text)


def scrub(value: Any, depth: int = 0) -> Any:
    """A log-safe copy: secrets redacted, image data and other blobs replaced."""
    if depth > 4:
        return "…"
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):  # numpy arrays: never the pixels
        return f"<array {'x'.join(str(s) for s in shape)} {value.dtype}>"
    if isinstance(value, dict):
        return {
            str(k): REDACTED if SECRET_KEY.search(str(k)) else scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        items = list(value)
        out = [scrub(v, depth + 1) for v in items[:50]]
        if len(items) > 50:
            out.append(f"… {len(items) - 50} more")
        return out
    return redact_text(str(value))


class RedactFilter(logging.Filter):
    """Applied to every record before any handler formats it (JSON or plain text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args
            if isinstance(args, dict):
                record.args = scrub(args)
            else:
                record.args = tuple(scrub(a) for a in args)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        for key in set(vars(record)) - _STANDARD:
            val = getattr(record, key)
            setattr(record, key, REDACTED if SECRET_KEY.search(key) else scrub(val))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        if record.threadName and record.threadName != "MainThread":
            out["thread"] = record.threadName
        for key in sorted(set(vars(record)) - _STANDARD):
            out[key] = scrub(getattr(record, key))
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


def wants_json() -> bool:
    """JSON when asked (EDGE_LOG_FORMAT=json) or when stderr is the journal."""
    fmt = os.environ.get("EDGE_LOG_FORMAT", "").lower()
    if fmt in ("json", "text"):
        return fmt == "json"
    return bool(os.environ.get("JOURNAL_STREAM"))


def configure(
    level: int = logging.INFO, stream: Any = None, json_format: bool | None = None
) -> None:
    """Install one handler on the root logger (replacing any), with redaction always on."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_format if json_format is not None else wants_json():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)


class VerdictLog:
    """Component: one INFO line per REJECT and per alarm event, with the item id as a field."""

    name = "verdict-log"

    def __init__(self, app: Any):
        self.pipeline = getattr(app, "pipeline", app)
        self.log = logging.getLogger("edge.line")
        self.subscription = None
        if self.log.isEnabledFor(logging.INFO):
            self.subscription = self.pipeline.bus.subscribe(
                ["verdict", "alarm"], self._on_event, name="verdict-log", maxsize=2000
            )

    def _on_event(self, topic: str, ev: Any) -> None:
        if topic == "alarm":
            self.log.log(
                logging.WARNING if ev.get("event") == "raised" else logging.INFO,
                "alarm %s %s: %s",
                ev.get("code"),
                ev.get("event"),
                ev.get("message"),
                extra={
                    "alarm": ev.get("code"),
                    "severity": ev.get("severity"),
                    "event": ev.get("event"),
                },
            )
        elif ev.verdict.value == "REJECT":
            self.log.info(
                "reject %s: %s",
                ev.id,
                ",".join(ev.reasons),
                extra={
                    "item_id": ev.id,
                    "reasons": list(ev.reasons),
                    "batch": ev.batch,
                    "latency_ms": None if ev.latency_ms is None else round(ev.latency_ms, 2),
                },
            )

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"up": True, "enabled": self.subscription is not None}


def build(app: Any) -> VerdictLog:
    return VerdictLog(app)
