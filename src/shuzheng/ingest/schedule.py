"""Update cycles drive loads: a configured pull is due when its resource's cycle has passed since its last
run, and a resource is overdue when no load committed within its cycle (10% grace)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from shuzheng.catalog.models import Resource
from shuzheng.ingest.models import Load, Source
from shuzheng.ingest.pipeline import CYCLE_DAYS

GRACE = 1.1


def cycle_of(resource: Resource) -> dt.timedelta | None:
    version = resource.published or resource.pending
    days = CYCLE_DAYS.get(version.update_cycle) if version else None
    return dt.timedelta(days=days * GRACE) if days else None


def last_commit(resource: Resource) -> dt.datetime | None:
    return (Load.objects.filter(resource=resource, state=Load.State.COMMITTED)
            .order_by("-finished_at").values_list("finished_at", flat=True).first())


def overdue(resource: Resource, now: dt.datetime | None = None) -> bool:
    """Only resources that receive loads can be overdue: a table that has had a load or has a pull."""
    cycle = cycle_of(resource)
    if cycle is None:
        return False
    now = now or timezone.now()
    last = last_commit(resource)
    if last is None:
        return Source.objects.filter(resource=resource, active=True).exists() and \
            resource.mounted_at is not None and now - resource.mounted_at > cycle
    return now - last > cycle


def due_sources(now: dt.datetime | None = None) -> list[Source]:
    now = now or timezone.now()
    due = []
    for source in Source.objects.filter(active=True).select_related("resource", "resource__published"):
        cycle = cycle_of(source.resource)
        if cycle is None:
            continue  # real-time and irregular resources are pulled on demand
        if source.last_run_at is None or now - source.last_run_at >= cycle / GRACE:
            due.append(source)
    return due


def overdue_resources(now: dt.datetime | None = None) -> list[Resource]:
    resource_ids = set(Load.objects.values_list("resource_id", flat=True)) | set(
        Source.objects.filter(active=True).values_list("resource_id", flat=True))
    resources = Resource.objects.filter(id__in=resource_ids).select_related("published", "pending")
    return [r for r in resources if overdue(r, now)]
