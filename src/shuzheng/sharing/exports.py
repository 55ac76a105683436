"""The file writer of the gateway's bulk exchange (库表/文件交换), with a per-recipient watermark.

Every export's rows are written in an order only the recipient's secret seed produces:

    ORDER BY md5(<seed hex> || concat_ws(chr(31), <canonical text of each column>))

where a column's canonical text is its DuckDB VARCHAR text with leading apostrophes removed (the
formula escape, however many times a program added it), and NULL or the empty string as chr(30) (CSV,
XLSX and the programs that re-save them cannot keep the two apart). No value is changed for the mark:
the order carries it. `identify` reads a file, recomputes every row's keyed hash for each candidate seed
and scores the share of consecutive row pairs whose hashes increase: all of them for the true recipient,
about half for any other seed. Rows with the same text hash the same; such ties count as neither
ordered nor disordered.

What it survives: any subset of the rows kept in file order (a slice, every n-th row, deletions), a
re-save into another of the formats (text forms are kept exact: CSV and Parquet through DuckDB, XLSX as
text cells), stripped metadata, another delimiter or a GB18030 re-encoding of a CSV, and edits to up to
about a tenth of the rows (an edited row spoils on average one pair). What it does not survive:
shuffling or re-sorting the rows, dropping or reordering columns, or rewriting the text of every row (a
program that turns "0.1000" into "0.1" or an ID number into 1.30682E+17 does that). The file metadata
(Parquet key-value metadata, XLSX document properties) names the export directly and is the cheap first
check; anyone can strip it, so the order is what counts. CSV has no place for metadata. TIMESTAMP WITH
TIME ZONE values print in the session's TimeZone: identify a Parquet file holding them on a machine set
to the exporting one's.

Deciding (MIN_ROWS, MIN_SCORE, MAX_RUNNER_UP): for a seed that did not order the file, each pair is
increasing with probability 1/2, so its share over n rows is about 0.5 +- 0.5/sqrt(n) (the exact spread of
ascents in a random order, sqrt((n+1)/12)/(n-1), is smaller still). With n >= 20 a share of 0.9 is about
3.5 such deviations out (a random order of 20 rows has 18 or 19 ascents with probability below 1e-12),
while the true recipient scores 1.0 less about the share of edited rows. A runner-up at 0.75 or more
means the file mixes two recipients' rows (each half ordered scores ~0.75): no attribution.

Formats: CSV through DuckDB COPY, UTF-8 with a BOM (Excel on Chinese Windows needs it to show Chinese),
a header row, NULL as an empty field and the empty string as "", and the formula escape the platform
uses elsewhere: a text value starting with = + - @ tab or CR (after any apostrophes) gets one more "'"
(`unescape` removes it; typed columns such as numbers and dates are never escaped). Parquet through
DuckDB COPY, types kept, the metadata as KV_METADATA. XLSX through openpyxl's write-only mode: every
cell a text cell holding the DuckDB VARCHAR text (ID numbers and decimals keep their exact text), NULL
and the empty string as an empty cell, CR LF and CR as LF and control characters dropped (XML cannot
keep them; the order is computed over what is written); a cell starting with = + - @ or tab, or reading
like an error code, carries Excel's quotePrefix (the "'" typed in front of a value) so that it stays text
even when edited, the value itself unchanged; sheets of 1,048,575 rows, continuing on 数据2, ...; the
metadata as custom document properties and, as JSON, in the description. XLSX goes cell by cell
through Python (a few thousand rows a second here): it is for what people open; CSV and Parquet are for bulk.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import duckdb

from shuzheng.core.crypto import sha256_file
from shuzheng.core.sql import quote_ident, quote_literal

FORMATS = ("csv", "parquet", "xlsx")

# The decision rule of `identify` (the module docstring says why these numbers).
MIN_ROWS = 20
MIN_SCORE = 0.9
MAX_RUNNER_UP = 0.75
MIN_SEED_BYTES = 16

# A text the escape was applied to: apostrophes, then a character a spreadsheet starts a formula with.
ESCAPED = re.compile(r"^'+[=+\-@\t\r]")
XLSX_SHEET = "数据"
XLSX_MAX_ROWS = 1_048_576 - 1  # Excel's row limit, less the header
XLSX_FORMULA_LEADS = ("=", "+", "-", "@", "\t")
XLSX_ERROR_CODES = frozenset(("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"))
BOM = codecs.BOM_UTF8

# Types whose DuckDB text never starts a formula or an apostrophe and is never empty: written as they are.
_PLAIN_TYPES = frozenset((
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
    "UHUGEINT", "FLOAT", "DOUBLE", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS",
    "TIMESTAMP WITH TIME ZONE", "TIME WITH TIME ZONE", "BOOLEAN", "UUID",
))
_XLSX_FETCH = 8192
_HASH_CHUNK = 16  # candidate seeds hashed per query in identify


@dataclass
class Written:
    rows: int
    bytes: int
    sha256: str


@dataclass
class Identification:
    export_id: str | None  # the candidate identified, or None when no candidate is convincing
    score: float  # the winner's ordered-pair share (0..1)
    rows: int  # data rows read from the file
    scores: dict[str, float] = field(default_factory=dict)  # every candidate's score


def unescape(text: str) -> str:
    """The value a CSV cell holds before the formula escape (one apostrophe removed where it was added)."""
    return text[1:] if ESCAPED.match(text) else text


# ---- the watermark in SQL -------------------------------------------------------------------------------


def _canonical(expr: str) -> str:
    """The text of one cell as the watermark hashes it, from a VARCHAR expression."""
    # ltrim only where there is something to trim: calling it on every value doubles the hashing cost.
    stripped = f"CASE WHEN prefix({expr}, '''') THEN ltrim({expr}, '''') ELSE {expr} END"
    return f"coalesce(nullif({stripped}, ''), chr(30))"


def _order_key(seed: bytes, texts: list[str]) -> str:
    return f"md5('{seed.hex()}' || concat_ws(chr(31), {', '.join(texts)}))"


def _is_plain(type_name: str) -> bool:
    return type_name in _PLAIN_TYPES or type_name.startswith("DECIMAL")


def _hash_text(column: str, type_name: str) -> str:
    cast = f"CAST({column} AS VARCHAR)"
    # Typed text is never empty nor starts with an apostrophe: skip the work on the hot path.
    return f"coalesce({cast}, chr(30))" if _is_plain(type_name) else _canonical(cast)


# ---- writing --------------------------------------------------------------------------------------------


def write_export(con: duckdb.DuckDBPyConnection, select_sql: str, fmt: str, path: Path, seed: bytes,
                 metadata: dict[str, str]) -> Written:
    """Writes the rows of `select_sql` (a trusted DuckDB SELECT) to `path` as `fmt`, in the order of the
    recipient's `seed`, with `metadata` where the format keeps it. The file appears complete or not at all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    if len(seed) < MIN_SEED_BYTES:
        raise ValueError(f"a watermark seed needs at least {MIN_SEED_BYTES} random bytes")
    path = Path(path)
    select_sql = select_sql.strip().rstrip(";")
    source = f"(\n{select_sql}\n) AS _src"  # newlines: a trailing -- comment ends at its line
    # The columns as the subquery names them (DuckDB renames duplicates a, a_1, ...).
    described = con.sql(f"SELECT * FROM {source}")
    columns = [(name, str(kind)) for name, kind in zip(described.columns, described.types)]
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        if fmt == "xlsx":
            rows = _write_xlsx(con, source, columns, tmp, seed, metadata)
        else:
            key = _order_key(seed, [_hash_text(f"_src.{quote_ident(name)}", kind) for name, kind in columns])
            if fmt == "csv":
                rows, tmp = _write_csv(con, source, columns, key, tmp)
            else:
                options = "FORMAT parquet"
                if metadata:
                    pairs = ", ".join(f"{quote_literal(k)}: {quote_literal(v)}" for k, v in metadata.items())
                    options += f", KV_METADATA {{{pairs}}}"
                rows = con.execute(f"COPY (SELECT * FROM {source} ORDER BY {key}) TO {quote_literal(str(tmp))} "
                                   f"({options})").fetchone()[0]
        digest, size = sha256_file(tmp, fsync=True)  # flushed to disk before it is renamed into place
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return Written(rows=int(rows), bytes=size, sha256=digest)


