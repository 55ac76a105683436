"""Connectors: bring one source (a file, a database query, a paged HTTP JSON API) into a DuckDB staging
table where every source column is VARCHAR, plus ``_row``, the record's number in the source.

What the load pipeline gets back is a :class:`Staged`: the table, its columns, how many records were
staged and how many could not be read as rows (with the first 1000 of them and why), a JSON-able
lineage record (never a password), and warnings a person should read.

Conventions shared by every connector
-------------------------------------
* Values are text exactly as the source holds them. Nothing is trimmed or re-typed: ID numbers keep
  leading zeros and a trailing X; empty values are NULL. Non-text source values are rendered the same
  way everywhere: integers without ".0"; floats by their shortest repr, in plain notation (an ID number
  Excel turned into 1.30682199001011E+17 becomes "130682199001011000", the digits Excel shows; the
  quality rules flag it); decimals keep their scale ("1.50"); dates ISO ("2024-03-01"), datetimes ISO
  with a space ("2024-03-01 08:30:00"); booleans "true"/"false"; nested JSON values compact JSON text;
  JSON numbers their source text. Parquet columns are cast by DuckDB (a DOUBLE prints as DuckDB prints it).
* ``_row`` is a number a person can find in the source: the physical line number where a CSV record
  starts (counting the header, blank lines and line breaks inside quoted values), the sheet row number
  in a workbook, the line number in JSONL, the element number (1-based) in a JSON array, the row number
  in a Parquet file, and the running row (item) number for a database query or an HTTP API.
* A staging table is built under a scratch name and renamed to ``table`` only when the whole source
  was read; on any failure the scratch table is dropped and an earlier ``table`` is left untouched.
* Source column names are kept. DuckDB names are case-insensitive, so two CSV/XLSX header names that
  differ only in letter case are duplicates (an error naming them); for JSON keys and query columns a
  later key colliding with an earlier one is renamed (``name_2``) with a warning (a query's duplicate
  column names are an error: they are fixed with AS). ``_row`` is reserved: a CSV/XLSX header of that
  name is an error, a JSON key or Parquet column of that name is renamed ``_row_source``.
* Damaged bytes are never silently changed or dropped: they are decoded as U+FFFD (which the pipeline
  quarantines as encoding damage) and a warning counts the damaged lines.

CSV: see :func:`stage_file`. DuckDB's strict parser reads the file (all VARCHAR); GBK/GB18030/UTF-16 are
first transcoded to a temporary UTF-8 file in streaming chunks; one vectorised pass over the bytes finds
where every record starts (so ``_row`` and the rejects carry physical line numbers), hashes the original
bytes and checks what DuckDB does not (records with trailing empty fields, mixed line ends).

XLSX: the sheet XML is streamed (openpyxl for the workbook, expat for the cells). The header is the first
non-empty row, after leading one-cell title rows; merged cells in the header extend it to the rows they
cover (a group title merged across columns takes the row below as its children). Column names: each
column's header texts top to bottom; a column under a merged group is named by its own (bottom) text when
every column of the group has a name unique in the sheet, else "group/child" for the whole group (e.g.
"联系人/姓名", "联系人/电话"). Fully empty rows are skipped; a value in a column with no header rejects its
row; cells merged down the data rows are filled down (with a warning).

JSON: a top-level array of objects, or an object holding exactly one non-empty list of objects (e.g.
{"code": 0, "data": [...]}); streamed. JSONL: one object per line. Columns are the union of the keys in
first-seen order; elements that are not objects are rejected; invalid JSON is an error naming its line
and column.
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

from django.utils.translation import gettext as _, ngettext

from shuzheng.core.crypto import sha256_file
from shuzheng.core.errors import FieldError, ValidationFailed
from shuzheng.core.sql import quote_ident as _q
from shuzheng.core.sql import quote_literal as _lit

__all__ = ["SourceError", "Staged", "stage_file", "stage_database", "stage_http", "mask_url", "redact_url"]

MAX_REJECTS = 1000
RAW_LIMIT = 500
BATCH_ROWS = 50_000
CSV_CHUNK = 16 << 20          # bytes read (and transcoded) at a time
SAMPLE_BYTES = 1 << 20        # what encoding, delimiter and header detection look at
# CSV data (UTF-8 bytes) up to this size is read by DuckDB into Arrow and written to the table in one
# pass (about twice as fast); larger files go through an order-preserving CREATE TABLE AS, whose memory
# DuckDB manages, and get ``_row`` by an UPDATE.
CSV_ARROW_MAX_BYTES = 1 << 30
RESERVED = "_row"
# Seconds spent in each phase of the last CSV load (for bench/ scripts; not part of the interface).
LAST_TIMINGS: dict[str, float] = {}


# ----------------------------------------------------------------------------------------- results

class SourceError(ValidationFailed):
    """A source that cannot be staged. ``field`` is one of file, encoding, sheet, url, query, source."""

    def __init__(self, field_name: str, message: str):
        super().__init__(str(message), [FieldError(field_name, str(message))])
        self.field = field_name

    def __reduce__(self):
        return (SourceError, (self.field, self.detail))


@dataclass
class Staged:
    relation: str
    columns: list[str]
    rows: int
    rejected: int
    rejects: list[dict]
    lineage: dict
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- shared helpers

def _relation_sql(table: str) -> tuple[str, str, str]:
    """(qualified sql of `table`, sql prefix for a sibling scratch table, bare name)."""
    if not table or not isinstance(table, str):
        raise ValueError("table must be a non-empty name")
    parts = table.split(".", 1)
    if len(parts) == 2 and parts[0] and parts[1]:
        return _q(parts[0]) + "." + _q(parts[1]), _q(parts[0]) + ".", parts[1]
    return _q(table), "", table


class _Scratch:
    """A scratch table that becomes `table` on success and disappears on failure."""

    def __init__(self, con, table: str):
        self.con = con
        self.table = table
        self.target_sql, prefix, self.bare = _relation_sql(table)
        self.name = f"_staging_{uuid.uuid4().hex[:12]}"
        self.sql = prefix + _q(self.name)

    def drop(self) -> None:
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {self.sql}")
        except Exception:  # noqa: BLE001 - best effort cleanup after another error
            pass

    def publish(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {self.target_sql}")
        self.con.execute(f"ALTER TABLE {self.sql} RENAME TO {_q(self.bare)}")


def _float_str(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    if "e" in text or "E" in text:
        dec = Decimal(text)
        if -30 <= dec.adjusted() <= 30:
            text = format(dec, "f")
    if text.endswith(".0"):
        text = text[:-2]
    if text == "-0":
        text = "0"
    return text


def _decimal_str(value: Decimal) -> str:
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if -30 <= value.adjusted() <= 30:
        return format(value, "f")
    return str(value)


def _datetime_str(value: _dt.datetime) -> str:
    return value.isoformat(sep=" ")


def to_text(value: Any) -> str | None:
    """A source value as the text staged for it (see the module docstring)."""
    if value is None:
        return None
    cls = value.__class__
    if cls is str:
        return value
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return _float_str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float_str(float(value))
    if isinstance(value, Decimal):
        return _decimal_str(value)
    if isinstance(value, _dt.datetime):
        return _datetime_str(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=to_text)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_text(value.item())
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def _truncate(text: str, limit: int = RAW_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit]


def _col_letter(index: int) -> str:
    """1 -> A, 27 -> AA."""
    out = ""
    while index > 0:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


class _Names:
    """Unique (case-insensitive) column names. `strict` sources raise on duplicates; the others rename."""

    def __init__(self):
        self.names: list[str] = []
        self.folded: set[str] = set()
        self.renamed: list[str] = []

    def add(self, name: str) -> str:
        wanted = name
        if name.casefold() == RESERVED:
            name = RESERVED + "_source"
        base, n = name, 1
        while name.casefold() in self.folded:
            n += 1
            name = f"{base}_{n}"
        if name != wanted:
            self.renamed.append(f"{wanted} → {name}")
        self.names.append(name)
        self.folded.add(name.casefold())
        return name

    def warning(self) -> list[str]:
        if not self.renamed:
            return []
        return [_("Columns renamed so that every name is distinct: %(list)s.") % {"list": "; ".join(self.renamed)}]


def _check_header(names: list[str], what: Callable[[int], str]) -> None:
    """Raise SourceError('file') for an empty or duplicate header name. `what(i)` names position i."""
    for i, name in enumerate(names):
        if not name:
            raise SourceError("file", _("The header has no name for %(column)s; every column needs a name.")
                              % {"column": what(i)})
    seen: dict[str, int] = {}
    dups: list[str] = []
    for i, name in enumerate(names):
        key = name.casefold()
        if key in seen:
            dups.append(_("“%(name)s” (%(first)s and %(second)s)")
                        % {"name": name, "first": what(seen[key]), "second": what(i)})
        else:
            seen[key] = i
    if dups:
        raise SourceError("file", _("The header repeats column names: %(list)s. Column names must be distinct "
                                    "(letter case is ignored).") % {"list": "; ".join(dups)})
    for i, name in enumerate(names):
        if name.casefold() == RESERVED:
            raise SourceError("file", _("%(column)s is named “_row”, a name reserved for the source row number; "
                                        "rename the column.") % {"column": what(i)})


class _Sink:
    """Collects rows of text values and appends them to a DuckDB table through Arrow record batches.

    With fixed `columns`, rows are lists in column order. Without, rows are dicts and the columns are the
    union of their keys in first-seen order (new columns are added to the table as they appear)."""

    def __init__(self, con, scratch: _Scratch, columns: list[str] | None = None, batch_rows: int | None = None):
        self.con = con
        self.scratch = scratch
        self.batch_rows = max(1, batch_rows or BATCH_ROWS)
        self.names = _Names()
        self.key_to_index: dict[str, int] = {}
        self.columns: list[str] = []
        self.data: list[list] = []
        self.rownos: list[int] = []
        self.created_columns = 0
        self.created = False
        self.reorder = False
        self.rows = 0
        for name in columns or []:
            self._new_column(name)

    def _new_column(self, key: str) -> int:
        idx = len(self.columns)
        self.columns.append(self.names.add(key))
        self.key_to_index[key] = idx
        self.data.append([None] * len(self.rownos))
        return idx

    def add(self, rowno: int, values: list) -> None:
        for col, value in zip(self.data, values):
            col.append(value)
        self.rownos.append(rowno)
        if len(self.rownos) >= self.batch_rows:
            self.flush()

    def add_columns(self, rowno: int, columns: list[list]) -> None:
        """A batch given column-wise (all lists of the same length) with consecutive row numbers from rowno."""
        n = len(columns[0]) if columns else 0
        for col, values in zip(self.data, columns):
            col.extend(values)
        self.rownos.extend(range(rowno, rowno + n))
        if len(self.rownos) >= self.batch_rows:
            self.flush()

    def add_dict(self, rowno: int, record: dict) -> None:
        n = len(self.rownos)
        for key, value in record.items():
            idx = self.key_to_index.get(key)
            if idx is None:
                idx = self._new_column(key)
            self.data[idx].append(value)
        for col in self.data:
            if len(col) == n:
                col.append(None)
        self.rownos.append(rowno)
        if len(self.rownos) >= self.batch_rows:
            self.flush()

    def _create(self) -> None:
        cols = ", ".join(f"{_q(c)} VARCHAR" for c in self.columns)
        cols = (cols + ", " if cols else "") + f"{_q(RESERVED)} BIGINT"
        self.con.execute(f"CREATE TABLE {self.scratch.sql} ({cols})")
        self.created = True
        self.created_columns = len(self.columns)

    def flush(self) -> None:
        import pyarrow as pa

        if not self.created:
            self._create()
        for name in self.columns[self.created_columns:]:
            self.con.execute(f"ALTER TABLE {self.scratch.sql} ADD COLUMN {_q(name)} VARCHAR")
            self.reorder = True
        self.created_columns = len(self.columns)
        if not self.rownos:
            return
        arrays = [pa.array(col, type=pa.string()) for col in self.data]
        arrays.append(pa.array(self.rownos, type=pa.int64()))
        batch = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
        view = f"_stg_batch_{uuid.uuid4().hex[:10]}"
        self.con.register(view, batch)
        try:
            target = ", ".join(_q(c) for c in [*self.columns, RESERVED])
            self.con.execute(f"INSERT INTO {self.scratch.sql} ({target}) SELECT * FROM {_q(view)}")
        finally:
            self.con.unregister(view)
        self.rows += len(self.rownos)
        self.data = [[] for _c in self.columns]
        self.rownos = []

    def finish(self) -> list[str]:
        self.flush()
        if self.reorder:
            cols = ", ".join(_q(c) for c in [*self.columns, RESERVED])
            self.con.execute(f"CREATE OR REPLACE TABLE {self.scratch.sql} AS SELECT {cols} FROM {self.scratch.sql}")
        return self.names.warning()


class _Rejects:
    """The count of rejected records and the first MAX_REJECTS of them by row. Each source of rejects adds
    its own in row order and at most MAX_REJECTS of them with details (`more` counts the rest), so the
    merged, sorted list holds the overall first ones."""

    def __init__(self):
        self.count = 0
        self._items: list[dict] = []

    def add(self, row: int, reason: str, raw: str) -> None:
        self.count += 1
        if len(self._items) < 4 * MAX_REJECTS:
            self._items.append({"row": int(row), "reason": str(reason), "raw": _truncate(raw)})

    def more(self, n: int) -> None:
        self.count += int(n)

    @property
    def items(self) -> list[dict]:
        self._items.sort(key=lambda r: r["row"])
        del self._items[MAX_REJECTS:]
        return self._items


class _InsertionOrder:
    """Make sure DuckDB keeps file order for the duration (the caller's setting is restored)."""

    def __init__(self, con):
        self.con = con
        self.old = None

    def __enter__(self):
        try:
            value = self.con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
        except Exception:  # noqa: BLE001
            value = True
        if str(value).lower() not in ("true", "1"):
            self.old = value
            self.con.execute("SET preserve_insertion_order = true")
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            self.con.execute("SET preserve_insertion_order = false")


# ======================================================================================== files

_SUFFIX_FORMAT = {
    ".csv": "csv", ".txt": "csv", ".tsv": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
FORMATS = ("csv", "xlsx", "json", "jsonl", "parquet")


def _sniff_format(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    text = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    stripped = text.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        first, _sep, rest = stripped.partition(b"\n")
        try:
            json.loads(first.decode("utf-8", "replace"))
        except ValueError:
            return "json"
        return "jsonl" if rest.strip().startswith(b"{") or not rest.strip() else "json"
    return "csv"


def stage_file(con, path, *, table: str = "staged", format: str | None = None, encoding: str | None = None,
               sheet: str | None = None, header_rows: int | None = None, original_name: str | None = None,
               max_field_bytes: int = 1_000_000, delimiter: str | None = None) -> Staged:
    """Stage a CSV, XLSX, JSON, JSONL or Parquet file.

    `format`: None picks it by the suffix of `original_name` (or `path`), else by the content (an XLSX or
    Parquet file misnamed .csv is read as what it is, with a warning). `encoding` (CSV only): None
    detects it - a BOM; else UTF-8 when the first MiB is UTF-8 (a few bad sequences among many good
    ones count as damaged UTF-8); else GB18030, the superset of GBK - or declare "utf-8", "gbk",
    "gb18030" (a declaration the content plainly contradicts is an error). `delimiter` (CSV only): None
    sniffs comma (the default), tab, semicolon or "|". `sheet` (XLSX): a sheet name, default the first
    sheet. `header_rows` (XLSX): how many rows the header has, counted from the first non-empty row;
    None detects it from merged cells. `max_field_bytes` (CSV): a record with a longer value is rejected.

    CSV specifics: records are split exactly as DuckDB's strict parser splits them; a record whose field
    count differs from the header's is rejected with its line and "N fields, expected M" (DuckDB would
    silently drop trailing empty fields: those records are rejected too); records whose fields are all
    empty are skipped like blank lines; values are never trimmed; an empty field is NULL."""
    path = os.fspath(path)
    name = original_name or os.path.basename(path)
    if not os.path.isfile(path):
        raise SourceError("file", _("The file %(name)s does not exist.") % {"name": name})
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    warnings: list[str] = []
    suffix = os.path.splitext(name)[1].lower() or os.path.splitext(path)[1].lower()
    if format is not None:
        fmt = format.lower().strip()
        if fmt not in FORMATS:
            raise SourceError("file", _("Unknown format “%(format)s”; use one of %(list)s.")
                              % {"format": format, "list": ", ".join(FORMATS)})
    elif suffix == ".xls":
        raise SourceError("file", _("%(name)s is an old Excel 97-2003 workbook (.xls); save it as .xlsx and "
                                    "upload it again.") % {"name": name})
    else:
        fmt = _SUFFIX_FORMAT.get(suffix) or _sniff_format(head)
        sniffed = _sniff_format(head) if head else fmt
        if fmt in ("csv", "json", "jsonl") and sniffed in ("xlsx", "parquet"):
            warnings.append(_("%(name)s is named like a %(named)s file but is a %(actual)s file; it was read as "
                              "%(actual)s.") % {"name": name, "named": fmt.upper(), "actual": sniffed.upper()})
            fmt = sniffed
    if fmt == "xls" or (fmt == "xlsx" and head.startswith(b"\xd0\xcf\x11\xe0")):
        raise SourceError("file", _("%(name)s is an old Excel 97-2003 workbook (.xls); save it as .xlsx and "
                                    "upload it again.") % {"name": name})
    if encoding is not None and fmt != "csv":
        encoding = None  # only CSV is ever in a legacy encoding; JSON is UTF-8 by definition
    if fmt == "csv":
        if delimiter is None and suffix == ".tsv":
            delimiter = "\t"
        staged = _stage_csv(con, path, table, name=name, encoding=encoding, delimiter=delimiter,
                            max_field_bytes=max_field_bytes)
    elif fmt == "xlsx":
        staged = _stage_xlsx(con, path, table, name=name, sheet=sheet, header_rows=header_rows)
    elif fmt == "json":
        staged = _stage_json(con, path, table, name=name, lines=False)
    elif fmt == "jsonl":
        staged = _stage_json(con, path, table, name=name, lines=True)
    else:
        staged = _stage_parquet(con, path, table, name=name)
    staged.warnings[:0] = warnings
    return staged


# ------------------------------------------------------------------------------------------ CSV

_ENCODING_ALIASES = {
    "utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "utf_8": "utf-8",
    "gbk": "gbk", "cp936": "gbk", "gb2312": "gbk", "936": "gbk", "euc-cn": "gbk",
    "gb18030": "gb18030", "gb-18030": "gb18030",
    "utf-16": "utf-16", "utf16": "utf-16",
}
_CODEC = {"utf-8": "utf-8", "gbk": "gb18030", "gb18030": "gb18030"}  # GBK is read with its superset


def _valid_utf8_prefix(data: bytes, complete: bool) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
        return True
    except UnicodeDecodeError:
        return False


def _clean_gb18030(data: bytes, complete: bool) -> bool:
    try:
        codecs.getincrementaldecoder("gb18030")().decode(data, final=complete)
        return True
    except UnicodeDecodeError:
        return False


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _utf8_stats(data: bytes, complete: bool) -> tuple[int, int]:
    """(valid multibyte UTF-8 sequences, undecodable spots) in a sample. GBK text hardly ever forms valid
    multibyte UTF-8, so a sample with many valid sequences and a few bad ones is damaged UTF-8."""
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=complete)
    return len(_UTF8_MULTIBYTE.findall(data)), text.count("\ufffd") - data.count("\ufffd".encode())


@dataclass
class _CsvPlan:
    encoding: str          # what lineage reports
    codec: str             # python codec used to read it
    bom: bytes
    transcode: bool
    delimiter: str
    names: list[str]
    ascii_head: bool = False


def _csv_plan(path: str, head: bytes, size: int, declared: str | None, delimiter: str | None, name: str) -> _CsvPlan:
    complete = size <= len(head)
    if size == 0 or (complete and not head.strip()):
        raise SourceError("file", _("The file %(name)s is empty.") % {"name": name})
    bom = b""
    detected = None
    if head.startswith(codecs.BOM_UTF8):
        bom, detected = codecs.BOM_UTF8, "utf-8"
    elif head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        bom, detected = head[:2], "utf-16"
    if declared is not None:
        enc = _ENCODING_ALIASES.get(declared.strip().lower().replace("_", "-"))
        if enc is None:
            raise SourceError("encoding", _("The encoding “%(encoding)s” is not supported; declare utf-8, gbk or "
                                            "gb18030, or leave it empty to detect it.") % {"encoding": declared})
        if detected and detected != enc:
            raise SourceError("encoding", _("The file was declared %(declared)s but starts with a %(bom)s byte-order "
                                            "mark.") % {"declared": declared, "bom": detected.upper()})
        body = head[len(bom):]
        valid_mb, bad = _utf8_stats(body, complete) if enc != "utf-16" else (0, 0)
        if enc == "utf-8" and bad and valid_mb < 10 * bad and (bad >= 10 or _clean_gb18030(body, complete)):
            raise SourceError("encoding", _("The file was declared UTF-8 but is not UTF-8: it reads as GBK/GB18030. "
                                            "Declare gbk or gb18030, or leave the encoding empty to detect it."))
        if enc in ("gbk", "gb18030") and valid_mb and not bad:
            raise SourceError("encoding", _("The file was declared %(declared)s but is UTF-8. Declare utf-8, or leave "
                                            "the encoding empty to detect it.") % {"declared": declared.upper()})
    else:
        enc = detected
        if enc is None:
            if b"\x00" in head:
                raise SourceError("file", _("%(name)s contains NUL bytes: it is not a CSV text file.") % {"name": name})
            valid_mb, bad = _utf8_stats(head, complete)
            enc = "utf-8" if not bad or valid_mb >= 10 * bad else "gb18030"
    if enc == "utf-16":
        codec = "utf-16"
        transcode = True
        text = head.decode("utf-16", "replace")
    else:
        codec = _CODEC[enc]
        body = head[len(bom):]
        # UTF-8 goes to DuckDB as it is unless the sample already shows damage.
        transcode = codec != "utf-8" or not _valid_utf8_prefix(body, complete)
        text = codecs.getincrementaldecoder(codec)("replace").decode(body, final=complete)
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise SourceError("file", _("The file %(name)s is empty.") % {"name": name})
    if not complete:  # drop the partial last line of the sample
        cut = text.rfind("\n")
        if cut > 0:
            text = text[: cut + 1]
    if "\r" in text and "\n" not in text:
        raise SourceError("file", _("The lines of %(name)s end with a bare carriage return (CR, old Mac style); "
                                    "save it with LF or CRLF line ends.") % {"name": name})
    delim = delimiter if delimiter else _sniff_delimiter(text)
    if len(delim) != 1 or delim in "\r\n\"":
        raise SourceError("file", _("The delimiter must be one character other than a quote or a line break."))
    try:
        names = _csv_header(text, delim)
    except csv.Error as exc:
        raise SourceError("file", _("The header line of %(name)s cannot be read: %(error)s")
                          % {"name": name, "error": exc}) from None
    if names is None:
        raise SourceError("file", _("The file %(name)s is empty.") % {"name": name})
    names = [n.strip() for n in names]
    _check_header(names, lambda i: _("column %(n)s") % {"n": i + 1})
    return _CsvPlan(encoding=enc, codec=codec, bom=bom, transcode=transcode, delimiter=delim, names=names,
                    ascii_head=not re.search(rb"[\x80-\xff]", head))


def _records(text: str, delim: str, limit: int) -> list[list[str]]:
    out = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delim, quotechar='"', doublequote=True, strict=False):
            if len(row) > 1 or (row and row[0].strip()):  # blank lines are not records
                out.append(row)
            if len(out) >= limit:
                break
    except csv.Error:
        pass
    return out


def _sniff_delimiter(text: str) -> str:
    """Comma unless another candidate clearly fits better: it splits the header into more fields than the
    comma does and at least 90% of the sampled records have that many fields."""
    best, best_fields = ",", 0
    scores = {}
    for cand in (",", "\t", ";", "|"):
        recs = _records(text, cand, 51)
        if not recs:
            continue
        width = len(recs[0])
        data = recs[1:]
        consistent = not data or sum(len(r) == width for r in data) >= 0.9 * len(data)
        scores[cand] = (width, consistent)
    comma = scores.get(",")
    if comma and comma[0] >= 2 and comma[1]:
        return ","
    for cand, (width, consistent) in scores.items():
        if consistent and width >= 2 and width > best_fields and width > (comma[0] if comma else 1):
            best, best_fields = cand, width
    return best


def _csv_header(text: str, delim: str) -> list[str] | None:
    for row in csv.reader(io.StringIO(text), delimiter=delim, quotechar='"', doublequote=True, strict=False):
        if row and (len(row) > 1 or row[0].strip()):
            return row
        if row and not row[0].strip() and row[0]:
            return None  # whitespace only before any header
    return None


# --- transcoding ---------------------------------------------------------------------------------

def _transcode_chunk(raw: bytes, codec: str) -> tuple[bytes, bool]:
    """Decode one chunk of whole lines and encode it as UTF-8. Returns (utf8, damaged)."""
    try:
        return raw.decode(codec).encode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode(codec, "replace").encode("utf-8"), True


def _raw_chunks(f, first: bytes, chunk: int) -> Iterator[bytes]:
    """Chunks of whole lines (cut after b"\\n"; 0x0A never occurs inside a GBK, GB18030 or UTF-8
    multibyte sequence), the last one possibly without a final line break."""
    carry = first
    while True:
        data = f.read(chunk)
        if not data:
            if carry:
                yield carry
            return
        data = carry + data if carry else data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1:]
        yield data[: cut + 1]


