"""GS1 element strings: interpret what a decoder read, then check it against the batch.

The AI table, field patterns, check digits and date rules come from biip (a maintained
GS1 parser); this module only walks the element string the way GS1 General
Specifications §7.8 describe (predefined-length AIs need no separator, all others end at
FNC1/GS or at the end of the message) so that each problem can be named with its own
reason code instead of one generic parse error.

Nothing here raises on bad input: every problem becomes a `Problem(reason, message)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from biip import ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import GS1ElementString
from biip.gtin import Gtin

from edge.domain import Reason

GS = "\x1d"  # the GS character a decoder puts where the symbol had FNC1
_CONFIG = ParseConfig(separator_chars=(GS,))
#: GTIN-carrying retail symbologies: their content is a GTIN, not an element string.
RETAIL_FORMATS = frozenset({"EAN-13", "EAN-8", "UPC-A", "UPC-E", "ISBN"})
_CHECK_DIGIT_AIS = ("00", "01", "02", "03")  # SSCC and GTINs; 41x (GLN) handled by prefix
_MAX_SHOWN = 40


@dataclass(frozen=True)
class Problem:
    """One failed check: a reason code and a message for the operator."""

    reason: Reason
    message: str


@dataclass
class GS1Data:
    """The interpreted content of one symbol.

    `ais` keeps every element string that parsed (AI -> value as printed); `valid_ais`
    names those whose value also passed its check digit / date rules, so batch
    comparisons are only made on values that mean something.
    """

    ais: dict[str, str] = field(default_factory=dict)
    valid_ais: set[str] = field(default_factory=set)
    expiry: dt.date | None = None
    problems: list[Problem] = field(default_factory=list)
    complete: bool = False  # the whole message was walked (no element stopped the parse)

    @property
    def ok(self) -> bool:
        return not self.problems


def _show(text: str) -> str:
    """A printable, bounded rendering of decoded content for messages and logs."""
    s = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return s if len(s) <= _MAX_SHOWN else s[:_MAX_SHOWN] + "..."


def _as_text(content: str | bytes) -> str | None:
    if isinstance(content, str):
        return content
    try:
        return content.decode("ascii")
    except UnicodeDecodeError:
        return None


def interpret(content: str | bytes, *, is_gs1: bool = True) -> GS1Data:
    """Split a GS1 element string (as decoded, GS between fields, no leading FNC1).

    `is_gs1` is what the decoder said about the symbol (FNC1 in first position, i.e. a
    `]d2`/`]C1`/`]Q3` symbology identifier): content that merely looks like AIs in a
    symbol without FNC1 is not GS1 and is reported as NOT_GS1.
    """
    out = GS1Data()
    text = _as_text(content)
    if text is None:
        out.problems.append(Problem(Reason.NOT_GS1, "content is not ASCII text"))
        return out
    if not is_gs1:
        out.problems.append(
            Problem(Reason.NOT_GS1, f"symbol has no FNC1 in first position: {_show(text)!r}")
        )
        return out
    if not text.strip(GS):
        out.problems.append(Problem(Reason.NOT_GS1, "empty GS1 message"))
        return out
    rest = text.lstrip(GS)
    while rest:
        step = _take_element(rest, out)
        if step is None:
            return out
        rest = rest[step:].lstrip(GS)
    out.complete = True
    return out


def _take_element(rest: str, out: GS1Data) -> int | None:
    """Parse the element string at the start of `rest`; return its length, or None to stop."""
    try:
        ai = GS1ApplicationIdentifier.extract(rest)
    except ParseError:
        out.problems.append(Problem(Reason.NOT_GS1, f"unknown AI at {_show(rest)!r}"))
        return None
    if ai.separator_required:
        # Variable (or not predefined) length: the field runs to the next GS or the end.
        segment = rest.split(GS, 1)[0]
    else:
        segment = rest[: len(ai.ai) + _fixed_length(ai)]
    try:
        element = GS1ElementString.parse(segment, config=_CONFIG)
    except ParseError as exc:
        out.problems.append(_field_problem(ai.ai, segment, exc))
        return None
    except ValueError as exc:  # biip is not expected to raise it, but bad input must not escape
        out.problems.append(Problem(Reason.NOT_GS1, f"AI ({ai.ai}): {exc}"))
        return None
    code = ai.ai
    if code in out.ais and out.ais[code] != element.value:
        out.problems.append(
            Problem(Reason.NOT_GS1, f"AI ({code}) appears twice with different values")
        )
        return None
    out.ais[code] = element.value
    error = element.gtin_error or element.sscc_error or element.gln_error
    if error:
        reason = Reason.BAD_CHECK_DIGIT if "check digit" in error.lower() else Reason.NOT_GS1
        out.problems.append(Problem(reason, f"AI ({code}) {element.value}: {error}"))
    else:
        out.valid_ais.add(code)
    if code == "17" and element.date is not None:
        out.expiry = element.date
    return len(segment)


def _fixed_length(ai: GS1ApplicationIdentifier) -> int:
    """Data length of a predefined-length AI, from biip's format string (e.g. 'N2+N14')."""
    total = 0
    for part in ai.format.split("+")[1:]:
        digits = "".join(ch for ch in part if ch.isdigit())
        total += int(digits) if digits else 0
    return total


