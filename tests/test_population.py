"""The demo-data generator (shuzheng.demo.population): determinism, validity of the clean rows against
python-stdnum and the project's validators, household and code-table consistency, the faults it promises at
the rates it promises, and the CSV writer (GBK, quoting) read back by Python and DuckDB."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

from shuzheng.core.validators import is_citizen_id, is_credit_code, make_credit_code
from shuzheng.demo import population as pop

N = 20_000
FAULTS = 0.03
DATA = Path(pop.__file__).resolve().parent.parent / "catalog" / "data"


def _table(stream) -> pa.Table:
    return pa.Table.from_batches(list(stream), schema=stream.schema)


@pytest.fixture(scope="module")
def people():
    """20,000 people made in blocks of 4,096 rows, so the counters that keep IDs and household numbers unique
    are exercised across blocks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pop, "BLOCK", 4096)
        stream = pop.people_batches(N, faults=FAULTS, batch_size=3000, label_faults=True)
        table = _table(stream)
    return table.to_pylist(), stream.fault_counts


@pytest.fixture(scope="module")
def enterprises():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pop, "BLOCK", 4096)
        stream = pop.enterprise_batches(N, faults=FAULTS, batch_size=3000, label_faults=True)
        table = _table(stream)
    return table.to_pylist(), stream.fault_counts


@pytest.fixture(scope="module")
def code_tables():
    return {t["code"]: {v["code"] for v in t["values"]} for t in json.loads((DATA / "code_tables.json").read_text())}


@lru_cache(maxsize=None)
def _place_valid(region: str, year: str) -> bool:
    try:
        ric.get_birth_place(region + year + "0101" + "0000")
    except ValidationError:
        return False
    return True


@lru_cache(maxsize=None)
def _county(region: str, year: str) -> str:
    return ric.get_birth_place(region + year + "0101" + "0000")["county"]


def _ric_valid(pid: str) -> bool:
    """stdnum.cn.ric.is_valid step by step, with its slow region lookup (about 0.3 ms) done once per region and
    year (test_the_fast_id_check_agrees_with_stdnum holds the two together)."""
    if not (len(pid) == 18 and pid[:17].isdigit() and ric.calc_check_digit(pid) == pid[17]):
        return False
    try:
        dt.date(int(pid[6:10]), int(pid[10:12]), int(pid[12:14]))  # what ric.get_birth_date checks
    except ValueError:
        return False
    return _place_valid(pid[:6], pid[6:10])


def test_the_fast_id_check_agrees_with_stdnum(people):
    rows, _ = people
    for r in rows[::40]:
        assert _ric_valid(r["公民身份号码"]) == ric.is_valid(r["公民身份号码"])


def _clean(rows):
    return [r for r in rows if r[pop.FAULT_COLUMN] is None]


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


_REGISTRATION = re.compile(r"(\d{4})-(\d{2})-(\d{2})|(\d{4})(\d{2})(\d{2})|(\d{4})/(\d{1,2})/(\d{1,2})")


def _parse_registration(text: str) -> dt.date | None:
    """YYYY-MM-DD, YYYYMMDD or YYYY/M/D as a date, else None."""
    match = _REGISTRATION.fullmatch(text)
    if not match:
        return None
    y, m, d = (int(g) for g in match.groups() if g is not None)
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Shape and determinism
# ---------------------------------------------------------------------------------------------------------


def test_columns_are_the_items_of_the_demo_resources():
    resources = {r["name"]: [i["name"] for i in r["items"]]
                 for r in json.loads((DATA / "demo_resources.json").read_text())}
    assert list(pop.PEOPLE_COLUMNS) == resources["定州市户籍人口基本信息"]
    assert list(pop.ENTERPRISE_COLUMNS) == resources["企业登记基本信息"]
    stream = pop.people_batches(10)
    assert stream.schema.names == list(pop.PEOPLE_COLUMNS)
    assert all(f.type == pa.string() and f.nullable for f in stream.schema)
    assert sum(b.num_rows for b in stream) == 10 == stream.rows


