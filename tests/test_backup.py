"""Backup and restore (S5): a restore drill on the running platform, and every kind of bad archive or target
refused before anything is written.

The source is the session's running platform (`shuzheng serve` with its job worker, its own home and, on
PostgreSQL, its own database). The backup is taken while a thread appends audit records; it is restored
with the real `shuzheng restore` into a new home (and, on PostgreSQL, a new database), and compared."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

PASSPHRASE = "drill: 定州 backup passphrase"

BACKUP_WHILE_WRITING = """
import json, os, sys, threading, time
import django
os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'
django.setup()
from django.db import connections, transaction
from shuzheng.audit import services as audit
from shuzheng.org.services import Actor
from shuzheng.security import backup

stop, seqs, errors = threading.Event(), [], []

def writer():
    actor = Actor(label="backup-writer", ip="127.0.0.1")
    try:
        while not stop.is_set():
            with transaction.atomic():
                seqs.append(audit.record(actor, "test.backup_writer", summary={"n": len(seqs)}).seq)
            time.sleep(0.002)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()

thread = threading.Thread(target=writer)
thread.start()
while len(seqs) < 5 and not errors:
    time.sleep(0.01)
manifest = backup.create_backup(sys.argv[1], os.environ["SHUZHENG_BACKUP_PASSPHRASE"], chunk_size=1 << 20)
written = len(seqs)
while len(seqs) < written + 5 and not errors:
    time.sleep(0.01)
stop.set()
thread.join()
print(json.dumps({"manifest": manifest, "first": seqs[0], "last": seqs[-1], "errors": errors}))
"""

STATE = """
import json, os
import django
os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'
django.setup()
import duckdb
from django.db import connection
from shuzheng.warehouse import lake
with connection.cursor() as cur:
    if connection.vendor == "postgresql":
        cur.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace")
    else:
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    names = sorted(r[0] for r in cur.fetchall())
    counts = {}
    for name in names:
        cur.execute('SELECT COUNT(*) FROM "%s"' % name)
        counts[name] = cur.fetchone()[0]
    cur.execute("SELECT seq, hash FROM audit_head")
    head = list(cur.fetchone())
tables = {}
for ns in lake.catalog().list_namespaces():
    for ident in lake.catalog().list_tables(ns):
        table = lake.catalog().load_table(ident)
        snapshot = table.current_snapshot()
        files = lake.data_files(table, snapshot)
        rows = duckdb.connect().execute("SELECT COUNT(*) FROM read_parquet(?)", [files]).fetchone()[0] if files else 0
        home = str(lake.root())
        tables[".".join(ident)] = {"snapshot_id": snapshot.snapshot_id if snapshot else None, "rows": rows,
                                   "location": table.location(), "files": len(files),
                                   "files_elsewhere": [f for f in files if not f.startswith(home + "/")]}
print(json.dumps({"counts": counts, "iceberg": tables, "head": head}))
"""

# What someone with write access to the restored database does: edit a record, recompute every later hash
# and the head row, so that the SM3 chain alone is consistent again.
REWRITE_AND_RECOMPUTE = """
import os, sys
import django
os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'
django.setup()
from django.db import connection, transaction
from shuzheng.audit import services as audit
from shuzheng.audit.models import AuditRecord
target = int(sys.argv[1])
with transaction.atomic(), connection.cursor() as cur:
    if connection.vendor == "postgresql":
        cur.execute("ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")
    else:
        cur.execute("DROP TRIGGER audit_record_no_update")
    prev = AuditRecord.objects.get(seq=target - 1).hash
    for i, fields in enumerate(AuditRecord.objects.filter(seq__gte=target).order_by("seq")
                               .values_list(*audit.FIELDS[:-1])):
        fields = list(fields)
        if i == 0:
            fields[2] = "someone-else"
        prev = audit.chain_hash(prev, audit.canonical(*fields))
        cur.execute("UPDATE audit_record SET actor = %s, hash = %s WHERE seq = %s", [fields[2], prev, fields[0]])
    cur.execute("UPDATE audit_head SET hash = %s WHERE id = 1", [prev])