def _write_csv(con, source: str, columns: list[tuple[str, str]], key: str, tmp: Path) -> tuple[int, Path]:
    select = []
    for i, (name, kind) in enumerate(columns):
        ref = f"_src.{quote_ident(name)}"
        if not _is_plain(kind):
            ref = _csv_escaped(f"CAST({ref} AS VARCHAR)")
        # The BOM rides in front of the first header name: DuckDB's COPY cannot write a prefix alone.
        select.append(f"{ref} AS {quote_ident(chr(0xFEFF) + name if i == 0 else name)}")
    rows = con.execute(f"COPY (SELECT {', '.join(select)} FROM {source} ORDER BY {key}) "
                       f"TO {quote_literal(str(tmp))} (FORMAT csv, HEADER true)").fetchone()[0]
    with open(tmp, "rb") as f:
        if f.read(len(BOM)) == BOM:
            return rows, tmp
    # A first name DuckDB had to quote put the BOM inside the quotes: write it again, BOM first.
    fixed = tmp.with_name(tmp.name + "2")
    try:
        with open(tmp, "rb") as src, open(fixed, "wb") as dst:
            head = src.read(1 + len(BOM))
            dst.write(BOM + (head[:1] if head[1:] == BOM else head))
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except BaseException:
        fixed.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return rows, fixed