# --- record scanner ------------------------------------------------------------------------------

class _RecordScanner:
    """Finds where each CSV record starts, by physical line, the way DuckDB's strict parser splits them.

    A "unit" is what DuckDB counts in its reject line numbers: a record (which may span lines when a
    quoted field holds line breaks) or a blank line. For each unit we keep its byte offset in the UTF-8
    data, its physical line number, whether it is blank, and whether it has more fields than the header
    (`ncols`) - needed because DuckDB silently drops trailing empty fields ("1,2,3,," is read as three
    fields), so only records ending in a delimiter or a quote are checked. Lines without quotes and
    lines whose quotes are well formed are handled with vectorised code (numpy, and RE2 through Arrow);
    only lines that open a multi-line value or are malformed are walked in Python."""

    MAX_PENDING = 256 << 20

    def __init__(self, delimiter: str, ncols: int):
        import numpy as np

        self.np = np
        self.ncols = ncols
        self.d = delimiter.encode()
        d = re.escape(delimiter)
        quoted = r'"(?:[^"\n]|"")*"'
        unquoted = rf'(?:[^{d}"\r\n][^{d}\r\n]*)?'
        fld = f"(?:{quoted}|{unquoted})"
        self.simple = rf"^{fld}(?:{d}{fld})*\r?\n?$"
        self.quoted_fields = rf'(^|{d})"(?:[^"\n]|"")*"'
        self.base = 0
        self.line = 1
        self.pending = b""
        self.starts: list = []
        self.lines: list = []
        self.blank: list = []
        self.wide: list = []
        self.exact = True

    def _record_end(self, b: bytes, pos: int, limit: int, final: bool) -> tuple[int, int]:
        """(end offset after the terminating newline, number of fields) of the record starting at pos;
        end is -1 when the record does not end before `limit` and more data may follow, fields is -1 for
        a malformed record."""
        d = self.d[0]
        i = pos
        fields = 1
        while True:
            if i < limit and b[i] == 34:  # quoted field
                j = i + 1
                while True:
                    k = b.find(b'"', j, limit)
                    if k < 0:
                        return (limit, -1) if final else (-1, -1)
                    if k + 1 < limit and b[k + 1] == 34:
                        j = k + 2
                        continue
                    break
                k += 1
                if k >= limit:
                    return (limit, fields) if final else (-1, -1)
                c = b[k]
                if c == d:
                    i = k + 1
                    fields += 1
                    continue
                if c == 10:
                    return k + 1, fields
                if c == 13 and k + 1 < limit and b[k + 1] == 10:
                    return k + 2, fields
                e = b.find(b"\n", k, limit)  # malformed: DuckDB rejects it and resumes at the next line
                return (e + 1 if e >= 0 else (limit if final else -1)), -1
            e_nl = b.find(b"\n", i, limit)
            e_d = b.find(self.d, i, e_nl if e_nl >= 0 else limit)
            if e_d >= 0:
                i = e_d + 1
                fields += 1
                continue
            if e_nl >= 0:
                return e_nl + 1, fields
            return (limit, fields) if final else (-1, -1)

    def feed(self, data: bytes, final: bool = False) -> None:
        np = self.np
        buf = self.pending + data if self.pending else data
        virtual = 0
        if final and buf and not buf.endswith(b"\n"):
            buf, virtual = buf + b"\n", 1
        if not buf:
            self.pending = b""
            return
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        if len(nl) == 0:
            self.pending = buf
            self._check_pending()
            return
        end = int(nl[-1]) + 1
        n_lines = len(nl)
        starts = np.empty(n_lines, dtype=np.int64)
        starts[0] = 0
        starts[1:] = nl[:-1] + 1
        is_unit = np.ones(n_lines, dtype=bool)
        wide = np.zeros(n_lines, dtype=bool)
        walked = np.zeros(n_lines, dtype=bool)
        n_emit = n_lines
        lines_arr = None
        has_quote = None
        if buf.find(b'"', 0, end) >= 0:
            import pyarrow as pa
            import pyarrow.compute as pc

            has_quote = np.logical_or.reduceat(arr[:end] == 34, starts)
            qlines = np.flatnonzero(has_quote)
            lines_arr = self._lines(buf, starts, end)
            ok = pc.match_substring_regex(lines_arr.take(pa.array(qlines)), self.simple).to_numpy(zero_copy_only=False)
            for li in qlines[~ok]:
                li = int(li)
                if li >= n_emit or not is_unit[li]:
                    continue
                rec_end, nfields = self._record_end(buf, int(starts[li]), end, final)
                if rec_end < 0:
                    n_emit = li
                    break
                j = int(np.searchsorted(starts, rec_end))
                is_unit[li + 1: j] = False
                walked[li] = True
                wide[li] = nfields > self.ncols
        # Too many fields, where DuckDB would not notice: lines ending in a delimiter or a quote.
        last = nl - 1
        last = np.where((last > starts) & (arr[np.maximum(last, 0)] == 13), last - 1, last)
        tail = arr[np.maximum(last, 0)]
        cand = np.flatnonzero(((tail == self.d[0]) | (tail == 34)) & is_unit & ~walked & (last >= starts))
        cand = cand[cand < n_emit]
        if len(cand):
            quoted = cand[has_quote[cand]] if has_quote is not None else cand[:0]
            plain = cand[~has_quote[cand]] if has_quote is not None else cand
            if len(plain):
                # the ncols-th delimiter after the line start lies before its end: ncols + 1 fields or more
                dpos = np.flatnonzero(arr[:end] == self.d[0])
                k = np.searchsorted(dpos, starts[plain]) + self.ncols - 1
                inside = k < len(dpos)
                wide[plain[inside]] = dpos[k[inside]] < nl[plain[inside]]
            if len(quoted):
                import pyarrow as pa
                import pyarrow.compute as pc

                if lines_arr is None:
                    lines_arr = self._lines(buf, starts, end)
                sub = pc.replace_substring_regex(lines_arr.take(pa.array(quoted)), self.quoted_fields, r"\1")
                counts = pc.count_substring(sub, self.d.decode()).to_numpy(zero_copy_only=False)
                wide[quoted] = counts + 1 > self.ncols
        if n_emit == 0:
            self.pending = buf[: len(buf) - virtual]
            self._check_pending()
            return
        unit_idx = np.flatnonzero(is_unit[:n_emit])
        u_starts = starts[unit_idx]
        line_len = nl[unit_idx] - u_starts
        first = arr[np.minimum(u_starts, len(arr) - 1)]
        blank = (line_len == 0) | ((line_len == 1) & (first == 13))
        self.starts.append(u_starts + self.base)
        self.lines.append(unit_idx.astype(np.int64) + self.line)
        self.blank.append(blank)
        self.wide.append(wide[unit_idx])
        consumed = int(starts[n_emit]) if n_emit < n_lines else end
        self.line += n_emit
        self.base += consumed
        self.pending = buf[consumed: len(buf) - virtual]
        if not final:
            self._check_pending()

    @staticmethod
    def _lines(buf: bytes, starts, end: int):
        import numpy as np
        import pyarrow as pa

        offsets = np.empty(len(starts) + 1, dtype=np.int64)
        offsets[:-1] = starts
        offsets[-1] = end
        return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts),
                                                [None, pa.py_buffer(offsets), pa.py_buffer(buf)])

    def _check_pending(self) -> None:
        if len(self.pending) > self.MAX_PENDING:
            # A quoted value that never closes: count lines one by one from here (approximate).
            self.exact = False
            keep, self.pending = self.pending, b""
            self._emit_plain_lines(keep)

    def _emit_plain_lines(self, buf: bytes) -> None:
        np = self.np
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        if len(nl) == 0:
            self.pending = buf
            return
        starts = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64)
        self.starts.append(starts + self.base)
        self.lines.append(np.arange(len(nl), dtype=np.int64) + self.line)
        self.blank.append(nl - starts == 0)
        self.wide.append(np.zeros(len(nl), dtype=bool))
        end = int(nl[-1]) + 1
        self.line += len(nl)
        self.base += end
        self.pending = buf[end:]

    def finish(self):
        np = self.np
        self.feed(b"", final=True)
        if self.pending:  # cannot happen after final, but keep the invariant
            self._emit_plain_lines(self.pending + b"\n")

        def cat(parts, dtype):
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        out = (cat(self.starts, np.int64), cat(self.lines, np.int64), cat(self.blank, bool), cat(self.wide, bool))
        self.starts, self.lines, self.blank, self.wide = [], [], [], []
        return out