print(audit._verify_chain().intact)
"""


def _run(env: dict, *args: str, script: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "shuzheng", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


class Target:
    """A new home and, on PostgreSQL, a new empty database (dropped afterwards)."""

    def __init__(self, platform, home: Path):
        self.home = home
        self.env = dict(platform.env, SHUZHENG_HOME=str(home), SHUZHENG_BACKUP_PASSPHRASE=PASSPHRASE)
        self.database = None
        if os.environ.get("DATABASE_URL"):
            import psycopg

            self.database = f"shuzheng_restore_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
            self.env["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + self.database

    def restore(self, archive: Path, *extra: str, check: bool = False) -> subprocess.CompletedProcess:
        return _run(self.env, "restore", str(archive), "--json", *extra, check=check)

    def tree(self) -> dict | None:
        """Every path in the home with its content's SHA-256, and on PostgreSQL the database's tables."""
        state = None
        if self.home.exists():
            state = {p.relative_to(self.home).as_posix(): "dir" if p.is_dir() else hashlib.sha256(
                p.read_bytes()).hexdigest() for p in sorted(self.home.rglob("*"))}
        if self.database:
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"]) as conn:
                tables = sorted(r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall())
            return {"home": state, "tables": tables}
        return {"home": state}

    def drop(self) -> None:
        if self.database:
            import psycopg

            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


@pytest.fixture
def target(platform, tmp_path):
    made = Target(platform, tmp_path / "restored-home")
    yield made
    made.drop()


@pytest.fixture(scope="module")
def drill(platform, tmp_path_factory):
    """The running platform with a fresh load and a signed head, backed up while a writer appends."""
    from shuzheng.demo import population

    folder = tmp_path_factory.mktemp("backup")
    code = _last_json(_run(platform.env, script=(
        "import json, os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
        "from shuzheng.catalog.models import Resource\n"
        "print(json.dumps(Resource.objects.get(published__name='企业登记基本信息').code))")).stdout)
    csv = folder / "企业.csv"
    population.write_csv(csv, population.enterprise_batches(2000, seed=31), encoding="gbk")
    load = _last_json(_run(platform.env, "ingest", str(csv), "--resource", code, "--mode", "upsert", "--json",
                           check=False).stdout)
    assert load["snapshot_id"], load
    _run(platform.env, "audit", "sign")
    public = folder / "audit-public.pem"
    _run(platform.env, "audit", "public-key", "--out", str(public))
    archive = folder / "drill.szb"
    env = dict(platform.env, SHUZHENG_BACKUP_PASSPHRASE=PASSPHRASE)
    made = _last_json(_run(env, str(archive), script=BACKUP_WHILE_WRITING).stdout)
    assert not made["errors"], made["errors"]
    source = _last_json(_run(platform.env, script=STATE).stdout)
    return {"archive": archive, "public": public, "load": load, "source": source, **made}


@pytest.fixture(scope="module")
def restored(drill, platform, tmp_path_factory):
    """The drill's archive restored once with the real `shuzheng restore` into a new home (and, on
    PostgreSQL, a new database): the drill checks what came back, then that a second restore is refused."""
    made = Target(platform, tmp_path_factory.mktemp("restore") / "restored-home")
    try:
        yield made, made.restore(drill["archive"])
    finally:
        made.drop()


def test_restore_drill(drill, restored):
    target, done = restored
    manifest, archive = drill["manifest"], drill["archive"]
    # The snapshot fell between records the writer appended: the backup ran while the trail grew.
    assert drill["first"] < manifest["audit"]["seq"] < drill["last"]
    assert manifest["audit"]["signed_seq"] and manifest["audit"]["signed_seq"] <= manifest["audit"]["seq"]
    assert manifest["iceberg"]
    assert drill["load"]["snapshot_id"] in {t["snapshot_id"] for t in manifest["iceberg"].values()}
    assert any(f["name"].startswith("warehouse/_quarantine/") for f in manifest["files"])
    assert not any(f["name"].startswith("warehouse/_serving/") for f in manifest["files"])
    assert {"keys/master.key", "keys/secret_key", "keys/audit-sm2.key"} <= {f["name"] for f in manifest["files"]}
    assert archive.stat().st_mode & 0o777 == 0o600
    raw = archive.read_bytes()
    assert b"audit_record" not in raw and b"CREATE TABLE" not in raw  # sealed: nothing readable in clear

    assert done.returncode == 0, done.stderr[-3000:]
    summary = _last_json(done.stdout)
    assert summary["verify"]["intact"] and summary["verify"]["signed_seq"] == manifest["audit"]["signed_seq"]
    restored = _last_json(_run(target.env, script=STATE).stdout)

    # Row counts: every table as the manifest says; the trail has one record more, the restore's own.
    counts = dict(restored["counts"])
    assert counts.pop("audit_record") == manifest["tables"]["audit_record"] + 1
    expected = {t: n for t, n in manifest["tables"].items() if t != "audit_record"}
    assert {t: counts.get(t) for t in expected} == expected
    assert restored["head"][0] == manifest["audit"]["seq"] + 1
    # Iceberg: the same current snapshots, and DuckDB counts the same rows over the restored files, which
    # live in the new home.
    for identifier, table in manifest["iceberg"].items():
        assert restored["iceberg"][identifier]["snapshot_id"] == table["snapshot_id"]
        assert restored["iceberg"][identifier]["rows"] == table["rows"] == drill["source"]["iceberg"][identifier]["rows"]
        assert restored["iceberg"][identifier]["location"].startswith(target.home.as_uri())
        assert not restored["iceberg"][identifier]["files_elsewhere"]
        assert restored["iceberg"][identifier]["files"] or not table["snapshot_id"]
    # No metadata JSON of the restored warehouse points at the old home (the Avro manifests are compressed:
    # the data-file paths read through them are checked above).
    old = manifest["warehouse"].encode()
    metadata = list((target.home / "warehouse").rglob("*.metadata.json"))
    assert metadata and not [p for p in metadata if old in p.read_bytes()]
    assert summary["iceberg"] == {i: {"snapshot_id": t["snapshot_id"], "rows": t["rows"]}
                                  for i, t in manifest["iceberg"].items()}

    # The restored trail verifies, also against the public key an auditor exported from the source, and the
    # restore itself is on record there.
    verified = _run(target.env, "audit", "verify", "--public-key", str(drill["public"]))
    assert "intact" in verified.stdout
    last = _last_json(_run(target.env, script=(
        "import json, os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
        "from shuzheng.audit.models import AuditRecord\n"
        "r = AuditRecord.objects.order_by('-seq').first(); print(json.dumps([r.action, r.object_id]))")).stdout)
    assert last == ["backup.restored", manifest["archive_sha256"]]

    # Someone with write access to the restored database edits a signed record and recomputes the chain and
    # the head: the chain alone agrees again, the signatures do not.
    signed = manifest["audit"]["signed_seq"]
    assert _run(target.env, str(signed - 1), script=REWRITE_AND_RECOMPUTE).stdout.strip() == "True"
    broken = _run(target.env, "audit", "verify", "--public-key", str(drill["public"]), check=False)
    assert broken.returncode == 1
    assert f"AUDIT CHAIN BROKEN at record {signed}" in broken.stderr and "signature" in broken.stderr


def test_the_backup_is_on_record_in_the_source(drill, platform):
    found = _last_json(_run(platform.env, script=(
        "import json, os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
        "from shuzheng.audit.models import AuditRecord\n"
        f"r = AuditRecord.objects.get(action='backup.created', object_id='{drill['manifest']['archive_sha256']}')\n"
        "print(r.summary)")).stdout)
    assert found["sha256"] == drill["manifest"]["archive_sha256"] and found["audit_seq"] == drill["manifest"]["audit"]["seq"]
    assert found["files"] == len(drill["manifest"]["files"])


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk frame: after the 14-byte prefix and the header, a 4-byte length and a
    1-byte final flag, then the sealed chunk."""
    header_length = struct.unpack(">I", data[10:14])[0]
    offset, frames = 14 + header_length, []
    while offset < len(data):
        length = struct.unpack(">I", data[offset:offset + 4])[0]
        frames.append((offset, 5 + length))
        offset += 5 + length
    return frames


