"""Connectors against real sources: files written here in every encoding and shape departments send,
openpyxl workbooks, pyarrow Parquet, a SQLite file, the real PostgreSQL (skipped when it does not
answer), and an HTTP server on 127.0.0.1. No mocks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django.utils import translation

from shuzheng.core.errors import ValidationFailed
from shuzheng.ingest import connectors
from shuzheng.ingest.connectors import SourceError, Staged, stage_database, stage_file, stage_http

PG_URL = os.environ.get("SHUZHENG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


pytestmark = pytest.mark.usefixtures("english")  # the assertions read the English messages


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def rows(con, table="staged", order="_row"):
    return con.execute(f'SELECT * FROM "{table}" ORDER BY "{order}"').fetchall()


def table_names(con):
    return sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def source_error(excinfo, field):
    err = excinfo.value
    assert isinstance(err, ValidationFailed) and err.status == 422
    assert err.errors[0].field == field, err.errors
    return err.detail


# ------------------------------------------------------------------------------------------- CSV

HEADER = "序号,姓名,身份证号,手机号,地址\n"
BODY = ("1,张三,110101199003070019,13800138000,\"河北省定州市北城区中山路1号,2单元\"\n"
        "2,李四,13068219900101002X,13900139000,定州市\n"
        "3,王五,001234,,\n")


def test_csv_utf8_values_ids_and_lineage(con, tmp_path):
    data = (HEADER + BODY).encode()
    p = write(tmp_path, "people.csv", data)
    s = stage_file(con, p)
    assert isinstance(s, Staged)
    assert s.relation == "staged" and s.columns == ["序号", "姓名", "身份证号", "手机号", "地址"]
    assert s.rows == 3 and s.rejected == 0 and s.rejects == []
    got = rows(con)
    assert got[0] == ("1", "张三", "110101199003070019", "13800138000", "河北省定州市北城区中山路1号,2单元", 2)
    assert got[1][2] == "13068219900101002X" and got[1][5] == 3
    assert got[2][2] == "001234" and got[2][3] is None and got[2][5] == 4
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name='staged'")
                 .fetchall())
    assert types == {"序号": "VARCHAR", "姓名": "VARCHAR", "身份证号": "VARCHAR", "手机号": "VARCHAR",
                     "地址": "VARCHAR", "_row": "BIGINT"}
    lin = s.lineage
    assert lin["kind"] == "file" and lin["name"] == "people.csv" and lin["format"] == "csv"
    assert lin["encoding"] == "utf-8" and lin["bytes"] == len(data)
    assert lin["sha256"] == hashlib.sha256(data).hexdigest() and lin["rows"] == 3 and lin["rejected"] == 0
    json.dumps(lin)
    assert table_names(con) == ["staged"]  # no scratch or rejects tables left behind


def test_csv_utf8_bom_is_stripped(con, tmp_path):
    data = b"\xef\xbb\xbf" + (HEADER + BODY).encode()
    s = stage_file(con, write(tmp_path, "bom.csv", data), table="t")
    assert s.columns[0] == "序号" and s.rows == 3
    assert rows(con, "t")[0][0] == "1"
    assert s.lineage["sha256"] == hashlib.sha256(data).hexdigest() and s.lineage["bytes"] == len(data)


def test_csv_gbk_detected_and_declared(con, tmp_path):
    data = (HEADER + BODY).encode("gbk")
    p = write(tmp_path, "gbk.csv", data)
    s = stage_file(con, p)
    assert s.lineage["encoding"] == "gb18030"  # detected: read with GBK's superset
    assert s.columns[1] == "姓名" and rows(con)[0][4] == "河北省定州市北城区中山路1号,2单元"
    assert s.lineage["sha256"] == hashlib.sha256(data).hexdigest()
    s = stage_file(con, p, encoding="GBK")
    assert s.lineage["encoding"] == "gbk" and rows(con)[1][1] == "李四"
    s = stage_file(con, p, encoding="gb18030")
    assert s.lineage["encoding"] == "gb18030" and s.rows == 3
    assert table_names(con) == ["staged"]
    assert os.listdir(tmp_path) == ["gbk.csv"]  # the transcoded copy is gone


def test_csv_gb18030_characters_outside_gbk(con, tmp_path):
    text = "编号,姓名\n1,王䶮\n2,𠀀明\n"
    with pytest.raises(UnicodeEncodeError):
        "䶮𠀀".encode("gbk")
    s = stage_file(con, write(tmp_path, "gb18030.csv", text.encode("gb18030")))
    assert [r[1] for r in rows(con)] == ["王䶮", "𠀀明"] and s.warnings == []
    s = stage_file(con, write(tmp_path, "gb18030b.csv", text.encode("gb18030")), encoding="gbk")
    assert [r[1] for r in rows(con)] == ["王䶮", "𠀀明"]


def test_csv_utf16_with_bom(con, tmp_path):
    data = (HEADER + BODY).encode("utf-16")
    s = stage_file(con, write(tmp_path, "u16.csv", data))
    assert s.lineage["encoding"] == "utf-16" and s.columns[0] == "序号" and s.rows == 3
    assert rows(con)[1][1:3] == ("李四", "13068219900101002X")
    assert s.lineage["sha256"] == hashlib.sha256(data).hexdigest()


def test_csv_wrongly_declared_encoding(con, tmp_path):
    gbk = write(tmp_path, "gbk.csv", (HEADER + BODY).encode("gbk"))
    with pytest.raises(SourceError) as e:
        stage_file(con, gbk, encoding="utf-8")
    assert "UTF-8" in source_error(e, "encoding")
    utf8 = write(tmp_path, "utf8.csv", (HEADER + BODY).encode())
    with pytest.raises(SourceError) as e:
        stage_file(con, utf8, encoding="gbk")
    assert "UTF-8" in source_error(e, "encoding")
    with pytest.raises(SourceError) as e:
        stage_file(con, utf8, encoding="big5")
    source_error(e, "encoding")
    assert table_names(con) == []


def test_csv_damaged_gbk_bytes_become_fffd_with_a_warning(con, tmp_path):
    good = (HEADER + BODY).encode("gbk").splitlines(keepends=True)
    good[2] = good[2].replace("李四".encode("gbk"), b"\xff" + "四".encode("gbk"))  # line 3
    s = stage_file(con, write(tmp_path, "damaged.csv", b"".join(good)))
    assert s.rows == 3 and s.rejected == 0
    got = rows(con)
    assert "\ufffd" in got[1][1] and got[1][1].endswith("四") and got[1][5] == 3
    assert got[0][1] == "张三" and got[2][1] == "王五"
    assert len(s.warnings) == 1 and "1 lines" in s.warnings[0] and "3" in s.warnings[0]


def test_csv_damaged_utf8_in_sample_and_beyond_it(con, tmp_path):
    lines = [HEADER.encode()] + [f"{i},名字{i},110101199003070019,1380013{i:04d},定州市\n".encode()
                                 for i in range(1, 40001)]
    lines[5] = b"5,\xe5\x90\xff,1,2,3\n"  # a truncated sequence on line 6, inside the sample
    lines[39000] = b"38999,\xc3\x28bad,1,2,3\n"  # beyond the 1 MiB sample: line 39001
    data = b"".join(lines)
    assert len(data) > connectors.SAMPLE_BYTES
    s = stage_file(con, write(tmp_path, "u.csv", data))
    assert s.lineage["encoding"] == "utf-8" and s.rows == 40000 and s.rejected == 0
    bad = con.execute("SELECT _row, \"姓名\" FROM staged WHERE contains(\"姓名\", '\ufffd') ORDER BY _row").fetchall()
    assert [r[0] for r in bad] == [6, 39001]
    assert con.execute("SELECT \"姓名\" FROM staged WHERE _row = 3").fetchall() == [("名字2",)]
    assert "2 lines" in s.warnings[0] and "6" in s.warnings[0] and "39001" in s.warnings[0]
    assert s.lineage["sha256"] == hashlib.sha256(data).hexdigest()


def test_csv_ascii_head_then_gbk(con, tmp_path):
    """A GBK file whose first MiB is plain ASCII is first taken for UTF-8; the bad lines tell it apart."""
    head = "id,name,note\n" + "".join(f"{i},n{i},plain ascii\n" for i in range(1, 60001))
    data = head.encode() + "60001,张三,河北省定州市\n60002,李四,\n".encode("gbk")
    assert len(head) > connectors.SAMPLE_BYTES
    s = stage_file(con, write(tmp_path, "late.csv", data))
    assert s.lineage["encoding"] == "gb18030" and s.rows == 60002 and s.rejected == 0
    assert con.execute("SELECT name, note, _row FROM staged WHERE id = '60001'").fetchall() == [
        ("张三", "河北省定州市", 60002)]
    assert "60002" in s.warnings[0]


MESSY = (
    'id,name,note\r\n'                      # 1
    '1,"Smith, John","said ""hi"""\r\n'     # 2
    '2,"multi\r\nline\r\n\r\nnote",x\r\n'    # 3-6
    '\r\n'                                   # 7 blank
    '3,short\r\n'                            # 8 ragged: 2 fields
    '4,a,b,c,d\r\n'                          # 9 ragged: 5 fields
    '5,"two\nlines",ok\r\n'                  # 10-11
    '6,"ragged\nacross",x,y\r\n'             # 12-13 ragged multi-line: 4 fields
    '7,关于"放管服"改革,z\r\n'               # 14 a bare quote inside an unquoted value
    ',,\r\n'                                 # 15 all empty: skipped
    '8,"a ""quoted"" word",\r\n'             # 16
    '   \r\n'                                # 17 whitespace only: 1 field
    '9,last,"no newline at end"'             # 18
)


