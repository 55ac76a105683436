"""Quality rules compiled to DuckDB SQL (shuzheng.quality.checks): each kind and each failure code over small
tables with known good and bad values, quoting, parameter validation, the identifier checks against
shuzheng.core.validators and python-stdnum on generated numbers, and a timing over a million rows.

No database: the checks run in an in-memory DuckDB."""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import numdb
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidComponent, ValidationError

from shuzheng.core.validators import (
    citizen_id_check_char,
    credit_code_check_char,
    is_citizen_id,
    is_credit_code,
    make_credit_code,
)
from shuzheng.quality.checks import (
    DIMENSIONS,
    KINDS,
    PROVINCES,
    Check,
    CompiledCheck,
    compile_check,
    count_change_problem,
    dimension_of,
    quote_ident,
    validate_params,
)

CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
TODAY = dt.date.today()


def cid(region: str, born: str | dt.date, seq: str = "001", check: str | None = None) -> str:
    """A citizen ID number; the check character is computed unless given."""
    if isinstance(born, dt.date):
        born = born.strftime("%Y%m%d")
    first17 = f"{region}{born}{seq}"
    return first17 + (check if check is not None else citizen_id_check_char(first17))


def wrong(char: str, alphabet: str) -> str:
    return alphabet[(alphabet.index(char) + 1) % len(alphabet)]


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def load(con, columns: dict[str, str], rows: list[tuple], *, numbers: list[int] | None = None,
         table: str = "typed") -> dict[str, str]:
    """Creates `table` with _row (1, 2, ... unless `numbers` says otherwise) and the columns, and returns the
    columns mapping compile_check takes."""
    spec = ", ".join(f"{quote_ident(name)} {type_}" for name, type_ in columns.items())
    con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} (_row BIGINT, {spec})")
    numbers = numbers or list(range(1, len(rows) + 1))
    if rows:
        marks = ", ".join(["(" + ", ".join("?" * (len(columns) + 1)) + ")"] * len(rows))
        con.execute(f"INSERT INTO {quote_ident(table)} VALUES {marks}",
                    [value for n, row in zip(numbers, rows) for value in (n, *row)])
    return dict(columns)


def evaluate(con, compiled: list[CompiledCheck], table: str = "typed") -> dict[str, list[int]]:
    """Runs the compiled checks in one SELECT, as the pipeline does; code -> the failing _row numbers."""
    select = ", ".join(f"{c.sql} AS {quote_ident(f'f{i}')}" for i, c in enumerate(compiled))
    rows = con.execute(f"SELECT _row, {select} FROM {quote_ident(table)}").fetchall()
    out: dict[str, set[int]] = {c.code: set() for c in compiled}
    for row in rows:
        for c, value in zip(compiled, row[1:]):
            assert value in (True, False, None), (c.code, value)
            if value is True:
                out[c.code].add(row[0])
    return {code: sorted(rows) for code, rows in out.items()}


def failures(con, check: Check, columns: dict[str, str], **kwargs) -> dict[str, list[int]]:
    return evaluate(con, compile_check(check, columns=columns, **kwargs), kwargs.get("table", "typed"))


# --- kinds and dimensions -------------------------------------------------------------------------------------


def test_dimensions():
    assert {dimension_of(k) for k in KINDS} == set(DIMENSIONS)
    assert dimension_of("not_null") == "completeness"
    assert dimension_of("unique") == "uniqueness"
    assert [dimension_of(k) for k in ("id_consistency", "reference", "cross_source")] == ["consistency"] * 3
    for kind in ("pattern", "range", "code_table", "id_number", "credit_code", "mobile", "date_past"):
        assert dimension_of(kind) == "validity"
    with pytest.raises(ValueError):
        dimension_of("spelling")


def test_compiled_checks_carry_the_rule():
    (c,) = compile_check(Check("rule-7", "not_null", ("姓名",), blocking=False), columns={"姓名": "VARCHAR"})
    assert (c.rule_id, c.kind, c.code, c.item, c.blocking, c.dimension) == (
        "rule-7", "not_null", "not_null.missing", "姓名", False, "completeness")
    assert isinstance(c.message, str) and c.message
    assert Check("r", "pattern", ("a",), {"regex": "x"}) == Check("r", "pattern", ("a",), {"regex": "x"})
    assert hash(Check("r", "pattern", ("a",), {"regex": "x"})) == hash(Check("r", "pattern", ("a",), {"regex": "y"}))


# --- not_null -------------------------------------------------------------------------------------------------


def test_not_null(con):
    columns = load(con, {"姓名": "VARCHAR", "年龄": "BIGINT", "出生日期": "DATE"}, [
        ("张三", 30, dt.date(1990, 1, 1)),
        (None, None, None),
        ("", 0, dt.date(1990, 1, 1)),
        ("   ", 1, None),
        ("\u3000\t\n", 2, dt.date(1990, 1, 1)),
        (" 李四 ", 3, dt.date(1990, 1, 1)),
        ("0", 4, dt.date(1990, 1, 1)),
        ("\x01", 5, dt.date(1990, 1, 1)),  # a control character is a value, not blank
    ])
    assert failures(con, Check("r", "not_null", ("姓名",)), columns) == {"not_null.missing": [2, 3, 4, 5]}
    assert failures(con, Check("r", "not_null", ("年龄",)), columns) == {"not_null.missing": [2]}
    assert failures(con, Check("r", "not_null", ("出生日期",)), columns) == {"not_null.missing": [2, 4]}


