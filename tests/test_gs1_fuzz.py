"""Fuzzing the GS1 path: whatever a decoder hands over, the tool answers with a reason
code or a clean pass, never an exception.

The cheap part (interpretation and checks, no image decoding) runs 10,000 cases; any
failing input hypothesis finds is kept below as an explicit @example.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.domain import BatchState, Reason
from edge.inspect import gs1
from edge.inspect.barcode import BarcodeTool, Decoded
from edge.inspect.base import Services, ToolContext

GS = gs1.GS
GOOD = f"0109504000059101172812311012345A{GS}21SER123"
CODE_REASONS = {
    Reason.NO_READ.value,
    Reason.NOT_GS1.value,
    Reason.BAD_CHECK_DIGIT.value,
    Reason.MISSING_AI.value,
    Reason.GTIN_MISMATCH.value,
    Reason.LOT_MISMATCH.value,
    Reason.EXPIRY_MISMATCH.value,
    Reason.EXPIRED.value,
    Reason.SERIAL_INVALID.value,
}
TOOL = BarcodeTool("barcode", BarcodeTool.Params(), Services())
NOW = time.mktime((2026, 6, 1, 12, 0, 0, 0, 0, -1))
BATCH = BatchState(lot="12345A", gtin="09504000059101", expiry="281231", id="B")


FORMATS = ["Data Matrix", "QR Code", "Code 128", "EAN-13", "Code 39"]
GS1_FLAGS = [True, True, False, None]  # what the decoder said: GS1, not GS1, cannot tell
AI_LIKE = "0123456789" * 3 + GS + "AZaz -"


def _content(raw: bytes, kind: int) -> str:
    """Decoder output built from fuzz bytes (bytes are the cheapest thing to generate).

    0 garbage bytes as Latin-1; 1 non-UTF-8 payload with the bad bytes as surrogates;
    2 AI-like digits, letters and GS; 3 a valid message with one realistic fault.
    """
    if kind == 0:
        return raw.decode("latin-1")
    if kind == 1:
        return raw.decode("utf-8", "surrogateescape")
    if kind == 2:
        return "".join(AI_LIKE[b % len(AI_LIKE)] for b in raw)
    fault = raw[0] % 5 if raw else 0
    i = (raw[1] if len(raw) > 1 else 0) % len(GOOD)
    piece = raw[2:26].decode("latin-1")
    if fault == 0:  # a character misprinted
        return GOOD[:i] + piece[:1] + GOOD[i + 1 :]
    if fault == 1:  # truncated element string
        return GOOD[:i]
    if fault == 2:  # something inserted
        return GOOD[:i] + piece + GOOD[i:]
    if fault == 3:  # separators lost
        return GOOD.replace(GS, "")
    return GOOD + GS + piece  # an extra element string, known AI or not


def _decoded(text: str, fmt: str, is_gs1: bool | None) -> Decoded:
    return Decoded(
        text=text,
        raw=text.encode("utf-8", "surrogatepass"),
        format=fmt,
        symbology_id="]d2" if is_gs1 else "]d1",
        is_gs1=is_gs1,
        corners=None,
    )


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(raw=st.binary(max_size=80), sel=st.integers(0, 255))
@example(raw=b"", sel=0)
@example(raw=b"01\x1d", sel=0)
@example(raw=b"\xff", sel=1)
@example(raw=b"1700000010A", sel=0)
@example(raw=b"0", sel=12)  # one digit read as EAN-13
@example(raw=b"99" + b"x" * 78, sel=4)  # a QR code full of AI 99
def test_any_decoded_content_gives_reason_codes_or_a_clean_pass(raw: bytes, sel: int):
    text = _content(raw, sel % 4)
    fmt = FORMATS[(sel >> 2) % len(FORMATS)]
    is_gs1 = GS1_FLAGS[(sel >> 5) % len(GS1_FLAGS)]
    with_batch = bool(sel >> 7)
    ctx = ToolContext(
        item_id="fuzz",
        seq=0,
        deadline=time.monotonic() + 1,
        batch=BATCH if with_batch else None,
        now=NOW,
    )
    findings, codes = TOOL.check_reads([_decoded(text, fmt, is_gs1)], ctx)
    assert len(codes) == 1
    assert all(f.code in CODE_REASONS for f in findings), findings
    if not findings:
        # A pass means a GS1 code with every required AI, valid, and matching the batch.
        ais = codes[0].gs1 or {}
        assert {"01", "17", "10", "21"} <= set(ais)
        assert fmt not in gs1.RETAIL_FORMATS and is_gs1
        if with_batch:
            assert (ais["01"], ais["10"], ais["17"]) == ("09504000059101", "12345A", "281231")


@settings(max_examples=1_000, deadline=None, database=None)
@given(st.binary(max_size=64))
def test_raw_bytes_never_raise(raw: bytes):
    data = gs1.interpret(raw)
    probs = gs1.check(data, required_ais=["01", "17", "10", "21"], gtin="1", lot="", expiry="")
    assert data.ok or probs