def _field_problem(ai: str, segment: str, exc: Exception) -> Problem:
    data = segment[len(ai) :]
    if ai == "21":
        return Problem(
            Reason.SERIAL_INVALID,
            f"serial {_show(data)!r} is empty, longer than 20 or outside GS1 character set 82",
        )
    if ai in ("17", "11", "13", "15", "16", "12"):
        return Problem(Reason.NOT_GS1, f"AI ({ai}) is not a valid date: {_show(data)!r}")
    return Problem(Reason.NOT_GS1, f"AI ({ai}) field {_show(data)!r} is malformed: {exc}")


def interpret_retail(content: str) -> GS1Data:
    """EAN/UPC content is a GTIN: give it as AI (01) so the same checks apply."""
    out = GS1Data()
    try:
        gtin = Gtin.parse(content, config=_CONFIG)
    except ParseError as exc:
        reason = Reason.BAD_CHECK_DIGIT if "check digit" in str(exc).lower() else Reason.NOT_GS1
        out.problems.append(Problem(reason, f"GTIN {_show(content)!r}: {exc}"))
        return out
    out.ais["01"] = gtin.as_gtin_14()
    out.valid_ais.add("01")
    out.complete = True
    return out


def known_ai(ai: str) -> bool:
    """Whether `ai` is exactly one GS1 application identifier (biip's table)."""
    try:
        return GS1ApplicationIdentifier.extract(ai).ai == ai
    except ParseError:
        return False


def normalise_gtin(value: str) -> str:
    """A batch GTIN given as GTIN-8/12/13/14 compares as GTIN-14 (leading zeros)."""
    v = value.strip()
    return v.zfill(14) if v.isdigit() and len(v) <= 14 else v


def check(
    data: GS1Data,
    *,
    required_ais: Iterable[str],
    gtin: str | None = None,
    lot: str | None = None,
    expiry: str | None = None,
    today: dt.date | None = None,
) -> list[Problem]:
    """Recipe and batch checks on interpreted content; returns every problem found.

    Batch comparisons use only values that parsed valid (a GTIN with a bad check digit
    is reported once, as BAD_CHECK_DIGIT, not again as GTIN_MISMATCH). `today` is the
    plant's date at the trigger: a pack is EXPIRED when its expiry date (day 00 = last
    day of the month) lies before it.
    """
    problems = list(data.problems)
    missing = [ai for ai in required_ais if ai not in data.ais]
    if missing and data.complete:  # an unparsable message is reported once, not as missing AIs
        problems.append(Problem(Reason.MISSING_AI, "missing AI " + ", ".join(missing)))
    if gtin and "01" in data.valid_ais and data.ais["01"] != normalise_gtin(gtin):
        problems.append(
            Problem(Reason.GTIN_MISMATCH, f"GTIN {data.ais['01']} is not the batch's {gtin}")
        )
    if lot is not None and "10" in data.valid_ais and data.ais["10"] != lot:
        problems.append(
            Problem(Reason.LOT_MISMATCH, f"lot {_show(data.ais['10'])!r} is not the batch's {lot}")
        )
    if expiry is not None and "17" in data.valid_ais and data.ais["17"] != expiry:
        problems.append(
            Problem(Reason.EXPIRY_MISMATCH, f"expiry {data.ais['17']} is not the batch's {expiry}")
        )
    if today is not None and data.expiry is not None and data.expiry < today:
        problems.append(
            Problem(Reason.EXPIRED, f"expired on {data.expiry.isoformat()} (today {today})")
        )
    return problems
