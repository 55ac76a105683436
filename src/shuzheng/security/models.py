"""Security state: data keys and their rotations (keys.py, fieldcrypt.py)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class KeyState(models.TextChoices):
    ACTIVE = "active", _("Active")
    RETIRING = "retiring", _("Retiring")  # replaced; still decrypts snapshots written under it
    RETIRED = "retired", _("Retired")  # no retained snapshot uses it; its material is destroyed


class DataKey(models.Model):
    """One resource's data key: an SM4 key for the values and an HMAC-SM3 key for their blind index, wrapped
    (SM4-GCM) by the master key. Its integer id is written into every ciphertext, so values written under
    different keys can sit side by side while a rotation runs."""

    resource = models.ForeignKey("catalog.Resource", on_delete=models.PROTECT, related_name="data_keys")
    state = models.CharField(max_length=10, choices=KeyState.choices, default=KeyState.ACTIVE)
    wrapped = models.BinaryField(null=True)  # NULL once retired
    master = models.CharField(max_length=16)  # fingerprint of the master key that wraps it
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["resource"], condition=models.Q(state="active"),
                                               name="one_active_data_key")]


class Rotation(models.Model):
    """A re-encryption of one resource's warehouse table under a new data key. A rotation that did not
    finish (the process died) is resumed by the next `keys rotate`: the new key is kept, the table is
    rewritten again from its current snapshot."""

    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    resource = models.ForeignKey("catalog.Resource", on_delete=models.PROTECT, related_name="+")
    old_key = models.ForeignKey(DataKey, null=True, on_delete=models.PROTECT, related_name="+")
    new_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    snapshot_id = models.BigIntegerField(null=True, blank=True)
    rows = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]


# --------------------------------------------------------------------------------------------------
# Situational awareness (S4): anomaly alerts over the audit trail (alerts.py, services.py)
# --------------------------------------------------------------------------------------------------


class Severity(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")
    CRITICAL = "critical", _("Critical")


SEVERITY_LEVEL = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class AlertState(models.TextChoices):
    OPEN = "open", _("Open")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    ESCALATED = "escalated", _("Escalated")
    CLOSED = "closed", _("Closed")


class SubjectKind(models.TextChoices):
    SYSTEM = "system", _("Application system")
    USER = "user", _("User")
    ADDRESS = "address", _("Address")
    RESOURCE = "resource", _("Resource")


class Alert(models.Model):
    """One anomaly found in the audit trail: a rule fired for a subject (an application system, a username, a
    source address, or a resource whose stored data failed its integrity check). While it is not closed, further findings of the same rule on the same subject add to its
    count and move its last_seen instead of opening another one (a database fact: the partial unique
    constraint)."""

    id = models.BigAutoField(primary_key=True)
    rule = models.CharField(max_length=32, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    level = models.PositiveSmallIntegerField(default=1)  # SEVERITY_LEVEL, for sorting
    subject_kind = models.CharField(max_length=8, choices=SubjectKind.choices)
    subject = models.CharField(max_length=160)
    summary = models.CharField(max_length=300)  # in the platform's language; pages render it in the reader's
    details = models.JSONField(default=dict)  # never clear personal values: counts, thresholds, addresses
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.BigIntegerField(default=1)
    first_seq = models.BigIntegerField(default=0)  # audit records where it was first and last seen
    last_seq = models.BigIntegerField(default=0)
    state = models.CharField(max_length=12, choices=AlertState.choices, default=AlertState.OPEN)
    handled_by = models.CharField(max_length=80, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen", "-id"]
        constraints = [models.UniqueConstraint(fields=["rule", "subject_kind", "subject"],
                                               condition=~models.Q(state="closed"), name="one_unclosed_alert")]
        indexes = [models.Index(fields=["state", "level"]), models.Index(fields=["rule", "state"])]


class AlertEvent(models.Model):
    """What people did with an alert, with their notes (the security administrator reads this history; the
    audit trail, which only the audit administrator reads, has the same steps)."""

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    actor = models.CharField(max_length=80)
    action = models.CharField(max_length=16)  # opened, acknowledged, escalated, closed
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]


class ScanCursor(models.Model):
    """One row: the last audit record the anomaly scan has taken in. Moved in the transaction that stores what
    the scan found, so each record is counted exactly once."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    scanned_at = models.DateTimeField(null=True, blank=True)
    records = models.BigIntegerField(default=0)  # records taken in since the cursor was created


class Tally(models.Model):
    """Counts the scan keeps per kind, subject and time bucket (minute, hour, off-hours period; `start` in
    seconds since the epoch), so that windows and baselines are sums over a few rows instead of re-reading the
    audit trail. Kind "total" rows (start 0) are running totals since the cursor was created (/metrics)."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=24)
    subject = models.CharField(max_length=160)
    start = models.BigIntegerField()
    n = models.BigIntegerField(default=0)
    rows = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "subject", "start"], name="one_tally_per_bucket")]
        indexes = [models.Index(fields=["kind", "start"])]


class KnownAddress(models.Model):
    """Source addresses each application system has called from (µs since the epoch), for the new-address
    rule."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(max_length=48)
    ip = models.CharField(max_length=45)
    first_seen = models.BigIntegerField()
    last_seen = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "ip"], name="one_known_address")]