def _damaged(data: bytes, how: str) -> bytes:
    frames = _frames(data)
    assert len(frames) >= 4
    if how == "flipped_byte":
        middle = frames[1][0] + frames[1][1] // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    if how == "flipped_header":
        return data[:20] + bytes([data[20] ^ 0x01]) + data[21:]
    if how == "truncated_mid_chunk":
        return data[:frames[2][0] + 100]
    if how == "final_chunk_dropped":
        return data[:frames[-1][0]]  # cut exactly at a chunk boundary
    if how == "chunks_reordered":
        (a, la), (b, lb) = frames[1], frames[2]
        return data[:a] + data[b:b + lb] + data[a:a + la] + data[b + lb:]
    if how == "final_flag_set_early":
        at = frames[1][0] + 4
        return data[:at] + b"\x01" + data[at + 1:]
    if how == "trailing_data":
        return data + b"\x00" * 64
    raise ValueError(how)


@pytest.mark.parametrize("how", ["flipped_byte", "flipped_header", "truncated_mid_chunk", "final_chunk_dropped",
                                 "chunks_reordered", "final_flag_set_early", "trailing_data"])
def test_a_damaged_archive_is_refused_before_anything_is_written(drill, target, tmp_path, how):
    bad = tmp_path / f"{how}.szb"
    bad.write_bytes(_damaged(drill["archive"].read_bytes(), how))
    target.home.mkdir()
    before = target.tree()
    done = target.restore(bad)
    assert done.returncode == 1
    # A changed header byte (here in the name of its first field) is bound into every chunk's tag.
    expected = {"flipped_byte": "does not authenticate", "flipped_header": "chunk 0",
                "truncated_mid_chunk": "truncated", "final_chunk_dropped": "truncated",
                "chunks_reordered": "does not authenticate", "final_flag_set_early": "does not authenticate",
                "trailing_data": "data after its final chunk"}[how]
    assert expected in done.stderr and "nothing was restored" in done.stderr, done.stderr
    assert target.tree() == before


