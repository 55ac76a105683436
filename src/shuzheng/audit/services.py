"""Writing, verifying, searching and exporting the audit trail.

`record()` must be called inside the transaction of the change it describes: the record and the change
commit together or not at all. It takes the head row's lock, so concurrent writers queue instead of forking
the chain; call it as the last step of a service to keep that lock short.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterator

from django.db import connection, transaction
from django.utils.translation import gettext as _

from shuzheng.audit.models import AuditHead, AuditRecord
from shuzheng.core.crypto import new_sm3, sm3_hex
from shuzheng.core.errors import ValidationFailed

GENESIS = "0" * 64
SEP = "\x1f"
FIELDS = ("seq", "ts", "actor", "actor_org", "ip", "action", "object_type", "object_id", "summary", "hash")


def canonical(seq, ts, actor, actor_org, ip, action, object_type, object_id, summary) -> bytes:
    # Unit separators cannot occur inside a field: `record()` refuses control characters and the summary
    # is JSON, which escapes them.
    return SEP.join((str(seq), str(ts), actor, actor_org, ip, action, object_type, object_id, summary)).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return sm3_hex(prev_hash.encode() + body)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value, limit: int) -> str:
    """Control characters (which would break the record's canonical form) become '?'."""
    text = "" if value is None else str(value)
    return _CONTROL.sub("?", text[:limit])


def summarize(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def record(actor, action: str, obj=None, *, summary=None, object_type: str = "", object_id: str = "") -> AuditRecord:
    """Append one record for `actor` (an org.services.Actor, or anything with .name, .org_code, .ip)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    written = record_many([Entry(actor.name, actor.org_code, actor.ip, action, object_type, object_id, summary)])
    return AuditRecord(**dict(zip(FIELDS, written[0])))


@dataclass(frozen=True)
class Entry:
    """One record to append, already flattened (the gateway's batches are built from these)."""

    actor: str
    actor_org: str
    ip: str
    action: str
    object_type: str = ""
    object_id: str = ""
    summary: object = None
    ts: int | None = None  # microseconds since the epoch when it happened; None: now


def record_many(entries: list[Entry]) -> list[tuple]:
    """Appends records in order under one lock of the head: the gateway writes a batch of calls this way
    (one transaction, one lock, one multi-row insert) instead of one transaction per call. Plain SQL: at
    thousands of records a second the ORM's per-query cost is most of the work. Returns the rows written,
    as tuples in FIELDS order."""
    # No savepoint: a failed record must fail the change it describes anyway, and on PostgreSQL a savepoint
    # costs two more round trips while the head lock is held.
    with transaction.atomic(savepoint=False), connection.cursor() as cur:
        # On SQLite the IMMEDIATE transaction already holds the database's write lock.
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1"
                    + (" FOR UPDATE" if connection.vendor == "postgresql" else ""))
        row = cur.fetchone()
        if row is None:
            AuditHead.objects.get_or_create(id=1)
            return record_many(entries)
        seq, digest = row
        rows = []
        for e in entries:
            seq += 1
            fields = (
                seq,
                e.ts or time.time_ns() // 1000,
                _clean(e.actor, 80),
                _clean(e.actor_org, 18),
                _clean(e.ip, 45),
                _clean(e.action, 64),
                _clean(e.object_type, 64),
                _clean(e.object_id, 64),
                summarize(e.summary or {}),
            )
            digest = chain_hash(digest, canonical(*fields))
            rows.append(fields + (digest,))
        cur.executemany(f"INSERT INTO audit_record ({', '.join(FIELDS)}) VALUES ({', '.join(['%s'] * len(FIELDS))})",
                        rows)
        cur.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", [seq, digest])
    return rows


@dataclass
class VerifyResult:
    intact: bool
    records: int
    first_bad_seq: int | None = None
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "intact": self.intact,
            "records": self.records,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


# ---- verification ----
#
# verify() walks the chain in seq order and stops at the first record whose position or hash is wrong, then
# compares the end of the chain with the head row. Each record's hash covers the *stored* hash of the record
# before it, so any seq range can be checked on its own given the stored hash just before the range. Large
# trails are therefore split into ranges checked in parallel by a process pool (hashing is CPU-bound and SM3
# holds the GIL); the first failing range in seq order decides what is reported, so the result (first bad
# seq, reason, records counted) is exactly what one sequential walk would report.

VERIFY_BATCH = 20_000  # rows per query (keyset pagination keeps memory flat on any trail size)
VERIFY_CHUNK = 100_000  # seqs per pool task
VERIFY_PARALLEL_MIN = 200_000  # below this, starting a pool costs more than it saves
VERIFY_MAX_WORKERS = 8


def _canonical_sql(vendor: str) -> str:
    """SELECT of (seq, canonical bytes, hash bytes): the database joins the fields, so Python receives three
    values a record instead of ten and builds no string (about a third of the per-record cost). It is
    `canonical()` written in SQL; the tests check both agree on SQLite and PostgreSQL (an intact chain written
    by `record()` must verify)."""
    text_fields = ("actor", "actor_org", "ip", "action", "object_type", "object_id", "summary")
    if vendor == "postgresql":
        joined = " || chr(31) || ".join(["seq::text", "ts::text", *text_fields])
        body, digest = f"convert_to({joined}, 'UTF8')", "convert_to(hash, 'UTF8')"
    else:  # SQLite: integers concatenate as their decimal text; bytes come from the connection's text_factory
        body, digest = " || char(31) || ".join(["seq", "ts", *text_fields]), "hash"
    return (f"SELECT seq, {body}, {digest} FROM audit_record WHERE seq > %s AND seq <= %s "
            f"ORDER BY seq LIMIT {VERIFY_BATCH}")


def _rows(cur, lo: int, hi: int) -> Iterator[tuple[int, bytes, bytes]]:
    """(seq, canonical bytes, hash as ASCII bytes) for lo < seq <= hi, in seq order."""
    sql = _canonical_sql(connection.vendor)
    raw = connection.connection if connection.vendor == "sqlite" else None
    saved = raw.text_factory if raw is not None else None
    while True:
        if raw is not None:
            raw.text_factory = bytes  # UTF-8 bytes straight from SQLite, as str.encode() would give
        try:
            cur.execute(sql, [lo, hi])
            rows = cur.fetchall()
        finally:
            if raw is not None:
                raw.text_factory = saved
        if not rows:
            return
        yield from rows
        lo = rows[-1][0]


def _check_range(cur, lo: int, hi: int) -> tuple[int, int | None, str, str]:
    """Check the records lo < seq <= hi, which must be exactly lo+1 … hi, each hashing onto the one before.

    Returns (records that passed, first bad seq or None, reason, hash of the last record that passed)."""
    if lo == 0:
        prev = GENESIS.encode()
    else:
        # The stored hash of record `lo` (if it is missing, the range before this one reports it).
        cur.execute("SELECT hash FROM audit_record WHERE seq = %s", [lo])
        row = cur.fetchone()
        prev = row[0].encode() if row else GENESIS.encode()
    expected = lo + 1
    count = 0
    for seq, body, digest in _rows(cur, lo, hi):
        if seq != expected:
            bad = expected if seq > expected else seq
            return count, bad, _missing(expected), prev.decode()
        h = new_sm3()  # chain_hash(prev, body), inlined: this loop runs once per record
        h.update(prev + body)
        if h.hexdigest().encode() != digest:
            return count, seq, _mismatch(seq), prev.decode()
        prev = digest
        expected += 1
        count += 1
    if expected <= hi:
        # The records from `expected` to `hi` are missing; the walk would next meet a record beyond `hi`.
        return count, expected, _missing(expected), prev.decode()
    return count, None, "", prev.decode()


def _missing(seq: int) -> str:
    return _("record %(seq)s is missing or out of order") % {"seq": seq}


def _mismatch(seq: int) -> str:
    return _("record %(seq)s does not match its hash") % {"seq": seq}


def _worker_init() -> None:
    """Pool processes leave Ctrl-C to the parent, and SIGTERM ends them, whatever handlers they inherited (a
    server's, say)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _check_range_in_worker(bounds: tuple[int, int]) -> tuple[int, int | None, str, str]:
    """Pool task: check one range on this process's own database connection."""
    try:
        with connection.cursor() as cur:
            return _check_range(cur, *bounds)
    finally:
        connection.close()


def _pool_size(last_seq: int) -> int:
    """How many processes to verify with; 0 means check in this process, on this connection."""
    if last_seq == 0 or last_seq < VERIFY_PARALLEL_MIN:
        return 0
    # Workers use their own connections, so they would not see this transaction's uncommitted records
    # (or an in-memory database). Forking a multi-threaded process (a threaded web server) is unsafe, and a
    # daemonic process may not have children: in all those cases check sequentially.
    if connection.in_atomic_block or (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        return 0
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 0
    if multiprocessing.current_process().daemon:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, VERIFY_MAX_WORKERS) if cpus > 1 else 0


def _combine_ranges(results) -> tuple[int, int | None, str, str]:
    """Adds up the results of consecutive ranges, taken in seq order, stopping at the first failure:
    (records that passed, first bad seq or None, reason, hash of the last record that passed)."""
    count, prev = 0, GENESIS
    for passed, bad, reason, last_hash in results:
        count += passed
        if bad is not None:
            return count, bad, reason, last_hash
        prev = last_hash
    return count, None, "", prev


def verify() -> VerifyResult:
    """Recompute the whole chain. Reports the first record whose hash, position or head does not agree."""
    start = time.perf_counter()
    with connection.cursor() as cur:
        # The head and the last seq in one statement, so both describe the same moment; records appended
        # while we verify lie beyond `last_seq` and are left for the next verification.
        cur.execute(
            "SELECT (SELECT MIN(seq) FROM audit_record), (SELECT MAX(seq) FROM audit_record),"
            " (SELECT seq FROM audit_head WHERE id = 1), (SELECT hash FROM audit_head WHERE id = 1)"
        )
        first_seq, last_seq, head_seq, head_hash = cur.fetchone()
    if head_seq is None:
        head_seq, head_hash = 0, GENESIS
    if first_seq is not None and first_seq < 1:
        # The walk starts at seq 1; a record placed before it is an insertion all the same.
        return VerifyResult(False, 0, first_seq, _missing(first_seq), time.perf_counter() - start)
    last_seq = last_seq or 0
    workers = _pool_size(last_seq)
    if workers:
        bounds = [(lo, min(lo + VERIFY_CHUNK, last_seq)) for lo in range(0, last_seq, VERIFY_CHUNK)]
        connection.close()  # forked children must not share our connection; Django reconnects on next use
        with ProcessPoolExecutor(min(workers, len(bounds)), multiprocessing.get_context("fork"), _worker_init) as pool:
            try:
                # map() yields in seq order, so the first failure met is the first failure in the chain.
                count, bad, reason, prev = _combine_ranges(pool.map(_check_range_in_worker, bounds))
            finally:
                # After a failure, drop the ranges not started yet. Running ones finish (a worker is never
                # killed: one killed while holding a queue lock would hang the pool).
                pool.shutdown(cancel_futures=True)
    else:
        with connection.cursor() as cur:
            count, bad, reason, prev = _check_range(cur, 0, last_seq)
    if bad is not None:
        return VerifyResult(False, count, bad, reason, time.perf_counter() - start)
    if head_seq != count or head_hash != prev:
        return VerifyResult(
            False,
            count,
            min(head_seq, count) + 1 if head_seq != count else count,
            _("the chain head says %(head)s records ending %(hh)s…, the trail has %(n)s ending %(th)s…")
            % {"head": head_seq, "hh": head_hash[:12], "n": count, "th": prev[:12]},
            time.perf_counter() - start,
        )
    return VerifyResult(True, count, None, "", time.perf_counter() - start)


# ---- reading: only audit administrators (checked by the caller through org.services.authz) ----


@dataclass
class AuditQuery:
    actor: str = ""
    actor_org: str = ""
    action: str = ""
    object_id: str = ""
    ip: str = ""
    since_us: int | None = None
    until_us: int | None = None

    def filter(self, qs):
        if self.since_us is not None and self.until_us is not None and self.since_us > self.until_us:
            raise ValidationFailed.of("since", _("The start is after the end."))
        if self.actor:
            qs = qs.filter(actor=self.actor)
        if self.actor_org:
            qs = qs.filter(actor_org=self.actor_org)
        if self.action:
            qs = qs.filter(action__startswith=self.action)
        if self.object_id:
            qs = qs.filter(object_id=self.object_id)
        if self.ip:
            qs = qs.filter(ip=self.ip)
        if self.since_us is not None:
            qs = qs.filter(ts__gte=self.since_us)
        if self.until_us is not None:
            qs = qs.filter(ts__lt=self.until_us)
        return qs


def csv_safe(value) -> str:
    """Spreadsheet programs execute cells starting with = + - @ (and tab/CR): prefix them with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(qs) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["seq", "time_utc", "actor", "actor_org", "ip", "action", "object_type", "object_id", "summary", "hash"]
    writer.writerow(header)
    yield "\ufeff" + buf.getvalue()  # BOM: Excel on Chinese Windows opens UTF-8 correctly
    for rec in qs.order_by("seq").iterator(chunk_size=2000):
        buf.seek(0)
        buf.truncate()
        writer.writerow(
            [csv_safe(v) for v in (rec.seq, rec.at.isoformat(), rec.actor, rec.actor_org, rec.ip, rec.action,
                                    rec.object_type, rec.object_id, rec.summary, rec.hash)]
        )
        yield buf.getvalue()


def _require_auditor(actor) -> None:
    # Imported here: org.services writes audit records, so it imports this module at load time.
    from shuzheng.org.roles import Perm
    from shuzheng.org.services import authz

    authz.require(actor, Perm.AUDIT_VIEW)


def search(actor, query: AuditQuery):
    _require_auditor(actor)
    return query.filter(AuditRecord.objects.all())


def export(actor, query: AuditQuery) -> Iterator[str]:
    """CSV of the matching records. The export itself is recorded before the first byte leaves."""
    qs = search(actor, query)
    with transaction.atomic():
        record(actor, "audit.export", object_type="audit.auditrecord",
               summary={k: v for k, v in vars(query).items() if v not in ("", None)})
    return export_csv(qs)


def verify_as(actor) -> VerifyResult:
    _require_auditor(actor)
    result = verify()
    with transaction.atomic():
        record(actor, "audit.verify", object_type="audit.auditrecord", summary=result.as_dict())
    return result
