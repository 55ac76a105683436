"""The masking library of the sharing gateway: display rules by hand-written example, validation, the
default masks of the demo's population items, and, with hypothesis, that the Python form and the DuckDB
form give the same result for every value (NULL, empty, one character, CJK, spaces, short values, and the
non-string types' text forms)."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shuzheng.core import crypto
from shuzheng.sharing import masks
from shuzheng.sharing.masks import MaskError

DATA = Path(masks.__file__).resolve().parents[1] / "catalog" / "data"
TODAY = dt.date(2026, 5, 1)
KEY_ID = "consumer:test"
ARROW_TYPES = {"string": pa.string(), "integer": pa.int64(), "decimal": pa.decimal128(18, 4),
               "date": pa.date32(), "datetime": pa.timestamp("us"), "boolean": pa.bool_()}
DUCK_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "decimal": "DECIMAL(18,4)", "date": "DATE",
              "datetime": "TIMESTAMP", "boolean": "BOOLEAN"}


pytestmark = pytest.mark.usefixtures("english")  # the assertions read the English messages

@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    masks.register(con)  # keys by hash_key(key id)
    yield con
    con.close()


def sql_values(con, spec, data_type, values, key_id=KEY_ID, today=TODAY):
    """The SQL form over a table of these values (an Arrow table of the warehouse types), in order."""
    # DuckDB finds the Arrow table by its variable's name (a replacement scan): the same table, read the
    # same way, at half the cost of register() and unregister() around each of the property tests' queries.
    t_masks = pa.table({"i": pa.array(range(len(values)), pa.int64()), "c": pa.array(values, ARROW_TYPES[data_type])})
    expr = masks.sql(spec, '"c"', data_type, key_id=key_id, today=today)
    rows = con.execute(f"SELECT {expr} FROM t_masks ORDER BY i").fetchall()
    del t_masks
    return [row[0] for row in rows]


def py_values(spec, data_type, values, key_id=KEY_ID, today=TODAY):
    fn = masks.compile_py(spec, data_type, key_id=key_id, today=today)
    return [fn(v) for v in values]


def both(con, spec, data_type, value, **kw):
    """One value through both forms; they must agree."""
    py = py_values(spec, data_type, [value], **kw)[0]
    assert sql_values(con, spec, data_type, [value], **kw)[0] == py
    return py


# ---------------------------------------------------------------------------------------------------------
# Display rules, by example
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, value, expected", [
    ({"kind": "clear"}, "张三", "张三"),
    ({"kind": "null"}, "张三", None),
    ({"kind": "keep", "first": 1, "last": 1}, "abcdef", "a****f"),
    ({"kind": "keep", "first": 2, "last": 0}, "定州市公安局", "定州****"),
    ({"kind": "keep", "first": 0, "last": 3}, "123456", "***456"),
    ({"kind": "keep", "first": 0, "last": 0}, "张三", "**"),
    ({"kind": "keep", "first": 1, "last": 1}, "ab", "**"),  # not longer than first+last: starred whole
    ({"kind": "keep", "first": 3, "last": 4}, "1234567", "*******"),
    ({"kind": "keep", "first": 1, "last": 1}, "a", "*"),
    ({"kind": "keep", "first": 1, "last": 1}, "", ""),
    ({"kind": "keep", "first": 1, "last": 1}, " 张三 ", " ** "),
    ({"kind": "name"}, "张三", "张*"),
    ({"kind": "name"}, "欧阳娜娜", "欧***"),
    ({"kind": "name"}, "张", "*"),
    ({"kind": "name"}, "", ""),
    ({"kind": "mobile"}, "13812345678", "138****5678"),
    ({"kind": "mobile"}, "0312-2345678", "031*****5678"),
    ({"kind": "mobile"}, "1381234", "*******"),
    ({"kind": "id_number"}, "130682199001011234", "130682********1234"),
    ({"kind": "id_number"}, "13068219900101123X", "130682********123X"),
    ({"kind": "id_number"}, "130682900101123", "130682******123"),
    ({"kind": "id_number"}, "1306821234", "**********"),
    ({"kind": "bank_card"}, "6222021234567890", "6222 **** **** 7890"),
    ({"kind": "bank_card"}, "6222 0212 3456 7890", "6222 **** **** 7890"),
    ({"kind": "bank_card"}, "6222021234567890123", "6222 **** **** *** 0123"),
    ({"kind": "bank_card"}, "622200123", "6222 * 0123"),
    ({"kind": "bank_card"}, "12345678", "**** ****"),
    ({"kind": "bank_card"}, "1234567", "**** ***"),
    ({"kind": "bank_card"}, "   ", ""),
    ({"kind": "town"}, "河北省定州市北城区街道中山路12号", "河北省定州市北城区街道"),
    ({"kind": "town"}, "河北省定州市北城区街道办事处中山路12号", "河北省定州市北城区街道办事处"),
    ({"kind": "town"}, "河北省定州市清风店镇东王村5号", "河北省定州市清风店镇"),
    ({"kind": "town"}, "定州市砖路镇", "定州市砖路镇"),
    ({"kind": "town"}, "赵庄乡刘家庄村", "赵庄乡"),
    ({"kind": "town"}, "镇江市京口区象山街道1号", "镇江市京口区象山街道"),  # 镇 at the start is not a town
    ({"kind": "town"}, "河北省定州市中山路12号", "河北省定州市"),  # no town: up to the first 区/县/市
    ({"kind": "town"}, "北京市朝阳区建国路1号", "北京市"),
    ({"kind": "town"}, "阳光小区3号楼2单元", None),  # 小区 is not a district; nothing safe to keep
    ({"kind": "town"}, "新华社区居委会", None),
    ({"kind": "town"}, "中山路12号", None),
    ({"kind": "town"}, "市区", None),
    ({"kind": "town"}, "", None),
    ({"kind": "year"}, " 1990-05-01", 1990),
    ({"kind": "year"}, "19900501", 1990),
    ({"kind": "year"}, "1990年5月", 1990),
    ({"kind": "year"}, "0000-01-01", None),
    ({"kind": "year"}, "五月", None),
    ({"kind": "age_band"}, "1960-05-01", "60-69"),  # 66 on 2026-05-01
    ({"kind": "age_band"}, "1956-05-02", "60-69"),  # 69 until tomorrow
    ({"kind": "age_band"}, "1956-05-01 08:00", "70-79"),
    ({"kind": "age_band", "width": 5}, "2000-02-29", "25-29"),
    ({"kind": "age_band", "width": 1}, "2000-02-29", "26-26"),
    ({"kind": "age_band"}, "2026-05-02", None),  # born after the reference date
    ({"kind": "age_band"}, "1990-02-30", None),
    ({"kind": "age_band"}, "1990-1-1", None),
    ({"kind": "age_band"}, "0000-01-01", None),
])
def test_display_rules(con, spec, value, expected):
    assert both(con, spec, "string", value) == expected
    assert both(con, spec, "string", None) is None


def test_hash_is_hmac_sm3_of_the_text(con):
    value = both(con, {"kind": "hash"}, "string", "130682199001011234")
    assert value == crypto.hmac_sm3(masks.hash_key(KEY_ID), "130682199001011234".encode()).hex()
    assert len(value) == 64 and value == value.lower()
    assert both(con, {"kind": "hash"}, "integer", 42) == crypto.hmac_sm3(masks.hash_key(KEY_ID), b"42").hex()
    assert both(con, {"kind": "hash"}, "string", "") == crypto.hmac_sm3(masks.hash_key(KEY_ID), b"").hex()


def test_hash_domains(con):
    one = both(con, {"kind": "hash"}, "string", "张三", key_id="consumer:a")
    assert one == both(con, {"kind": "hash"}, "string", "张三", key_id="consumer:a")
    assert one != both(con, {"kind": "hash"}, "string", "张三", key_id="consumer:b")
    assert masks.hash_key("consumer:a") != masks.hash_key("consumer:b")
    assert masks.hash_key("consumer:a") == crypto.derive_key("mask-hash:consumer:a")


def test_hash_keys_stay_out_of_sql():
    key = masks.hash_key("consumer:a")
    expr = masks.sql({"kind": "hash"}, '"c"', "string", key_id="consumer:a")
    assert expr == "sz_mask_hash('consumer:a', \"c\")"
    assert key.hex() not in expr
    assert masks.sql({"kind": "hash"}, "c", "string", key_id="it's") == "sz_mask_hash('it''s', c)"
    with pytest.raises(MaskError):
        masks.sql({"kind": "hash"}, "c", "string")
    with pytest.raises(MaskError):
        masks.compile_py({"kind": "hash"}, "string")


def test_hash_registry_of_explicit_keys():
    con = duckdb.connect()
    keys = {"k1": b"\x01" * 32, "k2": b"\x02" * 32}
    masks.register(con, keys)
    masks.register(con, keys)  # again on the same connection: replaces
    rows = con.execute("SELECT sz_mask_hash('k1', 'x'), sz_mask_hash('k2', 'x'), sz_mask_hash('k1', NULL)").fetchall()[0]
    assert rows == (crypto.hmac_sm3(keys["k1"], b"x").hex(), crypto.hmac_sm3(keys["k2"], b"x").hex(), None)
    assert masks.compile_py({"kind": "hash"}, "string", keys, key_id="k2")("x") == rows[1]
    with pytest.raises(duckdb.Error, match="k3"):  # in the DuckDB thread's language
        con.execute("SELECT sz_mask_hash('k3', 'x')").fetchall()
    # Several batches, as an export reads them
    out = con.execute("SELECT count(DISTINCT sz_mask_hash('k1', CAST(i AS VARCHAR))) FROM range(5000) r(i)").fetchall()[0]
    assert out == (5000,)


def test_non_string_types(con):
    assert both(con, {"kind": "keep", "first": 2, "last": 2}, "integer", 1234567) == "12***67"
    assert both(con, {"kind": "keep", "first": 2, "last": 2}, "integer", -5) == "**"
    assert both(con, {"kind": "keep", "first": 3, "last": 2}, "decimal", Decimal("12.3400")) == "12.**00"
    assert both(con, {"kind": "keep", "first": 4, "last": 3}, "date", dt.date(2024, 1, 5)) == "2024***-05"
    assert both(con, {"kind": "keep", "first": 4, "last": 0}, "datetime", dt.datetime(2024, 1, 5, 10)) == "2024" + "*" * 15
    assert both(con, {"kind": "keep", "first": 1, "last": 1}, "boolean", True) == "t**e"
    assert both(con, {"kind": "keep", "first": 1, "last": 1}, "boolean", False) == "f***e"
    assert both(con, {"kind": "mobile"}, "integer", 13812345678) == "138****5678"
    assert both(con, {"kind": "bank_card"}, "integer", 6222021234567890) == "6222 **** **** 7890"
    assert both(con, {"kind": "year"}, "date", dt.date(1990, 5, 1)) == 1990
    assert both(con, {"kind": "year"}, "datetime", dt.datetime(1990, 12, 31, 23, 59)) == 1990
    assert both(con, {"kind": "age_band"}, "date", dt.date(1960, 5, 2)) == "60-69"
    assert both(con, {"kind": "age_band"}, "datetime", dt.datetime(1956, 5, 1, 23, 0)) == "70-79"
    assert both(con, {"kind": "age_band"}, "integer", 67) == "60-69"
    assert both(con, {"kind": "age_band", "width": 5}, "integer", 0) == "0-4"
    assert both(con, {"kind": "age_band"}, "integer", -1) is None
    assert both(con, {"kind": "null"}, "decimal", Decimal("1.0000")) is None
    assert both(con, {"kind": "clear"}, "date", dt.date(2024, 1, 5)) == dt.date(2024, 1, 5)


@pytest.mark.parametrize("data_type, value, text", [
    ("integer", -42, "-42"),
    ("decimal", Decimal("12.3400"), "12.3400"),
    ("decimal", Decimal("12.34"), "12.3400"),
    ("decimal", Decimal("1E+2"), "100.0000"),
    ("decimal", Decimal("-0.00004"), "0.0000"),
    ("decimal", Decimal("0.00005"), "0.0001"),
    ("decimal", Decimal("-0.00015"), "-0.0002"),
    ("date", dt.date(24, 1, 5), "0024-01-05"),
    ("datetime", dt.datetime(2024, 1, 5, 10), "2024-01-05 10:00:00"),
    ("datetime", dt.datetime(2024, 1, 5, 10, 0, 0, 120000), "2024-01-05 10:00:00.12"),
    ("datetime", dt.datetime(2024, 1, 5, 10, 0, 0, 100), "2024-01-05 10:00:00.0001"),
    ("boolean", True, "true"),
    ("boolean", False, "false"),
])
def test_text_forms_are_duckdbs(con, data_type, value, text):
    assert masks.text_form(value, data_type) == text
    # DuckDB, from the most precise type the value may come in
    source = {"decimal": "DECIMAL(38,10)"}.get(data_type, DUCK_TYPES[data_type])
    assert con.execute(f"SELECT {masks.text_sql('CAST(? AS %s)' % source, data_type)}", [value]).fetchall()[0][0] == text


def test_decimal_scale_is_the_warehouses():
    from shuzheng.warehouse import lake

    assert masks.DECIMAL_SCALE == lake.DECIMAL[1]
    assert DUCK_TYPES == {str(k): v for k, v in lake.DUCK_TYPES.items()}


# ---------------------------------------------------------------------------------------------------------
# Validation and output types
# ---------------------------------------------------------------------------------------------------------

def test_validate_fills_defaults():
    assert masks.validate({"kind": "age_band"}, "date") == {"kind": "age_band", "width": 10}
    assert masks.validate({"width": 5, "kind": "age_band"}, "integer") == {"kind": "age_band", "width": 5}
    assert masks.validate({"kind": "keep", "first": 0, "last": 4}, "string") == {"kind": "keep", "first": 0, "last": 4}
    assert masks.validate({"kind": "clear"}, "boolean") == {"kind": "clear"}
    assert set(masks.KINDS) == {"clear", "null", "keep", "hash", "year", "age_band", "town", "name", "mobile",
                                "id_number", "bank_card"}


@pytest.mark.parametrize("spec, data_type, message", [
    ({"kind": "blur"}, "string", 'Unknown mask kind "blur"'),
    ({}, "string", "Unknown mask kind"),
    ({"kind": ["keep"]}, "string", "Unknown mask kind"),
    ("keep", "string", 'must be an object with a "kind"'),
    (None, "string", 'must be an object with a "kind"'),
    ({"kind": "keep", "first": 1}, "string", 'needs the parameter "last"'),
    ({"kind": "keep"}, "string", 'needs the parameter "first"'),
    ({"kind": "keep", "first": -1, "last": 1}, "string", 'parameter "first" of the mask "keep" must be a whole number'),
    ({"kind": "keep", "first": 1.0, "last": 1}, "string", 'parameter "first"'),
    ({"kind": "keep", "first": "1", "last": 1}, "string", 'parameter "first"'),
    ({"kind": "keep", "first": True, "last": 1}, "string", 'parameter "first"'),
    ({"kind": "keep", "first": 1, "last": 1001}, "string", 'parameter "last"'),
    ({"kind": "keep", "first": 1, "last": 1, "middle": 2}, "string", 'no parameter "middle"'),
    ({"kind": "name", "first": 1}, "string", 'no parameter "first"'),
    ({"kind": "age_band", "width": 0}, "date", 'parameter "width" of the mask "age_band" must be a whole number from 1 to 50'),
    ({"kind": "age_band", "width": 51}, "date", 'parameter "width"'),
    ({"kind": "year"}, "integer", 'The mask "year" does not apply to integer items'),
    ({"kind": "year"}, "boolean", "does not apply to boolean items"),
    ({"kind": "age_band"}, "boolean", 'The mask "age_band" does not apply to boolean items'),
    ({"kind": "age_band"}, "decimal", "does not apply to decimal items"),
    ({"kind": "town"}, "integer", "does not apply to integer items"),
    ({"kind": "name"}, "date", "does not apply to date items"),
    ({"kind": "bank_card"}, "decimal", "does not apply to decimal items"),
    ({"kind": "clear"}, "text", 'Unknown data type "text"'),
])
def test_validate_errors(spec, data_type, message):
    with pytest.raises(MaskError, match=message.replace("(", r"\(")) as info:
        masks.validate(spec, data_type)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MaskError):
        masks.sql(spec, "c", data_type)
    with pytest.raises(MaskError):
        masks.compile_py(spec, data_type)


@pytest.mark.parametrize("spec, data_type, out", [
    ({"kind": "clear"}, "decimal", "decimal"),
    ({"kind": "null"}, "date", "date"),
    ({"kind": "year"}, "date", "integer"),
    ({"kind": "year"}, "string", "integer"),
    ({"kind": "age_band"}, "integer", "string"),
    ({"kind": "keep", "first": 1, "last": 1}, "decimal", "string"),
    ({"kind": "hash"}, "boolean", "string"),
    ({"kind": "mobile"}, "integer", "string"),
    ({"kind": "town"}, "string", "string"),
])
def test_output_type(spec, data_type, out):
    assert masks.output_type(spec, data_type) == out


def valid_specs():
    """Every (spec, data type) pair the library accepts, with sample parameters."""
    samples = {"keep": {"first": 2, "last": 1}, "age_band": {"width": 5}}
    for kind in masks.KINDS:
        for data_type in masks.DATA_TYPES:
            spec = {"kind": kind, **samples.get(kind, {})}
            try:
                masks.validate(spec, data_type)
            except MaskError:
                continue
            yield spec, data_type


@pytest.mark.parametrize("spec, data_type", list(valid_specs()))
def test_sql_type_is_the_output_type(con, spec, data_type):
    expr = masks.sql(spec, '"c"', data_type, key_id=KEY_ID, today=TODAY)
    got = con.execute(f"SELECT typeof({expr}) FROM (SELECT CAST(NULL AS {DUCK_TYPES[data_type]}) AS c)").fetchall()[0][0]
    assert got == DUCK_TYPES[masks.output_type(spec, data_type)]


# ---------------------------------------------------------------------------------------------------------
# Default masks
# ---------------------------------------------------------------------------------------------------------

def test_default_masks_of_the_household_register():
    resources = json.loads((DATA / "demo_resources.json").read_text(encoding="utf-8"))
    register = next(r for r in resources if r["key"] == "ps-household-register")
    got = {i["name"]: masks.default_mask(i["name"], i["type"], i["level"], i["element"]) for i in register["items"]}
    assert got["公民身份号码"] == {"kind": "id_number"}
    assert got["姓名"] == {"kind": "name"}
    assert got["户籍地址"] == {"kind": "town"}
    assert got["现住址"] == {"kind": "town"}
    assert got["户号"] == {"kind": "keep", "first": 1, "last": 1}  # important, no rule: keep 1/1
    assert got["性别"] == got["出生日期"] == got["所属派出所"] == {"kind": "clear"}  # general in the demo
    # The same items at other levels
    assert masks.default_mask("出生日期", "date", "important", "DE00005") == {"kind": "year"}
    assert masks.default_mask("公民身份号码", "string", "core", "DE00001") == {"kind": "hash"}
    assert masks.default_mask("出生日期", "date", "core", "DE00005") == {"kind": "null"}


def test_element_codes_mean_what_the_rules_say():
    elements = {e["identifier"]: e["name"] for e in json.loads((DATA / "elements.json").read_text(encoding="utf-8"))}
    assert elements["DE00001"] == "公民身份号码" and elements["DE00002"] == "姓名"
    assert elements["DE00005"] == "出生日期" and elements["DE00008"] == "联系电话"
    assert elements["DE00006"] == "户籍地址" and elements["DE00007"] == "现住址" and elements["DE00037"] == "地址"
    assert elements["DE00012"] == "法定代表人姓名" and elements["DE00046"] == "残疾人证号"


@pytest.mark.parametrize("name, data_type, element, kind", [
    ("监护人联系电话", "string", "DE00008", "mobile"),
    ("手机号码", "string", None, "mobile"),
    ("移动电话", "string", None, "mobile"),
    ("申请人证件号码", "string", "DE00001", "id_number"),
    ("证件号码", "string", None, "id_number"),
    ("身份证号", "string", None, "id_number"),
    ("残疾人证号", "string", "DE00046", "id_number"),
    ("户主姓名", "string", "DE00002", "name"),
    ("联系人姓名", "string", None, "name"),
    ("法定代表人姓名", "string", "DE00012", "name"),
    ("单位名称", "string", "DE00011", "keep"),  # an organisation's name is not a person's
    ("银行卡号", "string", None, "bank_card"),
    ("银行账号", "string", None, "bank_card"),
    ("补贴发放账号", "integer", None, "bank_card"),
    ("经营地址", "string", None, "town"),
    ("地址", "string", "DE00037", "town"),
    ("发证日期", "date", "DE00021", "year"),
    ("最近预警时间", "datetime", None, "year"),
    ("出生年月", "string", None, "year"),
    ("年龄", "integer", None, "age_band"),
    ("年龄", "string", None, "keep"),
    ("联系地址", "integer", None, "keep"),  # town does not apply to integers: the fallback
    ("注册资本", "decimal", "DE00014", "keep"),
    ("是否低保户", "boolean", None, "null"),
    ("社会保障卡号", "string", "DE00028", "keep"),
])
def test_default_masks_of_important_items(name, data_type, element, kind):
    spec = masks.default_mask(name, data_type, "important", element)
    assert spec["kind"] == kind
    assert masks.validate(spec, data_type) == spec


def test_default_masks_of_every_demo_item():
    resources = json.loads((DATA / "demo_resources.json").read_text(encoding="utf-8"))
    seen = set()
    for resource in resources:
        for item in resource["items"]:
            spec = masks.default_mask(item["name"], item["type"], item["level"], item["element"])
            assert masks.validate(spec, item["type"]) == spec
            if item["level"] == "general":
                assert spec == {"kind": "clear"}
            elif item["level"] == "core":
                assert spec == ({"kind": "hash"} if item["type"] == "string" else {"kind": "null"})
            seen.add((item["name"], spec["kind"]))
    assert {("联系电话", "mobile"), ("既往病史", "hash"), ("高程", "null"), ("最近预警时间", "null")} <= seen


def test_default_mask_errors():
    with pytest.raises(MaskError, match="Unknown sensitivity level"):
        masks.default_mask("姓名", "string", "secret", None)
    with pytest.raises(MaskError, match="Unknown data type"):
        masks.default_mask("姓名", "text", "general", None)


# ---------------------------------------------------------------------------------------------------------
# The two forms agree (hypothesis)
# ---------------------------------------------------------------------------------------------------------

# Characters the rules care about, and some that tend to break string code.
INTERESTING = "街道办事处乡镇区县市小社省 *-0123456789Xx张三欧阳娜\n\t\u3000e\u0301\U0001F468\u200d\x00"
SAMPLES = ["", " ", "  ", "张", "a", " 张三 ", "欧阳娜娜", "13812345678", "130682199001011234", "130682900101123",
           "6222 0212 3456 7890", "河北省定州市北城区街道中山路12号", "河北省定州市清风店镇", "阳光小区", "镇江市"]
# Address-like texts: the town rule's markers and near-misses (小区, 社区, 镇江) in realistic order and not.
ADDRESS_PARTS = ["河北省", "定州市", "镇江市", "北城区", "街道", "街道办事处", "清风店镇", "赵庄乡", "乡", "镇", "区", "县",
                 "市", "阳光小区", "新华社区", "中山路", "12号", " ", "张", "\n", "市区"]
texts = st.one_of(
    st.text(alphabet=INTERESTING, max_size=30),
    st.lists(st.sampled_from(ADDRESS_PARTS), max_size=6).map("".join),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=25),  # no lone surrogates: not UTF-8
    st.sampled_from(SAMPLES),
)
date_texts = st.one_of(
    st.builds(lambda before, d, after: before + d.isoformat() + after,
              st.sampled_from(["", " ", "  ", "x"]), st.dates(), st.sampled_from(["", "T10:00:00", " 08:00", "日", "0"])),
    st.sampled_from(["0000-01-01", "0000", "1990-02-30", "2001-02-29", "2000-02-29", "1990-1-1", "19900101",
                     "2024-13-01", "2024-00-10", " 1990", "1990年", "9999-12-31"]),
    texts,
)
VALUES = {
    "string": st.one_of(texts, date_texts),
    "integer": st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(-3, 130)),
    "decimal": st.decimals(min_value=Decimal("-99999999999999.9999"), max_value=Decimal("99999999999999.9999"),
                           places=4, allow_nan=False, allow_infinity=False),
    "date": st.dates(),
    "datetime": st.datetimes(),
    "boolean": st.booleans(),
}
SPECS = {
    "keep": st.fixed_dictionaries({"kind": st.just("keep"), "first": st.integers(0, 8), "last": st.integers(0, 8)}),
    "age_band": st.one_of(st.just({"kind": "age_band"}),
                          st.fixed_dictionaries({"kind": st.just("age_band"), "width": st.integers(1, 50)})),
}
PAIRS = sorted({(spec["kind"], data_type) for spec, data_type in valid_specs()},
               key=lambda p: (masks.KINDS.index(p[0]), masks.DATA_TYPES.index(p[1])))


@pytest.mark.parametrize("kind, data_type", PAIRS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_python_and_sql_agree(con, kind, data_type, data):
    spec = data.draw(SPECS.get(kind, st.just({"kind": kind})), label="spec")
    values = data.draw(st.lists(st.one_of(st.none(), VALUES[data_type]), min_size=1, max_size=12), label="values")
    today = data.draw(st.dates(), label="today")
    key_id = data.draw(st.sampled_from(["consumer:a", "consumer:b"]), label="key_id")
    assert sql_values(con, spec, data_type, values, key_id, today) == py_values(spec, data_type, values, key_id, today)


# A fixed corpus too, so that the near-misses are always tried, not only when hypothesis happens on them:
# every sample, every interesting character alone, and every address part alone and in every pair.
CORPUS = sorted({*SAMPLES, *INTERESTING, *ADDRESS_PARTS, *(a + b for a in ADDRESS_PARTS for b in ADDRESS_PARTS)})


@pytest.mark.parametrize("kind, data_type", [p for p in PAIRS if p[1] == "string"])
def test_python_and_sql_agree_on_the_corpus(con, kind, data_type):
    specs = {"keep": [{"kind": "keep", "first": first, "last": last} for first in range(4) for last in range(4)],
             "age_band": [{"kind": "age_band", "width": w} for w in (1, 7, 10)]}.get(kind, [{"kind": kind}])
    for spec in specs:
        for key_id in ("consumer:a", "consumer:b"):
            assert sql_values(con, spec, data_type, CORPUS, key_id) == py_values(spec, data_type, CORPUS, key_id)


@pytest.mark.parametrize("data_type", [t for t in masks.DATA_TYPES if t != "string"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_text_forms_agree(con, data_type, data):
    values = data.draw(st.lists(VALUES[data_type], min_size=1, max_size=12))
    table = pa.table({"i": pa.array(range(len(values)), pa.int64()), "c": pa.array(values, ARROW_TYPES[data_type])})
    con.register("t_text", table)
    try:
        got = [r[0] for r in con.execute(f"SELECT {masks.text_sql('c', data_type)} FROM t_text ORDER BY i").fetchall()]
    finally:
        con.unregister("t_text")
    assert got == [masks.text_form(v, data_type) for v in values]


# ---------------------------------------------------------------------------------------------------------
# Speed: printed, never asserted
# ---------------------------------------------------------------------------------------------------------

def test_compile_py_speed(capsys):
    n = 100_000
    ids = ["1306821990%08d" % i for i in range(n)]
    cases = [
        ("id_number", {"kind": "id_number"}, "string", ids),
        ("name", {"kind": "name"}, "string", ["欧阳娜娜"] * n),
        ("bank_card", {"kind": "bank_card"}, "string", ["6222021234567890123"] * n),
        ("town", {"kind": "town"}, "string", ["河北省定州市北城区街道中山路12号"] * n),
        ("age_band", {"kind": "age_band"}, "date", [dt.date(1960, 5, 1)] * n),
        ("keep/decimal", {"kind": "keep", "first": 1, "last": 1}, "decimal", [Decimal("12.3400")] * n),
        ("hash", {"kind": "hash"}, "string", ids),
    ]
    lines = []
    for label, spec, data_type, values in cases:
        fn = masks.compile_py(spec, data_type, key_id=KEY_ID, today=TODAY)
        start = time.perf_counter()
        out = [fn(v) for v in values]
        seconds = time.perf_counter() - start
        assert len(out) == n and out[0] is not None
        lines.append(f"{label}: {seconds * 1000:.0f} ms per 100k values ({seconds / n * 1e6:.2f} µs each)")
    with capsys.disabled():
        print("\ncompile_py speed: " + "; ".join(lines))