def test_a_wrong_passphrase_is_refused(drill, target):
    target.home.mkdir()
    before = target.tree()
    target.env["SHUZHENG_BACKUP_PASSPHRASE"] = PASSPHRASE + "x"
    done = target.restore(drill["archive"])
    assert done.returncode == 1 and "wrong passphrase" in done.stderr
    assert target.tree() == before
    # Also from a file (with its trailing newline), and a missing passphrase is a usage error.
    (target.home.parent / "pass.txt").write_text(PASSPHRASE + "y\n")
    target.env.pop("SHUZHENG_BACKUP_PASSPHRASE")
    done = target.restore(drill["archive"], "--passphrase-file", str(target.home.parent / "pass.txt"))
    assert done.returncode == 1 and "wrong passphrase" in done.stderr
    done = target.restore(drill["archive"])
    assert done.returncode == 2 and "SHUZHENG_BACKUP_PASSPHRASE" in done.stderr
    assert target.tree() == before


def test_restore_into_a_non_empty_home_or_database_is_refused(drill, target):
    # A home that holds something (here, one warehouse file).
    (target.home / "warehouse" / "civil_affairs").mkdir(parents=True)
    (target.home / "warehouse" / "civil_affairs" / "keep.parquet").write_bytes(b"PAR1 not ours to overwrite")
    before = target.tree()
    done = target.restore(drill["archive"])
    assert done.returncode == 1 and "not empty" in done.stderr and "keep.parquet" in done.stderr
    assert target.tree() == before
    if target.database:
        # An empty home, but a database that already holds a table.
        import psycopg

        (target.home / "warehouse" / "civil_affairs" / "keep.parquet").unlink()
        with psycopg.connect(target.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE TABLE precious (id int)")
        before = target.tree()
        done = target.restore(drill["archive"])
        assert done.returncode == 1 and "is not empty (1 tables)" in done.stderr
        assert target.tree() == before
    else:
        # A home whose database is in use.
        (target.home / "warehouse" / "civil_affairs" / "keep.parquet").unlink()
        import sqlite3

        con = sqlite3.connect(target.home / "shuzheng.sqlite3")
        con.execute("CREATE TABLE precious (id int)")
        con.close()
        before = target.tree()
        done = target.restore(drill["archive"])
        assert done.returncode == 1 and "shuzheng.sqlite3" in done.stderr
        assert target.tree() == before


def test_a_restored_home_refuses_a_second_restore(drill, restored):
    target, done = restored
    assert done.returncode == 0, done.stderr[-3000:]
    before = target.tree()
    done = target.restore(drill["archive"])
    assert done.returncode == 1 and "not empty" in done.stderr
    assert target.tree() == before


def _sealed_tar(path: Path, members: dict[str, bytes], passphrase: str = PASSPHRASE) -> None:
    """An archive made with the real container code but arbitrary tar members (what a forger who knows the
    passphrase could write)."""
    import io
    import tarfile

    from shuzheng.security import backup

    head, key, digest = backup._new_header(passphrase.encode(), 4096)
    with open(path, "wb") as out:
        out.write(head)
        sealed = backup._SealedWriter(out, key, digest, 4096)
        with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        sealed.finish()


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "warehouse/../../escape", "other/file",
                                  "home/keys/master.key", "keys"])