@pytest.mark.parametrize("arrow,chunk,encoding", [(True, None, "utf-8"), (False, None, "utf-8"), (True, 5, "utf-8"),
                                                   (True, 3, "gbk"), (False, 64, "gbk")],
                         ids=["arrow", "ctas-update", "tiny-chunks", "gbk-tiny-chunks", "gbk-ctas"])
def test_csv_quoting_ragged_rows_and_line_numbers(con, tmp_path, monkeypatch, arrow, chunk, encoding):
    if not arrow:
        monkeypatch.setattr(connectors, "CSV_ARROW_MAX_BYTES", 0)
    if chunk:  # records, quoted line breaks and CRLFs then cross the boundaries of the chunks read
        monkeypatch.setattr(connectors, "CSV_CHUNK", chunk)
    s = stage_file(con, write(tmp_path, "messy.csv", MESSY.encode(encoding)))
    got = rows(con)
    assert [r[3] for r in got] == [2, 3, 10, 14, 16, 18]
    assert got[0][1:3] == ("Smith, John", 'said "hi"')
    assert got[1][1] == "multi\r\nline\r\n\r\nnote"
    assert got[2][1] == "two\nlines"
    assert got[3][1] == '关于"放管服"改革'
    assert got[4][1] == 'a "quoted" word' and got[4][2] is None
    assert got[5][2] == "no newline at end"
    assert s.rows == 6 and s.rejected == 4
    rej = {r["row"]: r for r in s.rejects}
    assert sorted(rej) == [8, 9, 12, 17]
    assert rej[8]["reason"] == "2 fields, expected 3" and rej[8]["raw"] == "3,short"
    assert rej[9]["reason"] == "5 fields, expected 3"
    assert rej[12]["reason"].startswith("4 fields, expected 3") and "12–13" in rej[12]["reason"]
    assert rej[12]["raw"] == '6,"ragged\nacross",x,y'
    assert rej[17]["reason"] == "1 field, expected 3"


def test_csv_malformed_quotes_are_rejected_with_their_line(con, tmp_path):
    data = 'a,b\n1,2\n"x"y,3\n4,5\n6,"never closed\n7,8\n'.encode()
    s = stage_file(con, write(tmp_path, "q.csv", data))
    assert [r[2] for r in rows(con)] == [2, 4]
    assert [(r["row"], r["reason"]) for r in s.rejects] == [
        (3, "a quoted value is followed by other characters (a quote inside a quoted value must be doubled)"),
        (5, "a quoted value is never closed (the record spans lines 5–6)")]


def test_csv_trailing_delimiters_are_not_dropped(con, tmp_path):
    """DuckDB silently drops trailing empty fields; such records have too many fields and are rejected."""
    data = 'a,b,c\n1,2,3,\n4,5,6\n7,8,\n9,"x,y",z,""\n10,11,12,,\n13,"p\nq",r,\n'.encode()
    s = stage_file(con, write(tmp_path, "trailing.csv", data))
    assert rows(con) == [("4", "5", "6", 3), ("7", "8", None, 4)]
    assert [(r["row"], r["reason"]) for r in s.rejects] == [
        (2, "4 fields, expected 3"), (5, "4 fields, expected 3"), (6, "5 fields, expected 3"),
        (7, "4 fields, expected 3")]
    assert s.rejects[0]["raw"] == "1,2,3,"