@pytest.mark.parametrize("make", [pop.people_batches, pop.enterprise_batches])
def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path, make):
    paths = []
    for k, seed in enumerate((7, 7, 8)):
        paths.append(tmp_path / f"{k}.csv")
        assert pop.write_csv(paths[-1], make(5000, seed=seed)) == 5000
    first, again, other = (p.read_bytes() for p in paths)
    assert first == again
    assert first != other


@pytest.mark.parametrize("make", [pop.people_batches, pop.enterprise_batches])
def test_batch_size_and_n_do_not_change_the_rows(monkeypatch, make):
    monkeypatch.setattr(pop, "BLOCK", 1000)  # several blocks, cut across by the batches
    whole = _table(make(3500, batch_size=100_000))
    assert [b.num_rows for b in make(3500, batch_size=777)] == [777] * 4 + [392]
    assert _table(make(3500, batch_size=777)).equals(whole)
    assert _table(make(2100, batch_size=500)).equals(whole.slice(0, 2100))


def test_faults_change_only_the_rows_they_hit():
    clean = _table(pop.people_batches(5000, faults=0)).to_pylist()
    faulty = _table(pop.people_batches(5000, faults=0.2, label_faults=True)).to_pylist()
    for a, b in zip(clean, faulty):
        if b.pop(pop.FAULT_COLUMN) is None:
            assert a == b


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        pop.people_batches(10, faults=1.5)
    with pytest.raises(ValueError):
        pop.people_batches(pop.MAX_PEOPLE + 1)
    with pytest.raises(ValueError):
        pop.enterprise_batches(10, batch_size=0)


# ---------------------------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------------------------


def test_clean_people_have_valid_unique_ids_that_agree_with_sex_and_birth(people):
    rows, _ = people
    clean = _clean(rows)
    assert len(clean) > 0.95 * N
    counties = set()
    for r in clean:
        pid = r["公民身份号码"]
        assert _ric_valid(pid) and is_citizen_id(pid), pid
        # The region is Dingzhou's code when the number was given: 130682 since 1994 (python-stdnum checks it).
        assert pid[:6] == ("130682" if pid[6:10] >= "1994" else "132401" if pid[6:10] >= "1986" else "132439")
        counties.add(_county(pid[:6], pid[6:10]))
        assert pid[6:14] == r["出生日期"].replace("-", "")
        assert int(pid[16]) % 2 == (1 if r["性别"] == "1" else 0)
        assert dt.date(1930, 1, 1) <= _date(r["出生日期"]) <= pop.AS_OF
    assert counties == {"定州市", "定县"}
    ids = [r["公民身份号码"] for r in rows if r[pop.FAULT_COLUMN] != "duplicate"]
    assert len(set(ids)) == len(ids)  # valid sequence numbers never collide, across blocks too


def test_people_codes_come_from_the_national_tables(people, code_tables):
    rows, _ = people
    assert {r["性别"] for r in rows} == {"1", "2"}
    assert {r["民族"] for r in rows} <= code_tables["GB_T_3304"]
    assert {r["婚姻状况"] for r in rows} <= code_tables["GB_T_2261.2"]
    assert {r["学历"] for r in rows} <= code_tables["GB_T_4658"]
    assert {r["户口类别"] for r in rows} == {"10", "20"}
    assert {r["与户主关系"] for r in rows} == set(pop.RELATIONS)
    assert {r["所属派出所"] for r in rows} == set(pop._reference()[0].police)
    assert all(r["所属派出所"].startswith("定州市公安局") and r["所属派出所"].endswith("派出所") for r in rows)


def test_ethnicity_mostly_han_and_hui_in_the_hui_township(people):
    rows, _ = people
    hui_town = [r["民族"] for r in rows if "号头庄回族乡" in r["所属派出所"]]
    elsewhere = [r["民族"] for r in rows if "号头庄回族乡" not in r["所属派出所"]]
    assert hui_town and elsewhere
    assert Counter(hui_town)["03"] / len(hui_town) > 0.4
    assert Counter(elsewhere)["03"] / len(elsewhere) < 0.02
    assert Counter(r["民族"] for r in rows)["01"] / len(rows) > 0.95


