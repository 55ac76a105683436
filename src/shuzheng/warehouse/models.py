"""One governed Iceberg table per resource mounted as a warehouse table. The Iceberg catalog (in the
platform database) is the truth about snapshots; this row holds the platform's settings for the table
and a cached summary for listings."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from shuzheng.catalog.models import Resource
from shuzheng.core.models import BaseModel


class Table(BaseModel):
    resource = models.OneToOneField(Resource, on_delete=models.PROTECT, related_name="warehouse_table")
    identifier = models.CharField(_("Iceberg table"), max_length=200, unique=True)
    # A load whose share of quarantined rows exceeds this is rejected whole.
    max_failure_share = models.FloatField(_("largest share of failing rows"), default=0.2)
    # A replace load that changes the row count by more than this share is rejected (None: no check).
    max_count_change = models.FloatField(_("largest row-count change"), null=True, blank=True, default=0.5)
    retain_snapshots = models.PositiveIntegerField(_("snapshots kept"), default=100)
    current_snapshot_id = models.BigIntegerField(null=True, blank=True)
    rows = models.BigIntegerField(default=0)
    last_load_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.identifier