# --- unique ---------------------------------------------------------------------------------------------------


def test_unique_within_the_load_follows_row_order(con):
    # Stored out of _row order: the first occurrence is the smallest _row, not the first stored.
    columns = load(con, {"证号": "VARCHAR"}, [("A",), ("B",), ("A",), (None,), (None,), ("",), ("",), ("A",), ("b",)],
                   numbers=[30, 10, 20, 40, 50, 60, 70, 5, 80])
    assert failures(con, Check("r", "unique", ("证号",)), columns) == {"unique.duplicate": [20, 30]}


def test_unique_composite_key_skips_rows_with_a_null_part(con):
    columns = load(con, {"类型": "VARCHAR", "编号": "BIGINT"}, [
        ("身份证", 1), ("身份证", 2), ("护照", 1), ("身份证", 1), (None, 1), (None, 1), ("护照", None), ("护照", None),
        ("身份证", 2),
    ])
    compiled = compile_check(Check("r", "unique", ("类型", "编号")), columns=columns)
    assert [(c.code, c.item) for c in compiled] == [("unique.duplicate", "类型"), ("unique.duplicate", "编号")]
    assert evaluate(con, compiled) == {"unique.duplicate": [4, 9]}


def test_unique_against_existing_rows(con):
    load(con, {"证号": "VARCHAR", "序": "BIGINT"}, [("A", 1), ("Z", 9)], table="current rows")
    columns = load(con, {"证号": "VARCHAR", "序": "BIGINT"}, [("A", 1), ("B", 1), ("B", 1), ("Z", 1), (None, 1)])
    result = failures(con, Check("r", "unique", ("证号",)), columns, existing="current rows")
    assert result == {"unique.duplicate": [3], "unique.exists": [1, 4]}
    result = failures(con, Check("r", "unique", ("证号", "序")), columns, existing="current rows")
    assert result == {"unique.duplicate": [3], "unique.exists": [1]}


# --- pattern --------------------------------------------------------------------------------------------------


def test_pattern_is_a_full_match(con):
    columns = load(con, {"编码": "VARCHAR", "数": "BIGINT"}, [
        ("AB123", 123), ("AB1234", 12), ("xAB123", None), ("ab123", 1234), ("", 999), (None, 100),
    ])
    check = Check("r", "pattern", ("编码",), {"regex": "[A-Z]{2}[0-9]{3}"})
    assert failures(con, check, columns) == {"pattern.mismatch": [2, 3, 4]}
    assert failures(con, Check("r", "pattern", ("数",), {"regex": "[0-9]{3}"}), columns) == {
        "pattern.mismatch": [2, 4]}


# --- range ----------------------------------------------------------------------------------------------------


def test_range_numbers_inclusive(con):
    columns = load(con, {"年龄": "BIGINT", "金额": "DECIMAL(18,4)", "比例": "DOUBLE"}, [
        (0, "0.5000", 0.0), (150, "100.0000", 1.0), (-1, "0.4999", -0.01), (151, "100.0001", 1.5), (None, None, None),
    ])
    assert failures(con, Check("r", "range", ("年龄",), {"min": 0, "max": 150}), columns) == {
        "range.below_min": [3], "range.above_max": [4]}
    assert failures(con, Check("r", "range", ("金额",), {"min": 0.5, "max": "100"}), columns) == {
        "range.below_min": [3], "range.above_max": [4]}
    assert failures(con, Check("r", "range", ("比例",), {"max": 1}), columns) == {"range.above_max": [4]}
    assert failures(con, Check("r", "range", ("比例",), {"min": "-0.005"}), columns) == {"range.below_min": [3]}


def test_range_dates_and_timestamps(con):
    columns = load(con, {"日期": "DATE", "时间": "TIMESTAMP"}, [
        (dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 0, 0)),
        (dt.date(2020, 12, 31), dt.datetime(2020, 12, 31, 23, 59, 59)),
        (dt.date(2019, 12, 31), dt.datetime(2019, 12, 31, 23, 59, 59)),
        (dt.date(2021, 1, 1), dt.datetime(2021, 1, 1, 0, 0)),
    ])
    bounds = {"min": "2020-01-01", "max": "2020-12-31"}
    expected = {"range.below_min": [3], "range.above_max": [4]}
    assert failures(con, Check("r", "range", ("日期",), bounds), columns) == expected
    # A date bound on a timestamp covers the whole day.
    assert failures(con, Check("r", "range", ("时间",), bounds), columns) == expected
    assert failures(con, Check("r", "range", ("时间",), {"max": "2020-12-31T12:00:00"}), columns) == {
        "range.above_max": [2, 4]}
    assert failures(con, Check("r", "range", ("日期",), {"min": dt.date(2020, 6, 1)}), columns) == {
        "range.below_min": [1, 3]}


def test_range_bound_must_fit_the_column():
    columns = {"日期": "DATE", "名称": "VARCHAR", "年龄": "INTEGER"}
    with pytest.raises(ValueError):
        compile_check(Check("r", "range", ("日期",), {"min": 1}), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "range", ("年龄",), {"min": "2020-01-01"}), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "range", ("名称",), {"min": 1}), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "range", ("日期",), {"min": "2020-01-01 10:00"}), columns=columns)


# --- code_table -----------------------------------------------------------------------------------------------