def test_age_pyramid_is_plausible(people):
    rows, _ = people
    ages = [pop.AS_OF.year - _date(r["出生日期"]).year for r in _clean(rows)]
    share = lambda lo, hi: sum(lo <= a < hi for a in ages) / len(ages)  # noqa: E731
    assert 0.10 < share(0, 15) < 0.25
    assert 0.50 < share(15, 60) < 0.75
    assert 0.12 < share(60, 100) < 0.35
    assert min(ages) == 0 and max(ages) >= 90


def test_households_share_number_address_and_station_and_fit_together(people):
    rows, _ = people
    members = defaultdict(list)
    for r in rows:
        if r[pop.FAULT_COLUMN] not in ("duplicate", "mojibake"):
            members[r["户号"]].append(r)
    sizes = Counter(len(m) for m in members.values())
    assert set(sizes) <= set(range(1, 7)) and sizes[1] and sizes[6]
    for number, group in members.items():
        assert len(number) == 10 and number.isdigit()
        assert len({r["户籍地址"] for r in group}) == 1, number
        assert len({r["所属派出所"] for r in group}) == 1
        assert len({r["户口类别"] for r in group}) == 1
        heads = [r for r in group if r["与户主关系"] == "户主"]
        assert len(heads) <= 1
        if heads:
            head = heads[0]
            for r in group:
                if r["与户主关系"] == "配偶":
                    assert r["性别"] != head["性别"]
    for r in rows:
        if r[pop.FAULT_COLUMN] != "mojibake":
            assert r["户籍地址"].startswith("河北省定州市") and r["户籍地址"].endswith(("号", "室"))
        assert r["现住址"].endswith(("号", "室"))
        sex = {"子": "1", "孙子": "1", "父亲": "1", "女": "2", "孙女": "2", "母亲": "2", "儿媳": "2"}
        if r["与户主关系"] in sex:
            assert r["性别"] == sex[r["与户主关系"]]


def test_children_are_younger_than_parents(people):
    rows, _ = people
    by_household = defaultdict(dict)
    for r in _clean(rows):
        by_household[r["户号"]].setdefault(r["与户主关系"], []).append(_date(r["出生日期"]))
    checked = 0
    for roles in by_household.values():
        if "户主" in roles:
            head = roles["户主"][0]
            for child in roles.get("子", []) + roles.get("女", []):
                assert child > head
                checked += 1
            for parent in roles.get("父亲", []) + roles.get("母亲", []):
                assert parent < head
    assert checked > 1000


def test_registration_dates_in_three_formats(people):
    rows, _ = people
    clean = _clean(rows)
    formats = Counter()
    for r in clean:
        text = r["户籍登记日期"]
        day = _parse_registration(text)
        assert day is not None, text
        assert _date(r["出生日期"]) <= day <= pop.AS_OF
        formats["iso" if "-" in text else "slash" if "/" in text else "compact"] += 1
    assert 0.7 < formats["iso"] / len(clean) < 0.9
    assert formats["compact"] > 0.05 * len(clean) and formats["slash"] > 0.03 * len(clean)


def test_names_are_chinese_names(people):
    rows, _ = people
    names = [r["姓名"] for r in _clean(rows)]
    assert all(2 <= len(n) <= 4 for n in names)
    surnames = Counter(n[0] for n in names)
    assert {"王", "李", "张", "刘"} <= {s for s, _ in surnames.most_common(6)}


# ---------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------


def _check_shares(rows, counts, shares):
    labels = Counter(r[pop.FAULT_COLUMN] for r in rows if r[pop.FAULT_COLUMN])
    assert dict(labels) == {k: v for k, v in counts.items() if v}
    assert set(counts) == set(shares)
    for kind, share in shares.items():
        expected = N * FAULTS * share
        assert abs(counts[kind] - expected) < 5 * math.sqrt(expected) + 5, (kind, counts[kind], expected)


def test_people_fault_counts_match_the_promised_shares(people):
    _check_shares(*people, pop.PEOPLE_FAULT_SHARES)


