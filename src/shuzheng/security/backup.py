"""Backup and restore of a whole platform (S5 emergency plans): the metadata database, the warehouse (Iceberg
metadata, Parquet data files, quarantined rows) and the key material, in one archive sealed with SM4-GCM.

Archive (".szb"), all integers big-endian:

    offset 0   8 bytes   magic b"SZBACKUP"
           8   2 bytes   format version (1)
          10   4 bytes   length L of the header
          14   L bytes   header, UTF-8 JSON: {"format", "kdf": {"name": "scrypt", "n", "r", "p", "salt"},
                         "cipher": "SM4-GCM", "chunk", "check", "created", "platform"}
    then chunks until the final one, each:
               4 bytes   length N of the sealed chunk
               1 byte    1 for the final chunk, else 0
               N bytes   SM4-GCM: nonce (12) || ciphertext || tag (16), of at most `chunk` plaintext bytes,
                         with additional data SHA-256(bytes 0 .. 14+L) || chunk index (8 bytes) || final flag
    and nothing after the final chunk.

The key is scrypt(passphrase, salt, n, r, p) (hashlib; 32 bytes): the first 16 are the SM4 key, the last 16
are stored as "check" so that a wrong passphrase is told apart from a damaged archive. Binding the header,
the index and the final flag into every chunk's tag means a changed header, a flipped bit, reordered or
dropped chunks and a cut-off end are all refused.

The plaintext is a POSIX tar stream: db/… (the database snapshot), warehouse/… (every file under
SHUZHENG_HOME/warehouse except the rebuildable serving stores in _serving/; the quarantine is included),
keys/…, journal/… (gateway calls not yet shipped into the audit trail), home/… (the security-policy
override), and last manifest.json: every file's size and SHA-256, the row count of every table, each
Iceberg table's current snapshot id and row count, the audit head, and the database's migrations.

Consistency while the platform runs: SQLite files are copied with SQLite's online backup API (one read
transaction: a consistent snapshot, writers go on in WAL mode), the platform database first and then the
Iceberg catalog, so the catalog is never older than the database that refers to its snapshots (a load that
committed in between is settled by ingest.recover_interrupted, exactly as after a crash). On PostgreSQL
every table, the Iceberg catalog's included, is read with COPY inside one REPEATABLE READ READ ONLY
transaction. Warehouse files are copied afterwards: data and metadata files are immutable once written, so
every file the snapshot refers to is there.

Restore (into an empty home and, on PostgreSQL, an empty database) reads the archive twice: first it checks
every chunk and every file against the manifest and writes nothing; then it extracts, loads the database,
rewrites the Iceberg metadata's absolute paths for the new home, checks row counts and snapshots against
the manifest, records the restore in the restored trail and verifies the whole chain and its signatures.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import struct
import tarfile
import tempfile
import time
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlparse
from urllib.request import url2pathname

from shuzheng.core.crypto import DecryptionError, sm4_gcm_open, sm4_gcm_seal

MAGIC = b"SZBACKUP"
VERSION = 1
PREFIX = struct.Struct(">8sHI")
FRAME = struct.Struct(">IB")
CHUNK = 4 << 20
SCRYPT = {"n": 1 << 17, "r": 8, "p": 1}  # 128 MiB and about half a second: OWASP's recommendation
SCRYPT_LIMITS = {"n": 1 << 21, "r": 32, "p": 16}  # what a restore accepts from a header
MAX_HEADER = 64 << 10
MAX_MANIFEST = 1 << 30
MANIFEST = "manifest.json"
TOP = ("db", "warehouse", "keys", "journal", "home")
HOME_FILES = ("security-policy.json",)  # configuration kept at the top of SHUZHENG_HOME
SKIP_WAREHOUSE = ("_serving",)  # rebuilt on demand from the tables
CATALOG_FILE = "catalog.sqlite3"
DB_FILE = "shuzheng.sqlite3"  # settings.py: the embedded database in SHUZHENG_HOME
# What merely starting the platform creates in a new home: such a home still counts as empty.
STARTUP_FILES = {"jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", "jobs.sqlite3-journal", "keys/secret_key"}

Progress = Callable[[str], None]


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


def _(text: str) -> str:
    """gettext once Django runs; `shuzheng restore` checks the target and the archive before the platform
    starts in the target home (starting writes files there), and those messages stay in English."""
    from django.apps import apps

    if not apps.ready:
        return text
    from django.utils.translation import gettext

    return gettext(text)


def _quiet(_message: str) -> None:
    pass


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------------
# The sealed container
# --------------------------------------------------------------------------------------------------


def _derive(passphrase: bytes, kdf: dict) -> tuple[bytes, bytes]:
    n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
    salt = bytes.fromhex(kdf["salt"])
    if not (2 <= n <= SCRYPT_LIMITS["n"] and n & (n - 1) == 0 and 1 <= r <= SCRYPT_LIMITS["r"]
            and 1 <= p <= SCRYPT_LIMITS["p"] and 16 <= len(salt) <= 64):
        raise BackupError(_("the archive's key-derivation parameters are out of range"))
    derived = _scrypt(passphrase, salt, n, r, p)
    return derived[:16], derived[16:]


@functools.lru_cache(maxsize=2)
def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """Kept for the process (a restore reads the archive twice; scrypt is deliberately slow)."""
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n * p + (64 << 20), dklen=32)


def _aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, 1 if final else 0)


def _new_header(passphrase: bytes, chunk: int) -> tuple[bytes, bytes, bytes]:
    """(header bytes, SM4 key, header digest) for a new archive."""
    from shuzheng import __version__

    kdf = {"name": "scrypt", **SCRYPT, "salt": secrets.token_bytes(16).hex()}
    key, check = _derive(passphrase, kdf)
    body = json.dumps({"format": "shuzheng-backup", "kdf": kdf, "cipher": "SM4-GCM", "chunk": chunk,
                       "check": check.hex(), "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                       "platform": __version__}).encode()
    head = PREFIX.pack(MAGIC, VERSION, len(body)) + body
    return head, key, hashlib.sha256(head).digest()


def _read_header(raw, passphrase: bytes) -> tuple[dict, bytes, bytes]:
    """(header, SM4 key, header digest); BackupError for anything but a Shuzheng archive opened by this
    passphrase."""
    prefix = raw.read(PREFIX.size)
    if len(prefix) < PREFIX.size or prefix[:8] != MAGIC:
        raise BackupError(_("not a Shuzheng backup archive"))
    _magic, version, length = PREFIX.unpack(prefix)
    if version != VERSION:
        raise BackupError(_("archive format %(v)s is not supported (this version reads %(ours)s)")
                          % {"v": version, "ours": VERSION})
    if length > MAX_HEADER:
        raise BackupError(_("the archive's header is damaged"))
    body = raw.read(length)
    if len(body) < length:
        raise BackupError(_("the archive is truncated (in its header)"))
    try:
        header = json.loads(body)
        kdf = header["kdf"]
        chunk = int(header["chunk"])
        check = bytes.fromhex(header["check"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(_("the archive's header is damaged")) from exc
    if kdf.get("name") != "scrypt" or header.get("cipher") != "SM4-GCM" or not 4096 <= chunk <= (64 << 20):
        raise BackupError(_("the archive's header names an unsupported key derivation, cipher or chunk size"))
    key, expected = _derive(passphrase, kdf)
    if not secrets.compare_digest(check, expected):
        raise BackupError(_("wrong passphrase (or the archive's header was altered)"))
    return header, key, hashlib.sha256(prefix + body).digest()


class _SealedWriter:
    """A write-only stream that seals what it is given in chunks of `chunk` bytes."""

    def __init__(self, out, key: bytes, header_digest: bytes, chunk: int):
        self.out, self.key, self.digest, self.chunk = out, key, header_digest, chunk
        self.buf = bytearray()
        self.index = 0

    def write(self, data) -> int:
        self.buf += data
        while len(self.buf) > self.chunk:  # strictly more: the final chunk is never left empty by choice
            self._emit(bytes(self.buf[:self.chunk]), False)
            del self.buf[:self.chunk]
        return len(data)

    def _emit(self, plain: bytes, final: bool) -> None:
        sealed = sm4_gcm_seal(self.key, plain, _aad(self.digest, self.index, final))
        self.out.write(FRAME.pack(len(sealed), 1 if final else 0) + sealed)
        self.index += 1

    def finish(self) -> None:
        self._emit(bytes(self.buf), True)
        self.buf.clear()


class _OpenedReader:
    """The plaintext of the chunks after the header; every chunk is authenticated before a byte of it is
    returned, and a missing final chunk or bytes after it are refused."""

    def __init__(self, raw, key: bytes, header_digest: bytes, chunk: int, offset: int):
        self.raw, self.key, self.digest, self.chunk = raw, key, header_digest, chunk
        self.offset = offset
        self.buf, self.pos, self.index, self.done = b"", 0, 0, False

    def _next(self) -> bool:
        if self.done:
            return False
        frame = self.raw.read(FRAME.size)
        if len(frame) < FRAME.size:
            raise BackupError(_("the archive is truncated: it ends at byte %(at)s, after chunk %(i)s, before its "
                                "final chunk") % {"at": self.offset + len(frame), "i": self.index - 1})
        length, final = FRAME.unpack(frame)
        if length < 28 or length > self.chunk + 28 or final > 1:
            raise BackupError(_("the archive is damaged or was altered: chunk %(i)s (byte %(at)s) has an impossible "
                                "length") % {"i": self.index, "at": self.offset})
        sealed = self.raw.read(length)
        if len(sealed) < length:
            raise BackupError(_("the archive is truncated: chunk %(i)s (byte %(at)s) is cut short")
                              % {"i": self.index, "at": self.offset})
        try:
            self.buf = sm4_gcm_open(self.key, sealed, _aad(self.digest, self.index, bool(final)))
        except DecryptionError as exc:
            raise BackupError(_("the archive is damaged or was altered: chunk %(i)s (byte %(at)s) does not "
                                "authenticate") % {"i": self.index, "at": self.offset}) from exc
        self.offset += FRAME.size + length
        self.pos = 0
        self.index += 1
        if final:
            self.done = True
            if self.raw.read(1):
                raise BackupError(_("the archive has data after its final chunk (byte %(at)s)") % {"at": self.offset})
        return True

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if self.pos >= len(self.buf):
                if not self._next():
                    break
                continue
            take = len(self.buf) - self.pos if n < 0 else min(n - len(out), len(self.buf) - self.pos)
            out += self.buf[self.pos:self.pos + take]
            self.pos += take
        return bytes(out)

    def drain(self) -> None:
        """Reads (and authenticates) every chunk left, up to the final one."""
        self.pos = len(self.buf)
        while self._next():
            self.pos = len(self.buf)


class _HashingOut:
    """Passes writes on to a file and keeps the SHA-256 and length of everything written."""

    def __init__(self, out):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)


class _HashingIn:
    """Reads exactly `size` bytes of a file (tarfile needs the size up front), hashing them."""

    def __init__(self, f, size: int, name: str):
        self.f, self.left, self.name, self.sha = f, size, name, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        data = self.f.read(want)
        if len(data) < want:
            raise BackupError(_("%(file)s shrank while it was read") % {"file": self.name})
        self.left -= len(data)
        self.sha.update(data)
        return data


# --------------------------------------------------------------------------------------------------
# Reading an archive (both restore passes)
# --------------------------------------------------------------------------------------------------


def _safe_name(member: tarfile.TarInfo) -> str:
    name = member.name
    parts = PurePosixPath(name).parts
    if (not member.isreg() or name.startswith("/") or not parts or any(p in ("", ".", "..") for p in parts)
            or (name != MANIFEST and (parts[0] not in TOP or len(parts) < 2)) or "\\" in name or "\x00" in name
            or (parts[0] == "home" and (len(parts) != 2 or parts[1] not in HOME_FILES))):
        raise BackupError(_("the archive holds an entry it should not: %(name)r") % {"name": name})
    return name


def _read_archive(path, passphrase: bytes, sink, progress: Progress) -> tuple[dict, str]:
    """Walks the archive, calling sink(name, member, fileobj) -> None for each file (it must read the file
    to its end), and checks every file against the manifest. Returns (manifest, SHA-256 of the archive)."""
    seen: dict[str, tuple[str, int]] = {}
    manifest_raw = None
    archive_sha = hashlib.sha256()

    class _Tee:
        def __init__(self, raw):
            self.raw = raw

        def read(self, n: int = -1) -> bytes:
            data = self.raw.read(n)
            archive_sha.update(data)
            return data

    last = time.monotonic()
    try:
        raw_file = open(path, "rb")
    except OSError as exc:
        raise BackupError(_("cannot read %(file)s: %(e)s") % {"file": path, "e": exc.strerror}) from exc
    with raw_file:
        raw = _Tee(raw_file)
        header, key, digest = _read_header(raw, passphrase)
        reader = _OpenedReader(raw, key, digest, int(header["chunk"]), raw_file.tell())
        try:
            with tarfile.open(fileobj=reader, mode="r|", format=tarfile.PAX_FORMAT) as tar:
                for member in tar:
                    name = _safe_name(member)
                    if manifest_raw is not None:
                        raise BackupError(_("the archive has entries after its manifest"))
                    if name in seen:
                        raise BackupError(_("the archive holds %(name)s twice") % {"name": name})
                    f = tar.extractfile(member)
                    if name == MANIFEST:
                        if member.size > MAX_MANIFEST:
                            raise BackupError(_("the archive's manifest is too large"))
                        manifest_raw = f.read()
                        continue
                    counted = _CountingIn(f)
                    sink(name, member, counted)
                    counted.finish()
                    seen[name] = (counted.sha.hexdigest(), counted.size)
                    if time.monotonic() - last > 1:
                        last = time.monotonic()
                        progress(_("%(n)s files, %(mb)s MiB read") % {"n": len(seen), "mb": reader.offset >> 20})
        except tarfile.TarError as exc:
            raise BackupError(_("the archive's contents are damaged: %(e)s") % {"e": exc}) from exc
        reader.drain()
    if manifest_raw is None:
        raise BackupError(_("the archive has no manifest (it is incomplete)"))
    try:
        manifest = json.loads(manifest_raw)
        listed = {f["name"]: (f["sha256"], int(f["size"])) for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(_("the archive's manifest is damaged")) from exc
    for name in sorted(set(listed) | set(seen)):
        if name not in seen:
            raise BackupError(_("%(name)s is in the manifest but not in the archive") % {"name": name})
        if name not in listed:
            raise BackupError(_("%(name)s is in the archive but not in the manifest") % {"name": name})
        if listed[name] != seen[name]:
            raise BackupError(_("%(name)s does not match the manifest's size and SHA-256") % {"name": name})
    return manifest, archive_sha.hexdigest()


class _CountingIn:
    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def finish(self) -> None:
        while self.read(1 << 20):
            pass


def _discard(_name, _member, f) -> None:
    while f.read(1 << 20):
        pass


def verify_archive(path, passphrase, progress: Progress | None = None) -> dict:
    """Checks the whole archive (every chunk's tag, every file against the manifest) and returns the
    manifest (with "archive_sha256" added). Writes nothing and needs no Django: `shuzheng restore` runs it
    before the platform starts up in the target home."""
    progress = progress or _quiet
    progress(_("checking the archive"))
    manifest, digest = _read_archive(path, _passphrase_bytes(passphrase), _discard, progress)
    manifest["archive_sha256"] = digest
    return manifest


def _passphrase_bytes(passphrase) -> bytes:
    data = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise BackupError(_("the passphrase is empty"))
    return data


# --------------------------------------------------------------------------------------------------
# Taking the snapshot
# --------------------------------------------------------------------------------------------------


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API, in one step: one read
    transaction), as a self-contained rollback-journal file."""
    src = sqlite3.connect(str(source), timeout=60)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_facts(path: Path) -> dict:
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                           "'sqlite_%' ORDER BY name")]
        facts = {"tables": {n: con.execute(f"SELECT COUNT(*) FROM {_q(n)}").fetchone()[0] for n in names}}
        if "django_migrations" in names:
            facts["migrations"] = [list(r) for r in con.execute("SELECT app, name FROM django_migrations ORDER BY id")]
        if "audit_head" in names:
            facts["audit_head"] = con.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        if "audit_head_signature" in names:
            facts["audit_signed"] = con.execute(
                "SELECT seq, hash FROM audit_head_signature ORDER BY seq DESC LIMIT 1").fetchone()
        if "iceberg_tables" in names:
            facts["iceberg"] = [list(r) for r in con.execute(
                "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables WHERE catalog_name = ? "
                "ORDER BY 1, 2", ["shuzheng"])]
        return facts
    finally:
        con.close()


