"""The checks of a changeover: GTIN, lot as GS1 AI (10), expiry as GS1 AI (17).

One home for them, used by the MES command `start_batch`, the product master and the
touchscreen: each returns the reason a value is refused (None when it is good), so every
caller refuses with the same words.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import AfterValidator

#: GS1 AI (10): character set 82, 1 to 20 characters.
LOT = re.compile(r"^[!-\"%-/0-9:-?A-Z_a-z]{1,20}$")


def gtin_ok(gtin: str) -> bool:
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return False
    digits = [int(c) for c in gtin.zfill(14)]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:-1]))
    return (10 - total % 10) % 10 == digits[-1]


def gtin_problem(gtin: str) -> str | None:
    if not gtin_ok(gtin):
        return "not a valid GTIN (8, 12, 13 or 14 digits with a correct check digit)"
    return None


def checked_gtin(gtin: str) -> str:
    """A valid GTIN as its 14 digits, or ValueError saying why (a pydantic validator)."""
    problem = gtin_problem(gtin)
    if problem:
        raise ValueError(problem)
    return gtin.zfill(14)


#: a GTIN field of a message or a document: checked, stored as 14 digits
Gtin = Annotated[str, AfterValidator(checked_gtin)]


def lot_problem(lot: str) -> str | None:
    if not LOT.match(lot):
        return "a lot is 1 to 20 characters of the GS1 character set 82"
    return None


def expiry_problem(expiry: str) -> str | None:
    """YYMMDD as printed in AI (17); DD 00 means the end of the month in GS1."""
    if not re.fullmatch(r"\d{6}", expiry):
        return "expiry is YYMMDD (6 digits)"
    yy, mm, dd = int(expiry[:2]), int(expiry[2:4]), int(expiry[4:])
    if not 1 <= mm <= 12:
        return "expiry month must be 01 to 12"
    if dd != 0:
        try:
            date(2000 + yy, mm, dd)
        except ValueError:
            return "expiry is not a calendar date"
    return None


#: symbology identifiers a scanner may send before a GS1 message (Data Matrix, Code 128,
#: QR, DataBar)
_SYMBOLOGY = re.compile(r"^\](d2|C1|Q3|e0)")


def scanned(text: str) -> tuple[dict[str, str], str | None]:
    """GTIN, lot and expiry from a scanned GS1 element string: as the scanner sends it
    (GS between fields, optionally `]d2` first) or as printed, `(01)...(17)...(10)...`.

    Returns the fields read (`gtin`, `lot`, `expiry`) and why the scan is not all good (None
    when it is): an element that does not parse stops the reading there, as on the line.
    ValueError for a scan that holds none of the three. Each field is then checked as a
    typed one is."""
    from edge.inspect.gs1 import GS, interpret

    t = _SYMBOLOGY.sub("", text.strip())
    if t.startswith("("):  # the human-readable form: the brackets delimit the AIs
        t = re.sub(r"\((\d{2,4})\)", lambda m: GS + m.group(1), t)
    data = interpret(t)
    out = {}
    for ai, key in (("01", "gtin"), ("10", "lot"), ("17", "expiry")):
        if ai in data.ais:
            out[key] = data.ais[ai]
    problem = data.problems[0].message if data.problems else None
    if not out:
        raise ValueError(
            f"the scan is not a GS1 element string ({problem})"
            if problem
            else "the scan holds no GTIN (01), lot (10) or expiry (17)"
        )
    return out, problem
