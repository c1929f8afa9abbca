"""GS1 element strings: what a pack's code means, and each way it can be wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from edge.domain import Reason
from edge.inspect import gs1

GS = gs1.GS
GOOD = f"0109504000059101172812311012345A{GS}21SER123"
REQUIRED = ["01", "17", "10", "21"]


def reasons(problems: list[gs1.Problem]) -> list[Reason]:
    return [p.reason for p in problems]


def test_good_pack_code_splits_into_its_element_strings():
    data = gs1.interpret(GOOD)
    assert data.ok and data.complete
    assert data.ais == {"01": "09504000059101", "17": "281231", "10": "12345A", "21": "SER123"}
    assert data.expiry == dt.date(2028, 12, 31)
    assert gs1.check(data, required_ais=REQUIRED, gtin="09504000059101", lot="12345A") == []


def test_fixed_length_fields_need_no_separator_and_variable_ones_end_at_gs():
    # (17) directly after (01), and (10) ended by GS before (21): both legal.
    data = gs1.interpret(f"01095040000591011728123110LOT{GS}21S")
    assert data.ais["10"] == "LOT" and data.ais["21"] == "S"
    # A lot without the GS swallows what follows, so the serial is never seen as (21).
    data = gs1.interpret("01095040000591011728123110LOT21S")
    assert data.ais["10"] == "LOT21S" and "21" not in data.ais


def test_expiry_day_00_means_the_last_day_of_the_month():
    assert gs1.interpret("0109504000059101172802001010").expiry == dt.date(2028, 2, 29)
    assert gs1.interpret("0109504000059101172711001010").expiry == dt.date(2027, 11, 30)


def test_wrong_gtin_check_digit_is_bad_check_digit_and_not_also_a_gtin_mismatch():
    data = gs1.interpret(GOOD.replace("09504000059101", "09504000059102"))
    probs = gs1.check(data, required_ais=REQUIRED, gtin="09504000059101")
    assert reasons(probs) == [Reason.BAD_CHECK_DIGIT]


def test_wrong_sscc_check_digit_is_bad_check_digit():
    assert reasons(gs1.interpret("00106141412345678909").problems) == [Reason.BAD_CHECK_DIGIT]
    assert gs1.interpret("00106141412345678908").ok


@pytest.mark.parametrize(
    "text",
    [
        f"0109504000059101172812311012345A{GS}21SER 123",  # space: not in set 82
        f"0109504000059101172812311012345A{GS}21" + "1" * 21,  # longer than 20
        f"0109504000059101172812311012345A{GS}21SÉR",  # outside ASCII set 82
        f"0109504000059101172812311012345A{GS}21",  # empty
    ],
)
def test_invalid_serial_is_serial_invalid(text: str):
    data = gs1.interpret(text)
    assert reasons(gs1.check(data, required_ais=REQUIRED)) == [Reason.SERIAL_INVALID]


@pytest.mark.parametrize(
    "content",
    [
        "010950400005910",  # truncated GTIN
        "0109504000059101172812",  # truncated date
        "0109504000059101173213311010",  # month 13
        "9A",  # no AI
        "0109504000059101" + "\x00" + "10A",  # control byte where an AI should be
        b"\xff\xfe\x00\x01",  # not even text
        "",
        GS + GS,
    ],
)
def test_unparsable_content_is_not_gs1(content: str | bytes):
    data = gs1.interpret(content)
    probs = gs1.check(data, required_ais=REQUIRED)
    assert Reason.NOT_GS1 in reasons(probs)
    assert Reason.MISSING_AI not in reasons(probs)  # reported once, as what it is


def test_ai_repeated_with_a_different_value_is_not_gs1():
    data = gs1.interpret(f"0109504000059101{GS}10A{GS}10B")
    assert reasons(data.problems) == [Reason.NOT_GS1]


def test_content_of_a_symbol_without_fnc1_is_not_gs1_even_if_it_looks_like_ais():
    assert reasons(gs1.interpret(GOOD, is_gs1=False).problems) == [Reason.NOT_GS1]


def test_missing_required_ai_is_named():
    data = gs1.interpret("010950400005910117281231")
    probs = gs1.check(data, required_ais=REQUIRED)
    assert reasons(probs) == [Reason.MISSING_AI]
    assert "10, 21" in probs[0].message


def test_batch_comparisons_each_have_their_own_reason():
    data = gs1.interpret(GOOD)
    probs = gs1.check(
        data, required_ais=REQUIRED, gtin="09504000059118", lot="OTHER", expiry="281130"
    )
    assert set(reasons(probs)) == {
        Reason.GTIN_MISMATCH,
        Reason.LOT_MISMATCH,
        Reason.EXPIRY_MISMATCH,
    }


def test_batch_gtin_given_as_gtin13_matches_the_codes_gtin14():
    data = gs1.interpret(GOOD)
    assert gs1.check(data, required_ais=REQUIRED, gtin="9504000059101") == []


def test_expired_relative_to_the_trigger_date():
    data = gs1.interpret("0109504000059101172711001010")  # 30 Nov 2027
    assert gs1.check(data, required_ais=(), today=dt.date(2027, 11, 30)) == []
    probs = gs1.check(data, required_ais=(), today=dt.date(2027, 12, 1))
    assert reasons(probs) == [Reason.EXPIRED]


def test_ean13_content_is_a_gtin():
    data = gs1.interpret_retail("5901234123457")
    assert data.ok and data.ais == {"01": "05901234123457"}
    assert reasons(gs1.interpret_retail("5901234123458").problems) == [Reason.BAD_CHECK_DIGIT]
