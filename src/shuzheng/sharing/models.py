"""Sharing (共享): applications, their decisions, the grants they produce, and what the gateway records
about their use (metering, exports, subscriptions and webhook deliveries).

A grant belongs to one application system and one resource; it says which items the system may read, how
each is masked, which rows (row filter), until when, how much per day and from which addresses. The gateway
checks it on every call (services.policy), so revoking or narrowing a grant takes effect on the next call.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from shuzheng.catalog.models import Resource, ResourceVersion, SharingMethod
from shuzheng.core.models import BaseModel
from shuzheng.org.models import ApplicationSystem, Organization


class AppState(models.TextChoices):
    PROVIDER = "provider", _("Awaiting the provider")
    OFFICE = "office", _("Awaiting the platform office")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", pgettext_lazy("application state", "Rejected")
    REFUSED = "refused", _("Not shared (不予共享)")
    WITHDRAWN = "withdrawn", _("Withdrawn")


OPEN_STATES = (AppState.PROVIDER, AppState.OFFICE)


class ApplicationCounter(models.Model):
    """The last application number given out on one day (see core.numbers)."""

    day = models.DateField(primary_key=True)
    last = models.PositiveIntegerField(default=0)


class Application(BaseModel):
    """A department's request (共享申请) for one resource, for one of its application systems."""

    number = models.CharField(_("application number"), max_length=20, unique=True)
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="applications")
    version = models.ForeignKey(ResourceVersion, on_delete=models.PROTECT, related_name="+")
    system = models.ForeignKey(ApplicationSystem, on_delete=models.PROTECT, related_name="applications")
    # Copied when submitted: the departments stay on the application if the system or resource moves.
    consumer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="applications_made")
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="applications_received")
    applicant = models.CharField(max_length=80)
    purpose = models.TextField(_("purpose"))
    legal_basis = models.TextField(_("legal basis"))
    items = models.JSONField(_("items"), default=list)
    clear_items = models.JSONField(_("items asked for in clear"), default=list, blank=True)
    row_filter = models.JSONField(_("row scope"), default=list, blank=True)
    method = models.CharField(_("method"), max_length=10, choices=SharingMethod.choices)
    period_end = models.DateField(_("needed until"))
    state = models.CharField(_("state"), max_length=10, choices=AppState.choices)
    # The grant being agreed: filled from the request, narrowed by each approver (services.decide).
    terms = models.JSONField(default=dict, blank=True)
    due_at = models.DateTimeField(_("decide by"), null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["provider", "state"]), models.Index(fields=["consumer", "state"])]

    def __str__(self):
        return self.number


class ApplicationEvent(models.Model):
    """One step of an application's history, shown to both sides."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    actor = models.CharField(max_length=80)
    actor_org = models.CharField(max_length=18, blank=True)
    action = models.CharField(max_length=20)
    state = models.CharField(max_length=10, choices=AppState.choices)
    note = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]


class Grant(BaseModel):
    """What one application system may read of one resource. At most one live grant per system and resource:
    a later approval replaces the earlier grant (which is revoked in the same transaction)."""

    application = models.OneToOneField(Application, on_delete=models.PROTECT, related_name="grant")
    system = models.ForeignKey(ApplicationSystem, on_delete=models.PROTECT, related_name="grants")
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="grants")
    consumer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="grants_held")
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="grants_given_out")
    items = models.JSONField(default=list)
    masks = models.JSONField(default=dict)  # item -> mask spec (sharing.masks)
    verify_items = models.JSONField(default=list, blank=True)  # items whose mismatch verification may name
    row_filter = models.JSONField(default=list, blank=True)  # [{"item", "op", "value"}], all must hold
    methods = models.JSONField(default=list)
    expires_at = models.DateTimeField()
    calls_per_day = models.PositiveIntegerField(null=True, blank=True)
    rows_per_day = models.PositiveIntegerField(null=True, blank=True)
    allowed_ips = models.JSONField(default=list, blank=True)  # CIDR blocks; empty: any address
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=80, blank=True)
    revoke_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["system", "resource"], condition=Q(revoked_at__isnull=True),
                                    name="one_live_grant_per_system_resource"),
        ]

    def status(self, now=None) -> str:
        """revoked, expired or live (as ApiKey.status)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        return "live"

    @staticmethod
    def live_q(now, prefix: str = "") -> Q:
        """Grants in force at `now`, for querysets (of grants, or of rows that reach one through `prefix`)."""
        return Q(**{f"{prefix}revoked_at__isnull": True, f"{prefix}expires_at__gt": now})


class Meter(models.Model):
    """Use of one grant on one day (Asia/Shanghai): the gateway adds to it in batches (services.Recorder)."""

    day = models.DateField()
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="meters")
    # Copied for grouping without joins.
    system = models.CharField(max_length=48)
    consumer = models.CharField(max_length=18)
    provider = models.CharField(max_length=18)
    resource = models.CharField(max_length=20)
    calls = models.BigIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "grant"], name="one_meter_per_grant_day")]
        indexes = [models.Index(fields=["day", "consumer"]), models.Index(fields=["day", "provider"])]


class ExportState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")


class Export(BaseModel):
    """A bulk export of a grant's data (库表/文件交换), written with the recipient's watermark."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=8)
    state = models.CharField(max_length=8, choices=ExportState.choices, default=ExportState.QUEUED)
    seed = models.CharField(max_length=64)  # the watermark's secret, hex
    snapshot_id = models.BigIntegerField(null=True, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    requested_by = models.CharField(max_length=80)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]


class Subscription(BaseModel):
    """A consumer system asks to be told (webhook) when a granted resource gets a new snapshot."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="subscriptions")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=64)  # HMAC-SM3 key for the signature, shown once to the consumer
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=80)

    class Meta:
        ordering = ["-created_at"]


class DeliveryState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class Delivery(models.Model):
    """One event to one subscription, with its attempts (the delivery log)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["subscription", "event_id"], name="one_delivery_per_event")]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]  # the minute's sweep of due retries


class Notification(models.Model):
    """A message to one organization's people who handle sharing (its data officer and stewards, or the
    platform office's reviewers): the other side of an application took a step."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="notifications")
    at = models.DateTimeField()
    text = models.CharField(max_length=300)
    link = models.CharField(max_length=200)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["organization", "read_at"])]


class JournalOffset(models.Model):
    """How far the audit trail has taken in one gateway journal file (sharing.recorder): advanced in the
    transaction that appends the file's records, so each journaled call is recorded exactly once."""

    name = models.CharField(max_length=100, primary_key=True)
    offset = models.BigIntegerField(default=0)