# --- CSV staging ---------------------------------------------------------------------------------

def _stage_csv(con, path: str, table: str, *, name: str, encoding: str | None, delimiter: str | None,
               max_field_bytes: int) -> Staged:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    plan = _csv_plan(path, head, size, encoding, delimiter, name)
    result = _csv_load(con, path, table, plan, name=name, size=size, max_field_bytes=max_field_bytes)
    if isinstance(result, _Reencode):
        # DuckDB found bytes that are not UTF-8 beyond the sample. A detected "UTF-8" whose sample was plain
        # ASCII may well be GBK further down: if the bad lines read as GB18030, read the file as GB18030;
        # otherwise it is damaged UTF-8: read it again decoding with U+FFFD.
        note = None
        valid_mb, bad = _utf8_stats(result.sample, True)
        if (encoding is None and plan.ascii_head and bad and valid_mb < 10 * bad
                and _clean_gb18030(result.sample, True)):
            plan.encoding = plan.codec = "gb18030"
            note = _("The first MiB of the file is plain ASCII and line %(line)s is not UTF-8 but GBK/GB18030; "
                     "the file was read as GB18030.") % {"line": result.line}
        plan.transcode = True
        result = _csv_load(con, path, table, plan, name=name, size=size, max_field_bytes=max_field_bytes)
        if note:
            result.warnings.insert(0, note)
    return result


@dataclass
class _Reencode:
    sample: bytes
    line: int


