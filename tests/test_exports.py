"""The bulk-exchange file writer and its per-recipient watermark: real files, real DuckDB, and copies
made the way a leaker would make them (Python's csv module, openpyxl, pyarrow, DuckDB)."""

from __future__ import annotations

import csv
import hashlib
import random
import re
import time
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook, load_workbook

from shuzheng.sharing import exports
from shuzheng.sharing.exports import FORMATS, identify, read_metadata, unescape, write_export

ROWS = 2000
RECIPIENTS = [(f"export-{i}", hashlib.sha256(f"recipient-{i}".encode()).digest()) for i in range(1, 6)]
STRANGER = ("export-x", hashlib.sha256(b"someone else").digest())

# 1,990 rows and 10 of them again (identical rows hash alike: ties), every type, NULLs in every column,
# Chinese text, ID numbers ending in X, codes with leading zeros, and text a spreadsheet would run.
PEOPLE = f"""
CREATE VIEW people AS SELECT
  '130682' || strftime(DATE '1950-01-01' + (i * 37 % 20000)::INT, '%Y%m%d') || lpad((i % 1000)::VARCHAR, 3, '0')
    || CASE WHEN i % 11 = 0 THEN 'X' ELSE (i % 10)::VARCHAR END AS 公民身份号码,
  CASE WHEN i % 50 = 7 THEN NULL
    ELSE ['张', '王', '李', '赵', '刘'][i % 5 + 1] || ['伟', '芳', '娜', '敏', '静', '强'][i % 6 + 1] END AS 姓名,
  CASE WHEN i % 45 = 9 THEN NULL ELSE lpad((i % 997)::VARCHAR, 6, '0') END AS 邮政编码,
  CASE WHEN i % 40 = 3 THEN NULL ELSE i::BIGINT * 1000003 - 5000000 END AS 序号,
  CASE WHEN i % 30 = 4 THEN NULL ELSE CAST(((i * 7919) % 200000 - 100000) * 0.0001 AS DECIMAL(18, 4)) END AS 补贴金额,
  CASE WHEN i % 25 = 5 THEN NULL ELSE DATE '1950-01-01' + (i * 37 % 20000)::INT END AS 出生日期,
  CASE WHEN i % 20 = 6 THEN NULL
    ELSE TIMESTAMP '2024-01-01 08:00:00' + to_microseconds(i::BIGINT * 3600000123) END AS 登记时间,
  CASE WHEN i % 15 = 8 THEN NULL ELSE i % 3 = 0 END AS 是否有效,
  CASE i % 13
    WHEN 0 THEN '=HYPERLINK("http://x.example/' || i || '","点我")'
    WHEN 1 THEN '+86 138' || lpad(i::VARCHAR, 8, '0')
    WHEN 2 THEN '-' || i
    WHEN 3 THEN '@SUM(A' || i || ')'
    WHEN 4 THEN '''=已转义' || i
    WHEN 5 THEN ''
    WHEN 6 THEN NULL
    WHEN 7 THEN '定州市, "北城区"' || i
    WHEN 8 THEN '第一行' || chr(10) || '第二行' || i
    WHEN 9 THEN '#N/A'
    WHEN 10 THEN '  两端空格' || i || '  '
    WHEN 11 THEN '''引号' || i
    ELSE '备注' || i END AS 备注
FROM (SELECT i FROM range({ROWS - 10}) t(i) UNION ALL SELECT i FROM range(10) t(i)) AS s(i)
"""


@pytest.fixture(scope="module")
def con():
    # The platform's sessions run without insertion order (warehouse.lake.duck): the export must not need it.
    con = duckdb.connect(config={"preserve_insertion_order": "false"})
    con.execute(PEOPLE)
    yield con
    con.close()


@pytest.fixture(scope="module")
def source(con):
    header = con.sql("SELECT * FROM people").columns
    rows = con.sql("SELECT " + ", ".join(f"CAST({c} AS VARCHAR)" for c in header) + " FROM people").fetchall()
    return header, rows