def test_csv_many_rejects_keep_the_first_thousand(con, tmp_path):
    lines = ["a,b,c\n", "1,2,3,\n"] + [f"{i},x\n" if i % 2 else f"{i},y,z\n" for i in range(3000)]
    s = stage_file(con, write(tmp_path, "many.csv", "".join(lines).encode()))
    assert s.rows == 1500 and s.rejected == 1501 and len(s.rejects) == 1000
    assert s.rejects[0] == {"row": 2, "reason": "4 fields, expected 3", "raw": "1,2,3,"}
    assert [r["row"] for r in s.rejects] == [2] + list(range(4, 2002, 2))[:999]


csv_field = st.one_of(
    st.text(alphabet="ab中 ,\"\n\r", min_size=0, max_size=6).map(lambda v: ("q", v)),
    st.text(alphabet="xy国 ", min_size=1, max_size=5).map(lambda v: ("u", v)),
    st.sampled_from([("u", 'p"q'), ("u", "0012"), ("u", "13068219900101002X")]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.lists(csv_field, min_size=n, max_size=n)), st.booleans(), st.booleans()), min_size=1, max_size=25),
    final_newline=st.booleans(), chunk=st.sampled_from([3, 11, 64, 16 << 20]), encoding=st.sampled_from(["utf-8", "gbk"]))
def test_csv_line_numbers_match_the_file(tmp_path_factory, records, final_newline, chunk, encoding):
    """Whatever the quoting, line breaks inside values, CRLF and blank lines, `_row` is the physical line
    where each record starts and ragged records are rejected at theirs."""
    con = duckdb.connect()
    out, line, expected, expected_rejects = ["k,v,w\n"], 2, [], []
    for fields, crlf, blank_before in records:
        if blank_before:
            out.append("\n")
            line += 1
        cells = []
        for kind, value in fields:
            cells.append('"' + value.replace('"', '""') + '"' if kind == "q" else value)
        text = ",".join(cells)
        values = [v for _k, v in fields]
        if len(fields) == 3 and any(values):
            expected.append((line, tuple(v if v != "" else None for v in values)))
        elif len(fields) != 3:
            expected_rejects.append(line)
        out.append(text + ("\r\n" if crlf else "\n"))
        line += text.count("\n") + 1
    data = "".join(out)
    if not final_newline:
        data = data[:-2] if data.endswith("\r\n") else data[:-1]
    p = tmp_path_factory.mktemp("h") / "h.csv"
    p.write_bytes(data.encode(encoding))
    saved = connectors.CSV_CHUNK
    connectors.CSV_CHUNK = chunk
    try:
        s = stage_file(con, p, encoding=encoding)
    finally:
        connectors.CSV_CHUNK = saved
    got = con.execute("SELECT _row, k, v, w FROM staged ORDER BY _row").fetchall()
    assert [(r[0], r[1:]) for r in got] == expected
    assert [r["row"] for r in s.rejects] == expected_rejects
    assert s.warnings == []
    con.close()


def test_csv_line_end_styles(con, tmp_path):
    s = stage_file(con, write(tmp_path, "mixed.csv", b'a,b\n1,"x\r\ny"\r\n2,z\n\r\n3,w\r\n'))
    assert rows(con) == [("1", "x\r\ny", 2), ("2", "z", 4), ("3", "w", 6)]
    s = stage_file(con, write(tmp_path, "one.csv", b"only\nA\n\nB\n"))
    assert s.columns == ["only"] and rows(con) == [("A", 2), ("B", 4)] and s.warnings == []
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "mac.csv", b"a,b\r1,2\r3,4\r"))
    assert "carriage return" in source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "cr.csv", b"a,b\n1,2\n3,4\r5,6\n"))
    assert "line 3" in source_error(e, "file")


def _person(i: int) -> list[str]:
    id_number = f"1306821990{i % 10000:04d}{i % 9}{'X' if i % 11 == 0 else i % 10}"
    return [str(i), f"王{i % 97}明", id_number, f"13{i:09d}", "男", f"河北省定州市北城区中山路{i}号", "定州市民政局",
            "科员", str(i / 100), f"2024-01-{i % 28 + 1:02d}", "备注,含逗号", f"{i:06d}"]


def test_csv_gbk_large_file(con, tmp_path):
    """300,000 rows of GBK (about 40 MB, several read chunks); prints the staging throughput."""
    header = "序号,姓名,身份证号,手机号,性别,地址,单位,职务,金额,登记日期,备注,编号\n"
    block = "".join(",".join(f'"{v}"' if "," in v else v for v in _person(i)) + "\n" for i in range(1000))
    p = tmp_path / "big.csv"
    with open(p, "wb") as f:
        f.write(header.encode("gbk"))
        data = block.encode("gbk")
        for _ in range(300):
            f.write(data)
    started = time.perf_counter()
    s = stage_file(con, p)
    seconds = time.perf_counter() - started
    assert s.rows == 300_000 and s.rejected == 0 and s.lineage["encoding"] == "gb18030" and s.warnings == []
    assert con.execute("SELECT count(*), min(_row), max(_row), count(DISTINCT _row) FROM staged").fetchall() == [
        (300_000, 2, 300_001, 300_000)]
    assert con.execute("SELECT * EXCLUDE (_row) FROM staged WHERE _row IN (2, 300001) ORDER BY _row").fetchall() == [
        tuple(_person(0)), tuple(_person(999))]
    print(f"\nstaged {s.rows} GBK rows ({p.stat().st_size / 1e6:.0f} MB) in {seconds:.2f} s: "
          f"{s.rows / seconds:,.0f} rows/s; phases {connectors.LAST_TIMINGS}")