def _bare_cr_line(data_path: str, data_bytes: int) -> str:
    import numpy as np

    mm = np.memmap(data_path, mode="r", dtype=np.uint8, shape=(data_bytes,))
    cr = np.flatnonzero(mm == 13)
    bare = cr[(cr + 1 >= data_bytes) | (mm[np.minimum(cr + 1, data_bytes - 1)] != 10)]
    if not len(bare):
        return "?"
    return str(int(np.count_nonzero(mm[: int(bare[0])] == 10)) + 1)


def _mixed_newlines(data_path: str, starts, data_bytes: int):
    """Positions of the CR of CRLF record ends when the file also has LF record ends; else None."""
    import numpy as np

    mm = np.memmap(data_path, mode="r", dtype=np.uint8, shape=(data_bytes,))
    ends = starts[1:] - 1
    if data_bytes and mm[data_bytes - 1] == 10:
        ends = np.append(ends, data_bytes - 1)
    ends = ends[ends >= 1]
    if len(ends) == 0:
        return None
    crlf = mm[ends - 1] == 13
    if crlf.all() or not crlf.any():
        return None
    out = ends[crlf] - 1
    del mm
    return out


def _drop_bytes(src: str, size: int, drop, starts, dst: str):
    """Copy src to dst without the bytes at the sorted positions `drop`; returns the shifted unit starts
    and the new size."""
    import numpy as np

    mm = np.memmap(src, mode="r", dtype=np.uint8, shape=(size,))
    with open(dst, "wb") as out:
        for a in range(0, size, CSV_CHUNK):
            b = min(size, a + CSV_CHUNK)
            lo, hi = np.searchsorted(drop, [a, b])
            seg = np.asarray(mm[a:b])
            if hi > lo:
                keep = np.ones(b - a, dtype=bool)
                keep[drop[lo:hi] - a] = False
                seg = seg[keep]
            out.write(seg.tobytes())
    del mm
    return starts - np.searchsorted(drop, starts), size - len(drop)


def _temp_dir_near(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        return tempfile.mkdtemp(prefix=".shuzheng-csv-", dir=parent)
    except OSError:
        return tempfile.mkdtemp(prefix="shuzheng-csv-")


def _csv_load(con, path: str, table: str, plan: _CsvPlan, *, name: str, size: int,
              max_field_bytes: int) -> Staged | _Reencode:
    import numpy as np

    warnings: list[str] = []
    tmpdir = None
    scratch = _Scratch(con, table)
    rejects_table = f"_rejects_{uuid.uuid4().hex[:10]}"
    rejects_scan = f"_rscan_{uuid.uuid4().hex[:10]}"
    LAST_TIMINGS.clear()
    clock = [time.perf_counter(), time.process_time()]

    def phase(label: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        LAST_TIMINGS[label] = LAST_TIMINGS.get(label, 0.0) + now - clock[0]
        LAST_TIMINGS[label + "_cpu"] = LAST_TIMINGS.get(label + "_cpu", 0.0) + cpu - clock[1]
        clock[0], clock[1] = now, cpu

    try:
        sha = hashlib.sha256()
        scanner = _RecordScanner(plan.delimiter, len(plan.names))
        damage = _Damage()
        data_path = path
        data_bytes = size
        with open(path, "rb") as f:
            if not plan.transcode:
                while chunk := f.read(CSV_CHUNK):
                    sha.update(chunk)
                    scanner.feed(chunk)
            else:
                tmpdir = _temp_dir_near(path)
                data_path = os.path.join(tmpdir, "data.csv")
                data_bytes = 0
                with open(data_path, "wb") as out:
                    for utf8, damaged in _transcoded(f, plan, sha, size):
                        if damaged:
                            damage.add(scanner.line + scanner.pending.count(b"\n"), utf8)
                        out.write(utf8)
                        data_bytes += len(utf8)
                        scanner.feed(utf8)
        starts, lines, blank, wide = scanner.finish()
        last_line = scanner.line - 1
        mixed = _mixed_newlines(data_path, starts, data_bytes) if data_bytes else None
        if mixed is not None:
            # Some records end in CRLF and others in LF: DuckDB's strict parser needs one style, so the
            # record ends (never a line break inside a quoted value) are rewritten as LF.
            tmpdir = tmpdir or _temp_dir_near(path)
            fixed = os.path.join(tmpdir, "lf.csv")
            starts, data_bytes = _drop_bytes(data_path, data_bytes, mixed, starts, fixed)
            if data_path != path:
                os.unlink(data_path)
            data_path = fixed
        phase("read_transcode_scan")
        if not scanner.exact:
            warnings.append(_("A quoted value is never closed; line numbers after it are approximate."))
        if damage.total:
            warnings.append(damage.warning(plan.encoding))

        nonblank = np.flatnonzero(~blank)
        if len(nonblank) == 0:
            raise SourceError("file", _("The file %(name)s is empty.") % {"name": name})
        header_unit = int(nonblank[0])
        header_line = int(lines[header_unit])
        max_unit = int(np.diff(np.append(starts, data_bytes)).max()) if len(starts) else 0
        # DuckDB's limit on a whole record: room for two fields at the limit (records with several fields
        # near the limit are rejected as too long), capped so DuckDB's buffers stay reasonable.
        max_line = min(max(2 << 20, 2 * max_field_bytes + 65536), 64 << 20)
        columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in plan.names) + "}"
        source = (f"read_csv({_lit(data_path)}, header = true, skip = {header_unit}, columns = {columns}, "
                  f"delim = {_lit(plan.delimiter)}, quote = '\"', escape = '\"', auto_detect = false, "
                  f"strict_mode = true, null_padding = false, store_rejects = true, "
                  f"rejects_table = {_lit(rejects_table)}, rejects_scan = {_lit(rejects_scan)}, "
                  f"max_line_size = {max_line}, encoding = 'utf-8')")
        use_arrow = data_bytes <= CSV_ARROW_MAX_BYTES
        with _InsertionOrder(con):
            try:
                if use_arrow:
                    arrow = con.sql(f"SELECT * FROM {source}").to_arrow_table()
                    staged_rows = arrow.num_rows
                else:
                    con.execute(f"CREATE TABLE {scratch.sql} AS SELECT * FROM {source}")
                    staged_rows = con.execute(f"SELECT count(*) FROM {scratch.sql}").fetchall()[0][0]
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - DuckDB gives up on the whole file
                if "invalid state" in str(exc):
                    raise SourceError("file", _("The CSV file could not be read: line %(line)s holds a bare "
                                                "carriage return (CR) outside quotes. Save the file with LF or "
                                                "CRLF line ends.") % {"line": _bare_cr_line(data_path, data_bytes)}
                                      ) from exc
                raise SourceError("file", _("The CSV file could not be read: %(error)s")
                                  % {"error": _first_line(str(exc))}) from exc
            phase("duckdb_read")
            rej_all = con.sql(f"SELECT DISTINCT line FROM {rejects_table} ORDER BY line").to_arrow_table()
            rej_all = rej_all.column(0).to_numpy().astype(np.int64) if rej_all.num_rows else np.zeros(0, np.int64)
            rej = con.execute(
                f"SELECT line, arg_min(error_type, coalesce(column_idx, 0)), "
                f"arg_min(error_message, coalesce(column_idx, 0)) FROM {rejects_table} GROUP BY line ORDER BY line "
                f"LIMIT {MAX_REJECTS}").fetchall()
            if not plan.transcode:
                bad_lines = con.execute(f"SELECT DISTINCT line FROM {rejects_table} WHERE error_type = "
                                        f"'INVALID ENCODING' ORDER BY line LIMIT 50").fetchall()
                if bad_lines:
                    if not use_arrow:
                        scratch.drop()
                    with open(data_path, "rb") as f:
                        sample = []
                        for (unit_line,) in bad_lines:
                            unit = int(unit_line) - 1
                            if 0 <= unit < len(starts):
                                end = int(starts[unit + 1]) if unit + 1 < len(starts) else data_bytes
                                f.seek(int(starts[unit]))
                                sample.append(f.read(min(end - int(starts[unit]), 1 << 16)))
                    return _Reencode(b"".join(sample), int(lines[int(bad_lines[0][0]) - 1])
                                     if 0 < int(bad_lines[0][0]) <= len(lines) else 0)
            # DuckDB numbers rejects by unit (a record or a blank line, counted from the top of the file).
            rej_units = rej_all - 1
            valid = (rej_units >= 0) & (rej_units < len(starts))
            # DuckDB skips blank lines, except in a one-column file, where a blank line is an empty value.
            is_record = ~blank if len(plan.names) > 1 else np.ones(len(blank), dtype=bool)
            is_record[: header_unit + 1] = False
            accepted = is_record.copy()
            accepted[rej_units[valid]] = False
            acc_lines = lines[accepted]
            # DuckDB drops trailing empty fields without a word; such records have too many fields.
            too_wide = np.flatnonzero(accepted & wide)
            exact = scanner.exact and bool(valid.all()) and len(acc_lines) == staged_rows
            if not exact:
                warnings.append(_("Line numbers of this file are approximate: its quoting is malformed."))
                acc_lines = np.arange(staged_rows, dtype=np.int64) + header_line + 1
                too_wide = too_wide[:0]
            rejects = _Rejects()
            raw_reader = _RawRecords(data_path, starts, data_bytes)
            try:
                for unit_line, etype, emsg in rej:
                    unit = int(unit_line) - 1
                    if 0 <= unit < len(starts):
                        line_no, raw = int(lines[unit]), raw_reader.get(unit)
                    else:
                        line_no, raw = int(unit_line), ""
                    reason = _csv_reason(etype, emsg, raw, plan, max_line)
                    if raw:
                        span = _unit_span(lines, unit, last_line)
                        if span > line_no:
                            reason += " " + _("(the record spans lines %(a)s–%(b)s)") % {"a": line_no, "b": span}
                    rejects.add(line_no, reason, raw.rstrip("\r\n"))
                rejects.more(len(rej_all) - len(rej))
                for unit in too_wide[:MAX_REJECTS]:
                    raw = raw_reader.get(int(unit))
                    rejects.add(int(lines[unit]), _csv_reason("TOO MANY COLUMNS", "", raw, plan, max_line),
                                raw.rstrip("\r\n"))
                rejects.more(max(0, len(too_wide) - MAX_REJECTS))
            finally:
                raw_reader.close()

            phase("rejects")
            if use_arrow:
                import pyarrow as pa

                arrow = arrow.append_column(RESERVED, pa.array(acc_lines, type=pa.int64()))
                view = f"_stg_csv_{uuid.uuid4().hex[:10]}"
                con.register(view, arrow)
                try:
                    con.execute(f"CREATE TABLE {scratch.sql} AS SELECT * FROM {_q(view)}")
                finally:
                    con.unregister(view)
                del arrow
            else:
                import pyarrow as pa

                con.execute(f"ALTER TABLE {scratch.sql} ADD COLUMN {_q(RESERVED)} BIGINT")
                view = f"_stg_lines_{uuid.uuid4().hex[:10]}"
                con.register(view, pa.table({"i": pa.array(np.arange(len(acc_lines), dtype=np.int64)),
                                             "line": pa.array(acc_lines, type=pa.int64())}))
                try:
                    con.execute(f"UPDATE {scratch.sql} SET {_q(RESERVED)} = m.line FROM {_q(view)} m "
                                f"WHERE {scratch.sql}.rowid = m.i")
                finally:
                    con.unregister(view)

        phase("table_and_row_numbers")
        if exact and len(too_wide):
            import pyarrow as pa

            view = f"_stg_wide_{uuid.uuid4().hex[:10]}"
            con.register(view, pa.table({"line": pa.array(lines[too_wide], type=pa.int64())}))
            try:
                con.execute(f"DELETE FROM {scratch.sql} WHERE {_q(RESERVED)} IN (SELECT line FROM {_q(view)})")
            finally:
                con.unregister(view)
        cols = [_q(n) for n in plan.names]
        # Records with every field empty (",,,") carry nothing: skipped like blank lines.
        con.execute(f"DELETE FROM {scratch.sql} WHERE " + " AND ".join(f"{c} IS NULL" for c in cols))
        if max_unit > max_field_bytes:
            _reject_oversized(con, scratch, plan.names, max_field_bytes, rejects)
        rows = con.execute(f"SELECT count(*) FROM {scratch.sql}").fetchall()[0][0]
        scratch.publish()
        phase("cleanup_checks")
    except BaseException:
        scratch.drop()
        raise
    finally:
        try:
            con.execute(f"DROP TABLE IF EXISTS {_q(rejects_table)}")
            con.execute(f"DROP TABLE IF EXISTS {_q(rejects_scan)}")
        except Exception:  # noqa: BLE001
            pass
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    lineage = {"kind": "file", "name": name, "format": "csv", "encoding": plan.encoding,
               "delimiter": plan.delimiter, "bytes": size, "sha256": sha.hexdigest(), "rows": int(rows),
               "rejected": rejects.count, "header_line": header_line}
    return Staged(relation=table, columns=list(plan.names), rows=int(rows), rejected=rejects.count,
                  rejects=rejects.items, lineage=lineage, warnings=warnings)


def _transcoded(f, plan: _CsvPlan, sha, size: int) -> Iterator[tuple[bytes, bool]]:
    """UTF-8 chunks of the file (without a BOM), hashing the original bytes on the way."""
    if plan.codec == "utf-16":
        dec = codecs.getincrementaldecoder("utf-16")("replace")
        while True:
            raw = f.read(CSV_CHUNK)
            sha.update(raw)
            text = dec.decode(raw, final=not raw)  # the codec consumes the BOM
            if text:
                yield text.encode("utf-8"), "\ufffd" in text
            if not raw:
                return
    first = f.read(len(plan.bom))
    if first == plan.bom:
        sha.update(first)
        first = b""
    # Transcoding is single-threaded on purpose: a pool of two worker processes fed through pipes was
    # measured on the two-core machines and was not faster (the pipes and the main process's own work,
    # hashing, scanning and writing, compete for the same two cores).
    for raw in _raw_chunks(f, first, CSV_CHUNK):
        sha.update(raw)
        yield _transcode_chunk(raw, plan.codec)


class _Damage:
    """Counts the lines of transcoded chunks that hold U+FFFD (where undecodable bytes were replaced)."""

    FFFD = "\ufffd".encode()

    def __init__(self):
        self.total = 0
        self.first: list[int] = []
        self.last_line = 0

    def add(self, first_line: int, utf8: bytes) -> None:
        pos = utf8.find(self.FFFD)
        line, counted_to = first_line, 0
        while pos >= 0:
            line += utf8.count(b"\n", counted_to, pos)
            counted_to = pos
            if line != self.last_line:
                self.total += 1
                self.last_line = line
                if len(self.first) < 10:
                    self.first.append(line)
            nxt = utf8.find(b"\n", pos)
            if nxt < 0:
                break
            pos = utf8.find(self.FFFD, nxt)

    def warning(self, encoding: str) -> str:
        return _("%(count)s lines hold bytes that are not valid %(encoding)s; they were read as U+FFFD (�) so "
                 "the damaged values can be found and corrected (lines %(lines)s%(more)s).") % {
            "count": self.total, "encoding": encoding.upper(), "lines": ", ".join(str(n) for n in self.first),
            "more": ", …" if self.total > len(self.first) else ""}


class _RawRecords:
    def __init__(self, path: str, starts, total: int):
        self.f = open(path, "rb")
        self.starts = starts
        self.total = total

    def get(self, unit: int) -> str:
        start = int(self.starts[unit])
        end = int(self.starts[unit + 1]) if unit + 1 < len(self.starts) else self.total
        self.f.seek(start)
        raw = self.f.read(min(end - start, 64 << 10))
        return raw.decode("utf-8", "replace")

    def close(self) -> None:
        self.f.close()


def _unit_span(lines, unit: int, last_line: int) -> int:
    """The last physical line of a unit."""
    if unit + 1 < len(lines):
        return int(lines[unit + 1]) - 1
    return last_line


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _csv_reason(etype: str, message: str, raw: str, plan: _CsvPlan, max_line: int) -> str:
    expected = len(plan.names)
    if etype in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        found = None
        if raw:
            try:
                recs = list(csv.reader(io.StringIO(raw), delimiter=plan.delimiter, quotechar='"', strict=False))
                if recs:
                    found = len(recs[0])
            except csv.Error:
                found = None
        if found is None or found == expected:
            m = re.search(r"Found:\s*(\d+)", message or "")
            found = int(m.group(1)) if m else None
        if found is not None:
            return ngettext("%(found)s field, expected %(expected)s", "%(found)s fields, expected %(expected)s",
                            found) % {"found": found, "expected": expected}
        return _("wrong number of fields, expected %(expected)s") % {"expected": expected}
    if etype == "UNQUOTED VALUE":
        if raw and raw.count('"') % 2 == 1:
            return _("a quoted value is never closed")
        return _("a quoted value is followed by other characters (a quote inside a quoted value must be doubled)")
    if etype == "LINE SIZE OVER MAXIMUM":
        return _("the record is longer than %(limit)s bytes") % {"limit": max_line}
    if etype == "INVALID ENCODING":
        return _("the line is not valid UTF-8")
    return _("the line could not be read: %(error)s") % {"error": _first_line(message or etype)}


def _reject_oversized(con, scratch: _Scratch, names: list[str], limit: int, rejects: _Rejects) -> None:
    cols = [_q(n) for n in names]
    cond = " OR ".join(f"strlen({c}) > {limit}" for c in cols)  # strlen counts bytes
    which = "CASE " + " ".join(f"WHEN strlen({c}) > {limit} THEN {i}" for i, c in enumerate(cols)) + " END"
    size = "CASE " + " ".join(f"WHEN strlen({c}) > {limit} THEN strlen({c})" for c in cols) + " END"
    raw = "concat_ws(" + _lit(",") + ", " + ", ".join(f"left({c}, 100)" for c in cols) + ")"
    total = con.execute(f"SELECT count(*) FROM {scratch.sql} WHERE {cond}").fetchall()[0][0]
    if not total:
        return
    found = con.execute(f"SELECT {_q(RESERVED)}, {which}, {size}, left({raw}, {RAW_LIMIT}) FROM {scratch.sql} "
                        f"WHERE {cond} ORDER BY {_q(RESERVED)} LIMIT {MAX_REJECTS}").fetchall()
    for line, idx, nbytes, raw_text in found:
        rejects.add(line, _("the value of column “%(column)s” is %(bytes)s bytes, more than the limit of %(limit)s")
                    % {"column": names[idx], "bytes": nbytes, "limit": limit}, raw_text or "")
    rejects.more(total - len(found))
    con.execute(f"DELETE FROM {scratch.sql} WHERE {cond}")


# ----------------------------------------------------------------------------------------- XLSX

_MERGE_RE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Za-z]{1,3})(\d+)(?::([A-Za-z]{1,3})(\d+))?"')
_SHEETDATA_END = re.compile(rb"</(?:\w+:)?sheetData>")


