"""Writing, verifying, searching and exporting the audit trail.

`record()` must be called inside the transaction of the change it describes: the record and the change
commit together or not at all. It takes the head row's lock, so concurrent writers queue instead of forking
the chain; call it as the last step of a service to keep that lock short.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from typing import Iterator

from django.db import connection, transaction

from shuzheng.audit.models import AuditHead, AuditRecord
from shuzheng.core.crypto import sm3
from shuzheng.core.errors import ValidationFailed

GENESIS = "0" * 64
SEP = "\x1f"
FIELDS = ("seq", "ts", "actor", "actor_org", "ip", "action", "object_type", "object_id", "summary", "hash")


def canonical(seq, ts, actor, actor_org, ip, action, object_type, object_id, summary) -> bytes:
    # Unit separators cannot occur inside a field: `record()` refuses control characters and the summary
    # is JSON, which escapes them.
    return SEP.join((str(seq), str(ts), actor, actor_org, ip, action, object_type, object_id, summary)).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return sm3(prev_hash.encode() + body).hex()


def _clean(value, limit: int) -> str:
    text = "" if value is None else str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = "".join(c if ord(c) >= 32 and ord(c) != 127 else "?" for c in text)
    return text[:limit]


def summarize(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def record(actor, action: str, obj=None, *, summary=None, object_type: str = "", object_id: str = "") -> AuditRecord:
    """Append one record for `actor` (an org.services.Actor, or anything with .name, .org_code, .ip)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    with transaction.atomic():
        head, _created = AuditHead.objects.select_for_update().get_or_create(id=1)
        seq = head.seq + 1
        ts = time.time_ns() // 1000
        fields = (
            seq,
            ts,
            _clean(actor.name, 80),
            _clean(actor.org_code, 18),
            _clean(actor.ip, 45),
            _clean(action, 64),
            _clean(object_type, 64),
            _clean(object_id, 64),
            summarize(summary or {}),
        )
        digest = chain_hash(head.hash, canonical(*fields))
        rec = AuditRecord(**dict(zip(FIELDS, fields + (digest,))))
        rec.save(force_insert=True)
        head.seq, head.hash = seq, digest
        head.save(update_fields=["seq", "hash"])
    return rec


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


def _rows(batch: int = 20000) -> Iterator[tuple]:
    """All records in seq order as raw tuples (no model instances: verification must be fast)."""
    cols = ", ".join(FIELDS)
    last = 0
    with connection.cursor() as cur:
        while True:
            cur.execute(f"SELECT {cols} FROM audit_record WHERE seq > %s ORDER BY seq LIMIT {batch}", [last])
            rows = cur.fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]


def verify() -> VerifyResult:
    """Recompute the whole chain. Reports the first record whose hash, position or head does not agree."""
    start = time.perf_counter()
    prev = GENESIS
    expected = 1
    count = 0
    for seq, ts, actor, org, ip, action, otype, oid, summary, digest in _rows():
        if seq != expected:
            bad = expected if seq > expected else seq
            return VerifyResult(False, count, bad, f"record {expected} is missing or out of order", time.perf_counter() - start)
        body = SEP.join((str(seq), str(ts), actor, org, ip, action, otype, oid, summary)).encode()
        if sm3(prev.encode() + body).hex() != digest:
            return VerifyResult(False, count, seq, f"record {seq} does not match its hash", time.perf_counter() - start)
        prev = digest
        expected += 1
        count += 1
    head = AuditHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != count or head_hash != prev:
        return VerifyResult(
            False,
            count,
            min(head_seq, count) + 1 if head_seq != count else count,
            f"the chain head says {head_seq} records ending {head_hash[:12]}…, the trail has {count} ending {prev[:12]}…",
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
            raise ValidationFailed.of("since", "'since' is after 'until'")
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