def _pg_conninfo() -> str:
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    conf = connection.settings_dict
    params = {"dbname": conf["NAME"], "user": conf.get("USER"), "password": conf.get("PASSWORD"),
              "host": conf.get("HOST"), "port": str(conf["PORT"]) if conf.get("PORT") else None}
    return make_conninfo(**{k: v for k, v in params.items() if v})


def _pg_snapshot(folder: Path, progress: Progress) -> dict:
    """Every table of the schema (Django's and the Iceberg catalog's) copied with COPY inside one REPEATABLE
    READ READ ONLY transaction, so all of them show one moment. Returns the facts the manifest needs."""
    import psycopg
    from psycopg import sql

    folder.mkdir()
    facts: dict = {"tables": {}, "columns": {}}
    with psycopg.connect(_pg_conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction(), conn.cursor() as cur:
            tables = [r[0] for r in cur.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace "
                "ORDER BY relname").fetchall()]
            for i, table in enumerate(tables):
                columns = [r[0] for r in cur.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT "
                    "attisdropped AND attgenerated = '' ORDER BY attnum", [_q(table)]).fetchall()]
                facts["columns"][table] = columns
                facts["tables"][table] = cur.execute(
                    sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                statement = sql.SQL("COPY {} ({}) TO STDOUT").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                with open(folder / f"{table}.copy", "wb") as out, cur.copy(statement) as copy:
                    for data in copy:
                        out.write(data)
                if i % 10 == 0:
                    progress(_("database: %(i)s/%(n)s tables") % {"i": i + 1, "n": len(tables)})
            facts["sequences"] = {r[0]: r[1] for r in cur.execute(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema()").fetchall()}
            if "django_migrations" in tables:
                facts["migrations"] = [list(r) for r in cur.execute(
                    "SELECT app, name FROM django_migrations ORDER BY id").fetchall()]
            if "audit_head" in tables:
                facts["audit_head"] = cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            if "audit_head_signature" in tables:
                facts["audit_signed"] = cur.execute(
                    "SELECT seq, hash FROM audit_head_signature ORDER BY seq DESC LIMIT 1").fetchone()
            if "iceberg_tables" in tables:
                facts["iceberg"] = [list(r) for r in cur.execute(
                    "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
                    "WHERE catalog_name = %s ORDER BY 1, 2", ["shuzheng"]).fetchall()]
    (folder / "tables.json").write_text(json.dumps({"columns": facts["columns"], "sequences": facts["sequences"]}))
    return facts


def _local(location: str) -> Path:
    parsed = urlparse(location)
    return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else Path(location)


def _read_metadata(path: Path) -> dict:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


def _iceberg_state(rows: list, root: Path) -> dict:
    """identifier -> current snapshot id, its total-records, and its metadata file (relative)."""
    state = {}
    for namespace, name, location in rows or []:
        path = _local(location)
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise BackupError(_("Iceberg table %(t)s lives outside SHUZHENG_HOME/warehouse (%(at)s); back up its "
                                "object store with that store's own tools") % {"t": f"{namespace}.{name}",
                                                                                "at": location}) from None
        metadata = _read_metadata(path)
        current = metadata.get("current-snapshot-id")
        if current in (None, -1):
            current, rows_now = None, 0
        else:
            snapshot = next((s for s in metadata.get("snapshots", []) if s.get("snapshot-id") == current), {})
            rows_now = int(snapshot.get("summary", {}).get("total-records", 0))
        state[f"{namespace}.{name}"] = {"snapshot_id": current, "rows": rows_now, "metadata": relative}
    return state


def _walk(folder: Path, skip_top: tuple[str, ...] = (), skip: set[Path] | None = None) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == folder:
            dirnames[:] = [d for d in dirnames if d not in skip_top]
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            if skip and path in skip:
                continue
            if path.is_symlink() or not path.is_file():
                continue
            files.append(path)
    return files


def create_backup(path, passphrase, *, progress: Progress | None = None, actor=None,
                  chunk_size: int = CHUNK) -> dict:
    """Writes a consistent, sealed archive of this home and its database to `path` (which must not exist)
    while the platform runs, records `backup.created` in the audit trail, and returns the manifest (with
    "archive_sha256" and "archive_bytes")."""
    from django.conf import settings
    from django.db import connection, transaction

    from shuzheng.audit import services as audit
    from shuzheng.audit.signing import WITNESS_FILE
    from shuzheng.org.services import Actor
    from shuzheng.security.keys import ENV as MASTER_ENV
    from shuzheng.security.keys import keys_dir
    from shuzheng.sharing import recorder, serving

    progress = progress or _quiet
    secret = _passphrase_bytes(passphrase)
    path = Path(path).resolve()
    if path.exists():
        raise BackupError(_("%(file)s exists; give a new file name") % {"file": path})
    if not path.parent.is_dir():
        raise BackupError(_("%(folder)s is not a folder") % {"folder": path.parent})
    home = Path(settings.HOME).resolve()
    root = home / "warehouse"
    scratch = home / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="backup-", dir=scratch))
    partial = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    started = time.monotonic()
    try:
        progress(_("snapshot of the database"))
        entries: list[tuple[str, Path | bytes]] = []
        vendor = connection.vendor
        if vendor == "sqlite":
            _sqlite_copy(Path(connection.settings_dict["NAME"]), work / "main.sqlite3")
            facts = _sqlite_facts(work / "main.sqlite3")
            entries.append(("db/main.sqlite3", work / "main.sqlite3"))
            catalog = {}
            if (root / CATALOG_FILE).exists():
                # After the database: the catalog is then never older than the loads the database knows.
                _sqlite_copy(root / CATALOG_FILE, work / "catalog.sqlite3")
                catalog = _sqlite_facts(work / "catalog.sqlite3")
                entries.append(("db/catalog.sqlite3", work / "catalog.sqlite3"))
            iceberg_rows = catalog.get("iceberg", [])
            catalog_tables = catalog.get("tables", {})
        elif vendor == "postgresql":
            facts = _pg_snapshot(work / "pg", progress)
            entries += [(f"db/pg/{p.name}", p) for p in sorted((work / "pg").iterdir())]
            iceberg_rows, catalog_tables = facts.get("iceberg", []), {}
        else:
            raise BackupError(_("backups of a %(v)s database are not supported") % {"v": vendor})
        iceberg = _iceberg_state(iceberg_rows, root)
        progress(_("listing files"))
        skip = {path, partial, root / CATALOG_FILE, *(root / f"{CATALOG_FILE}-{s}" for s in ("wal", "shm", "journal"))}
        if root.exists():
            entries += [("warehouse/" + p.relative_to(root).as_posix(), p)
                        for p in _walk(root, SKIP_WAREHOUSE, skip)]
        keys = keys_dir()
        for p in _walk(keys, skip=skip):
            if p.parent == keys and not p.name.startswith(".") and not p.name.endswith(".lock"):
                if p.name != WITNESS_FILE:  # rewritten from the restored database's signatures on restore
                    entries.append(("keys/" + p.name, p))
        journal = recorder.folder()
        for p in sorted(journal.glob("*.jsonl")):
            try:
                data = p.read_bytes()
            except FileNotFoundError:
                continue  # shipped and removed meanwhile
            entries.append(("journal/" + p.name, data[:data.rfind(b"\n") + 1]))
        for name in HOME_FILES:
            if (home / name).is_file():
                entries.append(("home/" + name, home / name))
        master_in_env = bool(os.environ.get(MASTER_ENV))
        manifest = {
            "format": VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "vendor": vendor,
            "home": str(home),
            "warehouse": str(root),
            "warehouse_uri": root.as_uri(),
            "database_tag": serving.database_tag(),
            "migrations": facts.get("migrations", []),
            "tables": facts["tables"],
            "catalog_tables": catalog_tables,
            "iceberg": iceberg,
            "audit": {"seq": (facts.get("audit_head") or (0, ""))[0], "hash": (facts.get("audit_head") or (0, ""))[1],
                      "signed_seq": (facts.get("audit_signed") or (None, None))[0],
                      "signed_hash": (facts.get("audit_signed") or (None, None))[1]},
            "master_key_in_archive": not master_in_env,
            "skipped": [],
        }
        progress(_("writing %(n)s files") % {"n": len(entries)})
        head, key, digest = _new_header(secret, chunk_size)
        files = []
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw_file:
            out = _HashingOut(raw_file)
            out.write(head)
            sealed = _SealedWriter(out, key, digest, chunk_size)
            last = time.monotonic()
            with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for i, (name, source) in enumerate(entries):
                    added = _add(tar, name, source)
                    if added is None:
                        manifest["skipped"].append(name)
                        continue
                    files.append({"name": name, "size": added[1], "sha256": added[0]})
                    if time.monotonic() - last > 1:
                        last = time.monotonic()
                        progress(_("%(i)s/%(n)s files, %(mb)s MiB written") % {"i": i + 1, "n": len(entries),
                                                                                  "mb": out.size >> 20})
                manifest["files"] = files
                manifest["bytes"] = sum(f["size"] for f in files)
                _add(tar, MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())
            sealed.finish()
            raw_file.flush()
            os.fsync(raw_file.fileno())
        os.replace(partial, path)
        _fsync_dir(path.parent)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    manifest["archive_sha256"] = out.sha.hexdigest()
    manifest["archive_bytes"] = out.size
    manifest["seconds"] = round(time.monotonic() - started, 3)
    with transaction.atomic():
        audit.record(actor or Actor.cli(), "backup.created", object_type="backup",
                     object_id=manifest["archive_sha256"], summary=summary_of(manifest, path))
    progress(_("done: %(mb)s MiB in %(s).1f s") % {"mb": out.size >> 20, "s": manifest["seconds"]})
    return manifest


def summary_of(manifest: dict, path=None) -> dict:
    """What the audit trail keeps about an archive."""
    summary = {
        "archive": str(path) if path else None,
        "sha256": manifest.get("archive_sha256"),
        "bytes": manifest.get("archive_bytes"),
        "created": manifest.get("created"),
        "vendor": manifest.get("vendor"),
        "files": len(manifest.get("files", [])),
        "tables": len(manifest.get("tables", {})),
        "rows": sum(manifest.get("tables", {}).values()),
        "iceberg": {k: v["snapshot_id"] for k, v in manifest.get("iceberg", {}).items()},
        "audit_seq": manifest.get("audit", {}).get("seq"),
        "audit_signed_seq": manifest.get("audit", {}).get("signed_seq"),
    }
    return {k: v for k, v in summary.items() if v is not None}


def _add(tar: tarfile.TarFile, name: str, source) -> tuple[str, int] | None:
    """Adds one file; returns (SHA-256, size), or None when the file vanished before it was opened."""
    info = tarfile.TarInfo(name)
    if isinstance(source, bytes):
        info.size, info.mtime, info.mode = len(source), int(time.time()), 0o600
        tar.addfile(info, io.BytesIO(source))
        return hashlib.sha256(source).hexdigest(), len(source)
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        return None  # a scratch file removed since the listing (a finished or discarded load's)
    with f:
        st = os.fstat(f.fileno())
        info.size, info.mtime = st.st_size, int(st.st_mtime)
        info.mode = 0o600 if name.startswith(("keys/", "db/")) else (st.st_mode & 0o755)
        reader = _HashingIn(f, st.st_size, str(source))
        tar.addfile(info, reader)
        return reader.sha.hexdigest(), st.st_size


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# Is the target empty? (run before Django starts in the target, and again after)
# --------------------------------------------------------------------------------------------------


def _sqlite_is_empty(path: Path) -> bool:
    """True for an SQLite file without tables. Opened `immutable`, so that looking changes nothing (not even
    the WAL index); a write-ahead log with content counts as content."""
    wal = Path(str(path) + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return False
    if not path.exists() or path.stat().st_size == 0:
        return True
    try:
        con = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return False


def home_problem(home: Path) -> str | None:
    """Why `home` cannot be restored into (it holds something), or None. A home holding only what starting
    the platform creates (the job queue, a new secret key, empty folders, an empty database file) is empty.
    Reads nothing but names until the end, and changes nothing."""
    home = Path(home)
    if not home.exists():
        return None
    if not home.is_dir():
        return _("%(home)s is not a folder") % {"home": home}
    database = (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", DB_FILE + "-journal")
    for dirpath, dirnames, filenames in os.walk(home):
        dirnames.sort()
        for name in sorted(filenames):
            relative = (Path(dirpath) / name).relative_to(home).as_posix()
            if relative not in STARTUP_FILES and relative not in database:
                return _("the home %(home)s is not empty (it holds %(file)s); restore only into a new, empty home") % {
                    "home": home, "file": relative}
    if not _sqlite_is_empty(home / DB_FILE):
        return _("the home %(home)s is not empty (its database %(file)s has tables); restore only into a new, empty "
                 "home") % {"home": home, "file": DB_FILE}
    return None


def postgres_problem(url: str) -> str | None:
    """Why the PostgreSQL database at `url` cannot be restored into, or None when it has no tables."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            n = conn.execute("SELECT COUNT(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                             "'information_schema')").fetchone()[0]
            name = conn.info.dbname
    except psycopg.Error as exc:
        return _("cannot open the target database: %(e)s; create it empty first") % {"e": str(exc).strip()}
    if n:
        return _("the database %(db)s is not empty (%(n)s tables); restore only into a new, empty database") % {
            "db": name, "n": n}
    return None


def _database_problem() -> str | None:
    from django.db import connection

    if connection.vendor == "postgresql":
        return postgres_problem(_pg_conninfo())
    path = Path(connection.settings_dict["NAME"])
    if not _sqlite_is_empty(path):
        return _("the database %(db)s is not empty; restore only into a new, empty home") % {"db": path}
    return None


# --------------------------------------------------------------------------------------------------
# Restoring
# --------------------------------------------------------------------------------------------------


def _migration_check(archived: list) -> list[tuple[str, str]]:
    """The per-app migration targets that recreate the archived schema; BackupError when the archive was
    made by a version whose migrations this one does not have."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    graph = loader.graph
    replaced = {r for migration in loader.replacements.values() for r in migration.replaces}
    applied = {tuple(m) for m in archived}
    unknown = sorted(applied - set(graph.nodes) - replaced)
    if unknown:
        raise BackupError(_("the archive was made by a newer version of the platform (it has migrations this "
                            "version lacks: %(m)s); restore with that version")
                          % {"m": ", ".join(".".join(m) for m in unknown[:5])})
    if connection.vendor == "sqlite":
        return []
    applied &= set(graph.nodes)
    targets = []
    for app in sorted({a for a, _ in applied}):
        nodes = [n for n in applied if n[0] == app]
        for node in nodes:
            if not any(other != node and node in graph.forwards_plan(other) for other in nodes):
                targets.append(node)
    return targets


class _Undo:
    """What a failed restore must take back: the files it wrote into the (empty) home, the secret key it
    replaced, and on PostgreSQL every table it created."""

    def __init__(self, home: Path):
        self.home = home
        self.files: list[Path] = []
        self.secret = (home / "keys" / "secret_key").read_bytes() if (home / "keys" / "secret_key").exists() else None
        self.database = False

    def run(self) -> None:
        from django.db import connection

        for path in reversed(self.files):
            path.unlink(missing_ok=True)
        if self.secret is not None:
            (self.home / "keys" / "secret_key").write_bytes(self.secret)
        for folder in ("warehouse", "journal"):
            _prune_empty(self.home / folder)
        if self.database:
            if connection.vendor == "postgresql":
                connection.close()
                with connection.cursor() as cur:
                    for (table,) in _fetch(cur, "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND "
                                                "relnamespace = current_schema()::regnamespace"):
                        cur.execute(f"DROP TABLE IF EXISTS {_q(table)} CASCADE")
                    for (function,) in _fetch(cur, "SELECT oid::regprocedure::text FROM pg_proc WHERE "
                                                   "pronamespace = current_schema()::regnamespace"):
                        cur.execute(f"DROP FUNCTION IF EXISTS {function} CASCADE")
            else:
                connection.close()
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(connection.settings_dict["NAME"]) + suffix).unlink(missing_ok=True)


def _fetch(cur, query: str) -> list:
    cur.execute(query)
    return cur.fetchall()


def _prune_empty(folder: Path) -> None:
    if not folder.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _write_file(target: Path, f, mode: int, mtime: int | None, undo: _Undo) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        existed = target.exists()
        os.replace(tmp, target)
        if not existed:
            undo.files.append(target)
    finally:
        tmp.unlink(missing_ok=True)


def restore_backup(path, passphrase, *, progress: Progress | None = None, verified: dict | None = None,
                   actor=None) -> dict:
    """Rebuilds this (empty) home and its (empty) database from an archive: checks the whole archive before
    writing anything (unless `verified`, the manifest `verify_archive` returned for this file, says it was
    just checked), restores database, warehouse, keys, gateway journal and configuration, records
    `backup.restored` in the restored trail and verifies it. Returns a summary whose "verify" is the audit
    verification. BackupError (with nothing left behind) when the archive or the target is unfit."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction

    from shuzheng.audit import services as audit
    from shuzheng.org.services import Actor
    from shuzheng.security import keys
    from shuzheng.sharing import recorder
    from shuzheng.warehouse import lake

    progress = progress or _quiet
    secret = _passphrase_bytes(passphrase)
    started = time.monotonic()
    home = Path(settings.HOME).resolve()
    for problem in (home_problem(home), _database_problem()):
        if problem:
            raise BackupError(problem)
    manifest = verified if verified is not None else verify_archive(path, secret, progress)
    if manifest.get("vendor") != connection.vendor:
        raise BackupError(_("the archive holds a %(theirs)s database; this platform runs on %(ours)s (set "
                            "DATABASE_URL accordingly)") % {"theirs": manifest.get("vendor"), "ours": connection.vendor})
    targets = _migration_check(manifest.get("migrations", []))
    connection.close()
    undo = _Undo(home)
    work = Path(tempfile.mkdtemp(prefix="restore-", dir=home))
    root = home / "warehouse"
    journal = recorder.folder()
    try:
        progress(_("extracting"))

        def sink(name: str, member: tarfile.TarInfo, f) -> None:
            top, rest = name.split("/", 1)
            if top == "db":
                _write_file(work / rest, f, 0o600, None, undo)
            elif top == "warehouse":
                _write_file(root / rest, f, 0o644, member.mtime, undo)
            elif top == "keys":
                _write_file(keys.keys_dir() / rest, f, 0o600, member.mtime, undo)
            elif top == "journal":
                _write_file(journal / rest, f, 0o600, member.mtime, undo)
            elif top == "home":
                _write_file(home / rest, f, 0o600, member.mtime, undo)

        second, digest = _read_archive(path, secret, sink, progress)
        if {f["name"]: f["sha256"] for f in second["files"]} != {f["name"]: f["sha256"] for f in manifest["files"]}:
            raise BackupError(_("the archive changed while it was being restored"))
        undo.database = True
        progress(_("restoring the database"))
        if connection.vendor == "sqlite":
            db_path = Path(connection.settings_dict["NAME"])
            os.replace(work / "main.sqlite3", db_path)
            undo.files.append(db_path)
            if (work / "catalog.sqlite3").exists():
                os.replace(work / "catalog.sqlite3", root / CATALOG_FILE)
                undo.files.append(root / CATALOG_FILE)
        else:
            _pg_load(work / "pg", targets, manifest)
        counts = _table_counts()
        wrong = {t: (n, counts.get(t)) for t, n in manifest["tables"].items() if counts.get(t) != n}
        if wrong:
            raise BackupError(_("the restored database's row counts differ from the manifest: %(d)s") % {"d": wrong})
        call_command("migrate", interactive=False, verbosity=0)  # only when the archive predates this version
        progress(_("pointing the Iceberg tables at the new home"))
        rewritten = _rebase_warehouse(manifest, root)
        keys.forget()
        if not os.environ.get("SHUZHENG_SECRET_KEY") and (keys.keys_dir() / "secret_key").exists():
            settings.SECRET_KEY = (keys.keys_dir() / "secret_key").read_text().strip()
        lake.close()
        iceberg = _check_iceberg(manifest)
        _reset_witness()
    except BaseException:
        progress(_("failed: taking back what was written"))
        try:
            undo.run()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    summary = {
        "archive_sha256": digest,
        "created": manifest.get("created"),
        "source_home": manifest.get("home"),
        "files": len(manifest["files"]),
        "bytes": manifest.get("bytes"),
        "tables": counts,
        "iceberg": iceberg,
        "metadata_files_rewritten": rewritten,
        "audit_seq": manifest["audit"]["seq"],
    }
    with transaction.atomic():
        audit.record(actor or Actor.cli(), "backup.restored", object_type="backup", object_id=digest,
                     summary={k: v for k, v in summary.items() if k != "tables"} | {"rows": sum(counts.values())})
    progress(_("verifying the audit trail"))
    summary["verify"] = audit.verify().as_dict()
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _table_counts() -> dict:
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            names = [r[0] for r in _fetch(cur, "SELECT relname FROM pg_class WHERE relkind = 'r' AND "
                                               "relnamespace = current_schema()::regnamespace")]
        else:
            names = [r[0] for r in _fetch(cur, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                                               "LIKE 'sqlite_%'")]
        counts = {}
        for name in sorted(names):
            cur.execute(f"SELECT COUNT(*) FROM {_q(name)}")
            counts[name] = cur.fetchone()[0]
    return counts


def _pg_load(folder: Path, targets: list, manifest: dict) -> None:
    """Recreates the archived schema (migrations up to the archived state; the Iceberg catalog's tables),
    then loads every table with COPY in one transaction (Django's foreign keys are deferred to its commit)
    and sets every sequence where it was."""
    from django.db import connection, transaction
    from django.db.migrations.executor import MigrationExecutor
    from psycopg import sql

    from shuzheng.warehouse import lake

    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    meta = json.loads((folder / "tables.json").read_text())
    if any(t.startswith("iceberg_") for t in meta["columns"]):
        lake.catalog()  # creates the catalog's tables
        lake.close()
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor() as cur:
            existing = {r[0] for r in cur.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace")}
            missing = sorted(set(meta["columns"]) - existing)
            if missing:
                raise BackupError(_("the archived tables %(t)s have no counterpart in this version")
                                  % {"t": ", ".join(missing)})
            filled = [t for t in meta["columns"] if cur.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t))).fetchone()[0]]
            if filled:  # what the migrations wrote (content types, permissions…): the archive's rows replace it
                cur.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, filled))))
            for table, columns in meta["columns"].items():
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                with open(folder / f"{table}.copy", "rb") as f, cur.copy(statement) as copy:
                    while data := f.read(1 << 20):
                        copy.write(data)
            sequences = {r[0] for r in cur.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'S' AND relnamespace = current_schema()::regnamespace")}
            for name, value in meta["sequences"].items():
                if value is not None and name in sequences:
                    cur.execute("SELECT setval(%s::regclass, %s, true)", [_q(name), value])
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()  # ids the migrations may have cached were replaced by the archive's


# ---- Iceberg: absolute paths in the metadata point at the old home ----


def _rebase_warehouse(manifest: dict, root: Path) -> int:
    """Rewrites the old warehouse location (path and file: URI) to the new one in every table's metadata
    files (JSON, manifest lists and manifests, whose Avro is re-encoded with the same schema, codec and
    sync marker; manifest lengths in the lists follow) and in the catalog's rows. Returns how many files
    were rewritten."""
    from django.db import connection

    old_root, old_uri = manifest["warehouse"], manifest["warehouse_uri"]
    new_root, new_uri = str(root), root.as_uri()
    if old_root == new_root:
        return 0
    pairs = [(old_uri, new_uri), (old_root, new_root)]

    def fix(text: str) -> str:
        for old, new in pairs:
            if text == old or text.startswith(old + "/"):
                return new + text[len(old):]
        return text

    rewritten = 0
    for folder in sorted({p.parent for p in root.rglob("*.metadata.json")} | {p.parent for p in root.rglob("*.avro")}):
        if folder.relative_to(root).parts[:1] in (("_quarantine",), ("_serving",)):
            continue
        avros = sorted(folder.glob("*.avro"))
        lists = [a for a in avros if _avro_is_manifest_list(a)]
        for avro in [a for a in avros if a not in lists] + lists:  # manifests first: the lists carry their sizes
            _rewrite_avro(avro, fix)
            rewritten += 1
        for meta in sorted(folder.glob("*.metadata.json")):
            data = meta.read_bytes()
            zipped = data[:2] == b"\x1f\x8b"
            doc = _fix_json(json.loads(gzip.decompress(data) if zipped else data), fix)
            out = json.dumps(doc).encode()
            _replace_bytes(meta, gzip.compress(out) if zipped else out)
            rewritten += 1
    if connection.vendor == "sqlite":
        con = sqlite3.connect(str(root / CATALOG_FILE))
        try:
            with con:
                for key, current, previous in con.execute(
                        "SELECT rowid, metadata_location, previous_metadata_location FROM iceberg_tables").fetchall():
                    con.execute("UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? "
                                "WHERE rowid = ?", [fix(current) if current else current,
                                                    fix(previous) if previous else previous, key])
        finally:
            con.close()
    else:
        with connection.cursor() as cur:
            cur.execute("SELECT catalog_name, table_namespace, table_name, metadata_location, "
                        "previous_metadata_location FROM iceberg_tables")
            for cat, namespace, name, current, previous in cur.fetchall():
                cur.execute("UPDATE iceberg_tables SET metadata_location = %s, previous_metadata_location = %s "
                            "WHERE catalog_name = %s AND table_namespace = %s AND table_name = %s",
                            [fix(current) if current else current, fix(previous) if previous else previous,
                             cat, namespace, name])
    return rewritten


def _fix_json(value, fix):
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [_fix_json(v, fix) for v in value]
    if isinstance(value, dict):
        return {k: _fix_json(v, fix) for k, v in value.items()}
    return value


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.rebase-{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    st = path.stat()
    os.chmod(tmp, st.st_mode & 0o777)
    os.utime(tmp, (st.st_atime, st.st_mtime))
    os.replace(tmp, path)


def _check_iceberg(manifest: dict) -> dict:
    """Each restored table's current snapshot and its rows counted by DuckDB over that snapshot's files,
    compared with the manifest."""
    import duckdb

    from shuzheng.warehouse import lake

    found = {}
    for identifier, expected in manifest.get("iceberg", {}).items():
        table = lake.open_table(identifier)
        if table is None:
            raise BackupError(_("Iceberg table %(t)s is missing after the restore") % {"t": identifier})
        snapshot = table.current_snapshot()
        snapshot_id = snapshot.snapshot_id if snapshot else None
        files = lake.data_files(table, snapshot)
        root = str(lake.root()) + "/"
        missing = [f for f in files if not f.startswith(root) or not Path(f).exists()]
        if missing:
            raise BackupError(_("Iceberg table %(t)s refers to a file outside the restored warehouse or missing from "
                                "it: %(file)s") % {"t": identifier, "file": missing[0]})
        rows = 0
        if files:
            con = duckdb.connect()
            try:
                rows = con.execute("SELECT COUNT(*) FROM read_parquet(?)", [files]).fetchone()[0]
            finally:
                con.close()
        if snapshot_id != expected["snapshot_id"] or rows != expected["rows"]:
            raise BackupError(_("Iceberg table %(t)s: snapshot %(s)s with %(n)s rows after the restore, the manifest "
                                "says %(ms)s with %(mn)s") % {"t": identifier, "s": snapshot_id, "n": rows,
                                                             "ms": expected["snapshot_id"], "mn": expected["rows"]})
        found[identifier] = {"snapshot_id": snapshot_id, "rows": rows}
    return found


def _reset_witness() -> None:
    """The signature witness follows the restored database's newest signature."""
    from shuzheng.audit import signing
    from shuzheng.audit.services import latest_signature

    newest = latest_signature()
    if newest is None:
        signing.remove_witness()
    else:
        signing.write_witness(newest.seq, newest.hash, newest.signed_at, newest.signature, force=True)


# ---- a minimal Avro object-container transcoder (Iceberg manifests), enough to rewrite strings ----


class _In:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def long(self) -> int:
        shift = n = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)
            shift += 7

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BackupError(_("an Avro file in the warehouse is damaged"))
        data = self.data[self.pos:self.pos + n]
        self.pos += n
        return data

    def blob(self) -> bytes:
        return self.raw(self.long())


def _zz(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _names(schema, names: dict, namespace: str = "") -> dict:
    if isinstance(schema, list):
        for branch in schema:
            _names(branch, names, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            space = schema.get("namespace", namespace)
            name = schema["name"]
            full = name if "." in name or not space else f"{space}.{name}"
            names[full] = names[name] = schema
            for field in schema.get("fields", []):
                _names(field["type"], names, space)
        elif kind == "array":
            _names(schema["items"], names, namespace)
        elif kind == "map":
            _names(schema["values"], names, namespace)
        elif isinstance(kind, (dict, list)):
            _names(kind, names, namespace)
    return names


def _copy(schema, r: _In, w: bytearray, names: dict, fix):
    """Copies one datum of `schema` from r to w, passing every string through `fix`; returns strings."""
    if isinstance(schema, list):
        index = r.long()
        w += _zz(index)
        return _copy(schema[index], r, w, names, fix)
    if isinstance(schema, str):
        if schema not in PRIMITIVES:
            return _copy(names[schema], r, w, names, fix)
        kind, schema = schema, {"type": schema}
    else:
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return _copy(kind, r, w, names, fix)
    if kind == "null":
        return None
    if kind == "boolean":
        w += r.raw(1)
    elif kind in ("int", "long"):
        w += _zz(r.long())
    elif kind == "float":
        w += r.raw(4)
    elif kind == "double":
        w += r.raw(8)
    elif kind == "bytes":
        data = r.blob()
        w += _zz(len(data)) + data
    elif kind == "string":
        text = fix(r.blob().decode())
        data = text.encode()
        w += _zz(len(data)) + data
        return text
    elif kind == "fixed":
        w += r.raw(schema["size"])
    elif kind == "enum":
        w += _zz(r.long())
    elif kind in ("record", "error"):
        manifest_path = None
        for field in schema["fields"]:
            if field["name"] == "manifest_length" and manifest_path is not None:
                old = r.long()
                local = _local(manifest_path)
                w += _zz(local.stat().st_size if local.exists() else old)
                continue
            value = _copy(field["type"], r, w, names, fix)
            if field["name"] == "manifest_path":
                manifest_path = value
    elif kind in ("array", "map"):
        while True:
            count = r.long()
            if count == 0:
                w += _zz(0)
                break
            if count < 0:
                count = -count
                r.long()  # the block's byte size
            w += _zz(count)
            for _index in range(count):
                if kind == "map":
                    key = r.blob()
                    w += _zz(len(key)) + key
                _copy(schema["items"] if kind == "array" else schema["values"], r, w, names, fix)
    else:
        raise BackupError(_("an Avro file in the warehouse uses the unknown type %(k)r") % {"k": kind})
    return None


def _avro_parts(path: Path) -> tuple[dict, bytes, _In]:
    r = _In(path.read_bytes())
    if r.raw(4) != b"Obj\x01":
        raise BackupError(_("%(file)s is not an Avro file") % {"file": path})
    meta: dict[str, bytes] = {}
    while True:
        count = r.long()
        if count == 0:
            break
        if count < 0:
            count = -count
            r.long()
        for _index in range(count):
            key = r.blob().decode()
            meta[key] = r.blob()
    return meta, r.raw(16), r


def _avro_is_manifest_list(path: Path) -> bool:
    meta, _sync, _r = _avro_parts(path)
    schema = json.loads(meta["avro.schema"])
    return isinstance(schema, dict) and any(f["name"] == "manifest_path" for f in schema.get("fields", []))


def _rewrite_avro(path: Path, fix) -> None:
    meta, sync, r = _avro_parts(path)
    schema = json.loads(meta["avro.schema"])
    codec = meta.get("avro.codec", b"null").decode()
    if codec not in ("null", "deflate"):
        raise BackupError(_("%(file)s uses the Avro codec %(c)s, which this restore cannot rewrite")
                          % {"file": path, "c": codec})
    names = _names(schema, {})
    out = bytearray(b"Obj\x01")
    out += _zz(len(meta))
    for key, value in meta.items():
        out += _zz(len(key.encode())) + key.encode() + _zz(len(value)) + value
    out += _zz(0) + sync
    while r.pos < len(r.data):
        count = r.long()
        block = r.blob()
        if r.raw(16) != sync:
            raise BackupError(_("%(file)s is damaged (sync marker)") % {"file": path})
        plain = zlib.decompress(block, -15) if codec == "deflate" else block
        source, target = _In(plain), bytearray()
        for _index in range(count):
            _copy(schema, source, target, names, fix)
        if codec == "deflate":
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = packer.compress(bytes(target)) + packer.flush()
        else:
            data = bytes(target)
        out += _zz(count) + _zz(len(data)) + data + sync
    _replace_bytes(path, bytes(out))