def _col_index(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ch - 64)
    return n


def _xlsx_merges(wb, ws) -> list[tuple[int, int, int, int]]:
    """Merged ranges (min_col, min_row, max_col, max_row) read from the sheet XML, streaming: read-only
    openpyxl does not parse them, and <mergeCells> comes after all the rows."""
    try:
        member = wb._archive.open(ws._worksheet_path)
    except Exception:  # noqa: BLE001 - an unusual package layout: no merge information
        return []
    tail = b""
    found = False
    out = []
    with member:
        while chunk := member.read(1 << 20):
            if not found:
                window = tail + chunk
                m = _SHEETDATA_END.search(window)
                if m:
                    found = True
                    tail = window[m.end():]
                else:
                    tail = window[-64:]
                continue
            tail += chunk
    if not found:
        return []
    for m in _MERGE_RE.finditer(tail):
        c1, r1 = _col_index(m.group(1)), int(m.group(2))
        c2, r2 = (_col_index(m.group(3)), int(m.group(4))) if m.group(3) else (c1, r1)
        out.append((min(c1, c2), min(r1, r2), max(c1, c2), max(r1, r2)))
    return out


_REF_SPLIT = re.compile(r"([A-Za-z]+)(\d*)")


def _sheet_rows(wb, ws) -> Iterator[tuple[int, list]]:
    """(sheet row number, cell texts) of every row the sheet XML holds, read with expat.

    openpyxl gives the workbook (sheets, shared strings, which styles are dates, the epoch); its
    read-only cell parser builds objects per cell and is three to four times slower than these handlers,
    which follow its rules: an empty <v> is no value, numbers are int unless they have ".", "e" or "E",
    numbers in a date style become dates, inline rich text is the concatenation of its runs without
    phonetic runs, formulas count by their cached value."""
    import xml.parsers.expat

    from openpyxl.utils.datetime import from_ISO8601, from_excel

    shared = ws._shared_strings
    date_styles = wb._date_formats
    timedelta_styles = wb._timedelta_formats
    epoch = wb.epoch
    done: list[tuple[int, list]] = []
    local: dict[str, str] = {}
    columns: dict[str, int] = {}
    row = col = style = phonetic = 0
    kind = "n"
    cells: dict | None = None
    text: list | None = None
    inline: list | None = None
    v: str | None = None

    def tag(name: str) -> str:
        t = local[name] = name.rpartition(":")[2]
        return t

    def start(name, attrs):
        nonlocal row, col, style, kind, cells, text, inline, v, phonetic
        t = local.get(name) or tag(name)
        if t == "c":
            ref = attrs.get("r")
            if ref:
                letters = ref.rstrip("0123456789")
                c = columns.get(letters)
                if c is None:
                    c = columns[letters] = _col_index(letters.encode())
                col = c
            else:
                col += 1
            kind = attrs.get("t", "n")
            s = attrs.get("s")
            style = int(s) if s else 0
            v = inline = None
        elif t == "v":
            text = []
        elif t == "row":
            r = attrs.get("r")
            row = int(r) if r else row + 1
            cells = {}
            col = 0
        elif t == "is":
            inline = []
        elif t == "t":
            if inline is not None and not phonetic:
                text = []
        elif t == "rPh":
            phonetic += 1

    def chars(data):
        if text is not None:
            text.append(data)

    def end(name):
        nonlocal text, v, phonetic, cells
        t = local.get(name) or tag(name)
        if t == "c":
            value: Any = None
            if kind == "inlineStr":
                value = "".join(inline) if inline is not None else None
            elif v:
                if kind == "s":
                    value = shared[int(v)]
                elif kind == "n":
                    value = float(v) if ("." in v or "e" in v or "E" in v) else int(v)
                    if style in date_styles:
                        try:
                            value = from_excel(value, epoch, timedelta=style in timedelta_styles)
                        except (OverflowError, ValueError):
                            value = "#VALUE!"
                elif kind == "b":
                    value = v.strip() not in ("0", "")
                elif kind == "d":
                    value = from_ISO8601(v)
                else:  # "str" (a formula's text), "e" (an error such as #N/A)
                    value = v
            if value is not None and cells is not None:
                cells[col] = value if value.__class__ is str else _cell_text(value)
        elif t == "v":
            v = "".join(text)
            text = None
        elif t == "row":
            vals = [None] * (max(cells) if cells else 0)
            for c, val in cells.items():
                vals[c - 1] = val
            done.append((row, vals))
            cells = None
        elif t == "t":
            if text is not None and inline is not None:
                inline.append("".join(text))
                text = None
        elif t == "rPh":
            phonetic -= 1

    parser = xml.parsers.expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    with wb._archive.open(ws._worksheet_path) as member:
        while chunk := member.read(1 << 20):
            parser.Parse(chunk, False)
            if done:
                yield from done
                done.clear()
        parser.Parse(b"", True)
    yield from done