def test_csv_header_problems(con, tmp_path):
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "dup.csv", "a,姓名,b,姓名 \n1,2,3,4\n".encode()))
    msg = source_error(e, "file")
    assert "姓名" in msg and "column 2" in msg and "column 4" in msg
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "case.csv", b"Name,name\n1,2\n"))
    assert "column 1" in source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "empty_name.csv", b"a, ,c\n1,2,3\n"))
    assert "column 2" in source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "trailing.csv", b"a,b,\n1,2,\n"))
    assert "column 3" in source_error(e, "file")
    # names are trimmed
    s = stage_file(con, write(tmp_path, "trim.csv", " a , b\t\n1,2\n".encode()))
    assert s.columns == ["a", "b"]


def test_csv_empty_and_header_only(con, tmp_path):
    for name, data in [("zero.csv", b""), ("blank.csv", b" \r\n\n\t\n"), ("bomonly.csv", b"\xef\xbb\xbf\n")]:
        with pytest.raises(SourceError) as e:
            stage_file(con, write(tmp_path, name, data))
        assert "empty" in source_error(e, "file")
    s = stage_file(con, write(tmp_path, "header.csv", "编号,名称\r\n".encode("gbk")))
    assert s.rows == 0 and s.columns == ["编号", "名称"] and rows(con) == []
    s = stage_file(con, write(tmp_path, "header2.csv", b"\n\nid,name"))
    assert s.rows == 0 and s.columns == ["id", "name"] and s.lineage["header_line"] == 3


def test_csv_oversized_field_rejects_the_line(con, tmp_path):
    data = "id,text,more\n1,short,x\n2," + "长" * 100 + ",y\n3,ok,z\n"
    s = stage_file(con, write(tmp_path, "big.csv", data.encode()), max_field_bytes=100)
    assert [r[0] for r in rows(con)] == ["1", "3"]
    assert s.rejected == 1 and s.rejects[0]["row"] == 3
    assert "text" in s.rejects[0]["reason"] and "300 bytes" in s.rejects[0]["reason"]
    assert "100" in s.rejects[0]["reason"] and len(s.rejects[0]["raw"]) <= 500


def test_csv_delimiters(con, tmp_path):
    s = stage_file(con, write(tmp_path, "t.txt", "编号\t名称\t备注\n1\t甲,乙\t\n2\t丙\tx\n".encode()))
    assert s.columns == ["编号", "名称", "备注"] and rows(con)[0][:3] == ("1", "甲,乙", None)
    assert s.lineage["delimiter"] == "\t"
    s = stage_file(con, write(tmp_path, "s.csv", b"a;b;c\n1;2,5;3\n4;5;6\n"))
    assert s.columns == ["a", "b", "c"] and rows(con)[0][:3] == ("1", "2,5", "3")
    s = stage_file(con, write(tmp_path, "p.csv", b"a|b\n1|2\n"))
    assert s.columns == ["a", "b"]
    s = stage_file(con, write(tmp_path, "c.csv", b"a,b\n1;2,3\n"))  # comma wins when it fits
    assert s.columns == ["a", "b"] and rows(con)[0][:2] == ("1;2", "3")
    s = stage_file(con, write(tmp_path, "x.csv", b"a|b\n1|2\n"), delimiter="|")
    assert s.lineage["delimiter"] == "|"


def test_failed_load_keeps_the_previous_table(con, tmp_path):
    stage_file(con, write(tmp_path, "ok.csv", b"a,b\n1,2\n"), table="t")
    with pytest.raises(SourceError):
        stage_file(con, write(tmp_path, "bad.csv", b"a,a\n1,2\n"), table="t")
    assert rows(con, "t") == [("1", "2", 2)]
    with pytest.raises(SourceError):
        stage_file(con, write(tmp_path, "bad.json", b'[{"a":1},'), table="t")
    assert rows(con, "t") == [("1", "2", 2)] and table_names(con) == ["t"]


def test_schema_qualified_and_unusual_table_names(con, tmp_path):
    con.execute("CREATE SCHEMA stg")
    s = stage_file(con, write(tmp_path, "a.csv", b"a,b\n1,2\n"), table="stg.load 1")
    assert s.relation == "stg.load 1"
    assert con.execute('SELECT * FROM stg."load 1"').fetchall() == [("1", "2", 2)]
    stage_file(con, write(tmp_path, "b.csv", b"a,b\n3,4\n"), table='we"ird')
    assert con.execute('SELECT a FROM "we""ird"').fetchall() == [("3",)]


def test_format_detection(con, tmp_path):
    s = stage_file(con, write(tmp_path, "upload.bin", b"a,b\n1,2\n"), original_name="部门数据.dat")
    assert s.lineage["format"] == "csv" and s.lineage["name"] == "部门数据.dat"
    s = stage_file(con, write(tmp_path, "upload2.bin", b'[{"a": 1}]'))
    assert s.lineage["format"] == "json"
    s = stage_file(con, write(tmp_path, "upload3.bin", b'{"a": 1}\n{"a": 2}\n'))
    assert s.lineage["format"] == "jsonl" and s.rows == 2
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "old.xls", b"\xd0\xcf\x11\xe0" + b"\0" * 100))
    assert ".xlsx" in source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, tmp_path / "missing.csv")
    source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "y.csv", b"a\n1\n"), format="xml")
    source_error(e, "file")


# ------------------------------------------------------------------------------------------ XLSX

def _workbook(tmp_path, name, build):
    from openpyxl import Workbook

    wb = Workbook()
    build(wb)
    p = tmp_path / name
    wb.save(p)
    return p


