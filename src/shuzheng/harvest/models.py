"""Harvesting other catalogs (D1 上联省级 and 按需对接, D2): the province platform's, another city's, a CKAN
site's or any DCAT endpoint's. Each harvested dataset becomes a read-only, attributed catalog resource of the
source's node (an Organization: the province platform, a court, a Party committee…), so searching, the
resource page and applying for it work as for the city's own."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from shuzheng.catalog.models import Resource
from shuzheng.core.models import BaseModel
from shuzheng.org.models import Organization


class SourceKind(models.TextChoices):
    SHUZHENG = "shuzheng", _("Shuzheng platform (DCAT-AP feed, incremental)")
    DCAT = "dcat", _("DCAT endpoint (Turtle, RDF/XML or JSON-LD)")
    CKAN = "ckan", _("CKAN site (Action API)")


class HarvestSource(BaseModel):
    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=10, choices=SourceKind.choices)
    url = models.URLField(_("address"), max_length=500)
    # The node its datasets are attributed to (their provider in the city catalog).
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="harvest_sources",
                                     verbose_name=_("node"))
    # The remote platform's API key for this platform's system there, wrapped by the master key.
    credential = models.BinaryField(blank=True, default=b"")
    interval_minutes = models.PositiveIntegerField(_("harvest every (minutes)"), default=1440)
    timeout_s = models.PositiveIntegerField(_("timeout per request (s)"), default=30)
    max_bytes = models.PositiveBigIntegerField(_("bytes per harvest at most"), default=50 << 20)
    max_pages = models.PositiveIntegerField(_("pages per harvest at most"), default=200)
    max_datasets = models.PositiveIntegerField(_("datasets per harvest at most"), default=20000)
    enabled = models.BooleanField(_("enabled"), default=True)
    # Where the next incremental harvest starts (Shuzheng sources): the start of the last good one, less a
    # margin for transactions that were committing then.
    watermark = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class HarvestRun(BaseModel):
    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        PARTIAL = "partial", _("Succeeded with skipped entries")
        FAILED = "failed", _("Failed")

    source = models.ForeignKey(HarvestSource, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    incremental = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Entries the source had harvested from elsewhere: left to be harvested from their origin (no loops).
    relayed = models.PositiveIntegerField(default=0)
    # Why the run failed (nothing was changed then), and each skipped entry: {identifier, field, message}.
    error = models.TextField(blank=True)
    problems = models.JSONField(default=list, blank=True)
    actor = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["-started_at"]


class HarvestedRecord(BaseModel):
    """Which remote dataset a catalog resource copies, and what it looked like when last harvested."""

    source = models.ForeignKey(HarvestSource, on_delete=models.PROTECT, related_name="records")
    identifier = models.CharField(max_length=300)
    uri = models.CharField(max_length=1000, blank=True)
    landing_page = models.CharField(max_length=1000, blank=True)
    resource = models.OneToOneField(Resource, on_delete=models.PROTECT, related_name="harvested")
    digest = models.CharField(max_length=64)  # SHA-256 of the entry as harvested: unchanged entries are skipped
    remote_modified = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["source", "identifier"]
        constraints = [models.UniqueConstraint(fields=["source", "identifier"], name="harvested_identifier_unique")]