def _cell_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.time() == _dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return _datetime_str(value)
    return to_text(value)


def _stage_xlsx(con, path: str, table: str, *, name: str, sheet: str | None, header_rows: int | None) -> Staged:
    import zipfile

    from openpyxl import load_workbook

    sha, size = sha256_file(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise SourceError("file", _("%(name)s is not a readable XLSX workbook: %(error)s")
                          % {"name": name, "error": _first_line(str(exc))}) from exc
    scratch = _Scratch(con, table)
    try:
        names = [ws.title for ws in wb.worksheets]
        if not names:
            raise SourceError("sheet", _("The workbook has no worksheets."))
        if sheet is None or sheet == "":
            ws = wb.worksheets[0]
        else:
            matches = [w for w in wb.worksheets if w.title == sheet] or \
                      [w for w in wb.worksheets if w.title.strip().casefold() == str(sheet).strip().casefold()]
            if not matches:
                raise SourceError("sheet", _("The workbook has no sheet named “%(sheet)s”; its sheets are: %(list)s.")
                                  % {"sheet": sheet, "list": "、".join(names)})
            ws = matches[0]
        merges = _xlsx_merges(wb, ws)
        staged = _xlsx_rows(con, ws, scratch, merges, header_rows, name)
        scratch.publish()
    except BaseException:
        scratch.drop()
        raise
    finally:
        wb.close()
    columns, rows, rejects, warnings, header_span = staged
    lineage = {"kind": "file", "name": name, "format": "xlsx", "encoding": None, "sheet": ws.title,
               "header_rows": header_span, "bytes": size, "sha256": sha, "rows": rows, "rejected": rejects.count}
    return Staged(relation=table, columns=columns, rows=rows, rejected=rejects.count, rejects=rejects.items,
                  lineage=lineage, warnings=warnings)


def _xlsx_rows(con, ws, scratch: _Scratch, merges, header_rows: int | None, name: str):
    warnings: list[str] = []
    rows_iter = _sheet_rows(ws.parent, ws)
    top: list[tuple[int, list]] = []   # (sheet row, values) of the rows read ahead for the header
    look_ahead = 12 + (header_rows or 0)
    for rowno, values in rows_iter:
        top.append((rowno, values))
        if len(top) >= look_ahead:
            break

    def nonempty(vals):
        return [i for i, v in enumerate(vals) if v is not None and str(v).strip() != ""]

    first = next((k for k, (_r, vals) in enumerate(top) if nonempty(vals)), None)
    if first is None:
        raise SourceError("sheet", _("The sheet “%(sheet)s” is empty.") % {"sheet": ws.title})
    if header_rows is not None:
        if header_rows < 1:
            raise SourceError("sheet", _("header_rows must be at least 1."))
        start_row = top[first][0]
        depth = header_rows
    else:
        # Title rows: leading rows with a single filled cell followed by a wider row (e.g. a merged title
        # "定州市××统计表" or a line "单位：万元").
        k = first
        while k + 1 < len(top) and len(nonempty(top[k][1])) == 1:
            nxt = next((j for j in range(k + 1, len(top)) if nonempty(top[j][1])), None)
            if nxt is None or len(nonempty(top[nxt][1])) < 2:
                break
            warnings.append(_("Row %(row)s (“%(text)s”) was taken as a title, not a header.")
                            % {"row": top[k][0], "text": _truncate(top[k][1][nonempty(top[k][1])[0]], 60)})
            k = nxt
        start_row = top[k][0]
        depth = 1
        changed = True
        while changed and depth < 5:
            changed = False
            for c1, r1, c2, r2 in merges:
                if start_row <= r1 <= start_row + depth - 1:
                    if r2 > start_row + depth - 1:
                        depth = min(5, r2 - start_row + 1)
                        changed = True
                    elif c2 > c1 and r2 == start_row + depth - 1:
                        depth = min(5, depth + 1)
                        changed = True
    header_last = start_row + depth - 1
    by_row = {r: vals for r, vals in top}
    width = 0
    for r in range(start_row, header_last + 1):
        vals = by_row.get(r, [])
        filled = nonempty(vals)
        if filled:
            width = max(width, filled[-1] + 1)
    for c1, r1, c2, r2 in merges:
        if start_row <= r1 <= header_last and c1 <= width:
            width = max(width, c2)
    if width == 0:
        raise SourceError("sheet", _("The sheet “%(sheet)s” has no header row.") % {"sheet": ws.title})
    # The header grid, merged cells carrying their top-left value across the range.
    grid = []
    for r in range(start_row, header_last + 1):
        vals = list(by_row.get(r, []))
        vals += [None] * (width - len(vals))
        grid.append([v.strip() if isinstance(v, str) else v for v in vals[:width]])
    for c1, r1, c2, r2 in merges:
        if r2 < start_row or r1 > header_last:
            continue
        top_value = by_row.get(r1, [None] * c1)
        value = top_value[c1 - 1] if c1 - 1 < len(top_value) else None
        value = value.strip() if isinstance(value, str) else value
        for r in range(max(r1, start_row), min(r2, header_last) + 1):
            for c in range(c1, min(c2, width) + 1):
                grid[r - start_row][c - 1] = value
    columns = _combine_header(grid, width, depth)
    _check_header(columns, lambda i: _("column %(letter)s") % {"letter": _col_letter(i + 1)})
    if depth > 1:
        warnings.append(_("Header rows %(first)s–%(last)s (merged cells) were combined into column names.")
                        % {"first": start_row, "last": header_last})

    sink = _Sink(con, scratch, columns)
    rejects = _Rejects()
    # Cells merged down the data (a town name over its villages' rows): the value is in the top cell
    # only; it is filled down the merged column so every row carries it (reported in a warning).
    fills_at: dict[int, list[tuple[int, int]]] = {}
    filled_ranges = []
    for c1, r1, c2, r2 in sorted(merges, key=lambda m: (m[1], m[0])):
        if r1 > header_last and r2 > r1 and c1 <= width:
            fills_at.setdefault(r1, []).append((c1 - 1, r2))
            filled_ranges.append(f"{_col_letter(c1)}{r1}:{_col_letter(c1)}{r2}")
    active: dict[int, tuple[str | None, int]] = {}

    def take(rowno: int, vals: list) -> None:
        empty = not any(v is not None and v != "" for v in vals)
        for col, until in fills_at.get(rowno, ()):
            active[col] = (vals[col] if col < len(vals) else None, until)
        if active:
            for col, (value, until) in list(active.items()):
                if rowno > until:
                    del active[col]
                elif not empty and (col >= len(vals) or vals[col] is None):
                    if col >= len(vals):
                        vals = vals + [None] * (col + 1 - len(vals))
                    vals[col] = value
        if empty:
            return
        extra = [i for i in range(width, len(vals)) if vals[i] is not None and vals[i] != ""]
        if extra:
            rejects.add(rowno, _("row %(row)s has a value in column %(letter)s, which has no header")
                        % {"row": rowno, "letter": _col_letter(extra[0] + 1)},
                        "\t".join("" if v is None else str(v) for v in vals))
            return
        row = vals[:width]
        if len(row) < width:
            row = row + [None] * (width - len(row))
        sink.add(rowno, row)

    for rowno, vals in top:
        if rowno > header_last:
            take(rowno, vals)
    for rowno, values in rows_iter:
        take(rowno, values)
    if filled_ranges:
        warnings.append(_("Merged cells in the data were filled down so that each row carries the value: "
                          "%(ranges)s%(more)s.") % {"ranges": ", ".join(filled_ranges[:10]),
                                                   "more": ", …" if len(filled_ranges) > 10 else ""})
    warnings.extend(sink.finish())
    return columns, sink.rows, rejects, warnings, [start_row, header_last]


def _combine_header(grid: list[list], width: int, depth: int) -> list[str]:
    """Column names from a header of `depth` rows.

    Each column's path is its header texts from top to bottom, repeats (vertical merges) removed; a row
    holding the same single text over the whole width (a title) is left out. A column is named by its
    bottom text when, for every column under the same group, that text is unique in the sheet; otherwise
    every column of the group is named "group/child" (e.g. "联系人/姓名")."""
    if depth == 1:
        return [("" if v is None else str(v)) for v in grid[0]]
    title_rows = set()
    for r, vals in enumerate(grid):
        distinct = {str(v) for v in vals if v not in (None, "")}
        if len(distinct) == 1 and all(v not in (None, "") for v in vals) and width > 1 and r < depth - 1:
            title_rows.add(r)
    paths = []
    for c in range(width):
        parts: list[str] = []
        for r in range(depth):
            if r in title_rows:
                continue
            v = grid[r][c]
            if v in (None, ""):
                continue
            v = str(v)
            if not parts or parts[-1] != v:
                parts.append(v)
        paths.append(parts)
    leaves = [p[-1] if p else "" for p in paths]
    counts: dict[str, int] = {}
    for leaf in leaves:
        counts[leaf.casefold()] = counts.get(leaf.casefold(), 0) + 1
    groups: dict[tuple, list[int]] = {}
    for c, p in enumerate(paths):
        groups.setdefault(tuple(p[:-1]), []).append(c)
    names = [""] * width
    for parents, cols in groups.items():
        unique = all(counts[leaves[c].casefold()] == 1 for c in cols)
        for c in cols:
            names[c] = leaves[c] if (not parents or unique) else "/".join(paths[c])
    return names


# ----------------------------------------------------------------------------------------- JSON

class _RawNumber(str):
    """A JSON number kept as its source text (so 1.50 stays "1.50" and long integers stay exact)."""


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, _RawNumber):
        return str(value)
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _json_dump(value)