@pytest.fixture(scope="module")
def files(con, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    made = {}
    for fmt in FORMATS:
        for export_id, seed in RECIPIENTS + [STRANGER]:
            path = folder / f"{export_id}.{fmt}"
            written = write_export(con, "SELECT * FROM people;", fmt, path, seed,
                                   {"export_id": export_id, "recipient": "定州市民政局", "purpose": "低保复核"})
            made[fmt, export_id] = (path, written)
    return made


# ---- the file as it is, and copies of it ---------------------------------------------------------------


def file_rows(path: Path, fmt: str) -> tuple[list[str], list[tuple]]:
    """Header and rows exactly as the file holds them (text; None for NULL or an empty XLSX cell)."""
    if fmt == "xlsx":
        wb = load_workbook(path, read_only=True)
        rows = [tuple(r) for ws in wb.worksheets for r in ws.iter_rows(values_only=True)]
        wb.close()
        width = len(rows[0])  # a row ends at its last cell written: pad it to the header
        return list(rows[0]), [r + (None,) * (width - len(r)) for r in rows[1:]]
    with duckdb.connect() as con:
        if fmt == "csv":
            rel = con.sql(f"SELECT * FROM read_csv('{path}', header = true, all_varchar = true, "
                          "allow_quoted_nulls = false)")
        else:
            rel = con.sql(f"SELECT * FROM read_parquet('{path}')")
        header = rel.columns
        texts = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in header)
        return header, con.sql(f"SELECT {texts} FROM rel").fetchall()


def leak(header, rows, fmt: str, path: Path) -> Path:
    """Writes rows the way someone holding the file would: Python's csv, openpyxl, pyarrow."""
    if fmt == "csv":
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
    elif fmt == "xlsx":
        wb = Workbook()
        ws = wb.active
        ws.append(list(header))
        for row in rows:
            ws.append(list(row))
        wb.save(path)
    else:
        pq.write_table(pa.table({name: pa.array([row[i] for row in rows], pa.string())
                                 for i, name in enumerate(header)}), path)
    return path


def who(path: Path, fmt: str | None = None, candidates=RECIPIENTS):
    return identify(path, candidates, fmt)


# ---- content and metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_file_holds_exactly_the_source_rows_with_a_header(files, source, fmt):
    header, expected = source
    path, written = files[fmt, "export-1"]
    got_header, got = file_rows(path, fmt)
    assert list(got_header) == list(header)
    if fmt == "csv":
        got = [tuple(None if v is None else unescape(v) for v in row) for row in got]
    if fmt == "xlsx":  # an empty cell is all XLSX has for both NULL and ""
        expected = [tuple(None if v == "" else v for v in row) for row in expected]
    assert len(got) == ROWS == written.rows
    assert Counter(got) == Counter(expected)
    # ID numbers, leading zeros and decimals keep their exact text.
    ids = {row[0] for row in got}
    assert all(re.fullmatch(r"130682\d{11}[\dX]", i) for i in ids) and any(i.endswith("X") for i in ids)
    assert {"000000", "000996"} <= {row[2] for row in got}
    amounts = {row[4] for row in got} - {None}
    assert all(re.fullmatch(r"-?\d+\.\d{4}", a) for a in amounts) and "-10.0000" in amounts
    assert written.bytes == path.stat().st_size
    assert written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not [p for p in path.parent.iterdir() if p.name.endswith((".part", ".part2"))]


def test_csv_is_utf8_with_a_bom_for_excel(files):
    body = files["csv", "export-1"][0].read_bytes()
    assert body.startswith(b"\xef\xbb\xbf" + "公民身份号码,姓名".encode())


def test_a_first_column_name_that_needs_quotes_still_gets_the_bom_first(con, tmp_path):
    path = tmp_path / "q.csv"
    write_export(con, 'SELECT 1 AS "a,b", 2 AS c -- a trailing comment', "csv", path, RECIPIENTS[0][1], {})
    assert path.read_bytes() == b'\xef\xbb\xbf"a,b",c\n1,2\n'
    write_export(con, 'SELECT 姓名 AS "名, 称", * FROM people', "csv", path, RECIPIENTS[0][1], {})
    assert path.read_bytes().startswith('\ufeff"名, 称",'.encode())
    assert who(path).export_id == "export-1"  # DuckDB's sniffer misreads a BOM before a quote: identify copes