def test_code_table_with_hundreds_of_codes(con):
    codes = [f"{130600 + k}" for k in range(500)] + ["O'Neil"]
    columns = load(con, {"区划": "VARCHAR", "代码": "INTEGER"}, [
        ("130600", 130600), ("131100", 131100), ("O'Neil", None), ("130600 ", 130999), ("", 1), (None, 130682),
    ])
    assert failures(con, Check("r", "code_table", ("区划",), {"values": codes}), columns) == {
        "code_table.unknown": [2, 4]}
    # Compared as text: an integer column matches the codes' digits.
    assert failures(con, Check("r", "code_table", ("代码",), {"values": codes}), columns) == {
        "code_table.unknown": [2, 5]}


# --- id_number ------------------------------------------------------------------------------------------------

ID_CODES = ["id_number.format", "id_number.birth_date", "id_number.region", "id_number.check_digit"]


def test_id_number_reports_the_most_specific_reason(con):
    good = cid("130682", "19491231", "002")
    values = [
        good,                                               # 1 valid
        good[:17] + wrong(good[17], "0123456789X"),          # 2 wrong check character
        cid("130682", "19900101", "001", check="x"),         # 3 lower-case x: format
        good[:17],                                           # 4 17 characters: format
        good + "0",                                          # 5 19 characters: format
        "13068A19491231002" + good[17],                     # 6 a letter: format
        cid("130682", "19900230"),                           # 7 30 February
        cid("130682", TODAY + dt.timedelta(days=1)),         # 8 born tomorrow
        cid("130682", "18491231"),                           # 9 before 1850
        cid("990682", "19900101"),                           # 10 no such province
        cid("990682", "19900230", check="0"),                # 11 region and date wrong, format right
        "",                                                  # 12 blank: missing, not invalid
        None,                                                # 13
        " " + good[:17],                                     # 14 leading space: format
        cid("710000", "19900101"),                           # 15 Taiwan
        cid("820000", "19900101"),                           # 16 Macao
        cid("160000", "19900101"),                           # 17 no province 16
        cid("130682", TODAY),                                # 18 born today
        cid("130682", "18500101"),                           # 19 first day allowed
        "1306821949123100２" + good[17],                     # 20 a full-width digit: format
    ]
    columns = load(con, {"公民身份号码": "VARCHAR"}, [(v,) for v in values])
    result = failures(con, Check("r", "id_number", ("公民身份号码",)), columns)
    wrong_check_11 = values[10][17] != citizen_id_check_char(values[10][:17])
    assert result == {
        "id_number.format": [3, 4, 5, 6, 14, 20],
        "id_number.birth_date": [7, 8, 9, 11],
        "id_number.region": [10, 11, 17],
        "id_number.check_digit": [2, 11] if wrong_check_11 else [2],
    }
    # Agrees with core.validators plus the province check (both take ASCII digits only: GB 11643 means 0-9).
    assert not is_citizen_id(values[19])
    for row, value in enumerate(values, 1):
        if value:
            expected = is_citizen_id(value) and value[:2] in PROVINCES
            assert expected == (not any(row in result[code] for code in ID_CODES)), value


def test_id_number_regions_restrict_further(con):
    columns = load(con, {"证号": "VARCHAR"}, [
        (cid("130682", "19900101"),), (cid("130681", "19900101"),), (cid("131100", "19900101"),),
        (cid("110105", "19900101"),), (cid("990000", "19900101"),),
    ])
    check = Check("r", "id_number", ("证号",), {"regions": ["130682", "1311"]})
    assert failures(con, check, columns)["id_number.region"] == [2, 4, 5]


def test_id_number_on_an_integer_column(con):
    columns = load(con, {"证号": "BIGINT"}, [(int(cid("130682", "19900101", "123", check="0")),), (12345,)])
    result = failures(con, Check("r", "id_number", ("证号",)), columns)
    assert result["id_number.format"] == [2]


# --- credit_code ----------------------------------------------------------------------------------------------


def test_credit_code(con):
    good = make_credit_code("91", "130682", "MA0CXQ7T")
    values = [
        good,                                           # 1
        good[:17] + wrong(good[17], CC_ALPHABET),       # 2 wrong check character
        good.lower(),                                   # 3 lower case: format
        "9113068" + "I" + good[8:],                     # 4 a letter among characters 3-8: format
        good[:10] + "O" + good[11:],                    # 5 O is not in the alphabet: format
        good[:17],                                      # 6 17 characters: format
        make_credit_code("Y1", "130682", "12345678"),    # 7 a letter as authority: valid
        "",                                             # 8
        None,                                           # 9
        make_credit_code("N2", "110105", "AB12CD3X"),    # 10
        good + " ",                                     # 11 trailing space: format
    ]
    columns = load(con, {"统一社会信用代码": "VARCHAR"}, [(v,) for v in values])
    result = failures(con, Check("r", "credit_code", ("统一社会信用代码",)), columns)
    assert result == {"credit_code.format": [3, 4, 5, 6, 11], "credit_code.check_digit": [2]}
    for row, value in enumerate(values, 1):
        if value:
            failed = row in result["credit_code.format"] + result["credit_code.check_digit"]
            assert is_credit_code(value) == (not failed), value


# --- mobile ---------------------------------------------------------------------------------------------------


