"""What each printed line must say: fields, date formats, expected strings, comparison.

One home for the printed form of a GS1 field, shared by the OCV tool (what to expect) and
the simulator (what to print), so the two can never disagree about a format.
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import re
import threading
from dataclasses import dataclass

#: Printed fields and the GS1 application identifier each one comes from.
FIELD_AI: dict[str, str] = {"gtin": "01", "expiry": "17", "lot": "10", "serial": "21"}
#: Fields whose expected value the batch knows (the serial comes from the code alone).
BATCH_FIELDS = ("gtin", "expiry", "lot")

_MONTHS = [m.upper() for m in calendar.month_abbr[1:]]
_TOKEN = re.compile(r"YYYY|YY|MMM|MM|DD")


def check_date_format(fmt: str) -> str:
    """A date format must name a year and a month (e.g. 'MM/YYYY', 'YYYY-MM', 'YYMMDD')."""
    tokens = _TOKEN.findall(fmt)
    if not any(t in ("YYYY", "YY") for t in tokens) or not any(t in ("MM", "MMM") for t in tokens):
        raise ValueError(f"date format {fmt!r} needs a year (YYYY or YY) and a month (MM or MMM)")
    if len(tokens) != len(set(tokens)):
        raise ValueError(f"date format {fmt!r} repeats a token")
    return fmt


def _yymmdd(s: str) -> tuple[int, int, int]:
    if len(s) != 6 or not s.isdigit():
        raise ValueError(f"expiry {s!r} is not YYMMDD")
    return 2000 + int(s[:2]), int(s[2:4]), int(s[4:6])


def format_date(yymmdd: str, fmt: str) -> str:
    """AI (17) YYMMDD printed in `fmt`; day 00 (end of month) prints as the month's last day."""
    y, m, d = _yymmdd(yymmdd)
    if not 1 <= m <= 12:
        raise ValueError(f"expiry {yymmdd!r} has month {m}")
    if d == 0:
        d = calendar.monthrange(y, m)[1]
    dt.date(y, m, d)  # raises on an impossible date
    parts = {"YYYY": f"{y:04d}", "YY": f"{y % 100:02d}", "MMM": _MONTHS[m - 1], "MM": f"{m:02d}"}
    parts["DD"] = f"{d:02d}"
    return _TOKEN.sub(lambda t: parts[t.group(0)], fmt)


@dataclass(frozen=True)
class FieldSpec:
    """One printed line: `prefix` then the field's value (dates in `date_format`)."""

    field: str
    prefix: str = ""
    date_format: str | None = None

    def printed(self, value: str) -> str:
        if self.field == "expiry":
            if not self.date_format:
                raise ValueError("no date format configured for the expiry field")
            value = format_date(value, self.date_format)
        return self.prefix + value


def squeeze(s: str) -> str:
    """Spaces carry no meaning in a verified line (engines differ in reading them)."""
    return s.replace(" ", "")


def differing(expected: str, read: str) -> list[int]:
    """Indexes of `expected` (spaces removed) not matched by `read`: the characters to mark."""
    e, r = squeeze(expected), squeeze(read)
    sm = difflib.SequenceMatcher(a=e, b=r, autojunk=False)
    ok = set()
    for a, _, n in sm.get_matching_blocks():
        ok.update(range(a, a + n))
    return [i for i in range(len(e)) if i not in ok]


class ExpectedCache:
    """Expected printed lines per (batch values, field): formatted once per batch, not per item.

    Bounded: a batch change clears it, so a long run never grows it.
    """

    def __init__(self) -> None:
        self._key: tuple[str | None, ...] | None = None
        self._lines: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def line(self, spec: FieldSpec, value: str, batch_key: tuple[str | None, ...]) -> str:
        with self._lock:
            if batch_key != self._key:
                self._key, self._lines = batch_key, {}
            k = (spec.field + spec.prefix + (spec.date_format or ""), value)
            s = self._lines.get(k)
            if s is None:
                s = spec.printed(value)
                if len(self._lines) < 256:
                    self._lines[k] = s
            return s
