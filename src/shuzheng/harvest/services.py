"""Harvest sources and runs. A run first fetches and reads the whole feed within the source's limits (time
per request and in all, bytes, pages, datasets); if any of that fails the run is recorded as failed and
nothing else changes. Then, in one transaction, each entry creates or updates its read-only copy in the
catalog (catalog.services.save_mirror), an entry the catalog refuses or whose identifier appears twice is
skipped and reported, and datasets the source no longer lists are withdrawn.

Shuzheng sources are harvested incrementally: `/catalog.ttl?modified_since=<watermark>` lists what changed
and what was deleted since the last good run; every `FULL_EVERY`-th run (and the first) reads the whole
catalog, which also catches deletions an incremental feed cannot report."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections import Counter

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.catalog import services as catalog
from shuzheng.core.crypto import DecryptionError
from shuzheng.core.errors import Conflict, FieldError, Forbidden, NotFound, ServiceError, ValidationFailed
from shuzheng.harvest import parse
from shuzheng.harvest.models import HarvestedRecord, HarvestRun, HarvestSource, SourceKind
from shuzheng.ingest.connectors import SourceError, http_get, http_opener, with_params
from shuzheng.org.models import Organization
from shuzheng.org.roles import ALL, Perm
from shuzheng.org.services import Actor, authz
from shuzheng.security import keys

CREDENTIAL_PURPOSE = keys.WRAPPED_FIELDS[("harvest", "HarvestSource", "credential")]  # master rotation re-wraps it
NODE_KINDS = frozenset({Organization.Kind.PROVINCE_PLATFORM, Organization.Kind.CITY_GOVERNMENT,
                        *Organization.EXTERNAL_KINDS})
# Transactions committing on the source while a run reads it, and clocks apart by less than this, show up in
# the next incremental run (SHUZHENG_HARVEST_MARGIN_S, default 300).
def _margin() -> dt.timedelta:
    return dt.timedelta(seconds=settings.HARVEST_MARGIN_S)
FULL_EVERY = 24
STALE = dt.timedelta(hours=1)
PAGE_SIZE = 100
LIMITS = {"interval_minutes": (5, 60 * 24 * 31), "timeout_s": (1, 300), "max_bytes": (1 << 10, 1 << 33),
          "max_pages": (1, 100_000), "max_datasets": (1, 1_000_000)}


def may_manage(actor: Actor) -> bool:
    """Harvesting files records into the catalog for other organizations: whoever reviews the whole
    catalog (the platform office's reviewers), not a grant over one department's resources."""
    return authz.reach(actor, Perm.CATALOG_REVIEW) == ALL


def _require(actor: Actor) -> None:
    if not may_manage(actor):
        raise Forbidden(_("You do not have permission to do this."))


def list_sources(actor: Actor):
    _require(actor)
    return HarvestSource.objects.select_related("organization")


def get_source(actor: Actor, name: str, lock: bool = False) -> HarvestSource:
    _require(actor)
    qs = HarvestSource.objects.select_related("organization")
    source = (qs.select_for_update(of=("self",)) if lock else qs).filter(name=str(name)[:100]).first()
    if source is None:
        raise NotFound(_("No harvest source %(name)s.") % {"name": str(name)[:100]})
    return source


def list_runs(actor: Actor, source: HarvestSource, limit: int = 20):
    _require(actor)
    return source.runs.all()[:limit]


def save_source(actor: Actor, data: dict, name: str | None = None) -> HarvestSource:
    """Registers a source (name None) or changes one. `credential`: the API key this platform holds at
    the source, stored wrapped by the master key and never shown again ("" keeps the old one)."""
    _require(actor)
    errors: list[FieldError] = []
    with transaction.atomic():
        source = get_source(actor, name, lock=True) if name is not None else HarvestSource(created_by=actor.name)
        new_name = str(data.get("name", source.name) or "").strip()
        if not new_name or len(new_name) > 100:
            errors.append(FieldError("name", _("A name of at most 100 characters.")))
        elif HarvestSource.objects.filter(name=new_name).exclude(pk=source.pk).exists():
            errors.append(FieldError("name", _("Another source has this name.")))
        kind = data.get("kind", source.kind)
        if kind not in SourceKind.values:
            errors.append(FieldError("kind", _("Choose one of: %(c)s.") % {"c": ", ".join(SourceKind.values)}))
        url = str(data.get("url", source.url) or "").strip()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500:
            errors.append(FieldError("url", _("An http:// or https:// address of at most 500 characters.")))
        org_code = data.get("organization", source.organization.code if source.organization_id else "")
        org = Organization.objects.filter(code=str(org_code or "")[:18]).first()
        if org is None:
            errors.append(FieldError("organization", _("Unknown organization %(code)s.") % {"code": org_code}))
        elif org.kind not in NODE_KINDS:
            errors.append(FieldError("organization", _(
                "A harvest node is the province platform, a city government (a province harvests its cities) or "
                "a body connected on demand (Party committee, People's Congress, CPPCC, discipline commission, "
                "court, procuratorate, military).")))
        values = {}
        for field_name, (low, high) in LIMITS.items():
            raw = data.get(field_name, getattr(source, field_name))
            try:
                value = int(raw)
            except (TypeError, ValueError):
                value = None
            if value is None or not low <= value <= high:
                errors.append(FieldError(field_name, _("From %(low)s to %(high)s.") % {"low": low, "high": high}))
            values[field_name] = value
        if errors:
            raise ValidationFailed.listing(errors)
        source.name, source.kind, source.url, source.organization = new_name, kind, url, org
        for field_name, value in values.items():
            setattr(source, field_name, value)
        if "enabled" in data:
            source.enabled = bool(data["enabled"])
        credential = str(data.get("credential") or "")
        if credential:
            source.credential = keys.wrap(credential.encode(), CREDENTIAL_PURPOSE)
        source.save()
        audit.record(actor, "harvest.source_save" if name else "harvest.source_create", source, summary={
            "name": source.name, "kind": kind, "url": url, "organization": org.code,
            "credential": "changed" if credential else "kept", **values})
    return source


# --------------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------------


class Fetcher:
    """Bounded GETs for one run: per-request timeout, an overall deadline, a byte budget and a page count."""

    def __init__(self, source: HarvestSource):
        self.source = source
        self.opener = http_opener()
        self.deadline = time.monotonic() + max(source.timeout_s * 10, 120)
        self.bytes = 0
        self.pages = 0
        self.headers = {"User-Agent": "shuzheng-harvest/1"}
        if source.credential:
            raw = keys.unwrap(bytes(source.credential), CREDENTIAL_PURPOSE).decode()
            self.headers["Authorization"] = raw if source.kind == SourceKind.CKAN else f"Bearer {raw}"

    def get(self, url: str, accept: str) -> tuple[bytes, str]:
        if self.pages >= self.source.max_pages:
            raise SourceError("url", _("The source has more than %(n)s pages (the limit).") % {"n": self.source.max_pages})
        self.pages += 1
        body, _charset, media_type = http_get(self.opener, url, {**self.headers, "Accept": accept},
                                              self.source.timeout_s, self.deadline,
                                              self.source.max_bytes - self.bytes, self.source.max_bytes, self.pages)
        self.bytes += len(body)
        return body, media_type


def _read_rdf(fetcher: Fetcher, first_url: str) -> tuple[list[parse.Entry], list[str]]:
    entries, deleted, seen_urls = [], [], set()
    url = first_url
    while url:
        if url in seen_urls:
            raise parse.Invalid(_("the feed's next page points back to a page already read (%(url)s)") % {"url": url})
        seen_urls.add(url)
        body, media_type = fetcher.get(url, "text/turtle, application/rdf+xml;q=0.9, application/ld+json;q=0.8")
        page = parse.parse_rdf(body, media_type, url)
        entries += page.entries
        deleted += page.deleted
        if len(entries) > fetcher.source.max_datasets:
            raise parse.Invalid(_("more than %(n)s datasets (the limit)") % {"n": fetcher.source.max_datasets})
        nxt = urllib.parse.urljoin(url, page.next_url) if page.next_url else None
        if nxt and urllib.parse.urlsplit(nxt).netloc != urllib.parse.urlsplit(first_url).netloc:
            raise parse.Invalid(_("the feed's next page is on another host (%(url)s)") % {"url": nxt[:200]})
        url = nxt
    return entries, deleted


def _read_ckan(fetcher: Fetcher, base: str) -> list[parse.Entry]:
    entries, start = [], 0
    while True:
        url = with_params(f"{base.rstrip('/')}/api/3/action/package_search",
                          {"rows": str(PAGE_SIZE), "start": str(start), "sort": "name asc"})
        body, _type = fetcher.get(url, "application/json")
        page, count = parse.parse_ckan(body, base)
        entries += page
        if len(entries) > fetcher.source.max_datasets or count > fetcher.source.max_datasets:
            raise parse.Invalid(_("more than %(n)s datasets (the limit)") % {"n": fetcher.source.max_datasets})
        start += PAGE_SIZE
        if not page or start >= count:
            return entries


def _feed_url(source: HarvestSource, since: dt.datetime | None) -> str:
    if source.kind == SourceKind.SHUZHENG:
        base = source.url.rstrip("/")
        params = {"page_size": str(PAGE_SIZE)}
        if since is not None:
            params["modified_since"] = since.isoformat()
        return with_params(f"{base}/catalog.ttl", params)
    return source.url


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run(actor: Actor, name: str, full: bool = False) -> HarvestRun:
    """Harvests one source now. Returns the run, whatever its outcome (a failed run is a report, not an
    error: the caller shows it)."""
    source = get_source(actor, name)
    with transaction.atomic():
        source = HarvestSource.objects.select_for_update().get(pk=source.pk)
        running = HarvestRun.objects.filter(source=source, state=HarvestRun.State.RUNNING)
        # A run still "running" after STALE had its process die (its fetch limits end far sooner).
        running.filter(started_at__lte=timezone.now() - STALE).update(
            state=HarvestRun.State.FAILED, finished_at=timezone.now(), error=_("Interrupted (the process stopped)."))
        if running.exists():
            raise Conflict(_("Source %(name)s is being harvested already.") % {"name": source.name})
        previous = source.runs.filter(state__in=[HarvestRun.State.SUCCEEDED, HarvestRun.State.PARTIAL]).count()
        incremental = (source.kind == SourceKind.SHUZHENG and not full and source.watermark is not None
                       and previous % FULL_EVERY != 0)
        started = timezone.now()
        harvest = HarvestRun.objects.create(source=source, incremental=incremental, started_at=started,
                                            since=source.watermark if incremental else None, actor=actor.name)
    try:
        fetcher = Fetcher(source)
    except DecryptionError:
        return _finish_failed(actor, source, harvest, None, _(
            "The stored API key for this source cannot be opened (was the master key replaced?); enter it again."))
    try:
        if source.kind == SourceKind.CKAN:
            entries, deleted = _read_ckan(fetcher, source.url), []
        else:
            entries, deleted = _read_rdf(fetcher, _feed_url(source, harvest.since))
    except (SourceError, parse.Invalid) as exc:
        message = exc.errors[0].message if isinstance(exc, SourceError) and exc.errors else str(exc)
        return _finish_failed(actor, source, harvest, fetcher, str(message))
    with transaction.atomic():
        _apply(actor, source, harvest, entries, deleted)
        harvest.pages, harvest.bytes = fetcher.pages, fetcher.bytes
        harvest.state = HarvestRun.State.PARTIAL if harvest.skipped else HarvestRun.State.SUCCEEDED
        harvest.finished_at = timezone.now()
        harvest.save()
        HarvestSource.objects.filter(pk=source.pk).update(watermark=started - _margin(),
                                                          last_run_at=harvest.finished_at)
        audit.record(actor, "harvest.run", harvest, summary=_summary(source, harvest))
    return harvest


def _finish_failed(actor: Actor, source: HarvestSource, harvest: HarvestRun, fetcher: Fetcher | None,
                   message: str) -> HarvestRun:
    with transaction.atomic():
        harvest.state, harvest.error, harvest.finished_at = HarvestRun.State.FAILED, message[:2000], timezone.now()
        if fetcher is not None:
            harvest.pages, harvest.bytes = fetcher.pages, fetcher.bytes
        harvest.save()
        HarvestSource.objects.filter(pk=source.pk).update(last_run_at=harvest.finished_at)
        audit.record(actor, "harvest.run", harvest, summary=_summary(source, harvest))
    return harvest


def _summary(source: HarvestSource, harvest: HarvestRun) -> dict:
    return {"source": source.name, "state": harvest.state, "incremental": harvest.incremental,
            "since": harvest.since.isoformat() if harvest.since else None, "pages": harvest.pages,
            "bytes": harvest.bytes, "seen": harvest.seen, "created": harvest.created, "updated": harvest.updated,
            "unchanged": harvest.unchanged, "deleted": harvest.deleted, "skipped": harvest.skipped,
            "relayed": harvest.relayed,
            "error": harvest.error or None}


def _apply(actor: Actor, source: HarvestSource, harvest: HarvestRun, entries: list[parse.Entry],
           deleted_uris: list[str]) -> None:
    now = timezone.now()
    harvest.relayed = sum(1 for e in entries if e.relayed)
    entries = [e for e in entries if not e.relayed]
    counts = Counter(e.identifier for e in entries)
    records = {r.identifier: r for r in source.records.select_related("resource")}
    problems = []
    harvest.seen = len(entries)
    for identifier, n in counts.items():
        if n > 1:
            problems.append({"identifier": identifier[:300], "field": "identifier",
                             "message": _("The source lists this identifier %(n)s times; none of them was taken.")
                             % {"n": n}})
    for entry in entries:
        if counts[entry.identifier] > 1:
            continue
        record = records.get(entry.identifier)
        digest = entry.digest()
        if record is not None and record.digest == digest and record.deleted_at is None:
            record.last_seen_at = now
            record.save(update_fields=["last_seen_at", "updated_at"])
            harvest.unchanged += 1
            continue
        try:
            with transaction.atomic():
                resource = catalog.save_mirror(actor, source.organization, record.resource if record else None,
                                               entry.data, entry.access_url)
                if record is None:
                    record = HarvestedRecord(source=source, identifier=entry.identifier, resource=resource)
                    harvest.created += 1
                else:
                    harvest.updated += 1
                record.uri, record.landing_page, record.digest = entry.uri, entry.landing_page, digest
                record.remote_modified, record.last_seen_at, record.deleted_at = entry.modified, now, None
                record.save()
                records[entry.identifier] = record
        except ServiceError as exc:
            field_error = exc.errors[0] if exc.errors else FieldError("", str(exc.detail))
            problems.append({"identifier": entry.identifier[:300], "field": field_error.field,
                             "message": str(field_error.message)[:500]})
    harvest.skipped = len(problems)
    # What is gone: named as deleted by an incremental feed, or (a full read) simply no longer listed.
    if harvest.incremental:
        gone = [r for r in records.values() if r.uri in set(deleted_uris) and r.deleted_at is None]
    else:
        listed = set(counts)
        gone = [r for r in records.values() if r.identifier not in listed and r.deleted_at is None]
    for record in gone:
        catalog.withdraw_mirror(actor, record.resource, _("No longer listed by %(source)s.") % {"source": source.name})
        record.deleted_at = now
        record.save(update_fields=["deleted_at", "updated_at"])
        harvest.deleted += 1
    harvest.problems = problems[:1000]


def due_sources(now=None) -> list[str]:
    now = now or timezone.now()
    return [s.name for s in HarvestSource.objects.filter(enabled=True)
            if s.last_run_at is None or s.last_run_at + dt.timedelta(minutes=s.interval_minutes) <= now]