def test_mobile(con):
    columns = load(con, {"手机": "VARCHAR", "号码": "BIGINT"}, [
        ("13800138000", 13800138000), ("19912345678", 12800138000), ("12800138000", None),
        ("1380013800", 1380013800), ("+8613800138000", 1), ("138-0013-8000", 13800138000), ("", 1), (None, 1),
    ])
    assert failures(con, Check("r", "mobile", ("手机",)), columns) == {"mobile.format": [3, 4, 5, 6]}
    assert failures(con, Check("r", "mobile", ("号码",)), columns) == {"mobile.format": [2, 4, 5, 7, 8]}


# --- date_past ------------------------------------------------------------------------------------------------


def test_date_past_on_date_and_timestamp_columns(con):
    now = dt.datetime.now()
    columns = load(con, {"日期": "DATE", "时间": "TIMESTAMP"}, [
        (TODAY, now - dt.timedelta(minutes=5)),
        (TODAY + dt.timedelta(days=1), now + dt.timedelta(hours=2)),
        (dt.date(1900, 1, 1), dt.datetime(1900, 1, 1)),
        (None, None),
    ])
    assert failures(con, Check("r", "date_past", ("日期",)), columns) == {"date_past.future": [2]}
    assert failures(con, Check("r", "date_past", ("时间",)), columns) == {"date_past.future": [2]}


def test_date_past_on_text(con):
    tomorrow = TODAY + dt.timedelta(days=1)
    values = [
        "2020-01-31", "20200131", "2020/1/31", "2020/01/31", "2020年1月31日", "2020年01月31日",  # 1-6 fine
        "2020-1-31", "2020131", "20-01-31", "2020-02-30", "2020/13/1", "31/01/2020", "not a date",  # 7-13 not
        tomorrow.isoformat(), f"{tomorrow:%Y%m%d}", f"{tomorrow.year}年{tomorrow.month}月{tomorrow.day}日",  # 14-16
        "", "  ", None, TODAY.isoformat(),  # 17-20
    ]
    columns = load(con, {"登记日期": "VARCHAR"}, [(v,) for v in values])
    assert failures(con, Check("r", "date_past", ("登记日期",)), columns) == {
        "date_past.unparseable": [7, 8, 9, 10, 11, 12, 13],
        "date_past.future": [14, 15, 16],
    }


def test_date_past_needs_a_date_or_text_column():
    with pytest.raises(ValueError):
        compile_check(Check("r", "date_past", ("数",)), columns={"数": "BIGINT"})


# --- id_consistency -------------------------------------------------------------------------------------------


def test_id_consistency(con):
    male = cid("130682", "19900101", "013")  # 17th digit 3: male
    female = cid("130682", "19900101", "024")  # 4: female
    rows = [
        (male, dt.date(1990, 1, 1), "19900101", "1"),        # 1 consistent
        (female, dt.date(1990, 1, 1), "1990-01-01", "2"),    # 2 consistent
        (male, dt.date(1990, 1, 2), "1990年1月2日", "2"),     # 3 birth and sex differ
        (female, dt.date(1990, 1, 1), "1990/1/1", "1"),      # 4 sex differs
        (male, dt.date(1990, 1, 1), "1990-01-01", "0"),      # 5 unknown sex: never fails
        (male, dt.date(1990, 1, 1), "1990-01-01", "9"),      # 6 unstated
        (male.lower()[:-1] + "x", dt.date(1991, 1, 1), "1991-01-01", "2"),  # 7 bad format: not evaluated
        (male[:17], dt.date(1991, 1, 1), "1991-01-01", "2"),  # 8 bad format
        (None, dt.date(1991, 1, 1), "1991-01-01", "2"),       # 9
        (male, None, None, None),                             # 10
        (male, dt.date(1990, 1, 1), "garbage", " 2 "),        # 11 unparseable birth text: date_past's job
        (male[:17] + wrong(male[17], "0123456789X"), dt.date(1990, 1, 5), "1990-01-05", "1"),  # 12 wrong check
    ]
    columns = load(con, {"身份证号": "VARCHAR", "出生日期": "DATE", "出生日期文本": "VARCHAR", "性别": "VARCHAR"}, rows)
    check = Check("r", "id_consistency", ("身份证号", "出生日期", "性别"),
                  {"id": "身份证号", "birth": "出生日期", "sex": "性别", "male": "1", "female": "2"})
    compiled = compile_check(check, columns=columns)
    assert [(c.code, c.item, c.dimension) for c in compiled] == [
        ("id_consistency.birth", "出生日期", "consistency"), ("id_consistency.sex", "性别", "consistency")]
    assert evaluate(con, compiled) == {"id_consistency.birth": [3, 12], "id_consistency.sex": [3, 4, 11]}
    text = Check("r", "id_consistency", ("身份证号",), {"birth": "出生日期文本"})
    assert failures(con, text, columns) == {"id_consistency.birth": [3, 12]}


def test_id_consistency_with_other_sex_codes(con):
    columns = load(con, {"证号": "VARCHAR", "性别": "VARCHAR", "性别码": "INTEGER"}, [
        (cid("130682", "19900101", "013"), "M", 1), (cid("130682", "19900101", "013"), "F", 2),
        (cid("130682", "19900101", "024"), "M", 2), (cid("130682", "19900101", "024"), "F", 1),
    ])
    check = Check("r", "id_consistency", ("证号",), {"sex": "性别", "male": "M", "female": "F"})
    assert failures(con, check, columns) == {"id_consistency.sex": [2, 3]}
    assert failures(con, Check("r", "id_consistency", ("证号",), {"sex": "性别码"}), columns) == {
        "id_consistency.sex": [2, 4]}