def test_xlsx_plain_values(con, tmp_path):
    def build(wb):
        ws = wb.active
        ws.title = "名单"
        ws.append(["序号", "姓名", "身份证号", "出生日期", "登记时间", "金额", "在职", "备注"])
        ws.append([1, "张三", 1.30682199001011e17, dt.date(1990, 3, 7), dt.datetime(2024, 3, 1, 8, 30), 1234.5, True,
                   None])
        ws.append([])
        ws.append([None, None, None])
        ws.append([2.0, "李四", "13068219900101002X", dt.datetime(2001, 1, 1), None, 0.1, False, "  有空格 "])
        ws.append([3, "王五", "001234", None, None, 1e-05, None, 12345678901234567890])
        wb.create_sheet("其他")

    p = _workbook(tmp_path, "plain.xlsx", build)
    s = stage_file(con, p)
    assert s.columns == ["序号", "姓名", "身份证号", "出生日期", "登记时间", "金额", "在职", "备注"]
    got = rows(con)
    assert got[0] == ("1", "张三", "130682199001011000", "1990-03-07", "2024-03-01 08:30:00", "1234.5", "true", None, 2)
    assert got[1] == ("2", "李四", "13068219900101002X", "2001-01-01", None, "0.1", "false", "  有空格 ", 5)
    assert got[2][2] == "001234" and got[2][5] == "0.00001" and got[2][8] == 6
    assert s.rows == 3 and s.rejected == 0
    assert s.lineage["format"] == "xlsx" and s.lineage["sheet"] == "名单"
    assert s.lineage["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_xlsx_reader_agrees_with_openpyxl(tmp_path):
    """The expat sheet reader gives the same values as openpyxl's own read-only parser."""
    from openpyxl import load_workbook
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    def build(wb):
        ws = wb.active
        ws.append(["文本", "整数", "小数", "日期", "时间", "日期时间", "布尔", "富文本", "公式"])
        ws.append(["  前后空格 ", -42, 3.14159, dt.date(2024, 2, 29), dt.time(13, 45, 30),
                   dt.datetime(2024, 2, 29, 23, 59, 59, 500000), False,
                   CellRichText(["红", TextBlock(InlineFont(b=True), "粗体")]), "=1+1"])
        ws.append([None, 12345678901234567890, 1e300, None, None, None, True, "&<>\"'", None])
        ws["C5"] = "跳过一行"
        ws["K6"] = 0.1 + 0.2

    p = _workbook(tmp_path, "types.xlsx", build)
    wb = load_workbook(p, read_only=True, data_only=True)
    ws = wb.worksheets[0]
    ours = {r: v for r, v in connectors._sheet_rows(wb, ws)}
    theirs = {}
    for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
        texts = [connectors._cell_text(v) for v in values]
        while texts and texts[-1] is None:
            texts.pop()
        if texts:
            theirs[r] = texts
    wb.close()
    assert {r: v for r, v in ours.items() if v} == theirs
    assert ours[2][4] == "13:45:30" and ours[2][5] == "2024-02-29 23:59:59.500000" and ours[2][7] == "红粗体"
    assert ours[3][1].startswith("123456789012345") and len(ours[3][1]) == 20  # plain digits, never 1.23E+19
    assert ours[3][7] == "&<>\"'" and ours[5][2] == "跳过一行"


def test_xlsx_two_row_merged_header(con, tmp_path):
    def build(wb):
        ws = wb.active
        ws.append(["序号", "联系人", None, "法人", None, "地址", None, "备注"])
        ws.append([None, "姓名", "电话", "姓名", "证件号码", "省", "市", None])
        ws.merge_cells("A1:A2")
        ws.merge_cells("B1:C1")
        ws.merge_cells("D1:E1")
        ws.merge_cells("F1:G1")
        ws.merge_cells("H1:H2")
        ws.append([1, "张三", "13800138000", "李四", "110101199003070019", "河北", "定州", None])
        ws.append([2, "王五", "13900139000", "赵六", "13068219900101002X", "河北", "保定", "无"])

    s = stage_file(con, _workbook(tmp_path, "merged.xlsx", build))
    assert s.columns == ["序号", "联系人/姓名", "联系人/电话", "法人/姓名", "法人/证件号码", "省", "市", "备注"]
    got = rows(con)
    assert got[0] == ("1", "张三", "13800138000", "李四", "110101199003070019", "河北", "定州", None, 3)
    assert got[1][8] == 4 and got[1][7] == "无"
    assert any("1–2" in w for w in s.warnings)
    assert s.lineage["header_rows"] == [1, 2]


def test_xlsx_cells_merged_down_the_data_are_filled(con, tmp_path):
    def build(wb):
        ws = wb.active
        ws.append(["乡镇", "村", "户数"])
        ws.append(["留早镇", "东村", 120])
        ws.append([None, "西村", 80])
        ws.append([None, None, None])
        ws.append(["清风店镇", "南村", 95])
        ws.merge_cells("A2:A4")

    s = stage_file(con, _workbook(tmp_path, "towns.xlsx", build))
    assert rows(con) == [("留早镇", "东村", "120", 2), ("留早镇", "西村", "80", 3), ("清风店镇", "南村", "95", 5)]
    assert any("A2:A4" in w for w in s.warnings)


def test_xlsx_title_row_and_header_rows_override(con, tmp_path):
    def build(wb):
        ws = wb.active
        ws.append(["定州市2024年低保对象名册"])
        ws.merge_cells("A1:C1")
        ws.append(["姓名", "身份证号", "金额"])
        ws.append(["张三", "110101199003070019", 500])
        ws.append(["李四", "13068219900101002X", 450.5])

    p = _workbook(tmp_path, "title.xlsx", build)
    s = stage_file(con, p)
    assert s.columns == ["姓名", "身份证号", "金额"] and [r[3] for r in rows(con)] == [3, 4]
    assert any("定州市2024年低保对象名册" in w for w in s.warnings)

    def build2(wb):
        ws = wb.active
        ws.append(["姓名", "身份证号"])
        ws.append(["name", "id_number"])
        ws.append(["张三", "110101199003070019"])

    p = _workbook(tmp_path, "two.xlsx", build2)
    s = stage_file(con, p)
    assert s.columns == ["姓名", "身份证号"] and s.rows == 2
    s = stage_file(con, p, header_rows=2)
    assert s.columns == ["name", "id_number"] and rows(con) == [("张三", "110101199003070019", 3)]


def test_xlsx_sheets_and_problems(con, tmp_path):
    def build(wb):
        wb.active.title = "汇总"
        wb.active.append(["x"])
        wb.active.append([1])
        ws = wb.create_sheet("明细")
        ws.append(["a", "b"])
        ws.append([1, 2])
        ws.append([3, 4, "stray"])
        ws.append([5, 6])
        e = wb.create_sheet("空表")
        e.append([])
        d = wb.create_sheet("重复")
        d.append(["a", "A"])

    p = _workbook(tmp_path, "sheets.xlsx", build)
    s = stage_file(con, p, sheet="明细")
    assert rows(con) == [("1", "2", 2), ("5", "6", 4)]
    assert s.rejected == 1 and s.rejects[0]["row"] == 3 and "column C" in s.rejects[0]["reason"]
    with pytest.raises(SourceError) as e:
        stage_file(con, p, sheet="不存在")
    msg = source_error(e, "sheet")
    assert "不存在" in msg and "汇总" in msg and "明细" in msg
    with pytest.raises(SourceError) as e:
        stage_file(con, p, sheet="空表")
    source_error(e, "sheet")
    with pytest.raises(SourceError) as e:
        stage_file(con, p, sheet="重复")
    assert "column A" in source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "broken.xlsx", b"PK\x03\x04not really a zip"))
    source_error(e, "file")