def test_an_archive_cannot_name_a_path_outside_its_places(tmp_path, name, english):
    from shuzheng.security import backup

    archive = tmp_path / "forged.szb"
    _sealed_tar(archive, {name: b"x", "manifest.json": b'{"files": []}'})
    with pytest.raises(backup.BackupError, match="should not"):
        backup.verify_archive(archive, PASSPHRASE)


def test_the_manifest_must_list_exactly_what_the_archive_holds(tmp_path, english):
    from shuzheng.security import backup

    archive = tmp_path / "a.szb"
    listed = {"name": "warehouse/a.parquet", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    _sealed_tar(archive, {"warehouse/a.parquet": b"x", "manifest.json": json.dumps({"files": [listed]}).encode()})
    assert backup.verify_archive(archive, PASSPHRASE)["files"] == [listed]
    _sealed_tar(archive, {"warehouse/a.parquet": b"y", "manifest.json": json.dumps({"files": [listed]}).encode()})
    with pytest.raises(backup.BackupError, match="does not match the manifest"):
        backup.verify_archive(archive, PASSPHRASE)
    _sealed_tar(archive, {"warehouse/a.parquet": b"x", "warehouse/b": b"", "manifest.json": json.dumps(
        {"files": [listed]}).encode()})
    with pytest.raises(backup.BackupError, match="not in the manifest"):
        backup.verify_archive(archive, PASSPHRASE)
    _sealed_tar(archive, {"warehouse/a.parquet": b"x"})
    with pytest.raises(backup.BackupError, match="no manifest"):
        backup.verify_archive(archive, PASSPHRASE)
    with pytest.raises(backup.BackupError, match="wrong passphrase"):
        backup.verify_archive(archive, "another")