def _csv_escaped(text: str) -> str:
    """The formula escape (ESCAPED, the rule the catalog workbook uses) in SQL."""
    # Byte-prefix tests first; the regular expression only for the rare text that starts with a quote.
    leads = " OR ".join(f"prefix({text}, {lead})" for lead in ("'='", "'+'", "'-'", "'@'", "chr(9)", "chr(13)"))
    quoted = f"prefix({text}, '''') AND regexp_matches({text}, '^''+[=+\\-@\\t\\r]')"
    return f"CASE WHEN {leads} OR ({quoted}) THEN '''' || {text} ELSE {text} END"


def _xlsx_cell(column: str, kind: str) -> str:
    text = f"CAST({column} AS VARCHAR)"
    if _is_plain(kind):
        return text
    text = f"replace(replace({text}, chr(13) || chr(10), chr(10)), chr(13), chr(10))"
    return f"nullif(regexp_replace({text}, '[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]', '', 'g'), '')"


def _write_xlsx(con, source: str, columns: list[tuple[str, str]], tmp: Path, seed: bytes,
                metadata: dict[str, str]) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.packaging.custom import StringProperty

    # The cells are computed by DuckDB and the order is over exactly what is written.
    cells = ", ".join(f"{_xlsx_cell('_src.' + quote_ident(name), kind)} AS c{i}"
                      for i, (name, kind) in enumerate(columns))
    key = _order_key(seed, [_canonical(f"_x.c{i}") for i in range(len(columns))])
    cursor = con.execute(f"SELECT * FROM (SELECT {cells} FROM {source}) AS _x ORDER BY {key}")

    wb = Workbook(write_only=True)
    wb.properties.creator = "Shuzheng"
    wb.properties.keywords = "shuzheng-export"
    if metadata:
        wb.properties.description = json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str)
        for name, value in metadata.items():
            wb.custom_doc_props.append(StringProperty(name=str(name), value=str(value)))
    header = [_xlsx_text_cell(name) for name, _kind in columns]

    def text_cell(ws, value):
        # Plain text goes in as it is (openpyxl makes it a string cell); only formula-looking or
        # error-looking text needs a cell forced to text with the quote prefix.
        if value is None or not (value.startswith(XLSX_FORMULA_LEADS) or value in XLSX_ERROR_CODES):
            return value
        cell = WriteOnlyCell(ws, value=value)
        cell.data_type = "s"
        cell.quotePrefix = True
        return cell

    sheets, ws, in_sheet, rows = 0, None, XLSX_MAX_ROWS, 0
    try:
        while batch := cursor.fetchmany(_XLSX_FETCH):
            for record in batch:
                if in_sheet == XLSX_MAX_ROWS:
                    sheets += 1
                    ws = wb.create_sheet(XLSX_SHEET if sheets == 1 else f"{XLSX_SHEET}{sheets}")
                    ws.freeze_panes = "A2"
                    ws.append([text_cell(ws, name) for name in header])
                    in_sheet = 0
                ws.append([text_cell(ws, value) for value in record])
                in_sheet += 1
                rows += 1
        if ws is None:  # no rows: the header alone
            ws = wb.create_sheet(XLSX_SHEET)
            ws.append([text_cell(ws, name) for name in header])
        with open(tmp, "wb") as f:
            wb.save(f)
    except BaseException:
        # A write-only sheet streams into a temporary file openpyxl removes only on save or at exit:
        # a long-running worker would collect them.
        for sheet in wb.worksheets:
            if getattr(sheet, "_writer", None) is None:
                continue
            try:
                if not sheet.closed:
                    sheet.close()  # ends its row generator, which would otherwise write on garbage collection
                sheet._writer.cleanup()
            except Exception:  # already saved and removed by openpyxl
                pass
        raise
    return rows