# ------------------------------------------------------------------------------------------ JSON

def test_json_array(con, tmp_path):
    data = json.dumps([
        {"id": "0012", "name": "张三", "amount": 1.50, "n": 130682199001011001, "ok": True},
        {"id": "13068219900101002X", "extra": {"a": [1, 2.50]}, "name": None, "ok": False},
        42,
        {"name": "王五", "tags": ["x", "y"]},
    ], ensure_ascii=False).replace("1.5,", "1.50,").replace("2.5]", "2.50]")
    s = stage_file(con, write(tmp_path, "a.json", data.encode()))
    assert s.columns == ["id", "name", "amount", "n", "ok", "extra", "tags"]
    got = rows(con)
    assert got[0] == ("0012", "张三", "1.50", "130682199001011001", "true", None, None, 1)
    assert got[1] == ("13068219900101002X", None, None, None, "false", '{"a":[1,2.50]}', None, 2)
    assert got[2] == (None, "王五", None, None, None, None, '["x","y"]', 4)
    assert s.rejected == 1 and s.rejects[0]["row"] == 3 and s.rejects[0]["raw"] == "42"
    assert s.lineage["format"] == "json" and s.lineage["sha256"] == hashlib.sha256(data.encode()).hexdigest()


def test_json_object_wrapper_and_streaming_windows(con, tmp_path, monkeypatch):
    items = [{"序号": i, "名称": f"单位{i}", "值": i / 4} for i in range(1, 301)]
    doc = json.dumps({"code": 0, "msg": "ok", "data": items, "total": 300}, ensure_ascii=False, indent=1)
    p = write(tmp_path, "w.json", doc.encode())
    s = stage_file(con, p)
    assert s.rows == 300 and s.columns == ["序号", "名称", "值"]
    monkeypatch.setattr(connectors._JsonStream, "READ", 7)  # windows far smaller than a value
    stage_file(con, p, table="small")
    assert rows(con, "small") == rows(con) and rows(con)[-1] == ("300", "单位300", "75.0", 300)
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "two.json", b'{"a": [{"x": 1}], "b": [{"y": 2}]}'))
    assert "a, b" in source_error(e, "file")
    s = stage_file(con, write(tmp_path, "e.json", b'{"data": []}'))
    assert s.rows == 0 and s.columns == []


def test_json_keys_appearing_late(con, tmp_path, monkeypatch):
    monkeypatch.setattr(connectors, "BATCH_ROWS", 2)
    data = [{"a": i} for i in range(5)] + [{"b": "late", "a": 9}]
    s = stage_file(con, write(tmp_path, "late.json", json.dumps(data).encode()))
    assert s.columns == ["a", "b"] and s.rows == 6
    assert rows(con)[-1] == ("9", "late", 6)
    cols = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'staged' "
                                      "ORDER BY column_index").fetchall()]
    assert cols == ["a", "b", "_row"]


def test_json_invalid(con, tmp_path):
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "bad.json", b'[\n {"a": 1},\n {"a": 2,,}\n]'))
    msg = source_error(e, "file")
    assert "line 3" in msg and "column" in msg
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "trunc.json", b'[{"a": 1}, {"a": '))
    source_error(e, "file")
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "scalar.json", b'"just text"'))
    source_error(e, "file")
    assert table_names(con) == []


def test_jsonl(con, tmp_path):
    data = '{"id": "001", "v": 1}\n\n{"id": "002", "V": 2, "_row": "x"}\n[1]\n{"id": "003", "w": {"k": null}}\n'
    s = stage_file(con, write(tmp_path, "l.jsonl", data.encode()))
    assert s.columns == ["id", "v", "V_2", "_row_source", "w"]
    assert any("V → V_2" in w and "_row → _row_source" in w for w in s.warnings)
    assert rows(con) == [("001", "1", None, None, None, 1), ("002", None, "2", "x", None, 3),
                         ("003", None, None, None, '{"k":null}', 5)]
    assert s.rejected == 1 and s.rejects[0]["row"] == 4
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "bad.jsonl", b'{"a": 1}\n{"a": 2\n'))
    assert "line 2" in source_error(e, "file")


# --------------------------------------------------------------------------------------- Parquet

