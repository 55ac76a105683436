"""The audit trail: append-only and chained with SM3.

hash(n) = SM3(hash(n-1) || canonical(record n)), hash(0) = 64 zeros. `seq` is contiguous from 1, and
AuditHead holds the last seq and hash, so an edit, a deletion (even of the tail), an insertion or a
reordering breaks either the chain or the head.
"""

import datetime as dt

from django.db import models


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("the audit trail is append-only")

    def delete(self):
        raise PermissionError("the audit trail is append-only")


class AuditRecord(models.Model):
    seq = models.BigIntegerField(primary_key=True)
    ts = models.BigIntegerField(db_index=True, help_text="microseconds since the Unix epoch, UTC")
    actor = models.CharField(max_length=80, db_index=True)
    actor_org = models.CharField(max_length=18, db_index=True, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    summary = models.TextField(blank=True, help_text="canonical JSON of what changed")
    hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        db_table = "audit_record"

    @property
    def at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.ts / 1_000_000, tz=dt.timezone.utc)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("the audit trail is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("the audit trail is append-only")


class AuditHead(models.Model):
    """One row: the end of the chain. Writers lock it (SELECT … FOR UPDATE) so the chain never forks."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        db_table = "audit_head"


class HeadSignature(models.Model):
    """An SM2 signature of the chain head at one moment (audit.signing): append-only, like the records.

    The signed message is "shuzheng-audit-head|<seq>|<hash>|<signed_at ISO 8601, UTC, microseconds>", signed
    with the platform's audit key and the default SM2 signer id (GB/T 32918, GB/T 35276). Whoever rewrites a
    record and recomputes every later hash and the head row still cannot make the hash at a signed seq match
    its signature without the private key, which lives wrapped by the master key outside the database."""

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(unique=True, help_text="the last record covered by the signature")
    hash = models.CharField(max_length=64, help_text="the SM3 chain hash of record `seq`")
    signed_at = models.DateTimeField()
    signature = models.CharField(max_length=160, help_text="DER-encoded SM2 signature, hex")
    key_fingerprint = models.CharField(max_length=16, help_text="SM3 of the public key 04||X||Y, first 8 bytes, hex")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        db_table = "audit_head_signature"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("audit head signatures are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit head signatures are append-only")