def test_the_metadata_rides_in_parquet_and_xlsx(files):
    path = files["parquet", "export-2"][0]
    with duckdb.connect() as con:
        kv = dict(con.execute("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)", [str(path)]).fetchall())
    assert kv["export_id"] == "export-2" and kv["recipient"] == "定州市民政局"
    assert read_metadata(path)["purpose"] == "低保复核"

    path = files["xlsx", "export-2"][0]
    wb = load_workbook(path)
    assert {p.name: p.value for p in wb.custom_doc_props}["export_id"] == "export-2"
    assert '"recipient": "定州市民政局"' in wb.properties.description
    assert read_metadata(path) == {"export_id": "export-2", "recipient": "定州市民政局", "purpose": "低保复核"}
    assert read_metadata(files["csv", "export-2"][0]) == {}


def test_formulas_are_escaped(files):
    text = files["csv", "export-3"][0].read_bytes().decode("utf-8-sig")
    assert "\"'=HYPERLINK(\"\"http://x.example/" in text and ",'+86 138" in text and ",'@SUM(A" in text
    assert ",''=已转义" in text and ",'引号" in text  # an existing quote before = gets one more; others none
    assert not re.search(r"(^|,)[=+@]", text, re.M)
    assert ",-5000000," in text  # numbers are not text: never escaped
    assert unescape("''=已转义1") == "'=已转义1" and unescape("'引号1") == "'引号1" and unescape("'-2") == "-2"

    wb = load_workbook(files["xlsx", "export-3"][0])
    cells = [c for row in wb.active.iter_rows() for c in row]
    assert {c.data_type for c in cells} <= {"s", "n"}  # text or empty: no formula, no error cell
    link = next(c for c in cells if isinstance(c.value, str) and c.value.startswith("=HYPERLINK"))
    assert link.quotePrefix and link.data_type == "s"  # Excel's own "'": the value itself is unchanged
    assert all(c.quotePrefix for c in cells if isinstance(c.value, str) and c.value[:1] in "=+-@")
    assert any(c.value == "#N/A" and c.data_type == "s" for c in cells)
    plain = next(c for c in cells if isinstance(c.value, str) and c.value.startswith("备注"))
    assert not plain.quotePrefix


