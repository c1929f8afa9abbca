"""CSV cells that a spreadsheet shows as text, never runs as a formula.

Reports and audit exports carry text that users typed (lots, reasons, names). A cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return is taken as a formula by Excel,
LibreOffice and Google Sheets (CSV injection: `=HYPERLINK(...)`, DDE commands). Such text
cells get a leading `'`, which spreadsheets show as text; numbers are written as numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class Writer:
    """`csv.writer` with every cell made safe."""

    def __init__(self, f: Any):
        self._w = csv.writer(f)

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow([cell(v) for v in row])


class DictWriter(csv.DictWriter):
    """`csv.DictWriter` with every value made safe (the header is ours)."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: cell(v) for k, v in rowdict.items()})