def test_enterprise_fault_counts_match_the_promised_shares(enterprises):
    _check_shares(*enterprises, pop.ENTERPRISE_FAULT_SHARES)


def test_each_people_fault_is_what_it_says(people):
    rows, _ = people
    seen = set()
    for r in rows:
        kind, pid = r[pop.FAULT_COLUMN], r["公民身份号码"]
        values = tuple(v for k, v in r.items() if k != pop.FAULT_COLUMN)
        if kind == "duplicate":
            assert values in seen
        seen.add(values)
        assert _ric_valid(pid) == (kind != "bad_check"), (kind, pid)
        assert (r["姓名"] is None) == (kind == "missing_name")
        birth_matches = pid[6:14] == r["出生日期"].replace("-", "")
        assert birth_matches == (kind != "birth_mismatch")
        assert (_parse_registration(r["户籍登记日期"]) is None) == (kind == "bad_reg_date"), r["户籍登记日期"]
        damaged = any("锟斤拷" in (v or "") or "\ufffd" in (v or "") for v in (r["姓名"], r["户籍地址"])) or not (
            r["户籍地址"].startswith("河北省定州市") and r["姓名"] is not None and 2 <= len(r["姓名"]) <= 4)
        if kind == "mojibake":
            assert damaged or r["姓名"].encode("gbk", "replace").decode("utf-8", "replace") != r["姓名"], r
        elif kind != "missing_name":
            assert not damaged, r


def test_each_enterprise_fault_is_what_it_says(enterprises, code_tables):
    rows, _ = enterprises
    seen = set()
    for n, r in enumerate(rows):
        kind, code = r[pop.FAULT_COLUMN], r["统一社会信用代码"]
        values = tuple(v for k, v in r.items() if k != pop.FAULT_COLUMN)
        if kind == "duplicate":
            assert values in seen
        seen.add(values)
        assert is_credit_code(code) == (kind != "bad_check"), code
        if n % 10 == 0:  # python-stdnum too (30 µs a code), on every tenth row
            assert uscc.is_valid(code) == (kind != "bad_check"), code
        assert (r["单位名称"] is None) == (kind == "missing_name")
        try:
            numeric = float(r["注册资本"]) >= 0
        except ValueError:
            numeric = False
        assert numeric == (kind != "bad_capital"), r["注册资本"]
        assert (_date(r["成立日期"]) > pop.AS_OF) == (kind == "future_founded")


