"""The serving store: a read-only SQLite copy of one warehouse snapshot, indexed on the key items, that the
gateway answers verification and record pages from.

Why a copy: the warehouse is Parquet files behind an Iceberg snapshot, built for scans. A verification call
is a point lookup that must take microseconds, thousands of times a second, from several processes. SQLite
opened `immutable` (the file never changes once renamed into place) needs no locks and shares the page cache
between processes through the OS, and an indexed lookup costs about 10 µs.

One file per (table, snapshot, item list): HOME/warehouse/_serving/<table>/<snapshot>-<items digest>.sqlite3.
A new snapshot gets a new file; while it is being built the gateway keeps answering from the previous one
(answers say which snapshot they come from), and older files are removed after the new one is in place.
Values are kept as the gateway returns them: text for decimals (exact), dates and timestamps (ISO), 0/1 for
booleans, integers as integers. Encrypted items (security.fieldcrypt) stay tokens, each beside its blind index
column, which key lookups and exact filters use; table `kids` lists the data keys the snapshot was written
under. The store holds nothing in clear that the warehouse holds encrypted.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shuzheng.catalog.models import DataType
from shuzheng.core.crypto import sm3_hex
from shuzheng.core.sql import quote_ident
from shuzheng.security.fieldcrypt import index_column, kids_of
from shuzheng.warehouse import lake

log = logging.getLogger(__name__)
BATCH = 50_000
KEEP = 2  # files kept per table: the current one and the one before (still open in other processes)
PRUNE_AFTER_S = 600


@dataclass(frozen=True)
class Item:
    name: str
    data_type: str
    is_key: bool
    encrypted: bool = False


def items_of(version) -> tuple[Item, ...]:
    """The store's items for a published version: every item, with whether it is encrypted at rest."""
    from shuzheng.security.policy import encrypts

    return tuple(Item(i.name, i.data_type, i.is_key, encrypts(i)) for i in version.items.order_by("position"))


