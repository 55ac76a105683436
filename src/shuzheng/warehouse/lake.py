"""The governed warehouse: one Apache Iceberg table per resource mounted as a warehouse table.

The Iceberg catalog is pyiceberg's SQL catalog, named "shuzheng": in the platform database on PostgreSQL (its
two tables sit beside Django's), in SHUZHENG_HOME/warehouse/catalog.sqlite3 on the embedded default, with data
files under SHUZHENG_HOME/warehouse. Any Iceberg client can read the tables: point a SqlCatalog named
"shuzheng" at that database and the warehouse folder.

Loads write Parquet files with DuckDB (with Iceberg field ids, so no name mapping is needed) and then commit
them as exactly one snapshot. Until that commit nothing is visible; a crash leaves only unreferenced files,
which `discard_files` removes. DuckDB reads a snapshot by scanning the data files that snapshot lists.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

import duckdb
import pyarrow as pa
from django.conf import settings
from django.db import connections
from django.utils.translation import gettext as _
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.schema import Schema
from pyiceberg.table import Table as IcebergTable
from pyiceberg.types import (BooleanType, DateType, DecimalType, LongType, NestedField, StringType,
                             TimestampType)

from shuzheng.catalog.models import DataType
from shuzheng.core.errors import Conflict, FieldError
from shuzheng.core.sql import quote_ident, quote_literal
from shuzheng.security.fieldcrypt import index_column

CATALOG_NAME = "shuzheng"
DECIMAL = (18, 4)  # the catalog's decimal items are money and measures; 18,4 is the element standard's n..18,4

ICEBERG_TYPES = {
    DataType.STRING: StringType,
    DataType.INTEGER: LongType,
    DataType.DECIMAL: lambda: DecimalType(*DECIMAL),
    DataType.DATE: DateType,
    DataType.DATETIME: TimestampType,
    DataType.BOOLEAN: BooleanType,
}
DUCK_TYPES = {
    DataType.STRING: "VARCHAR",
    DataType.INTEGER: "BIGINT",
    DataType.DECIMAL: "DECIMAL(%d,%d)" % DECIMAL,
    DataType.DATE: "DATE",
    DataType.DATETIME: "TIMESTAMP",
    DataType.BOOLEAN: "BOOLEAN",
}


def root() -> Path:
    path = Path(settings.HOME) / "warehouse"
    path.mkdir(parents=True, exist_ok=True)
    return path


def catalog_uri() -> str:
    """Where the Iceberg catalog lives: in the platform database on PostgreSQL; on the embedded SQLite
    default in its own file beside the warehouse, because SQLite has one writer per file and a load's
    catalog commit must neither wait for nor block the web application's transactions (decision 32)."""
    conf = connections["default"].settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{root() / 'catalog.sqlite3'}"
    user = quote(conf.get("USER") or "", safe="")
    password = quote(conf.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = conf.get("HOST") or "localhost"
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgresql+psycopg://{auth}{host}{port}/{conf['NAME']}"


_lock = threading.Lock()
_catalogs: dict[tuple[str, str], SqlCatalog] = {}


def catalog() -> SqlCatalog:
    """The process's catalog client for the current database (one per database: tests switch databases)."""
    key = (catalog_uri(), root().as_uri())
    with _lock:
        if key not in _catalogs:
            _catalogs[key] = SqlCatalog(CATALOG_NAME, uri=key[0], warehouse=key[1])
        return _catalogs[key]


def close() -> None:
    """Closes the catalog's pooled database connections (before a test database is dropped)."""
    with _lock:
        for cat in _catalogs.values():
            cat.engine.dispose()
        _catalogs.clear()


def split_identifier(target: str) -> tuple[str, str]:
    namespace, _dot, name = target.partition(".")
    return namespace, name


def schema_for(items) -> Schema:
    fields = [NestedField(i, item.name, ICEBERG_TYPES[item.data_type](), required=False)
              for i, item in enumerate(items, start=1)]
    return Schema(*fields)


# No commit retries: pyiceberg would otherwise re-apply a load on top of a snapshot that changed under
# it, after the load's checks (duplicates against the table, the upsert merge) were computed on the old one.
NO_RETRIES = ("commit.retry.num-retries", "0")
TABLE_PROPERTIES = {"format-version": "2", NO_RETRIES[0]: NO_RETRIES[1]}


def open_table(identifier: str) -> IcebergTable | None:
    try:
        return catalog().load_table(identifier)
    except NoSuchTableError:
        return None


def ensure_table(identifier: str, items, encrypted: frozenset[str] = frozenset()) -> IcebergTable:
    """The Iceberg table for `identifier`, created from the data items, or evolved to carry new items and
    the blind-index columns of `encrypted` items (security.fieldcrypt). Changing the type of an existing
    column is refused: the data already loaded would not fit."""
    cat = catalog()
    table = open_table(identifier)
    columns = list(items) + [_IndexColumn(index_column(i.name)) for i in items if i.name in encrypted]
    if table is None:
        namespace, _name = split_identifier(identifier)
        cat.create_namespace_if_not_exists(namespace)
        return cat.create_table_if_not_exists(identifier, schema_for(columns), properties=TABLE_PROPERTIES)
    if table.properties.get(NO_RETRIES[0]) != NO_RETRIES[1]:  # a table created before this rule
        with table.transaction() as tx:
            tx.set_properties(**dict([NO_RETRIES]))
        table = cat.load_table(identifier)
    existing = {f.name: f for f in table.schema().fields}
    added = [item for item in columns if item.name not in existing]
    for item in items:
        field = existing.get(item.name)
        if field is not None and field.field_type != ICEBERG_TYPES[item.data_type]():
            raise Conflict(
                _("Item %(item)s is %(new)s now but the warehouse table holds it as %(old)s; register a new "
                  "item instead of changing the type of loaded data.")
                % {"item": item.name, "new": item.data_type, "old": field.field_type},
                [FieldError(f"items.{item.name}", _("Type differs from the loaded data."))])
    if added:
        with table.update_schema() as update:
            for item in added:
                update.add_column(item.name, ICEBERG_TYPES[item.data_type]())
        table = cat.load_table(identifier)
    return table


class _IndexColumn:
    """A blind-index column: text, beside an encrypted item."""

    data_type = DataType.STRING

    def __init__(self, name: str):
        self.name = name


def field_ids(table: IcebergTable) -> dict[str, int]:
    return {f.name: f.field_id for f in table.schema().fields}


def local_path(location: str) -> Path:
    parsed = urlparse(location)
    return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else Path(location)


def load_dir(table: IcebergTable, load_id) -> Path:
    """Where one load writes its data files before the commit makes them part of the table."""
    path = local_path(table.location()) / "data" / f"load-{load_id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def discard_files(table_location: str, load_id) -> None:
    shutil.rmtree(local_path(table_location) / "data" / f"load-{load_id}", ignore_errors=True)


def commit(table: IcebergTable, files: list[Path], *, replace: bool, properties: dict[str, str]) -> int:
    """Adds `files` as one snapshot (replacing every current data file when `replace`); returns its id.
    The catalog's compare-and-swap on the metadata pointer makes this atomic: all files or none."""
    data_files = [parquet_file_to_data_file(table.io, table.metadata, str(f)) for f in files]
    try:
        _commit(table, data_files, replace, properties)
    except CommitFailedException as exc:
        # Another load of this table committed since this one started: its rows (and, for upsert and
        # replace, the rows it was computed from) would be stale, so it is refused, never merged blindly.
        raise Conflict(_("Another load of this table committed while this one ran; nothing was loaded. "
                         "Load again."), [FieldError("resource", _("Changed during the load."))]) from exc
    table.refresh()
    return table.current_snapshot().snapshot_id


def _commit(table: IcebergTable, data_files, replace: bool, properties: dict[str, str]) -> None:
    with table.transaction() as tx:
        if replace and table.current_snapshot() is not None:
            with tx.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
                for task in table.scan().plan_files():
                    overwrite.delete_data_file(task.file)
                for data_file in data_files:
                    overwrite.append_data_file(data_file)
        else:
            with tx.update_snapshot(snapshot_properties=properties).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)