def test_no_faults_gives_a_clean_table(code_tables):
    people = _table(pop.people_batches(N // 2, faults=0)).to_pylist()
    ids = [r["公民身份号码"] for r in people]
    assert len(set(ids)) == len(ids) and all(_ric_valid(i) for i in ids)
    for r in people:
        assert r["姓名"] and r["户籍地址"].startswith("河北省定州市")
        assert r["出生日期"].replace("-", "") == r["公民身份号码"][6:14]
        assert _parse_registration(r["户籍登记日期"]) is not None
        for value in r.values():
            value.encode("gbk")  # strict: nothing to replace in a clean table
    firms = _table(pop.enterprise_batches(N // 2, faults=0)).to_pylist()
    codes = [r["统一社会信用代码"] for r in firms]
    assert len(set(codes)) == len(codes) and all(is_credit_code(c) for c in codes)
    assert all(uscc.is_valid(c) for c in codes[::10])
    for r in firms:
        float(r["注册资本"])
        assert r["单位名称"] and _date(r["成立日期"]) <= pop.AS_OF
        for value in r.values():
            if value is not None:
                value.encode("gbk")


# ---------------------------------------------------------------------------------------------------------
# Enterprises
# ---------------------------------------------------------------------------------------------------------


def test_clean_enterprises_are_valid_and_consistent(enterprises, code_tables):
    rows, _ = enterprises
    clean = _clean(rows)
    codes = Counter(r["统一社会信用代码"][:2] for r in clean)
    assert set(codes) == {"91", "92", "93"} and codes["91"] > codes["92"] > codes["93"]
    for r in clean:
        code = r["统一社会信用代码"]
        assert code[2:8] == "130682"
        assert make_credit_code(code[:2], code[2:8], code[8:16]) == code  # the project's own builder agrees
        founded = _date(r["成立日期"])
        assert dt.date(1984, 1, 1) <= founded <= pop.AS_OF
        assert founded <= _date(r["核准日期"]) <= pop.AS_OF
        assert r["营业期限至"] is None or _date(r["营业期限至"]) > founded
        assert code[8:10] == "MA" if founded >= dt.date(2015, 10, 1) else code[8:16].isdigit()
        assert r["单位名称"].startswith("定州市") and r["住所"].startswith("河北省定州市")
        assert r["登记机关"] == pop.REGISTRATION_AUTHORITY
        assert r["经营状态"] in code_tables["DZ_BUSINESS_STATUS"]
        kind = {"91": None, "92": "个体工商户", "93": "农民专业合作社"}[code[:2]]
        assert r["企业类型"] == kind if kind else r["企业类型"] not in ("个体工商户", "农民专业合作社")
    codes = [r["统一社会信用代码"] for r in rows if r[pop.FAULT_COLUMN] != "duplicate"]
    assert len(set(codes)) == len(codes)


# ---------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------


def test_gbk_csv_reads_back_and_generating_in_gbk_writes_the_same_bytes(tmp_path, people):
    rows, _ = people
    transcoded, direct = tmp_path / "t.csv", tmp_path / "d.csv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pop, "BLOCK", 4096)
        stream = pop.people_batches(N, faults=FAULTS, batch_size=3000, label_faults=True)
        assert pop.write_csv(transcoded, stream, columns=pop.PEOPLE_COLUMNS) == N
        stream = pop.people_batches(N, faults=FAULTS, batch_size=3000, encoding="gbk", label_faults=True)
        assert stream.schema.field("姓名").type == pa.binary()
        assert pop.write_csv(direct, stream, columns=pop.PEOPLE_COLUMNS) == N
    assert transcoded.read_bytes() == direct.read_bytes()
    with open(direct, encoding="gbk", newline="") as f:
        back = list(csv.reader(f))
    assert back[0] == list(pop.PEOPLE_COLUMNS)
    assert len(back) == N + 1
    for row, r in zip(back[1:], rows):
        expected = [(r[c] or "").replace("\ufffd", "?") for c in pop.PEOPLE_COLUMNS]
        assert row == expected


def test_utf8_csv_reads_back_in_duckdb_with_quoting_where_needed(tmp_path):
    table = _table(pop.enterprise_batches(3000))
    awkward = pa.table({"a": ["x,y", 'say "hi"', "line\nbreak", None, "普通"], "b": ["1", "2", "3", "4", "5"]})
    for name, data in (("plain", table), ("awkward", awkward)):
        path = tmp_path / f"{name}.csv"
        pop.write_csv(path, data, encoding="utf-8")
        back = duckdb.sql(f"SELECT * FROM read_csv('{path}', all_varchar=true, header=true)").to_arrow_table()
        assert back.column_names == data.column_names
        for column in data.column_names:
            assert back[column].to_pylist() == data[column].to_pylist(), column


def test_unencodable_characters_are_replaced_or_raise(tmp_path):
    table = pa.table({"姓名": ["张\ufffd", "李四"]})
    pop.write_csv(tmp_path / "a.csv", table)
    assert (tmp_path / "a.csv").read_bytes().decode("gbk") == "姓名\n张?\n李四\n"
    with pytest.raises(UnicodeEncodeError):
        pop.write_csv(tmp_path / "b.csv", table, errors="strict")
    pop.write_csv(tmp_path / "c.csv", table, encoding="gb18030")
    assert (tmp_path / "c.csv").read_bytes().decode("gb18030") == "姓名\n张\ufffd\n李四\n"


def test_no_rows_still_writes_the_header(tmp_path):
    assert pop.write_csv(tmp_path / "e.csv", pop.enterprise_batches(0), encoding="utf-8") == 0
    assert (tmp_path / "e.csv").read_text(encoding="utf-8") == ",".join(pop.ENTERPRISE_COLUMNS) + "\n"
