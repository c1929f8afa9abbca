"""GS1 data for the simulated batch: GTIN-14, lot, expiry, serials, element strings.

Small helpers so the simulator prints codes that look like a real serialised batch
(EU FMD / DSCSA style: (01) GTIN, (17) expiry, (10) lot, (21) serial).
"""

from __future__ import annotations

import calendar
import datetime as dt

from biip.checksums import gs1_standard_check_digit

GS = "\x1d"
_ALNUM = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I/O: avoids confusion in human-readable text
_SERIAL_LEN = 10
_SERIAL_SPACE = len(_ALNUM) ** _SERIAL_LEN
# about 0.618 * 34**10, odd and not a multiple of 17: i -> i * MUL mod 34**10 is a bijection,
# so serials never repeat within a run yet look random
_SERIAL_MUL = 1_275_546_210_643_537


def check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a numeric string (GTIN without its last digit)."""
    return str(gs1_standard_check_digit(body))


def gtin14(body13: str) -> str:
    """A valid GTIN-14 from its first 13 digits."""
    if len(body13) != 13 or not body13.isdigit():
        raise ValueError(f"GTIN-14 body must be 13 digits, got {body13!r}")
    return body13 + check_digit(body13)


def gtin_valid(gtin: str) -> bool:
    return len(gtin) == 14 and gtin.isdigit() and check_digit(gtin[:13]) == gtin[13]


def default_gtin(seed: int) -> str:
    """A real-looking GTIN-14 (indicator 0, a German-looking company prefix), seeded."""
    return gtin14(f"0400638{(seed * 7919) % 1_000_000:06d}")


def other_gtin(gtin: str, k: int) -> str:
    """Another valid GTIN of the same company prefix (item reference changed)."""
    ref = (int(gtin[7:13]) + 1 + k % 999_998) % 1_000_000
    out = gtin14(f"{gtin[:7]}{ref:06d}")
    return out if out != gtin else gtin14(f"{gtin[:7]}{(ref + 1) % 1_000_000:06d}")


def bad_check_digit(gtin: str, k: int) -> str:
    """The same GTIN with a wrong check digit."""
    wrong = (int(gtin[13]) + 1 + k % 9) % 10
    return gtin[:13] + str(wrong)


def yymmdd(d: dt.date) -> str:
    return d.strftime("%y%m%d")


def parse_yymmdd(s: str) -> dt.date:
    """YYMMDD as in AI (17); DD=00 means the last day of the month."""
    y, m, d = 2000 + int(s[:2]), int(s[2:4]), int(s[4:6])
    if d == 0:
        d = calendar.monthrange(y, m)[1]
    return dt.date(y, m, d)


def end_of_month(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def default_expiry(today: dt.date) -> str:
    """The last day of the month two years ahead (a common shelf life)."""
    return yymmdd(end_of_month(today.year + 2, today.month))


def default_lot(today: dt.date, seed: int) -> str:
    return f"L{today:%y%m}{_ALNUM[10 + seed % 24]}"


def other_lot(lot: str, k: int) -> str:
    """A different lot of the same shape (last character changed)."""
    letters = [c for c in _ALNUM[10:] if c != lot[-1:]]
    return lot[:-1] + letters[k % len(letters)]


def serial_base(seed: int) -> int:
    """The serial number of item 0 of a fresh run with this seed."""
    return 1 + seed * 1_000_003


def serial(seed: int, i: int) -> str:
    """A unique, random-looking 10-character serial for item i of a fresh run."""
    return serial_number(serial_base(seed) + i)


def serial_number(number: int) -> str:
    """The 10-character serial of an issued number: distinct numbers, distinct serials."""
    n = (number * _SERIAL_MUL) % _SERIAL_SPACE
    chars = []
    for _ in range(_SERIAL_LEN):
        n, r = divmod(n, len(_ALNUM))
        chars.append(_ALNUM[r])
    return "".join(reversed(chars))


def hri(gs1: dict[str, str]) -> str:
    """Bracketed human-readable form, as the GS1 encoder takes it: (01)...(17)...(10)...(21)..."""
    return "".join(f"({ai}){gs1[ai]}" for ai in ("01", "17", "10", "21") if ai in gs1)


def element_string(gs1: dict[str, str]) -> str:
    """The raw element string a decoder returns: variable-length fields end in GS unless last."""
    fixed = {"01", "17"}
    parts = []
    ais = [ai for ai in ("01", "17", "10", "21") if ai in gs1]
    for n, ai in enumerate(ais):
        parts.append(ai + gs1[ai])
        if ai not in fixed and n < len(ais) - 1:
            parts.append(GS)
    return "".join(parts)