def test_parquet(con, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "身份证号": ["110101199003070019", "13068219900101002X", None],
        "人数": pa.array([1, None, 3], pa.int64()),
        "金额": [1.5, 0.1, None],
        "日期": [dt.date(2024, 1, 2), None, dt.date(2024, 12, 31)],
        "时间": [dt.datetime(2024, 1, 2, 3, 4, 5), None, None],
        "有效": [True, False, None],
        "标签": [["a", "b"], [], None],
    })
    p = tmp_path / "d.parquet"
    pq.write_table(table, p)
    s = stage_file(con, p)
    assert s.columns == ["身份证号", "人数", "金额", "日期", "时间", "有效", "标签"]
    got = rows(con)
    assert got[0] == ("110101199003070019", "1", "1.5", "2024-01-02", "2024-01-02 03:04:05", "true", '["a","b"]', 1)
    assert got[1][:3] == ("13068219900101002X", None, "0.1") and got[1][7] == 2
    assert got[2][3] == "2024-12-31" and got[2][7] == 3
    types = {r[1] for r in con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                       "WHERE table_name='staged' AND column_name <> '_row'").fetchall()}
    assert types == {"VARCHAR"}
    assert s.lineage["format"] == "parquet" and s.lineage["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    with pytest.raises(SourceError) as e:
        stage_file(con, write(tmp_path, "bad.parquet", b"PAR1 not parquet"))
    source_error(e, "file")


# -------------------------------------------------------------------------------------- Database

@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE person (id TEXT, name TEXT, age INTEGER, score REAL, photo BLOB, note TEXT)")
    db.executemany("INSERT INTO person VALUES (?, ?, ?, ?, ?, ?)", [
        ("0012", "张三", 30, 1.5, b"\x01\x02", None),
        ("13068219900101002X", "李四", None, 2.0, None, "a:b %s"),
        ("110101199003070019", "王五", 41, 1e-7, None, ""),
    ])
    db.commit()
    db.close()
    return path


def test_sqlite_source(con, sqlite_db):
    s = stage_database(con, f"sqlite:///{sqlite_db}", "SELECT id, name, age, score, photo, note, ':x' AS c "
                                                       "FROM person ORDER BY name DESC", batch_rows=2)
    assert s.columns == ["id", "name", "age", "score", "photo", "note", "c"]
    assert rows(con) == [
        ("110101199003070019", "王五", "41", "0.0000001", None, "", ":x", 1),
        ("13068219900101002X", "李四", None, "2", None, "a:b %s", ":x", 2),
        ("0012", "张三", "30", "1.5", "\\x0102", None, ":x", 3),
    ]
    assert s.rows == 3 and s.lineage == {"kind": "database", "url": f"sqlite:///{sqlite_db}",
                                         "query": s.lineage["query"], "rows": 3}


def test_sqlite_refuses_writes_and_bad_sources(con, sqlite_db, tmp_path):
    for query in ["DELETE FROM person", "select 1; delete from person", "PRAGMA writable_schema = 1", "  "]:
        with pytest.raises(SourceError) as e:
            stage_database(con, f"sqlite:///{sqlite_db}", query)
        source_error(e, "query")
    # Passes the light check (it starts with WITH) and is stopped by the read-only connection.
    with pytest.raises(SourceError) as e:
        stage_database(con, f"sqlite:///{sqlite_db}", "WITH x AS (SELECT 1) DELETE FROM person")
    assert "readonly" in source_error(e, "query").replace(" ", "").lower()
    assert sqlite3.connect(sqlite_db).execute("SELECT count(*) FROM person").fetchone() == (3,)
    with pytest.raises(SourceError) as e:
        stage_database(con, f"sqlite:///{sqlite_db}", "SELECT * FROM no_such_table")
    assert "no_such_table" in source_error(e, "query")
    missing = tmp_path / "missing.db"
    with pytest.raises(SourceError) as e:
        stage_database(con, f"sqlite:///{missing}", "SELECT 1")
    source_error(e, "url")
    assert not missing.exists()
    with pytest.raises(SourceError) as e:
        stage_database(con, "not a url", "SELECT 1")
    source_error(e, "url")
    with pytest.raises(SourceError) as e:
        stage_database(con, f"sqlite:///{sqlite_db}", "SELECT id, name AS ID FROM person")
    assert "ID" in source_error(e, "query")
    assert table_names(con) == []


def _pg():
    import psycopg

    try:
        return psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")


@pytest.fixture
def pg_schema():
    conn = _pg()
    schema = f"conn_test_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE SEQUENCE {schema}.seq")
    conn.execute(f"CREATE TABLE {schema}.person (id text, name text, amount numeric(10,2), born date, "
                 f"seen timestamp, active boolean, extra jsonb, raw bytea)")
    conn.execute(f"INSERT INTO {schema}.person VALUES "
                 f"('0012', '张三', 1.50, '1990-03-07', '2024-03-01 08:30:00', true, '{{\"k\": [1, 2]}}', '\\x0a0b'), "
                 f"('13068219900101002X', '李四', NULL, NULL, NULL, false, NULL, NULL)")
    try:
        yield conn, schema
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def test_postgres_source(con, pg_schema):
    _conn, schema = pg_schema
    url = PG_URL.replace("postgres@", "postgres:s3cret-pw@")
    s = stage_database(con, url, f"SELECT * FROM {schema}.person WHERE name LIKE '%%' OR name LIKE '%s' ORDER BY id",
                       batch_rows=1)
    assert rows(con) == [
        ("0012", "张三", "1.50", "1990-03-07", "2024-03-01 08:30:00", "true", '{"k":[1,2]}', "\\x0a0b", 1),
        ("13068219900101002X", "李四", None, None, None, "false", None, None, 2),
    ]
    assert "s3cret-pw" not in json.dumps(s.lineage) and "***" in s.lineage["url"]
    assert s.lineage["kind"] == "database" and s.lineage["rows"] == 2


def test_postgres_refuses_writes(con, pg_schema):
    conn, schema = pg_schema
    with pytest.raises(SourceError) as e:
        stage_database(con, PG_URL, f"UPDATE {schema}.person SET name = 'x'")
    source_error(e, "query")
    with pytest.raises(SourceError) as e:  # passes the light check; PostgreSQL refuses it
        stage_database(con, PG_URL, f"WITH d AS (DELETE FROM {schema}.person RETURNING *) SELECT * FROM d")
    source_error(e, "query")
    with pytest.raises(SourceError) as e:
        stage_database(con, PG_URL, f"SELECT nextval('{schema}.seq')")
    assert "read-only" in source_error(e, "query")
    with pytest.raises(SourceError) as e:
        stage_database(con, PG_URL, f"SELECT * INTO {schema}.copy FROM {schema}.person")
    source_error(e, "query")
    assert conn.execute(f"SELECT count(*) FROM {schema}.person").fetchone() == (2,)
    with pytest.raises(SourceError) as e:
        stage_database(con, PG_URL, f"SELECT * FROM {schema}.no_such_table")
    assert "no_such_table" in source_error(e, "query")


def test_postgres_bad_url_never_shows_the_password(con):
    _pg().close()
    for url in ["postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test",
                "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:5432/no_such_db_xyz",
                "postgresql+psycopg://no_such_role_xyz:s3cret-pw@127.0.0.1:5432/test"]:
        with pytest.raises(SourceError) as e:
            stage_database(con, url, "SELECT 1")
        msg = source_error(e, "url")
        assert "s3cret-pw" not in msg and "s3cret-pw" not in str(e.value.problem())
    with pytest.raises(SourceError) as e:
        stage_database(con, "nosuchdialect://x/y", "SELECT 1")
    source_error(e, "url")