def _xlsx_text_cell(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", text)





def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading back ---------------------------------------------------------------------------------------


def sniff_format(path: Path) -> str:
    """The format of a file by its first bytes, whatever its name says."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return "parquet"
    if head == b"PK\x03\x04":
        return "xlsx"
    return "csv"


def read_metadata(path: Path, fmt: str | None = None) -> dict[str, str]:
    """The metadata an export carries (empty for CSV, or when it was stripped)."""
    fmt = fmt or sniff_format(path)
    if fmt == "parquet":
        with duckdb.connect() as con:
            rows = con.execute("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)", [str(path)]).fetchall()
        return {k: v for k, v in rows}
    if fmt == "xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True)
        try:
            found = {p.name: str(p.value) for p in wb.custom_doc_props}
            if not found and wb.properties.description:
                try:
                    described = json.loads(wb.properties.description)
                except ValueError:
                    described = None
                if isinstance(described, dict):
                    found = {str(k): str(v) for k, v in described.items()}
            return found
        finally:
            wb.close()
    return {}


def identify(path: Path, candidates: Iterable[tuple[str, bytes]], fmt: str | None = None) -> Identification:
    """Which of `candidates` (export id, seed) received the file at `path`, judged by its row order. `fmt`
    defaults to what the file's first bytes say. Candidates sharing a seed score alike: the runner-up is
    the best other seed, and the first candidate holding the winning seed is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path = Path(path)
    fmt = fmt or sniff_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    candidates = list(candidates)
    seeds = list(dict.fromkeys(seed for _export_id, seed in candidates))
    by_seed: dict[bytes, tuple[float, int]] = {}  # share of increasing pairs, pairs that are not ties
    with duckdb.connect() as con, tempfile.TemporaryDirectory(prefix="shuzheng-identify-") as scratch:
        texts = _row_texts(con, path, fmt, Path(scratch))
        n = len(texts)
        con.register("_rows", pa.table({"t": texts}))
        for start in range(0, len(seeds), _HASH_CHUNK):
            chunk = seeds[start:start + _HASH_CHUNK]
            hashed = con.sql("SELECT " + ", ".join(f"md5('{seed.hex()}' || t) AS h{i}" for i, seed in enumerate(chunk))
                             + " FROM _rows").to_arrow_table()
            for i, seed in enumerate(chunk):
                h = hashed.column(i).combine_chunks()
                before, after = h.slice(0, max(n - 1, 0)), h.slice(1)
                up = pc.sum(pc.greater(after, before)).as_py() or 0
                down = pc.sum(pc.less(after, before)).as_py() or 0
                by_seed[seed] = (up / (up + down) if up + down else 0.0, up + down)
    scores = {export_id: by_seed[seed][0] for export_id, seed in candidates}
    if not seeds:
        return Identification(None, 0.0, n, scores)
    ranked = sorted(seeds, key=lambda seed: by_seed[seed][0], reverse=True)
    best, pairs = by_seed[ranked[0]]
    runner_up = by_seed[ranked[1]][0] if len(ranked) > 1 else 0.0
    convincing = (n >= MIN_ROWS and pairs >= MIN_ROWS - 1  # ties carry no evidence
                  and best >= MIN_SCORE and runner_up < MAX_RUNNER_UP)
    winner = next(export_id for export_id, seed in candidates if seed == ranked[0])
    return Identification(winner if convincing else None, best, n, scores)


def _row_texts(con, path: Path, fmt: str, scratch: Path):
    """Each data row's canonical text, in file order, as an Arrow array."""
    import pyarrow as pa

    if fmt == "xlsx":
        header, columns = _xlsx_columns(path)
        if not header:
            return pa.array([], pa.string())
        con.register("_file", pa.table({f"c{i}": pa.array(col, pa.string()) for i, col in enumerate(columns)}))
        names = [f"c{i}" for i in range(len(header))]
        source = "_file"
    else:
        if fmt == "csv":
            path = _readable_csv(path, scratch)
            source = (f"read_csv({quote_literal(str(path))}, header = true, all_varchar = true, "
                      "allow_quoted_nulls = false)")
        else:
            source = f"read_parquet({quote_literal(str(path))})"
        names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    if not names:
        return pa.array([], pa.string())
    texts = [_canonical(f"CAST({quote_ident(name)} AS VARCHAR)") for name in names]
    table = con.sql(f"SELECT concat_ws(chr(31), {', '.join(texts)}) AS t FROM {source}").to_arrow_table()
    return table.column(0).combine_chunks()


def _readable_csv(path: Path, scratch: Path) -> Path:
    """The CSV itself when DuckDB reads it as it is; otherwise a UTF-8 copy without a BOM. A copy is made
    for a file that is not UTF-8 (read as GB18030, what Excel on Chinese Windows saves a CSV in) and for a
    BOM before a quoted first field, which DuckDB 2.0's sniffer misreads (the whole header as one column)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            head = f.read(len(BOM) + 1)
            decoder.decode(head)
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        encoding = "gb18030"
    else:
        if head != BOM + b'"':
            return path
        encoding = "utf-8-sig"
    copy = scratch / "readable.csv"
    with open(path, encoding=encoding, newline="") as src, open(copy, "w", encoding="utf-8", newline="") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return copy


def _xlsx_columns(path: Path) -> tuple[list[str], list[list[str | None]]]:
    """The header of the first sheet and the rows of every visible sheet (each sheet's first row is its
    header), as text columns. Cells a program re-typed are turned back into DuckDB's text for them."""
    from openpyxl import load_workbook

    # Formulas as their text, not their cached value: a program that re-saved an escaped value such as
    # "=1+1" without the quote prefix made it a formula whose text is the original value.
    wb = load_workbook(path, read_only=True, data_only=False)
    try:
        header: list[str] | None = None
        columns: list[list[str | None]] = []
        for ws in wb.worksheets:
            if getattr(ws, "sheet_state", "visible") != "visible":
                continue
            first = True
            for row in ws.iter_rows(values_only=True):
                if first:
                    first = False
                    if header is None:
                        header = ["" if v is None else str(v) for v in row]
                        while header and header[-1] == "":
                            header.pop()
                        columns = [[] for _ in header]
                    continue
                if not any(v is not None and v != "" for v in row):
                    continue
                width = len(header)
                values = list(row[:width]) + [None] * (width - len(row))
                for col, value in zip(columns, values):
                    col.append(_as_text(value))
        return header or [], columns
    finally:
        wb.close()


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)