def columns(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """The store's columns: the items, then the blind index of each encrypted item."""
    return items + tuple(Item(index_column(i.name), DataType.STRING, False) for i in items if i.encrypted)


def _digest(items: tuple[Item, ...]) -> str:
    return sm3_hex("\x1f".join(f"{i.name}:{i.data_type}:{int(i.is_key)}:{int(i.encrypted)}"
                                for i in items).encode())[:10]


def database_tag() -> str:
    """A short name for the platform database: files derived from its rows (serving stores, the gateway's
    journal) are kept apart per database, should one home ever serve several (as parallel test runs do)."""
    from django.db import connection

    return sm3_hex(f"{connection.vendor}:{connection.settings_dict.get('NAME') or ''}".encode())[:12]


def folder(identifier: str) -> Path:
    return lake.root() / "_serving" / database_tag() / identifier


@functools.lru_cache(maxsize=1024)
def path_for(identifier: str, snapshot_id: int, items: tuple[Item, ...]) -> Path:
    return folder(identifier) / f"{snapshot_id}-{_digest(items)}.sqlite3"


def build(identifier: str, snapshot_id: int, items: tuple[Item, ...]) -> Path:
    """Writes the store for one snapshot unless it exists; safe to call from several threads or processes at
    once (a file lock makes the others wait and then find it built)."""
    target = path_for(identifier, snapshot_id, items)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            _write(tmp, identifier, snapshot_id, items)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    _prune(target)
    return target


def _select_list(items: tuple[Item, ...]) -> str:
    cols = []
    for i in items:
        col = quote_ident(i.name)
        if i.data_type in (DataType.DECIMAL, DataType.DATE, DataType.DATETIME):
            col = f"CAST({col} AS VARCHAR)"
        elif i.data_type == DataType.BOOLEAN:
            col = f"CAST({col} AS INTEGER)"
        cols.append(col)
    return ", ".join(cols)


def _write(tmp: Path, identifier: str, snapshot_id: int, items: tuple[Item, ...]) -> None:
    table = lake.open_table(identifier)
    snapshot = lake.snapshot_for(table, snapshot_id) if table is not None else None
    duck = lake.duck()
    db = sqlite3.connect(tmp)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA page_size=8192")
        stored = columns(items)
        db.execute(f"CREATE TABLE data ({', '.join(quote_ident(i.name) for i in stored)})")
        db.execute("CREATE TABLE kids (kid INTEGER)")
        db.executemany("INSERT INTO kids VALUES (?)", [(k,) for k in kids_of(snapshot)])
        lake.view(duck, "snap", table, stored, snapshot)
        result = duck.execute(f"SELECT {_select_list(stored)} FROM snap")
        insert = f"INSERT INTO data VALUES ({', '.join('?' * len(stored))})"
        while True:
            rows = result.fetchmany(BATCH)
            if not rows:
                break
            db.executemany(insert, rows)
        keys = [index_column(i.name) if i.encrypted else i.name for i in items if i.is_key]
        if keys:
            db.execute(f"CREATE INDEX data_key ON data ({', '.join(quote_ident(k) for k in keys)})")
        db.commit()
        db.execute("VACUUM")  # a compact file: fewer pages to cache
    finally:
        db.close()
        duck.close()


def _prune(current: Path) -> None:
    """Removes stores of older snapshots: all but the newest KEEP, and none younger than PRUNE_AFTER_S (a
    process may have read an older snapshot id a moment ago and be about to open its store)."""
    files = sorted(current.parent.glob("*.sqlite3"), key=lambda p: p.stat().st_mtime)
    cutoff = time.time() - PRUNE_AFTER_S
    for old in files[:-KEEP]:
        if old != current and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def latest(identifier: str) -> Path | None:
    """The newest store of a table, whatever its snapshot (served while a newer one is being built)."""
    files = sorted(folder(identifier).glob("*.sqlite3"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


_local = threading.local()
_building: set[Path] = set()
_building_lock = threading.Lock()


def connection(path: Path) -> sqlite3.Connection:
    """This thread's read-only connection to a store file."""
    cache = getattr(_local, "connections", None)
    if cache is None:
        cache = _local.connections = {}
    con = cache.get(path)
    if con is None:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        con.execute("PRAGMA mmap_size=1073741824")
        cache[path] = con
        # Connections to files pruned away are dropped as new ones open.
        for stale in [p for p in cache if p != path and not p.exists()]:
            cache.pop(stale).close()
    return con


def store_for(identifier: str, snapshot_id: int | None, items: tuple[Item, ...]) -> tuple[Path | None, int | None]:
    """(store file, snapshot it holds) to answer from: the current snapshot's when built; else, while it is
    being built in the background, the previous one's; else built now."""
    if snapshot_id is None:
        return None, None
    target = path_for(identifier, snapshot_id, items)
    if target.exists():
        return target, snapshot_id
    previous = latest(identifier)
    if previous is not None and previous.stem.rsplit("-", 1)[1] == target.stem.rsplit("-", 1)[1]:
        _build_in_background(identifier, snapshot_id, items, target)
        return previous, int(previous.stem.rsplit("-", 1)[0])
    return build(identifier, snapshot_id, items), snapshot_id


def _build_in_background(identifier, snapshot_id, items, target) -> None:
    with _building_lock:
        if target in _building:
            return
        _building.add(target)

    def run():
        try:
            build(identifier, snapshot_id, items)
        except Exception:  # the next call tries again; the gateway keeps answering from the old store
            log.exception("building the serving store of %s snapshot %s failed", identifier, snapshot_id)
        finally:
            with _building_lock:
                _building.discard(target)
            from django.db import connections

            connections.close_all()

    threading.Thread(target=run, name=f"serving-{identifier}", daemon=True).start()



def prebuild(code: str, snapshot_id: int | None) -> Path | None:
    """Builds a snapshot's store ahead of the gateway's first call, when the resource has a live grant."""
    from django.utils import timezone

    from shuzheng.catalog.models import MountKind, Resource
    from shuzheng.sharing.models import Grant

    resource = Resource.objects.select_related("published").filter(code=code).first()
    if (snapshot_id is None or resource is None or resource.published is None
            or resource.mount_kind != MountKind.TABLE
            or not Grant.objects.filter(Grant.live_q(timezone.now()), resource=resource).exists()):
        return None
    return build(resource.mount_target, snapshot_id, items_of(resource.published))


@functools.lru_cache(maxsize=1024)
def kids(path: Path) -> tuple[int, ...]:
    """The data keys a store's snapshot was written under: its blind indexes are under one of them."""
    return tuple(row[0] for row in connection(path).execute("SELECT kid FROM kids"))