# --- reference and cross_source -------------------------------------------------------------------------------


def test_reference(con):
    load(con, {"机构代码": "VARCHAR", "数字代码": "BIGINT"}, [("A1", 10), ("B'2", 20), (None, None)], table="机构 现行")
    columns = load(con, {"机构": "VARCHAR", "数": "INTEGER"}, [
        ("A1", 10), ("C3", 30), ("B'2", None), (None, 20), ("", 11), ("a1", 10),
    ])
    refs = {"org": "机构 现行"}
    assert failures(con, Check("r", "reference", ("机构",), {"resource": "org", "item": "机构代码"}), columns,
                    refs=refs) == {"reference.missing": [2, 6]}
    assert failures(con, Check("r", "reference", ("数",), {"resource": "org", "item": "数字代码"}), columns,
                    refs=refs) == {"reference.missing": [2, 5]}


def test_cross_source(con):
    load(con, {"统一代码": "VARCHAR", "名称": "VARCHAR"}, [
        ("K1", "定州市民政局"), ("K2", "定州市教育局"), ("K3", None), ("K4", "甲"), ("K4", "乙"), ("K6", " 丙 "),
    ], table="法人库")
    columns = load(con, {"代码": "VARCHAR", "单位名称": "VARCHAR"}, [
        ("K1", "定州市民政局"),    # 1 same
        ("K2", "定州市教育厅"),    # 2 differs
        ("K3", None),             # 3 both missing
        ("K3", "something"),      # 4 the source has none: differs
        ("K4", "甲"),              # 5 two source rows, one differs
        ("K5", "无此代码"),        # 6 key absent from the source
        ("K1", None),             # 7 local missing, source has it
        ("K6", "丙"),              # 8 same after trimming
        (None, "x"),              # 9 no key
        ("K3", ""),               # 10 blank is missing
    ])
    check = Check("r", "cross_source", ("单位名称",), {"resource": "legal", "key": ["代码", "统一代码"], "item": "名称"})
    assert failures(con, check, columns, refs={"legal": "法人库"}) == {"cross_source.differs": [2, 4, 5, 7]}


# --- quoting --------------------------------------------------------------------------------------------------


def test_quoting_of_names_and_values(con):
    odd = 'col"umn\'s 名'
    load(con, {"k": "VARCHAR"}, [("O'Brien",)], table='ref"s')
    columns = load(con, {odd: "VARCHAR"}, [("O'Brien",), ("'); DROP TABLE t; --",), ('say "hi"',), (None,)],
                   table='t"x')
    checks = [
        Check("r1", "not_null", (odd,)),
        Check("r2", "pattern", (odd,), {"regex": "O'[A-Za-z]+"}),
        Check("r3", "code_table", (odd,), {"values": ["O'Brien", 'say "hi"']}),
        Check("r4", "reference", (odd,), {"resource": "r", "item": "k"}),
        Check("r5", "unique", (odd,)),
    ]
    compiled = [c for check in checks for c in compile_check(check, columns=columns, refs={"r": 'ref"s'}, table='t"x')]
    result = evaluate(con, compiled, table='t"x')
    assert result == {
        "not_null.missing": [4],
        "pattern.mismatch": [2, 3],
        "code_table.unknown": [2],
        "reference.missing": [2, 3],
        "unique.duplicate": [],
    }
    assert con.execute('SELECT count(*) FROM "t""x"').fetchone() == (4,)
    with pytest.raises(ValueError):
        compile_check(Check("r", "not_null", ("a\x00b",)), columns={"a\x00b": "VARCHAR"})


# --- errors ---------------------------------------------------------------------------------------------------


def test_compile_errors():
    columns = {"证号": "VARCHAR", "日期": "DATE"}
    with pytest.raises(ValueError, match="no column"):
        compile_check(Check("r", "not_null", ("姓名",)), columns=columns)
    with pytest.raises(ValueError, match="no relation"):
        compile_check(Check("r", "reference", ("证号",), {"resource": "x", "item": "k"}), columns=columns)
    with pytest.raises(ValueError, match="no column"):
        compile_check(Check("r", "id_consistency", ("证号",), {"birth": "生日"}), columns=columns)
    with pytest.raises(ValueError, match="params.regex"):
        compile_check(Check("r", "pattern", ("证号",), {"regex": "a("}), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "pattern", ("证号",)), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "id_number", ("日期",)), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "spelling", ("证号",)), columns=columns)
    with pytest.raises(ValueError):
        compile_check(Check("r", "cross_source", ("证号",), {"resource": "x", "key": ["证号"], "item": "v"}),
                      columns=columns, refs={"x": "t"})


