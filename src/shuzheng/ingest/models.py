"""Loads (归集) and the pull sources that feed them. A committed load is exactly one Iceberg snapshot; its
row here is the lineage record of that snapshot: source, mapping, rules and counts."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from shuzheng.catalog.models import Resource
from shuzheng.core.models import BaseModel
from shuzheng.org.models import Organization


class Mode(models.TextChoices):
    APPEND = "append", _("Append")
    UPSERT = "upsert", _("Upsert by key")
    REPLACE = "replace", _("Replace")


class SourceKind(models.TextChoices):
    FILE = "file", _("File upload")
    DATABASE = "database", _("Database query")
    HTTP = "http", _("HTTP JSON API")
    DERIVED = "derived", _("Derived from other resources")


class Source(BaseModel):
    """A configured pull: where the data comes from, how its columns map to data items, how it is applied.
    The resource's update cycle schedules it."""

    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="sources")
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=10, choices=SourceKind.choices)
    config = models.JSONField(_("configuration"), default=dict)
    mapping = models.JSONField(_("column mapping"), default=dict, blank=True)
    mode = models.CharField(_("mode"), max_length=8, choices=Mode.choices, default=Mode.REPLACE)
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(_("active"), default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["resource", "name"], name="source_name_unique")]


class Load(BaseModel):
    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        COMMITTED = "committed", _("Committed")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")

    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="loads")
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="loads")
    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    started_by = models.CharField(max_length=80)
    mode = models.CharField(_("mode"), max_length=8, choices=Mode.choices)
    kind = models.CharField(_("source kind"), max_length=10, choices=SourceKind.choices)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.RUNNING)
    # Where the work runs, so an interrupted load (kill -9) can be recognised and cleaned up.
    host = models.CharField(max_length=100, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    lineage = models.JSONField(default=dict)        # the source: file hash, query, API request, input snapshots
    mapping = models.JSONField(default=dict)        # data item -> source column, as applied
    rules = models.JSONField(default=list)          # [{"id", "version", "kind", "items"}] as applied
    rows_read = models.BigIntegerField(default=0)
    loaded = models.BigIntegerField(default=0)
    quarantined = models.BigIntegerField(default=0)
    unreadable = models.BigIntegerField(default=0)  # source records that could not be parsed at all
    warned = models.BigIntegerField(default=0)
    rows_after = models.BigIntegerField(null=True, blank=True)
    snapshot_id = models.BigIntegerField(null=True, blank=True)
    parent_snapshot_id = models.BigIntegerField(null=True, blank=True)
    findings = models.JSONField(default=list)       # per check: code, item, count, blocking, sample rows
    scores = models.JSONField(default=dict)         # completeness, validity, uniqueness, consistency, timeliness, overall
    warnings = models.JSONField(default=list)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["resource", "-created_at"])]

    @property
    def rejected(self) -> bool:
        return self.state == self.State.REJECTED