def expire(table: IcebergTable, keep: int) -> int:
    """Drops all but the newest `keep` snapshots from the table's history; returns how many."""
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    old = [s.snapshot_id for s in snapshots[:-keep]] if keep > 0 else []
    current = table.current_snapshot()
    old = [sid for sid in old if current is None or sid != current.snapshot_id]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def snapshot_for(table: IcebergTable, snapshot_id: int | None = None, as_of_ms: int | None = None):
    """The snapshot to read: a named one, the one current at a point in time, or the current one."""
    if snapshot_id is not None:
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None:
            raise Conflict(_("Snapshot %(id)s is not in this table's history.") % {"id": snapshot_id},
                           [FieldError("snapshot", _("Unknown snapshot."))])
        return snapshot
    if as_of_ms is not None:
        snapshot = table.snapshot_as_of_timestamp(as_of_ms)
        if snapshot is None:
            raise Conflict(_("The table had no data at that time."), [FieldError("as_of", _("Before the first load."))])
        return snapshot
    return table.current_snapshot()


def data_files(table: IcebergTable, snapshot) -> list[str]:
    if snapshot is None:
        return []
    return [str(local_path(task.file.file_path)) for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()]


def duck(database: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB session, memory bounded and spilling to SHUZHENG_HOME/tmp. Large loads pass a `database`
    file: their staged and judged rows then live on disk behind the buffer pool."""
    tmp = Path(settings.HOME) / "tmp" / "duckdb"
    tmp.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(database) if database else ":memory:", config={
        "temp_directory": str(tmp),
        "memory_limit": os.environ.get("SHUZHENG_DUCKDB_MEMORY", "1GB"),
        "preserve_insertion_order": "false",
    })


def scratch_path(load_id) -> Path:
    """The DuckDB file a load works in; removed when the load ends (and, after a crash, at the next start)."""
    folder = Path(settings.HOME) / "tmp" / "loads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{load_id}.duckdb"


def view(con, name: str, table: IcebergTable | None, items, snapshot=None, cipher=None,
         legacy_clear: bool = False) -> None:
    """Creates DuckDB view `name` over a snapshot's rows with one column per item (NULL where an older
    data file predates the item). Encrypted items read as their tokens unless a `cipher` (the loader's or
    the gateway's) opens them; `legacy_clear` passes values that are not tokens through (a key rotation
    sealing an item classified for encryption after it was loaded)."""
    files = data_files(table, snapshot) if table is not None else []
    if not files:
        empty = pa.table({item.name: pa.array([], type=pa.string()) for item in items})
        con.register(f"{name}__empty", empty)
        cols = ", ".join(f"CAST({quote_ident(i.name)} AS {DUCK_TYPES[i.data_type]}) AS {quote_ident(i.name)}"
                         for i in items)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT {cols} FROM {name}__empty")
        return
    files_view = quote_ident(name + "__files")
    file_list = "[" + ", ".join(quote_literal(f) for f in files) + "]"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {files_view} AS "
                f"SELECT * FROM read_parquet({file_list}, union_by_name = true)")
    present = {d[0] for d in con.execute(f"SELECT * FROM {files_view} LIMIT 0").description}
    opened = cipher.encrypted if cipher is not None else frozenset()
    if opened:
        cipher.register(con)

    def column(i) -> str:
        if i.name not in present:
            return f"CAST(NULL AS {DUCK_TYPES[i.data_type]})"
        if i.name in opened:
            function = cipher.function("open_or_clear" if legacy_clear else "open")
            return f"{function}({quote_literal(i.name)}, {quote_ident(i.name)})"
        return quote_ident(i.name)

    cols = ", ".join(f"{column(i)} AS {quote_ident(i.name)}" for i in items)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT {cols} FROM {files_view}")
