"""Batch ids: safe in a URL path segment and a file name, whatever the lot holds.

A lot is GS1 AI 10 (character set 82: `/`, `%`, `.`, `&` ... are all valid), and a lot from
MES or a config may hold more than that. The batch id is what routes, report file names and
the records key on, so it is derived, never the lot itself: an ASCII slug of the lot (letters,
digits, `-`, `_`) for people to recognise, and a random suffix that makes it unique. The lot
is kept as printed in its own field everywhere it is shown or recorded.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")
SLUG_LEN = 20


def lot_slug(lot: str | None) -> str:
    """The lot reduced to letters, digits, `_` and single `-` (never empty, never `.`)."""
    s = unicodedata.normalize("NFKD", lot or "")  # "Ｌ１" reads as "L1"
    s = _UNSAFE.sub("-", s).strip("-_")[:SLUG_LEN].strip("-_")
    return s or "batch"


def new_batch_id(lot: str | None) -> str:
    """A new id for a batch of `lot`, e.g. `L-2024-07-5f3a9c1e` for lot `L/2024/07`."""
    return f"{lot_slug(lot)}-{uuid.uuid4().hex[:8]}"


def is_safe(batch_id: str) -> bool:
    return bool(SAFE_ID.fullmatch(batch_id))