def _json_dump(value) -> str:
    if isinstance(value, _RawNumber):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json_dump(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


_DECODER = json.JSONDecoder(parse_float=_RawNumber, parse_int=_RawNumber, parse_constant=_RawNumber)


def _record_values(record: dict) -> dict:
    return {str(k): _json_text(v) for k, v in record.items()}


class _JsonStream:
    """Streams the elements of a top-level JSON array (or of the one list held by a top-level object)
    without loading the document: raw_decode over a sliding text window."""

    READ = 1 << 20
    MAX_ELEMENT = 256 << 20

    def __init__(self, f, name: str, warnings: list[str]):
        self.f = f
        self.name = name
        self.dec = codecs.getincrementaldecoder("utf-8")("replace")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.dropped_lines = 0
        self.dropped_chars = 0
        self.first = True
        self.damaged = False
        self.warnings = warnings

    def _more(self) -> bool:
        if self.eof:
            return False
        raw = self.f.read(self.READ)
        text = self.dec.decode(raw, final=not raw)
        if self.first:
            text = text.lstrip("\ufeff")
            self.first = False
        if "\ufffd" in text:
            self.damaged = True
        if not raw:
            self.eof = True
        if self.pos > (1 << 20):
            self.dropped_lines += self.buf.count("\n", 0, self.pos)
            self.dropped_chars += self.pos
            self.buf = self.buf[self.pos:]
            self.pos = 0
        self.buf += text
        return True

    def _where(self, pos: int) -> tuple[int, int]:
        line = self.dropped_lines + self.buf.count("\n", 0, pos) + 1
        col = pos - (self.buf.rfind("\n", 0, pos) + 1) + 1
        return line, col

    def error(self, message: str, pos: int | None = None):
        line, col = self._where(self.pos if pos is None else pos)
        return SourceError("file", _("%(name)s is not valid JSON at line %(line)s, column %(col)s: %(error)s.")
                           % {"name": self.name, "line": line, "col": col, "error": message})

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            got = self.peek()
            raise self.error(_("expected “%(want)s”, found %(got)s")
                             % {"want": ch, "got": f"“{got}”" if got else _("the end of the file")})
        self.pos += 1

    def value(self):
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.pos > self.MAX_ELEMENT:
                    raise self.error(exc.msg, exc.pos) from None
                self._more()
                continue
            if end + 64 > len(self.buf) and not self.eof:
                self._more()  # a value ending at the window's edge (a number) may continue in the next read
                continue
            self.pos = end
            return obj

    def elements(self) -> Iterator[Any]:
        """After "[": each element, until the closing "]"."""
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                continue
            if ch == "]":
                self.pos += 1
                return
            raise self.error(_("expected “,” or “]”, found %(got)s")
                             % {"got": f"“{ch}”" if ch else _("the end of the file")})


def _stage_json(con, path: str, table: str, *, name: str, lines: bool) -> Staged:
    """JSON: a top-level array of objects, or an object with exactly one non-empty list of objects (e.g.
    {"total": 2, "data": [...]}); the rows are that list. JSONL: one object per line, blank lines skipped.
    Columns: the union of the keys in first-seen order. Elements that are not objects are rejected."""
    warnings: list[str] = []
    scratch = _Scratch(con, table)
    rejects = _Rejects()
    sha = hashlib.sha256()
    size = 0

    class Hashing(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def readable(self):
            return True

        def readinto(self, b):
            nonlocal size
            data = self.f.read(len(b))
            sha.update(data)
            size += len(data)
            b[: len(data)] = data
            return len(data)

    try:
        sink = _Sink(con, scratch, None)
        with open(path, "rb") as raw_file:
            f = io.BufferedReader(Hashing(raw_file), buffer_size=1 << 20)
            if lines:
                _jsonl_rows(f, name, sink, rejects, warnings)
            else:
                _json_rows(f, name, sink, rejects, warnings)
            while f.read(1 << 20):  # hash to the end
                pass
        warnings.extend(sink.finish())
        scratch.publish()
    except BaseException:
        scratch.drop()
        raise
    fmt = "jsonl" if lines else "json"
    lineage = {"kind": "file", "name": name, "format": fmt, "encoding": "utf-8", "bytes": size,
               "sha256": sha.hexdigest(), "rows": sink.rows, "rejected": rejects.count}
    return Staged(relation=table, columns=list(sink.columns), rows=sink.rows, rejected=rejects.count,
                  rejects=rejects.items, lineage=lineage, warnings=warnings)


def _take_record(sink: _Sink, rejects: _Rejects, rowno: int, obj, where: str) -> None:
    if isinstance(obj, dict):
        for key in obj:
            if not str(key).strip():
                raise SourceError("file", _("%(where)s has an empty key; every field needs a name.") % {"where": where})
        sink.add_dict(rowno, _record_values(obj))
    else:
        rejects.add(rowno, _("%(where)s is not an object") % {"where": where}, _truncate(_json_dump(obj)))


def _jsonl_rows(f, name: str, sink: _Sink, rejects: _Rejects, warnings: list[str]) -> None:
    damaged = []
    damaged_count = 0
    for lineno, raw in enumerate(f, start=1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            damaged_count += 1
            if len(damaged) < 10:
                damaged.append(lineno)
        if not text.strip():
            continue
        try:
            obj = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise SourceError("file", _("%(name)s: line %(line)s is not valid JSON (column %(col)s: %(error)s).")
                              % {"name": name, "line": lineno, "col": exc.colno, "error": exc.msg}) from None
        _take_record(sink, rejects, lineno, obj, _("line %(n)s") % {"n": lineno})
    if damaged_count:
        warnings.append(_("%(count)s lines hold bytes that are not valid UTF-8; they were read as U+FFFD (�) "
                          "(lines %(lines)s).") % {"count": damaged_count, "lines": ", ".join(map(str, damaged))})


def _json_rows(f, name: str, sink: _Sink, rejects: _Rejects, warnings: list[str]) -> None:
    stream = _JsonStream(f, name, warnings)
    ch = stream.peek()
    if ch == "":
        raise SourceError("file", _("The file %(name)s is empty.") % {"name": name})

    def take_list() -> int:
        n = 0
        for n, obj in enumerate(stream.elements(), start=1):
            _take_record(sink, rejects, n, obj, _("element %(n)s") % {"n": n})
        return n

    if ch == "[":
        stream.pos += 1
        take_list()
    elif ch == "{":
        stream.pos += 1
        list_keys: list[str] = []
        if stream.peek() != "}":
            while True:
                key = stream.value()
                if not isinstance(key, str) or isinstance(key, _RawNumber):
                    raise stream.error(_("expected a key"))
                stream.expect(":")
                if stream.peek() == "[":
                    stream.pos += 1
                    if take_list():
                        list_keys.append(key)
                    if len(list_keys) > 1:
                        raise SourceError("file", _("%(name)s holds several lists (%(keys)s); put the rows in a "
                                                    "top-level array.") % {"name": name, "keys": ", ".join(list_keys)})
                else:
                    stream.value()
                ch = stream.peek()
                if ch == ",":
                    stream.pos += 1
                    continue
                stream.expect("}")
                break
        else:
            stream.pos += 1
    else:
        raise SourceError("file", _("%(name)s is not a JSON array of records (it starts with “%(ch)s”).")
                          % {"name": name, "ch": ch})
    if stream.peek() != "":
        raise stream.error(_("unexpected content after the end of the JSON document"))
    if stream.damaged:
        warnings.append(_("%(name)s holds bytes that are not valid UTF-8; they were read as U+FFFD (�).")
                        % {"name": name})


# -------------------------------------------------------------------------------------- Parquet

def _stage_parquet(con, path: str, table: str, *, name: str) -> Staged:
    sha, size = sha256_file(path)
    scratch = _Scratch(con, table)
    source = f"read_parquet({_lit(path)}, file_row_number = true)"
    try:
        desc = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except Exception as exc:  # noqa: BLE001
        raise SourceError("file", _("%(name)s is not a readable Parquet file: %(error)s")
                          % {"name": name, "error": _first_line(str(exc))}) from exc
    names = _Names()
    exprs = []
    columns = []
    fields = [(c[0], c[1]) for c in desc]
    rownum = fields[-1][0]  # file_row_number is added last
    for col, typ in fields[:-1]:
        t = str(typ).upper()
        src = _q(col)
        if t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]") or t == "JSON":
            expr = f"to_json({src})::VARCHAR"
        elif t == "VARCHAR":
            expr = src
        elif t in ("BLOB", "BYTEA"):
            expr = f"'\\x' || lower(hex({src}))"
        else:
            expr = f"CAST({src} AS VARCHAR)"
        new = names.add(col)
        columns.append(new)
        exprs.append(f"{expr} AS {_q(new)}")
    exprs.append(f"CAST({_q(rownum)} + 1 AS BIGINT) AS {_q(RESERVED)}")
    try:
        with _InsertionOrder(con):
            con.execute(f"CREATE TABLE {scratch.sql} AS SELECT {', '.join(exprs)} FROM {source}")
        rows = con.execute(f"SELECT count(*) FROM {scratch.sql}").fetchall()[0][0]
        scratch.publish()
    except SourceError:
        scratch.drop()
        raise
    except Exception as exc:  # noqa: BLE001
        scratch.drop()
        raise SourceError("file", _("%(name)s could not be read: %(error)s")
                          % {"name": name, "error": _first_line(str(exc))}) from exc
    lineage = {"kind": "file", "name": name, "format": "parquet", "encoding": None, "bytes": size, "sha256": sha,
               "rows": int(rows), "rejected": 0}
    return Staged(relation=table, columns=columns, rows=int(rows), rejected=0, rejects=[], lineage=lineage,
                  warnings=names.warning())


# ===================================================================================== databases

_SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|sign|auth|credential)", re.I)


def _mask_query_string(query: str) -> str:
    if not query:
        return query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return urllib.parse.urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*/:")


def mask_url(url: str) -> str:
    """The URL with any password (user info or a secret-looking query parameter) replaced by ***."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    out = url
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        if ":" in userinfo and not userinfo.endswith(":***"):
            out = out.replace(parts.netloc, userinfo.split(":", 1)[0] + ":***@" + host, 1)
    if parts.query:
        masked = _mask_query_string(parts.query)
        if masked != parts.query:
            head, _sep, tail = out.partition("?")
            fragment = ("#" + parts.fragment) if parts.fragment else ""
            out = head + "?" + masked + fragment
    return out


redact_url = mask_url


def _strip_sql(query: str) -> tuple[str, bool]:
    """(query without comments and string contents, whether it holds a statement separator)."""
    out = []
    i, n = 0, len(query)
    multiple = False
    while i < n:
        ch = query[i]
        if query.startswith("--", i):
            j = query.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
            continue
        if query.startswith("/*", i):
            j = query.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
            continue
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if query[j] == ch:
                    if j + 1 < n and query[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(" ")
            i = j + 1
            continue
        if ch == "$":
            m = re.match(r"\$([A-Za-z_]\w*)?\$", query[i:])
            if m:
                tag = m.group(0)
                j = query.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
                out.append(" ")
                continue
        if ch == ";":
            if query[i + 1:].strip(" \t\r\n;"):
                rest, _m = _strip_sql(query[i + 1:])
                if rest.strip(" \t\r\n;"):
                    multiple = True
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), multiple


def check_select(query: str) -> None:
    """A light check that `query` is one SELECT (or WITH … SELECT). The real protection is the read-only
    transaction the query runs in."""
    if not query or not query.strip():
        raise SourceError("query", _("The query is empty."))
    code, multiple = _strip_sql(query)
    if multiple:
        raise SourceError("query", _("Give one query only: the text holds several statements separated by “;”."))
    first = re.match(r"\s*\(*\s*([A-Za-z]+)", code)
    if not first or first.group(1).lower() not in ("select", "with"):
        word = first.group(1).upper() if first else query.strip()[:20]
        raise SourceError("query", _("Only a SELECT query can be used as a source (this one starts with %(word)s).")
                          % {"word": word})
    if re.search(r"\b(into)\b", code, re.I) and re.search(r"\bselect\b[^;]*\binto\b\s+(?!@)", code, re.I) \
            and not re.search(r"\binsert\b", code, re.I):
        raise SourceError("query", _("SELECT … INTO creates a table; give a plain SELECT query."))


def _escape_colons(query: str) -> str:
    # sqlalchemy.text() reads ":name" as a bind parameter; escape those so the query runs as written.
    return re.sub(r"(?<![:\w\\]):(?=\w)", r"\\:", query)


def _driver_message(exc: BaseException, password: str | None) -> str:
    """The driver's own message (its first line: PostgreSQL's "LINE 1: DECLARE ... CURSOR" context
    would only confuse), without the password."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).strip().splitlines()[:1]) or exc.__class__.__name__
    if password and len(password) >= 4:
        text = text.replace(password, "***")
    return _truncate(re.sub(r"\s+", " ", text), 400)