def test_postgres_disconnect_mid_pull(con, pg_schema):
    conn, schema = pg_schema
    conn.execute(f"CREATE TABLE {schema}.big AS SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 1000000) g")
    marker = f"pull_{uuid.uuid4().hex[:8]}"
    query = f"SELECT n, h FROM {schema}.big"
    outcome = {}

    def pull():
        try:
            with translation.override("en"):  # a thread of its own: the fixture's override does not reach it
                outcome["staged"] = stage_database(con, f"{PG_URL}?application_name={marker}", query,
                                                   table="pulled", batch_rows=500)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    t = threading.Thread(target=pull)
    t.start()
    try:
        deadline = time.time() + 30
        pid = None
        while time.time() < deadline and pid is None:
            found = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
                                 (marker,)).fetchall()
            pid = found[0][0] if found else None
            time.sleep(0.05)
        assert pid, "the pull never started"
        time.sleep(0.5)  # let some batches arrive
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        t.join(120)
    err = outcome.get("error")
    assert isinstance(err, SourceError), outcome
    assert err.errors[0].field == "source" and "disconnected after" in err.detail
    n = int(err.detail.split("disconnected after ")[1].split(" ")[0])
    assert 0 < n < 1_000_000
    assert "pulled" not in table_names(con) and table_names(con) == []


# ------------------------------------------------------------------------------------------ HTTP

ITEMS = [{"id": f"{i:04d}", "name": f"事项{i}", "fee": i * 0.5} for i in range(1, 8)]


class _Api(BaseHTTPRequestHandler):
    served: list[bytes] = []

    def log_message(self, *args):
        pass

    def _json(self, obj, status=200, ctype="application/json; charset=utf-8"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            return
        _Api.served.append(body)

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/paged":
            page, size = int(q.get("page", 1)), int(q.get("size", 3))
            chunk = ITEMS[(page - 1) * size: page * size]
            return self._json({"code": 0, "data": {"items": chunk, "page": page}})
        if url.path == "/next":
            cur = int(q.get("cursor", 0))
            nxt = f"/next?cursor={cur + 3}" if cur + 3 < len(ITEMS) else None
            return self._json({"items": ITEMS[cur: cur + 3], "links": {"next": nxt}})
        if url.path == "/list":
            return self._json([{"a": 1}, "scalar", {"b": None}])
        if url.path == "/auth":
            if self.headers.get("Authorization") != "Bearer t0ken":
                return self._json({"error": "no"}, status=401)
            return self._json([{"ok": True}])
        if url.path == "/gbk":
            return self._json(json.dumps([{"名称": "定州市"}], ensure_ascii=False).encode("gbk"),
                              ctype="application/json; charset=GBK")
        if url.path == "/same":
            return self._json({"items": [{"a": 1}]})
        if url.path == "/slow":
            time.sleep(3)
            return self._json([])
        if url.path == "/big":
            return self._json([{"x": "y" * 1000} for _ in range(200)])
        if url.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop2")
            self.end_headers()
            return None
        if url.path == "/loop2":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return None
        if url.path == "/error":
            return self._json({"error": "boom"}, status=500)
        if url.path == "/html":
            return self._json(b"<html><body>Service unavailable</body></html>", ctype="text/html")
        if url.path == "/nolist":
            return self._json({"data": {"items": "not a list"}})
        return self._json({"error": "not found"}, status=404)


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_page_numbers(con, api):
    _Api.served.clear()
    s = stage_http(con, f"{api}/paged?token=abc123", items_path="data.items", page_param="page", size_param="size",
                   page_size=3)
    assert s.columns == ["id", "name", "fee"] and s.rows == 7
    assert rows(con) == [(it["id"], it["name"], str(it["fee"]), i) for i, it in enumerate(ITEMS, start=1)]
    assert s.lineage["kind"] == "http" and s.lineage["pages"] == 4 and s.lineage["rows"] == 7
    assert s.lineage["sha256"] == hashlib.sha256(b"".join(_Api.served)).hexdigest()
    assert "abc123" not in s.lineage["url"]


def test_http_next_links_and_items(con, api):
    s = stage_http(con, f"{api}/next", items_path="items", next_path="links.next")
    assert s.rows == 7 and s.lineage["pages"] == 3 and [r[3] for r in rows(con)] == list(range(1, 8))
    s = stage_http(con, f"{api}/list")
    assert s.columns == ["a", "b"] and rows(con) == [("1", None, 1), (None, None, 3)]
    assert s.rejected == 1 and s.rejects[0]["row"] == 2 and s.rejects[0]["raw"] == '"scalar"'
    s = stage_http(con, f"{api}/gbk")
    assert s.columns == ["名称"] and rows(con) == [("定州市", 1)]
    s = stage_http(con, f"{api}/auth", headers={"Authorization": "Bearer t0ken"})
    assert rows(con) == [("true", 1)] and "t0ken" not in json.dumps(s.lineage)


@pytest.mark.parametrize("path,kwargs,expect", [
    ("/slow", {"timeout_s": 0.5}, "0.5 seconds"),
    ("/big", {"max_bytes": 50_000}, "50000 bytes"),
    ("/loop", {}, "redirect"),
    ("/error", {}, "500"),
    ("/html", {}, "not JSON"),
    ("/nolist", {"items_path": "data.items"}, "not a list"),
    ("/paged", {"items_path": "data.rows"}, "data.rows"),
    ("/same", {"items_path": "items", "page_param": "page"}, "same content"),
    ("/paged", {"items_path": "data.items", "page_param": "page", "size_param": "size", "page_size": 1,
                "max_pages": 3}, "more than 3 pages"),
    ("/auth", {}, "401"),
])
def test_http_failures(con, api, path, kwargs, expect):
    started = time.monotonic()
    with pytest.raises(SourceError) as e:
        stage_http(con, f"{api}{path}", **kwargs)
    msg = source_error(e, "url")
    assert expect in msg
    assert time.monotonic() - started < 10
    assert table_names(con) == []


def test_mask_url():
    assert connectors.redact_url("postgresql+psycopg://etl:Pa55w0rd@db.example:5432/dz?sslmode=require") == \
        "postgresql+psycopg://etl:***@db.example:5432/dz?sslmode=require"
    assert connectors.mask_url("https://api.example/v1/list?appKey=k1&access_token=t2&page=3") == \
        "https://api.example/v1/list?appKey=***&access_token=***&page=3"
    assert connectors.mask_url("sqlite:////var/data/x.db") == "sqlite:////var/data/x.db"
    assert connectors.mask_url("https://user@host/p") == "https://user@host/p"


def test_http_refuses_other_schemes(con, tmp_path):
    with pytest.raises(SourceError) as e:
        stage_http(con, f"file://{tmp_path}/x.json")
    source_error(e, "url")


def test_http_unreachable(con):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as e:
        stage_http(con, f"http://127.0.0.1:{port}/x", timeout_s=2)
    assert "Page 1" in source_error(e, "url")
