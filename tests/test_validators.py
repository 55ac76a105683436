"""National identifier validators, checked against python-stdnum as an independent implementation."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from shuzheng.core.validators import (
    citizen_id_check_char,
    credit_code_check_char,
    is_citizen_id,
    is_credit_code,
    is_mobile,
    make_credit_code,
)

REGIONS = ["130682", "130600", "110101", "440305"]
CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@st.composite
def citizen_ids(draw):
    region = draw(st.sampled_from(REGIONS))
    born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date.today()))
    seq = draw(st.integers(0, 999))
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + citizen_id_check_char(first17)


@given(citizen_ids())
@settings(max_examples=300)
def test_valid_ids_agree_with_stdnum(number):
    assert is_citizen_id(number)
    # stdnum's ric.is_valid also checks the region against its own dated county list (a later issue's
    # "known region prefix" rule); the check digit and the date are compared independently here.
    assert ric.calc_check_digit(number) == number[17]
    assert ric.get_birth_date(number).strftime("%Y%m%d") == number[6:14]


@given(citizen_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
@settings(max_examples=300)
def test_changed_ids_agree_with_stdnum_on_the_check(number, pos, char):
    changed = number[:pos] + char + number[pos + 1:]
    if changed == number or (pos != 17 and char == "X"):
        return
    check_ok = ric.calc_check_digit(changed) == changed[17]
    try:
        date_ok = dt.date(1850, 1, 1) <= ric.get_birth_date(changed) <= dt.date.today()
    except Exception:  # stdnum raises on an impossible date
        date_ok = False
    assert is_citizen_id(changed) == (check_ok and date_ok)


def test_ids_with_impossible_dates_or_bad_shape():
    first17 = "13068220230230001"  # 30 February
    assert not is_citizen_id(first17 + citizen_id_check_char(first17))
    future = (dt.date.today() + dt.timedelta(days=400)).strftime("%Y%m%d")
    first17 = f"130682{future}001"
    assert not is_citizen_id(first17 + citizen_id_check_char(first17))
    assert not is_citizen_id("13068219900101001")
    assert not is_citizen_id("13068219900101001x")
    assert not is_citizen_id(None)


def test_only_ascii_digits_count_and_nothing_may_follow():
    first17 = "13068219491231002"
    valid = first17 + citizen_id_check_char(first17)
    assert is_citizen_id(valid)
    assert not is_citizen_id(valid.replace("2", "２", 1))  # a full-width digit
    assert not is_citizen_id(valid + "\n")
    code = make_credit_code("91", "130682", "MA0000AB")
    assert is_credit_code(code) and not is_credit_code(code + "\n")
    assert not is_credit_code(code[:3] + "３" + code[4:])  # refused, not a KeyError
    assert is_mobile("13812345678") and not is_mobile("1381234567８") and not is_mobile("13812345678\n")


@given(st.text(alphabet=CC_ALPHABET, min_size=8, max_size=8), st.sampled_from(REGIONS),
       st.sampled_from(["11", "12", "51", "91", "92", "93"]))
@settings(max_examples=300)
def test_credit_codes_agree_with_stdnum(org8, region, authority):
    if not org8[:8].replace("I", "").isalnum():
        return
    code = make_credit_code(authority, region, org8)
    assert is_credit_code(code) == uscc.is_valid(code)
    assert is_credit_code(code)
    wrong = code[:17] + next(c for c in CC_ALPHABET if c != code[17])
    assert not is_credit_code(wrong) and not uscc.is_valid(wrong)


def test_known_credit_code():
    # The example code in GB 32100's annex style; stdnum agrees.
    code = "91110108551385082Q"
    assert uscc.is_valid(code) and is_credit_code(code)
    assert credit_code_check_char(code[:17]) == "Q"


def test_mobile_numbers():
    assert is_mobile("13812345678") and is_mobile("19912345678")
    assert not is_mobile("12812345678") and not is_mobile("1381234567") and not is_mobile("+8613812345678")