def test_validate_params():
    def fields(kind, items, params):
        return [f for f, _ in validate_params(kind, items, params)]

    assert fields("spelling", ["a"], {}) == ["kind"]
    assert fields("unique", [], {}) == ["items"]
    assert validate_params("unique", [], {})[0][1]
    assert fields("not_null", ["a", "b"], {}) == ["items"]
    assert fields("unique", ["a", "a"], {}) == ["items"]
    assert fields("not_null", ["a"], {"regex": "x"}) == ["params.regex"]
    assert fields("pattern", ["a"], {"regex": "a("}) == ["params.regex"]
    assert fields("pattern", ["a"], {"regex": "(?<=a)b"}) == ["params.regex"]  # a look-behind: not RE2
    assert fields("pattern", ["a"], {}) == ["params.regex"]
    assert fields("range", ["a"], {}) == ["params.min"]
    assert fields("range", ["a"], {"min": "abc"}) == ["params.min"]
    assert fields("range", ["a"], {"min": True}) == ["params.min"]
    assert fields("range", ["a"], {"max": float("nan")}) == ["params.max"]
    assert fields("range", ["a"], {"min": 5, "max": 1}) == ["params.min"]
    assert fields("range", ["a"], {"min": 1, "max": "2020-01-01"}) == ["params.max"]
    assert fields("range", ["a"], {"min": "2020-02-30"}) == ["params.min"]
    assert fields("range", ["a"], {"min": "2020-12-31", "max": "2020-01-01"}) == ["params.min"]
    assert fields("code_table", ["a"], {"values": []}) == ["params.values"]
    assert fields("code_table", ["a"], {"values": [1, 2]}) == ["params.values"]
    assert fields("id_number", ["a"], {"regions": ["1"]}) == ["params.regions"]
    assert fields("id_number", ["a"], {"regions": "130682"}) == ["params.regions"]
    assert fields("id_consistency", ["a"], {}) == ["params.birth"]
    assert fields("id_consistency", ["a"], {"sex": "s", "male": "1", "female": "1"}) == ["params.female"]
    assert fields("id_consistency", ["a"], {"id": "b", "sex": "s"}) == ["params.id"]
    assert fields("id_consistency", ["a", "x"], {"sex": "s"}) == ["items"]
    assert fields("reference", ["a"], {"resource": "r"}) == ["params.item"]
    assert fields("cross_source", ["a"], {"resource": "r", "item": "v", "key": "k"}) == ["params.key"]
    assert fields("unique", ["a"], []) == ["params"]

    assert validate_params("pattern", ["a"], {"regex": r"\d{6}"}) == []
    assert validate_params("range", ["a"], {"min": 0, "max": 1.5}) == []
    assert validate_params("range", ["a"], {"min": "2020-01-01", "max": "2020-01-01T12:00"}) == []
    assert validate_params("code_table", ["a"], {"values": ["1", "2"]}) == []
    assert validate_params("id_number", ["a"], {"regions": ["13", "130682"]}) == []
    assert validate_params("id_consistency", ["a", "b", "s"], {"id": "a", "birth": "b", "sex": "s"}) == []
    assert validate_params("cross_source", ["a"], {"resource": "r", "item": "v", "key": ["k", "k2"]}) == []
    assert validate_params("unique", ["a", "b"], {}) == []


def test_count_change_problem():
    assert count_change_problem(None, 10, 0.5) is None
    assert count_change_problem(0, 10, 0.5) is None
    assert count_change_problem(100, 150, 0.5) is None
    assert count_change_problem(100, 50, 0.5) is None
    assert count_change_problem(100, 100, 0.0) is None
    message = count_change_problem(100, 151, 0.5)
    assert isinstance(message, str) and "100" in message and "151" in message
    assert count_change_problem(100, 49, 0.5)
    assert count_change_problem(100, 0, 0.5)


# --- against core.validators and python-stdnum, on generated numbers ------------------------------------------
#
# Deliberate differences from python-stdnum:
# - stdnum first "compacts" a number (upper-cases it, strips spaces and, for the credit code, '-'), so it accepts
#   '...x' or '9111 0000 ...'; a load keeps values as given, so those fail the format check here.
# - citizen ID: stdnum checks the first six digits against its dated county list (a county that existed in the
#   birth year); this checks the province-level code only (its list is exactly stdnum's 34 provinces, see
#   below), plus the optional `regions` prefixes. stdnum accepts any real birth date; this also requires
#   1850 <= birth date <= today, as core.validators does.
# - credit code: stdnum wants the first eight characters to be digits; GB 32100 lets the registration
#   authority and the organisation category (characters 1-2) be letters (e.g. 'Y1', 'N2'), as core.validators does.

COUNTIES = sorted(
    province + county
    for _, province, _, _, children in numdb.get("cn/loc").prefixes
    for _, county, _, _, _ in children
)


def test_provinces_are_stdnums():
    assert set(PROVINCES) == {p for _, p, _, _, _ in numdb.get("cn/loc").prefixes}


@st.composite
def citizen_ids(draw):
    region = draw(st.sampled_from(COUNTIES) | st.sampled_from(PROVINCES).map(lambda p: p + "0000"))
    born = draw(st.dates(min_value=dt.date(1850, 1, 1), max_value=TODAY))
    return cid(region, born, f"{draw(st.integers(0, 999)):03d}")


@st.composite
def changed(draw, valid, alphabet):
    value = draw(valid)
    if draw(st.booleans()):
        return value
    position = draw(st.integers(0, len(value) - 1))
    char = draw(st.sampled_from(alphabet))
    return value[:position] + char + value[position + 1:]


@pytest.fixture(scope="module")
def shared():
    """One connection for the generated batches (hypothesis runs many examples per test)."""
    connection = duckdb.connect()
    yield connection
    connection.close()