def test_a_failing_export_leaves_the_old_file_and_no_temporary_behind(con, tmp_path):
    from openpyxl.worksheet._writer import ALL_TEMP_FILES  # openpyxl's own scratch files for sheets

    def scratch():
        return {p for p in ALL_TEMP_FILES if Path(p).exists()}

    before = scratch()
    for fmt in FORMATS:
        path = tmp_path / f"out.{fmt}"
        path.write_bytes(b"the previous export")
        boom = "SELECT i, CASE WHEN i = 150000 THEN error('boom') ELSE '值' || i END AS v FROM range(200000) t(i)"
        with pytest.raises(duckdb.Error, match="boom"):
            write_export(con, boom, fmt, path, RECIPIENTS[0][1], {"export_id": "x"})
        with pytest.raises(duckdb.Error):
            write_export(con, "SELECT * FROM no_such_table", fmt, path, RECIPIENTS[0][1], {})
        assert path.read_bytes() == b"the previous export"
        with pytest.raises((OSError, duckdb.Error)):  # fails after the rows were written (for XLSX)
            write_export(con, "SELECT * FROM people", fmt, tmp_path / "nowhere" / f"out.{fmt}", RECIPIENTS[0][1], {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet", "out.xlsx"]
    assert scratch() <= before


def test_bad_arguments_are_refused(con, tmp_path):
    with pytest.raises(ValueError, match="format"):
        write_export(con, "SELECT 1", "json", tmp_path / "x.json", RECIPIENTS[0][1], {})
    with pytest.raises(ValueError, match="seed"):
        write_export(con, "SELECT 1", "csv", tmp_path / "x.csv", b"short", {})
    assert list(tmp_path.iterdir()) == []


# ---- identifying the recipient --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_full_file_names_its_recipient(files, fmt):
    for export_id, _seed in RECIPIENTS:
        found = who(files[fmt, export_id][0])
        assert found.export_id == export_id and found.score == 1.0 and found.rows == ROWS
        others = [s for e, s in found.scores.items() if e != export_id]
        assert len(others) == 4 and all(0.4 < s < 0.6 for s in others)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_slice_or_every_seventh_row_still_names_the_recipient(files, fmt, tmp_path):
    header, rows = file_rows(files[fmt, "export-4"][0], fmt)
    tenth = leak(header, rows[900:1100], fmt, tmp_path / f"slice.{fmt}")
    assert who(tenth).export_id == "export-4" and who(tenth).rows == 200
    sevenths = leak(header, rows[::7], fmt, tmp_path / f"sevenths.{fmt}")
    assert who(sevenths, fmt).export_id == "export-4" and who(sevenths).rows == len(rows[::7])
    twenty = leak(header, rows[500:520], fmt, tmp_path / f"twenty.{fmt}")
    assert who(twenty).export_id == "export-4"


def test_copies_re_saved_in_another_format_name_the_recipient(files, tmp_path):
    # CSV read with Python's csv module, written as a workbook with openpyxl.
    with open(files["csv", "export-5"][0], encoding="utf-8-sig", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert who(leak(header, rows, "xlsx", tmp_path / "from-csv.xlsx")).export_id == "export-5"
    # Parquet to CSV with DuckDB, no BOM.
    out = tmp_path / "from-parquet.csv"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet('{files['parquet', 'export-2'][0]}')) TO '{out}' "
                    "(FORMAT csv, HEADER true)")
    assert who(out).export_id == "export-2"
    # A workbook saved as CSV in GB18030, with semicolons, under a name that hides what it is.
    header, rows = file_rows(files["xlsx", "export-3"][0], "xlsx")
    out = tmp_path / "from-xlsx.dat"
    with open(out, "w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    found = who(out)
    assert found.export_id == "export-3" and found.rows == ROWS
    # A workbook turned into Parquet of text.
    assert who(leak(header, rows, "parquet", tmp_path / "from-xlsx.parquet")).export_id == "export-3"


def test_stripped_metadata_does_not_hide_the_recipient(files, tmp_path):
    out = tmp_path / "stripped.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet('{files['parquet', 'export-1'][0]}')) TO '{out}' "
                    "(FORMAT parquet)")
    assert "export_id" not in read_metadata(out)
    assert who(out).export_id == "export-1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_attribution_for_a_shuffled_copy_a_stranger_or_too_few_rows(files, fmt, tmp_path):
    header, rows = file_rows(files[fmt, "export-2"][0], fmt)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    found = who(leak(header, shuffled, fmt, tmp_path / f"shuffled.{fmt}"))
    assert found.export_id is None and all(0.4 < s < 0.6 for s in found.scores.values())

    found = who(files[fmt, "export-x"][0])
    assert found.export_id is None and found.score < 0.6 and found.rows == ROWS

    found = who(leak(header, rows[:19], fmt, tmp_path / f"few.{fmt}"))
    assert found.export_id is None and found.rows == 19 and found.scores["export-2"] == 1.0


def test_two_recipients_rows_mixed_are_not_attributed(files, tmp_path):
    header, first = file_rows(files["parquet", "export-1"][0], "parquet")
    _header, second = file_rows(files["parquet", "export-2"][0], "parquet")
    found = who(leak(header, first[:1000] + second[1000:], "parquet", tmp_path / "mixed.parquet"))
    assert found.export_id is None
    assert 0.7 < found.scores["export-1"] < 0.8 and 0.7 < found.scores["export-2"] < 0.8


def test_candidates_sharing_a_seed_are_one_recipient(files):
    seed = dict(RECIPIENTS)["export-3"]
    found = who(files["csv", "export-3"][0], candidates=RECIPIENTS + [("export-3-again", seed)])
    assert found.export_id == "export-3" and found.scores["export-3-again"] == 1.0


def test_workbooks_continue_on_further_sheets_past_the_row_limit(con, source, tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 700)  # Excel's 1,048,575 would take minutes to reach
    path = tmp_path / "long.xlsx"
    assert write_export(con, "SELECT * FROM people", "xlsx", path, RECIPIENTS[0][1], {}).rows == ROWS
    wb = load_workbook(path, read_only=True)
    assert wb.sheetnames == ["数据", "数据2", "数据3"]
    wb.close()
    header, expected = source
    got = []
    for name in ("数据", "数据2", "数据3"):
        wb = load_workbook(path, read_only=True)
        rows = list(wb[name].iter_rows(values_only=True))
        wb.close()
        assert list(rows[0]) == list(header)
        got += [r + (None,) * (len(header) - len(r)) for r in rows[1:]]
    assert Counter(got) == Counter(tuple(None if v == "" else v for v in row) for row in expected)
    found = who(path)
    assert found.export_id == "export-1" and found.rows == ROWS and found.score == 1.0


def test_no_candidates_or_an_empty_file(files, con, tmp_path):
    assert who(files["csv", "export-1"][0], candidates=[]).export_id is None
    path = tmp_path / "empty.csv"
    write_export(con, "SELECT * FROM people WHERE false", "csv", path, RECIPIENTS[0][1], {})
    found = who(path)
    assert found.export_id is None and found.rows == 0


# ---- throughput (printed, never asserted: bench/ compares) ----------------------------------------------


def test_throughput_csv_and_parquet(tmp_path, capsys):
    n = 200_000  # a million takes over 15 s on a busy two-core machine; bench/ runs the full size
    con = duckdb.connect(config={"preserve_insertion_order": "false"})
    con.execute(f"""CREATE VIEW wide AS SELECT
      '1306821990' || lpad((i % 100000000)::VARCHAR, 8, '0') AS 公民身份号码,
      ['张', '王', '李', '赵', '刘'][i % 5 + 1] || (i % 9973)::VARCHAR AS 姓名,
      i::BIGINT AS 序号,
      CAST(i * 0.0001 AS DECIMAL(18, 4)) AS 金额,
      DATE '1950-01-01' + (i % 20000)::INT AS 出生日期,
      TIMESTAMP '2024-01-01 00:00:00' + to_microseconds(i * 1000003) AS 登记时间,
      i % 3 = 0 AS 是否有效,
      CASE WHEN i % 11 = 0 THEN NULL ELSE '定州市' || (i % 37)::VARCHAR || '街道' END AS 地址,
      '138' || lpad((i % 100000000)::VARCHAR, 8, '0') AS 联系电话,
      (i % 97)::BIGINT AS 年龄,
      CASE WHEN i % 13 = 0 THEN NULL ELSE CAST(i % 1000 * 0.01 AS DECIMAL(18, 4)) END AS 补贴,
      '类型' || (i % 5)::VARCHAR AS 类型,
      CASE WHEN i % 17 = 0 THEN '=1+' || i ELSE '无' END AS 备注,
      DATE '2020-01-01' + (i % 1000)::INT AS 更新日期
      FROM range({n}) t(i)""")
    figures = {}
    for fmt in ("csv", "parquet"):
        start = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM wide) TO '{tmp_path / ('plain.' + fmt)}' (FORMAT {fmt})")
        plain = time.perf_counter() - start
        start = time.perf_counter()
        written = write_export(con, "SELECT * FROM wide", fmt, tmp_path / f"wide.{fmt}", RECIPIENTS[0][1],
                               {"export_id": "w"})
        marked = time.perf_counter() - start
        assert written.rows == n
        figures[fmt] = (n / marked, n / plain)
    with capsys.disabled():
        for fmt, (marked, plain) in figures.items():
            print(f"\nexport {fmt}: {marked:,.0f} rows/s watermarked; a plain unordered COPY {plain:,.0f} rows/s "
                  f"({n:,} rows x 14 columns)")