def stage_database(con, url: str, query: str, *, table: str = "staged", batch_rows: int = 50_000,
                   timeout_s: float = 300) -> Staged:
    """Stage the result of one SELECT query, read in a read-only transaction and streamed in batches."""
    from sqlalchemy import create_engine, exc as sa_exc, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    try:
        u = make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise SourceError("url", _("This is not a database URL: %(error)s") % {"error": _first_line(str(exc))}) from exc
    password = u.password
    masked = mask_url(u.render_as_string(hide_password=True))
    check_select(query)
    backend = u.get_backend_name()
    kwargs: dict[str, Any] = {"poolclass": NullPool}
    if backend == "sqlite":
        import sqlite3

        db = u.database
        if not db or db == ":memory:" or db.startswith("file:"):
            raise SourceError("url", _("A SQLite source needs a database file: sqlite:///path/to/file.db."))
        db_path = os.path.abspath(db)
        if not os.path.isfile(db_path):
            raise SourceError("url", _("The SQLite database file %(path)s does not exist.") % {"path": db})
        uri = "file:" + urllib.parse.quote(db_path) + "?mode=ro"

        def connect():
            c = sqlite3.connect(uri, uri=True, timeout=min(timeout_s, 30), check_same_thread=False)
            c.execute("PRAGMA query_only = ON")
            return c

        engine_url, kwargs["creator"] = "sqlite://", connect
    else:
        engine_url = u
        if backend == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": max(1, int(min(timeout_s, 30)))}
    try:
        engine = create_engine(engine_url, **kwargs)
    except Exception as exc:  # noqa: BLE001 - unknown dialect, missing driver
        raise SourceError("url", _("The database URL cannot be used: %(error)s")
                          % {"error": _driver_message(exc, password)}) from exc
    scratch = _Scratch(con, table)
    deadline = time.monotonic() + timeout_s
    n = 0
    warnings: list[str] = []
    try:
        try:
            conn = engine.connect()
        except Exception as exc:  # noqa: BLE001
            raise SourceError("url", _("Could not connect to the database: %(error)s")
                              % {"error": _driver_message(exc, password)}) from exc
        with conn:
            try:
                if backend == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                elif backend in ("mysql", "mariadb"):
                    conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
                result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                    text(_escape_colons(query)))
            except sa_exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise SourceError("source", _("The database disconnected before returning rows: %(error)s")
                                      % {"error": _driver_message(exc, password)}) from exc
                raise SourceError("query", _("The database refused the query: %(error)s")
                                  % {"error": _driver_message(exc, password)}) from exc
            except sa_exc.SQLAlchemyError as exc:
                raise SourceError("query", _("The query could not be run: %(error)s")
                                  % {"error": _driver_message(exc, password)}) from exc
            if not result.returns_rows:
                raise SourceError("query", _("The query returns no rows: only a SELECT query can be a source."))
            keys = [str(k) for k in result.keys()]
            seen: dict[str, str] = {}
            for k in keys:
                if k.casefold() in seen:
                    raise SourceError("query", _("The query returns two columns named “%(name)s”; give each column "
                                                 "a distinct name with AS.") % {"name": k})
                seen[k.casefold()] = k
            sink = _Sink(con, scratch, keys, batch_rows=batch_rows)
            try:
                for part in result.partitions(batch_rows):
                    if not part:
                        continue
                    cols = [list(map(to_text, col)) for col in zip(*part)]
                    sink.add_columns(n + 1, cols)
                    n += len(part)
                    if time.monotonic() > deadline:
                        raise SourceError("source", _("The query took longer than %(s)s seconds; %(n)s rows had "
                                                      "been read.") % {"s": timeout_s, "n": n})
            except sa_exc.DBAPIError as exc:
                raise SourceError("source", _("The database disconnected after %(n)s rows: %(error)s")
                                  % {"n": n, "error": _driver_message(exc, password)}) from exc
            warnings.extend(sink.finish())
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                pass
        scratch.publish()
    except sa_exc.DBAPIError as exc:
        # Raised while closing a connection the server dropped (it replaces the SourceError raised inside).
        scratch.drop()
        raise SourceError("source", _("The database disconnected after %(n)s rows: %(error)s")
                          % {"n": n, "error": _driver_message(exc, password)}) from exc
    except BaseException:
        scratch.drop()
        raise
    finally:
        engine.dispose()
    lineage = {"kind": "database", "url": masked, "query": query, "rows": sink.rows}
    return Staged(relation=table, columns=list(sink.columns), rows=sink.rows, rejected=0, rejects=[],
                  lineage=lineage, warnings=warnings)


# ========================================================================================== HTTP

class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5
    max_repeats = 2

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a {scheme} URL is not followed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _dotted(body, path: str):
    """Follow a dotted path ("data.items", "result.0.list") in a parsed body; KeyError if it is missing."""
    node = body
    if not path:
        return node
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def with_params(url: str, params: dict[str, str]) -> str:
    """`url` with these query parameters set (replacing any of the same name); harvest.services uses it too."""
    parts = urllib.parse.urlsplit(url)
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    pairs.extend(params.items())
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(pairs),
                                    parts.fragment))


def stage_http(con, url: str, *, table: str = "staged", items_path: str = "", page_param: str | None = None,
               size_param: str | None = None, page_size: int = 100, start_page: int = 1,
               next_path: str | None = None, max_pages: int = 1000, max_bytes: int = 200_000_000,
               timeout_s: float = 30, headers: dict | None = None, total_timeout_s: float | None = None) -> Staged:
    """Stage the items of a JSON API. One GET of `url`; or page numbers in `page_param` from `start_page`
    (and `page_size` in `size_param`) until a page has no items; or, with `next_path`, the URL found at
    that dotted path in each body until it is null or missing. `items_path` is the dotted path of the
    list of items in each body ("" when the body is the list); null there counts as an empty page.

    Limits: `max_pages` pages, `max_bytes` bytes over all bodies (read in chunks; Content-Length is not
    trusted), `timeout_s` per request (socket timeout and wall clock per page), `total_timeout_s` for the
    whole pull (default: max(timeout_s * 10, 600)), five redirects. More pages than allowed, more bytes,
    a non-2xx status, a body that is not JSON or has no list at `items_path`: SourceError('url')."""
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise SourceError("url", _("The API address must be an http:// or https:// URL."))
    opener = http_opener()
    hdrs = {"Accept": "application/json", "User-Agent": "shuzheng-ingest/1"}
    hdrs.update(headers or {})
    total_deadline = time.monotonic() + (total_timeout_s if total_timeout_s is not None else max(timeout_s * 10, 600))
    sha = hashlib.sha256()
    total = 0
    scratch = _Scratch(con, table)
    rejects = _Rejects()
    n_items = 0
    pages = 0
    warnings: list[str] = []
    seen_urls: set[str] = set()
    previous_digest = None
    try:
        sink = _Sink(con, scratch, None)
        page = start_page
        params = {}
        if size_param:
            params[size_param] = str(page_size)
        if page_param:
            params[page_param] = str(page)
        current = with_params(url, params) if params else url
        while True:
            if pages >= max_pages:
                raise SourceError("url", _("The API has more than %(n)s pages (the limit); nothing was staged.")
                                  % {"n": max_pages})
            pages += 1
            body_bytes, charset, _type = http_get(opener, current, hdrs, timeout_s, total_deadline,
                                                  max_bytes - total, max_bytes, pages)
            total += len(body_bytes)
            sha.update(body_bytes)
            digest = hashlib.sha256(body_bytes).digest()
            try:
                body = _DECODER.decode(body_bytes.decode(charset).lstrip("\ufeff"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SourceError("url", _("Page %(page)s is not JSON: %(error)s (it begins “%(start)s”).")
                                  % {"page": pages, "error": getattr(exc, "msg", str(exc)),
                                     "start": _truncate(body_bytes[:80].decode("utf-8", "replace"), 80)}) from None
            try:
                items = _dotted(body, items_path)
            except KeyError:
                raise SourceError("url", _("Page %(page)s has nothing at items_path “%(path)s”.")
                                  % {"page": pages, "path": items_path}) from None
            if items is None:
                items = []
            if not isinstance(items, list):
                raise SourceError("url", _("On page %(page)s, “%(path)s” is not a list of items.")
                                  % {"page": pages, "path": items_path or _("the body")})
            if items and previous_digest == digest and (page_param or next_path):
                raise SourceError("url", _("Page %(page)s returned the same content as the page before: the API "
                                           "ignores the paging parameters.") % {"page": pages})
            previous_digest = digest
            for obj in items:
                n_items += 1
                where = _("item %(n)s (page %(page)s)") % {"n": n_items, "page": pages}
                if isinstance(obj, dict):
                    for key in obj:
                        if not str(key).strip():
                            raise SourceError("url", _("%(where)s has an empty key.") % {"where": where})
                    sink.add_dict(n_items, _record_values(obj))
                else:
                    rejects.add(n_items, _("%(where)s is not an object") % {"where": where}, _json_dump(obj))
            if next_path:
                try:
                    nxt = _dotted(body, next_path)
                except KeyError:
                    nxt = None
                if nxt in (None, "") or nxt is False:
                    break
                if not isinstance(nxt, str):
                    raise SourceError("url", _("On page %(page)s, the next link at “%(path)s” is not a URL.")
                                      % {"page": pages, "path": next_path})
                nxt = urllib.parse.urljoin(current, nxt)
                if urllib.parse.urlsplit(nxt).scheme.lower() not in ("http", "https"):
                    raise SourceError("url", _("On page %(page)s, the next link is not an http(s) URL.")
                                      % {"page": pages})
                seen_urls.add(current)
                if nxt in seen_urls:
                    raise SourceError("url", _("The next link on page %(page)s points back to an earlier page.")
                                      % {"page": pages})
                current = nxt
            elif page_param:
                if not items:
                    break
                page += 1
                current = with_params(url, {**params, page_param: str(page)})
            else:
                break
        warnings.extend(sink.finish())
        scratch.publish()
    except BaseException:
        scratch.drop()
        raise
    lineage = {"kind": "http", "url": mask_url(url), "pages": pages, "bytes": total, "sha256": sha.hexdigest(),
               "rows": sink.rows, "items_path": items_path}
    if page_param:
        lineage["page_param"] = page_param
    if next_path:
        lineage["next_path"] = next_path
    return Staged(relation=table, columns=list(sink.columns), rows=sink.rows, rejected=rejects.count,
                  rejects=rejects.items, lineage=lineage, warnings=warnings)


def http_opener():
    """urllib with at most five redirects, and only to http(s) (harvest.fetch uses it too)."""
    return urllib.request.build_opener(_Redirects())


def http_get(opener, url: str, headers: dict, timeout_s: float, total_deadline: float, budget: int,
             max_bytes: int, page: int) -> tuple[bytes, str, str]:
    """The body of one GET, the codec to decode it with (the declared charset, else UTF-8) and the media
    type. Stops, raising SourceError('url'), past `timeout_s`, `total_deadline` or `budget` bytes."""
    import http.client

    now = time.monotonic()
    if now >= total_deadline:
        raise SourceError("url", _("The API took longer than the overall time limit; stopped at page %(page)s.")
                          % {"page": page})
    deadline = min(now + timeout_s, total_deadline)
    req = urllib.request.Request(url, headers=headers, method="GET")
    try:
        resp = opener.open(req, timeout=max(0.1, min(timeout_s, total_deadline - now)))
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise SourceError("url", _("Page %(page)s: too many redirects or a redirect loop (%(error)s).")
                              % {"page": page, "error": exc.reason}) from None
        raise SourceError("url", _("Page %(page)s: the API answered HTTP %(code)s %(reason)s.")
                          % {"page": page, "code": exc.code, "reason": exc.reason}) from None
    except (TimeoutError, OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise SourceError("url", _("Page %(page)s: no answer within %(s)s seconds.")
                              % {"page": page, "s": timeout_s}) from None
        raise SourceError("url", _("Page %(page)s: the API could not be reached: %(error)s.")
                          % {"page": page, "error": reason}) from None
    chunks = []
    got = 0
    charset = "utf-8"
    media_type = resp.headers.get_content_type()
    try:
        declared = resp.headers.get_content_charset()
        if declared:
            try:
                charset = codecs.lookup(_CODEC.get(_ENCODING_ALIASES.get(declared.lower(), ""), declared)).name
            except LookupError:
                pass
        with resp:
            status = getattr(resp, "status", 200)
            if not 200 <= status < 300:
                raise SourceError("url", _("Page %(page)s: the API answered HTTP %(code)s.")
                                  % {"page": page, "code": status})
            while True:
                if time.monotonic() > deadline:
                    raise SourceError("url", _("Page %(page)s: no complete answer within %(s)s seconds.")
                                      % {"page": page, "s": timeout_s})
                data = resp.read(65536)
                if not data:
                    break
                got += len(data)
                if got > budget:
                    raise SourceError("url", _("Page %(page)s: the responses exceed the limit of %(limit)s bytes.")
                                      % {"page": page, "limit": max_bytes})
                chunks.append(data)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise SourceError("url", _("Page %(page)s: the answer stopped (%(error)s).")
                          % {"page": page, "error": exc}) from None
    return b"".join(chunks), charset, media_type