def sql_verdicts(con, codes: list[str], kind: str, values: list[str]) -> list[bool]:
    """Valid (no failure code) per value, by the compiled SQL over a batch."""
    columns = load(con, {"值": "VARCHAR"}, [(v,) for v in values])
    result = failures(con, Check("r", kind, ("值",)), columns)
    assert set(result) == set(codes)
    bad = {row for rows in result.values() for row in rows}
    return [row not in bad for row in range(1, len(values) + 1)]


def stdnum_ric(value: str) -> bool:
    """ric.is_valid, but False where stdnum raises KeyError (an unknown county in a known province)."""
    try:
        return ric.is_valid(value)
    except KeyError:
        return False


def stdnum_ric_without_place(value: str) -> bool:
    """stdnum's verdict with its county lookup left out (its last step)."""
    try:
        ric.validate(value)
        return True
    except (InvalidComponent, KeyError):
        try:
            ric.get_birth_date(value)
        except ValidationError:
            return False
        return True  # only the county lookup failed
    except ValidationError:
        return False


@given(st.lists(changed(citizen_ids(), "0123456789Xx A"), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_citizen_ids_agree_with_validators_and_stdnum(shared, values):
    for value, valid in zip(values, sql_verdicts(shared, ID_CODES, "id_number", values)):
        assert valid == (is_citizen_id(value) and value[:2] in PROVINCES), value
        clean = ric.compact(value) == value
        in_range = (clean and stdnum_ric_without_place(value)
                    and dt.date(1850, 1, 1) <= ric.get_birth_date(value) <= TODAY)
        assert valid == (clean and in_range and value[:2] in PROVINCES), value
        if stdnum_ric(value) and in_range:
            assert valid, value


@st.composite
def credit_codes(draw):
    authority = draw(st.sampled_from(CC_ALPHABET)) + draw(st.sampled_from(CC_ALPHABET))
    region = f"{draw(st.integers(0, 999999)):06d}"
    org = "".join(draw(st.lists(st.sampled_from(CC_ALPHABET), min_size=8, max_size=8)))
    return make_credit_code(authority, region, org)


@given(st.lists(changed(credit_codes(), CC_ALPHABET + "IOSVZa -"), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_credit_codes_agree_with_validators_and_stdnum(shared, values):
    codes = ["credit_code.format", "credit_code.check_digit"]
    for value, valid in zip(values, sql_verdicts(shared, codes, "credit_code", values)):
        assert valid == is_credit_code(value), value
        clean = uscc.compact(value) == value
        assert (valid and value[:2].isdigit()) == (clean and uscc.is_valid(value)), value
        if valid:
            assert credit_code_check_char(value[:17]) == uscc.calc_check_digit(value) == value[17]


def test_stdnum_differences_pinned(con):
    lower = next(v for v in (cid("110105", "19900101", f"{n:03d}") for n in range(1000)) if v[17] == "X").lower()
    assert ric.is_valid(lower)
    county_unknown = cid("130699", "19900101")
    assert not stdnum_ric(county_unknown)
    old = cid("110105", "18000101")  # Chaoyang has no dates in stdnum's county list
    assert ric.is_valid(old)
    letters = make_credit_code("Y1", "130682", "12345678")
    assert not uscc.is_valid(letters)
    assert sql_verdicts(con, ID_CODES, "id_number", [lower, county_unknown, old]) == [False, True, False]
    assert sql_verdicts(con, ["credit_code.format", "credit_code.check_digit"], "credit_code", [letters]) == [True]


# --- a million rows in one SELECT -----------------------------------------------------------------------------

N = 1_000_000
W_ID = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
W_CC = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def _generate(con):
    """A load of N people and enterprises, valid but for faults injected by row number (a shift of 1 makes a
    check character wrong). The check characters are computed here independently of the module's SQL: the
    citizen ID's weighted sum is the region's (in Python) plus the birth date's and the sequence number's, each
    with list lambdas over a small table; the credit code's is the prefix's plus the row number's digits."""
    region_sum = sum(int(c) * w for c, w in zip("130682", W_ID))
    prefix_sum = sum(CC_ALPHABET.index(c) * w for c, w in zip("91130682", W_CC))
    number_sum = " + ".join(f"(i // {10 ** (8 - k)} % 10) * {W_CC[8 + k]}" for k in range(9))
    con.execute(f"""
        CREATE TABLE births AS
        SELECT d, born, list_sum(list_transform(range(8),
                 lambda k: (ascii(strftime(born, '%Y%m%d')[k + 1]) - 48) * {W_ID}[7 + k])) AS s
        FROM (SELECT d, DATE '1950-01-01' + CAST(d AS INTEGER) AS born FROM range(20000) r(d))""")
    con.execute(f"""
        CREATE TABLE seqs AS
        SELECT seq, list_sum(list_transform(range(3),
                 lambda k: (ascii(lpad(CAST(seq AS VARCHAR), 3, '0')[k + 1]) - 48) * {W_ID}[15 + k])) AS s
        FROM range(50) r(seq)""")
    con.execute(f"""
        CREATE TABLE base AS
        SELECT i, clean, born, seq,
               '130682' || strftime(born, '%Y%m%d') || lpad(CAST(seq AS VARCHAR), 3, '0') AS id17,
               CAST(({region_sum} + births.s + seqs.s) % 11 AS INTEGER) AS id_sum,
               '91130682' || lpad(CAST(i AS VARCHAR), 9, '0') AS cc17,
               CAST(({prefix_sum} + {number_sum}) % 31 AS INTEGER) AS cc_sum
        FROM (SELECT i, i % 1000 < 998 AS clean,  -- rows 998 and 999 of each thousand: one person, unchanged
                     CASE WHEN i % 1000 = 999 THEN i - 1 ELSE i END AS j FROM range({N}) r(i)) rows
        JOIN births ON births.d = j % 20000
        JOIN seqs ON seqs.seq = j // 20000""")
    con.execute(f"""
        CREATE TABLE typed AS
        SELECT i AS _row,
          id17 || CASE WHEN clean AND i % 97 = 1 THEN 'x'
                       WHEN clean AND i % 89 = 2 THEN substr('10X98765432', (id_sum + 1) % 11 + 1, 1)
                       ELSE substr('10X98765432', id_sum + 1, 1) END AS "公民身份号码",
          CASE WHEN clean AND i % 101 = 3 THEN born + 1 ELSE born END AS "出生日期",
          CASE WHEN clean AND i % 103 = 4 THEN CAST(1 + seq % 2 AS VARCHAR)
               WHEN i % 7 = 5 THEN '9' ELSE CAST(2 - seq % 2 AS VARCHAR) END AS "性别",
          CASE WHEN i % 50 = 0 THEN NULL ELSE '姓名' || i END AS "姓名",
          cc17 || substr('{CC_ALPHABET}', ((31 - cc_sum) % 31 + CASE WHEN i % 107 = 5 THEN 1 ELSE 0 END) % 31 + 1, 1)
            AS "统一社会信用代码",
          CASE WHEN i % 109 = 6 THEN '12' ELSE '13' END || lpad(CAST(i AS VARCHAR), 9, '0') AS "手机号码",
          CAST((i % 10000) / 4 AS DECIMAL(18,4)) AS "金额",
          CAST(130600 + i % 400 AS VARCHAR) AS "行政区划",
          CASE WHEN i % 113 = 7 THEN 'not a date'
               WHEN i % 2 = 0 THEN strftime(born, '%Y-%m-%d') ELSE strftime(born, '%Y年%-m月%-d日') END AS "登记日期"
        FROM base ORDER BY i""")


def test_a_million_rows_in_one_select(con):
    _generate(con)
    columns = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_name = 'typed' AND column_name <> '_row'").fetchall())
    checks = [
        Check("1", "not_null", ("姓名",)),
        Check("2", "unique", ("公民身份号码",)),
        Check("3", "id_number", ("公民身份号码",)),
        Check("4", "credit_code", ("统一社会信用代码",)),
        Check("5", "mobile", ("手机号码",)),
        Check("6", "range", ("金额",), {"min": 0, "max": 2000}),
        Check("7", "code_table", ("行政区划",), {"values": [str(130600 + k) for k in range(300)]}),
        Check("8", "date_past", ("出生日期",)),
        Check("9", "date_past", ("登记日期",)),
        Check("10", "id_consistency", ("公民身份号码",), {"birth": "出生日期", "sex": "性别"}),
        Check("11", "not_null", ("公民身份号码",)),
        Check("12", "pattern", ("行政区划",), {"regex": "13[0-9]{4}"}),
    ]
    compiled = [c for check in checks for c in compile_check(check, columns=columns)]
    select = ", ".join(f"{c.sql} AS f{i}" for i, c in enumerate(compiled))
    started, cpu = time.perf_counter(), time.process_time()
    con.execute(f"CREATE TABLE checked AS SELECT *, {select} FROM typed")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"\n{N:,} rows, {len(checks)} rules, {len(compiled)} expressions: {elapsed:.2f} s ({cpu:.2f} s CPU)")

    counts = con.execute("SELECT " + ", ".join(f"count(*) FILTER (f{i})" for i in range(len(compiled)))
                         + " FROM checked").fetchone()
    found: dict[str, int] = {}
    for c, n in zip(compiled, counts):
        found[c.code] = found.get(c.code, 0) + n
    expected = con.execute("""
        SELECT count(*) FILTER (i % 50 = 0),
               count(*) FILTER (i % 1000 = 999),
               count(*) FILTER (clean AND i % 97 = 1),
               count(*) FILTER (clean AND i % 89 = 2 AND i % 97 <> 1),
               count(*) FILTER (i % 107 = 5),
               count(*) FILTER (i % 109 = 6),
               count(*) FILTER (i % 10000 / 4 > 2000),
               count(*) FILTER (i % 400 >= 300),
               count(*) FILTER (i % 113 = 7),
               count(*) FILTER (clean AND i % 101 = 3 AND i % 97 <> 1),
               count(*) FILTER (clean AND i % 103 = 4 AND i % 97 <> 1)
        FROM base""").fetchone()
    assert found == {
        "not_null.missing": expected[0],
        "unique.duplicate": expected[1],
        "id_number.format": expected[2],
        "id_number.birth_date": 0,
        "id_number.region": 0,
        "id_number.check_digit": expected[3],
        "credit_code.format": 0,
        "credit_code.check_digit": expected[4],
        "mobile.format": expected[5],
        "range.below_min": 0,
        "range.above_max": expected[6],
        "code_table.unknown": expected[7],
        "date_past.future": 0,
        "date_past.unparseable": expected[8],
        "id_consistency.birth": expected[9],
        "id_consistency.sex": expected[10],
        "pattern.mismatch": 0,
    }
