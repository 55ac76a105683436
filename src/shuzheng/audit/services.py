"""Writing, verifying, searching and exporting the audit trail.

`record()` must be called inside the transaction of the change it describes: the record and the change
commit together or not at all. It takes the head row's lock, so concurrent writers queue instead of forking
the chain; call it as the last step of a service to keep that lock short.
"""

from __future__ import annotations

import csv
import datetime as dt
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

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import signing
from shuzheng.audit.models import AuditHead, AuditRecord, HeadSignature
from shuzheng.core.crypto import DecryptionError, new_sm3, sm3_hex
from shuzheng.core.errors import Conflict, ValidationFailed

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
    # The SM2 signatures of the head (see sign_head): how many were checked, the newest signed position,
    # and how many records after it are covered by the chain only.
    signatures: int = 0
    signed_seq: int | None = None
    signed_at: str | None = None
    unsigned: int = 0
    key_fingerprint: str = ""

    def as_dict(self) -> dict:
        return {
            "intact": self.intact,
            "records": self.records,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "signatures": self.signatures,
            "signed_seq": self.signed_seq,
            "signed_at": self.signed_at,
            "unsigned": self.unsigned,
            "key_fingerprint": self.key_fingerprint,
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


def _pool_size(last_seq: int, minimum: int = VERIFY_PARALLEL_MIN) -> int:
    """How many processes to verify with; 0 means check in this process, on this connection."""
    if last_seq == 0 or last_seq < minimum:
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


def verify(public_key: bytes | None = None) -> VerifyResult:
    """Recompute the whole chain, then check every SM2 signature of its head against `public_key` (default:
    the home's audit key). Reports the first record whose hash, position or head does not agree, or the
    first signature that is invalid or no longer matches the recomputed chain."""
    start = time.perf_counter()
    result = _verify_chain()
    _check_signatures(result, public_key)
    result.seconds = time.perf_counter() - start
    return result


def _verify_chain() -> VerifyResult:
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
    result = VerifyResult(True, count, None, "", time.perf_counter() - start)
    result.unsigned = count
    return result


# ---- SM2 signatures of the head ----
#
# sign_head() signs the head's (seq, hash) every five minutes when it moved (audit.tasks) and on demand
# (`shuzheng audit sign`). Before signing it checks the records since the previous signature: that the
# stored hash at the previous signed seq is still the signed one, and that the records after it chain onto
# it up to the head. So a rewritten history is never signed over. verify() then checks every signature:
# valid under the public key, and its (seq, hash) equal to the recomputed chain's hash at that seq. Someone
# who edits a record and recomputes every later hash and the head row cannot fix the signatures without the
# private key. Signatures are themselves no audit records: recording one would move the head and make the
# next signature due, forever.

SIGNATURE_BATCH = 2000
SIGNATURE_PARALLEL_MIN = 4000  # SM2 verification runs at about 1000 a second a core


class SigningRefused(Conflict):
    """The chain since the last signature does not check out, or no key can sign: nothing was signed."""


def _signature_reason_at(seq: int, signed_at, text: str) -> str:
    return _("the signature of the head at record %(seq)s (signed %(at)s) %(problem)s") % {
        "seq": seq, "at": signing.signed_at_text(signed_at), "problem": text}


def sign_head() -> HeadSignature | None:
    """Signs the chain head if it moved since the last signature; returns the new signature, or None when
    there was nothing new to sign. Raises SigningRefused when the records since the last signature do not
    chain onto it (the chain was edited), or when the key cannot be opened."""
    try:
        key = signing.keypair()
    except (signing.SigningKeyError, DecryptionError) as exc:
        raise SigningRefused(_("The audit signing key cannot be used: %(e)s") % {"e": exc}) from exc
    last = HeadSignature.objects.order_by("-seq").first()
    with connection.cursor() as cur:
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        row = cur.fetchone()
    head_seq, head_hash = row if row else (0, GENESIS)
    if last is not None and last.seq > head_seq:
        raise SigningRefused(_signature_reason_at(last.seq, last.signed_at, _(
            "lies beyond the chain head (record %(head)s): records were removed") % {"head": head_seq}))
    if head_seq == 0 or (last is not None and last.seq == head_seq):
        return None
    lo = 0
    if last is not None:
        if last.key_fingerprint != key.fingerprint or not signing.valid(key.public, last.seq, last.hash,
                                                                        last.signed_at, last.signature):
            raise SigningRefused(_signature_reason_at(last.seq, last.signed_at, _("is not valid under this key")))
        stored = AuditRecord.objects.filter(seq=last.seq).values_list("hash", flat=True).first()
        if stored != last.hash:
            raise SigningRefused(_signature_reason_at(
                last.seq, last.signed_at, _("no longer matches the chain: the trail was rewritten")))
        lo = last.seq
    with connection.cursor() as cur:
        _passed, bad, reason, prev = _check_range(cur, lo, head_seq)
    if bad is not None:
        raise SigningRefused(reason)
    if prev != head_hash:
        raise SigningRefused(_("the chain head does not match record %(seq)s") % {"seq": head_seq})
    signed_at = timezone.now().astimezone(dt.timezone.utc)
    signature = signing.sign(key, head_seq, head_hash, signed_at)
    try:
        with transaction.atomic():
            made = HeadSignature.objects.create(seq=head_seq, hash=head_hash, signed_at=signed_at,
                                                signature=signature, key_fingerprint=key.fingerprint)
    except IntegrityError:
        return None  # another signer signed this head at the same moment
    transaction.on_commit(lambda: signing.write_witness(head_seq, head_hash, signed_at, signature))
    return made


def _sm2_batch(items: list[tuple]) -> list[int]:
    """Pool task: the seqs whose signature is not valid; items are (public, seq, hash, signed_at, sig)."""
    return [item[1] for item in items if not signing.valid(*item)]


def _invalid_signatures(items: list[tuple]) -> set[int]:
    workers = _pool_size(len(items), SIGNATURE_PARALLEL_MIN)
    if not workers:
        return set(_sm2_batch(items))
    size = -(-len(items) // (workers * 4))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    connection.close()
    with ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _worker_init) as pool:
        return {seq for bad in pool.map(_sm2_batch, batches) for seq in bad}


def _check_signatures(result: VerifyResult, public_key: bytes | None) -> None:
    """Adds the signatures' verdict to a chain verification. Each signature must be valid under the key and
    name a record that is still in the trail; where the chain walk confirmed the stored hashes (all of the
    trail when it is intact, else up to the first bad record) its hash must be the chain's hash there. The
    newest signature kept outside the database (the witness) must be in the database. Signatures of records
    appended after the walk started are left for the next verification."""
    walked = result.records if result.intact else max(0, (result.first_bad_seq or 1) - 1)
    key_problem = ""
    if public_key is None:
        try:
            public_key = signing.home_public_key()
        except signing.SigningKeyError as exc:
            key_problem = str(exc)
        else:
            if public_key is None:
                key_problem = _("this home has no audit signing key (keys/audit-sm2.key); give the public key")
    fp = signing.fingerprint(public_key) if public_key is not None else ""
    result.key_fingerprint = fp
    rows = []  # (seq, hash, signed_at, signature, key fingerprint, the trail's stored hash at seq or None)
    after = 0
    while True:
        batch = list(HeadSignature.objects.filter(seq__gt=after).order_by("seq")
                     .values_list("seq", "hash", "signed_at", "signature", "key_fingerprint")[:SIGNATURE_BATCH])
        if not batch:
            break
        after = batch[-1][0]
        stored = dict(AuditRecord.objects.filter(seq__in=[b[0] for b in batch]).values_list("seq", "hash"))
        for row in batch:
            if result.intact and row[0] > result.records and row[0] in stored:
                continue  # a record appended while the chain was walked: the next verification checks it
            rows.append((*row, stored.get(row[0])))
    checkable = [(public_key, seq, digest, at, sig) for seq, digest, at, sig, key_fp, _stored in rows
                 if public_key is not None and key_fp == fp]
    invalid = _invalid_signatures(checkable) if checkable else set()
    problems: list[tuple[int, str]] = []  # (seq, reason); the first in seq order is reported
    good = []
    for seq, digest, signed_at, _sig, key_fp, stored in rows:
        if stored is None:
            problem = _("covers record %(seq)s, which is no longer in the trail: records were removed") % {
                "seq": seq}
        elif public_key is None:
            problem = _("cannot be checked: %(why)s") % {"why": key_problem}
        elif key_fp != fp:
            problem = _("was made with key %(theirs)s, not with key %(ours)s") % {"theirs": key_fp, "ours": fp}
        elif seq in invalid:
            problem = _("is not a valid SM2 signature under key %(fp)s") % {"fp": fp}
        elif seq <= walked and stored != digest:
            problem = _("does not match the recomputed chain: a record up to No. %(seq)s was altered and the "
                        "hashes after it recomputed") % {"seq": seq}
        else:
            if seq <= walked:
                good.append((seq, signed_at))
            continue
        problems.append((seq, _signature_reason_at(seq, signed_at, problem)))
    witness = signing.read_witness()
    if witness is not None and witness.get("damaged"):
        problems.append((0, _("the signature witness keys/%(file)s is damaged") % {"file": signing.WITNESS_FILE}))
    elif witness is not None and not HeadSignature.objects.filter(seq=witness["seq"],
                                                                  signature=witness["signature"]).exists():
        problems.append((witness["seq"], _(
            "the newest signature (record %(seq)s, signed %(at)s, also kept in keys/%(file)s outside the "
            "database) is missing from the database: signatures were deleted") % {
            "seq": witness["seq"], "at": witness["signed_at"], "file": signing.WITNESS_FILE}))
    result.signatures = len(rows)
    if good:
        result.signed_seq, result.signed_at = good[-1][0], signing.signed_at_text(good[-1][1])
    result.unsigned = max(0, result.records - (result.signed_seq or 0)) if result.intact else 0
    if problems and result.intact:
        seq, reason = min(problems, key=lambda p: p[0])
        result.intact, result.first_bad_seq, result.reason = False, seq, reason


def latest_signature() -> HeadSignature | None:
    return HeadSignature.objects.order_by("-seq").first()


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


def signatures(actor):
    """The head's signatures, newest first (audit administrators only)."""
    _require_auditor(actor)
    return HeadSignature.objects.order_by("-seq")


def last_signature_as(actor) -> HeadSignature | None:
    _require_auditor(actor)
    return latest_signature()


def verify_as(actor) -> VerifyResult:
    _require_auditor(actor)
    result = verify()
    with transaction.atomic():
        record(actor, "audit.verify", object_type="audit.auditrecord", summary=result.as_dict())
    return result
