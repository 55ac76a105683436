"""Loads (归集): who may load what, and the record of every load. The pipeline computes; this module checks
permissions, keeps the Load row (the lineage record of the snapshot a load commits) and audits.

A load runs outside any database transaction: the Iceberg commit is its single point of truth, and the
Load row is brought in line with it afterwards. A load interrupted by a crash or `kill -9` is found by
`recover_interrupted()` (its process is gone): if its snapshot made it into the table it is marked
committed, otherwise failed, and its unreferenced files are removed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
from functools import partial
from pathlib import Path
from typing import Callable

import duckdb
import psutil
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit.services import record
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import MountKind, Resource, Status
from shuzheng.core.errors import Conflict, FieldError, NotFound, ServiceError, ValidationFailed
from shuzheng.ingest import connectors, pipeline, schedule
from shuzheng.ingest.models import Load, Mode, Source, SourceKind
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.quality import services as quality
from shuzheng.security import fieldcrypt
from shuzheng.sharing import events
from shuzheng.warehouse import lake
from shuzheng.warehouse.models import Table

HOST = socket.gethostname()[:100]
log = logging.getLogger(__name__)


def _items(resource: Resource) -> list:
    return list(resource.published.items.select_related("element").order_by("position"))


def loadable(actor: Actor, code: str, mode: str) -> tuple[Resource, list]:
    """The resource if `actor` may load it in `mode`: the provider's data officer or steward, a published
    resource mounted as a warehouse table, upsert only where the resource has key items."""
    resource = catalog.get_resource(actor, code)
    authz.require(actor, Perm.DATA_LOAD, resource.provider)
    if mode not in Mode.values:
        raise ValidationFailed.of("mode", _("The mode is append, upsert or replace."))
    if resource.status != Status.PUBLISHED:
        raise Conflict(_("Only a published resource can receive data."), [FieldError("resource", resource.status)])
    if resource.mount_kind != MountKind.TABLE:
        raise Conflict(_("Resource %(code)s is not mounted as a warehouse table; mount it first.")
                       % {"code": resource.code}, [FieldError("resource", _("Not a warehouse table."))])
    items = _items(resource)
    if mode == Mode.UPSERT and not any(i.is_key for i in items):
        raise ValidationFailed.of("mode", _("Upsert needs key items; this resource has none."))
    return resource, items


def table_settings(resource: Resource) -> Table:
    table, _created = Table.objects.get_or_create(resource=resource, defaults={"identifier": resource.mount_target})
    return table


def _start(actor: Actor, resource: Resource, mode: str, kind: str, source: Source | None, rules: list) -> Load:
    with transaction.atomic():
        load = Load.objects.create(resource=resource, source=source, organization=actor.organization,
                                   started_by=actor.name, mode=mode, kind=kind, host=HOST, pid=os.getpid(),
                                   rules=rules)
        record(actor, "ingest.load_start", load, summary={"resource": resource.code, "mode": mode, "kind": kind})
    return load


def _finish(actor: Actor, load: Load, table: Table, out: pipeline.Outcome | None, error: str = "") -> Load:
    now = timezone.now()
    previous = (Load.objects.filter(resource=load.resource, state=Load.State.COMMITTED).exclude(pk=load.pk)
                .order_by("-finished_at").values_list("finished_at", flat=True).first())
    with transaction.atomic():
        load = Load.objects.select_for_update(of=("self",)).select_related("resource", "source").get(pk=load.pk)
        load.finished_at = now
        if out is None:
            load.state, load.error = Load.State.FAILED, error[:2000]
        else:
            load.lineage, load.mapping = {**out.lineage, "checks": out.checks, "timings": out.timings}, out.mapping
            if load.source_id:
                load.lineage = {**load.lineage, "source": {"id": str(load.source_id), "name": load.source.name,
                                                          "version": load.source.version}}
            load.rows_read, load.loaded, load.quarantined = out.rows_read, out.loaded, out.quarantined
            load.unreadable, load.warned, load.rows_after = out.unreadable, out.warned, out.rows_after
            load.findings, load.warnings = out.findings, out.warnings
            load.parent_snapshot_id, load.snapshot_id = out.parent_snapshot_id, out.snapshot_id
            load.scores = pipeline.scores(out, pipeline.timeliness(
                load.resource.published.update_cycle, previous, now))
            if out.snapshot_id is not None:
                load.state = Load.State.COMMITTED
                table.current_snapshot_id, table.rows, table.last_load_at = out.snapshot_id, out.rows_after or 0, now
                table.save(update_fields=["current_snapshot_id", "rows", "last_load_at", "updated_at"])
                # Subscribers hear of the snapshot only once this commits; announcing never fails the load.
                transaction.on_commit(partial(events.snapshot_committed, load.resource, out.snapshot_id, out.loaded,
                                              load.id), robust=True)
            else:
                load.state, load.error = Load.State.REJECTED, out.rejected_reason
        load.save()
        record(actor, "ingest.load", load, summary={
            "resource": load.resource.code, "state": load.state, "mode": load.mode, "snapshot": load.snapshot_id,
            "loaded": load.loaded, "quarantined": load.quarantined, "unreadable": load.unreadable,
            "error": load.error[:200]})
    return load


def _run(actor: Actor, code: str, mode: str, kind: str, stage: Callable, mapping: dict | None,
         source: Source | None = None, source_bytes: int | None = None, progress=lambda phase: None) -> Load:
    recover_interrupted()
    resource, items = loadable(actor, code, mode)
    table_row = table_settings(resource)
    encrypted = fieldcrypt.encrypted_items(items)
    if encrypted:
        fieldcrypt.ensure_key(actor, resource)
    iceberg = lake.ensure_table(table_row.identifier, items, encrypted)
    plan, rules_used = quality.plan_for(resource, items)
    load = _start(actor, resource, mode, kind, source, rules_used)
    try:
        out = pipeline.execute(load_id=load.id, table=iceberg, items=items, mode=mode, stage=stage,
                               requested_mapping=mapping, plan=plan, max_failure_share=table_row.max_failure_share,
                               max_count_change=table_row.max_count_change, source_bytes=source_bytes,
                               progress=progress, cipher=fieldcrypt.cipher_for(resource, items))
    except ServiceError as exc:
        _finish(actor, load, table_row, None, error=str(exc.detail) + "".join(
            f"\n{e.field}: {e.message}" for e in exc.errors))
        raise
    except Exception as exc:
        _finish(actor, load, table_row, None, error=f"{type(exc).__name__}: {exc}")
        raise
    load = _finish(actor, load, table_row, out)
    if load.snapshot_id is not None:
        try:
            lake.expire(lake.open_table(table_row.identifier), table_row.retain_snapshots)
        except Exception:  # noqa: BLE001 - housekeeping: the load is committed; the next one expires again
            log.warning("snapshot expiry of %s failed", table_row.identifier, exc_info=True)
    return load


def ingest_file(actor: Actor, code: str, path, *, mode: str = Mode.APPEND, original_name: str = "",
                encoding: str | None = None, format: str | None = None, sheet: str | None = None,
                mapping: dict | None = None, progress=lambda phase: None) -> Load:
    def stage(con):
        return connectors.stage_file(con, Path(path), original_name=original_name or None, encoding=encoding or None,
                                     format=format or None, sheet=sheet or None)
    size = Path(path).stat().st_size if Path(path).is_file() else None
    return _run(actor, code, mode, SourceKind.FILE, stage, mapping, source_bytes=size, progress=progress)


def update_settings(actor: Actor, code: str, data: dict) -> Table:
    """The provider's load settings: failure threshold, row-count change threshold, snapshots kept."""
    resource, _items = loadable(actor, code, Mode.APPEND)
    authz.require(actor, Perm.QUALITY_MANAGE, resource.provider)
    errors = []
    bounds = {"max_failure_share": (0.0, 1.0), "max_count_change": (0.0, 10.0), "retain_snapshots": (1, 10000)}
    clean = {}
    for name, value in data.items():
        if name not in bounds:
            errors.append(FieldError(name, _("Unknown setting.")))
            continue
        if value is None and name == "max_count_change":
            clean[name] = None
            continue
        low, high = bounds[name]
        try:
            number = int(value) if name == "retain_snapshots" else float(value)
        except (TypeError, ValueError):
            errors.append(FieldError(name, _("Must be a number.")))
            continue
        if not low <= number <= high:
            errors.append(FieldError(name, _("Must be between %(low)s and %(high)s.") % {"low": low, "high": high}))
        clean[name] = number
    if errors:
        raise ValidationFailed(_("The settings are not valid."), errors)
    with transaction.atomic():
        table = Table.objects.select_for_update().get(pk=table_settings(resource).pk)
        before = {k: getattr(table, k) for k in clean}
        for name, value in clean.items():
            setattr(table, name, value)
        table.save()
        record(actor, "ingest.settings_update", table, summary={"resource": resource.code, "before": before,
                                                                "after": clean})
    return table


def save_source(actor: Actor, code: str, data: dict, source_id=None) -> Source:
    """A pull the update cycle schedules: a database query, an HTTP JSON API or a query over other
    resources (a derived table)."""
    resource, _items = loadable(actor, code, data.get("mode") or Mode.REPLACE)
    kind, config = data.get("kind"), dict(data.get("config") or {})
    errors = []
    if kind not in (SourceKind.DATABASE, SourceKind.HTTP, SourceKind.DERIVED):
        errors.append(FieldError("kind", _("The kind is database, http or derived.")))
    required = {SourceKind.DATABASE: ("url", "query"), SourceKind.HTTP: ("url",), SourceKind.DERIVED: ("query",)}
    errors += [FieldError(f"config.{k}", _("Required.")) for k in required.get(kind, ()) if not config.get(k)]
    if not (data.get("name") or "").strip():
        errors.append(FieldError("name", _("Required.")))
    if errors:
        raise ValidationFailed(_("The source is not valid."), errors)
    if kind == SourceKind.DERIVED:
        derived_stage(config["query"], resource.provider)  # refuses anything but one SELECT over own resources
    with transaction.atomic():
        source = Source(resource=resource)
        if source_id:
            source = Source.objects.select_for_update().filter(pk=source_id, resource=resource).first()
            if source is None:
                raise NotFound(_("No such source."))
        before = {"config": _redacted(source.config), "mapping": source.mapping, "mode": source.mode} if source_id else None
        source.name, source.kind, source.config = data["name"].strip()[:100], kind, config
        source.mapping, source.mode = dict(data.get("mapping") or {}), data.get("mode") or Mode.REPLACE
        source.active = bool(data.get("active", True))
        if source_id:
            source.version += 1
        source.save()
        record(actor, "ingest.source_update" if source_id else "ingest.source_create", source,
               summary={"resource": resource.code, "before": before,
                        "after": {"config": _redacted(config), "mapping": source.mapping, "mode": source.mode}})
    return source


def list_sources(actor: Actor, code: str) -> list[Source]:
    """A resource's configured pulls, for its loaders only (a source's configuration can hold credentials)."""
    resource = catalog.get_resource(actor, code)
    authz.require(actor, Perm.DATA_LOAD, resource.provider)
    return list(Source.objects.filter(resource=resource).order_by("name"))


def source_dict(source: Source) -> dict:
    return {"id": str(source.id), "name": source.name, "kind": source.kind, "mode": source.mode,
            "config": _redacted(source.config), "mapping": source.mapping, "version": source.version,
            "active": source.active, "last_run_at": source.last_run_at}


def request_run(actor: Actor, source_id) -> Source:
    """Queues a pull now (the worker runs it as it runs scheduled ones); audited."""
    source = Source.objects.select_related("resource", "resource__provider").filter(id=source_id).first()
    if source is None:
        raise NotFound(_("No such source."))
    catalog.get_resource(actor, source.resource.code)
    authz.require(actor, Perm.DATA_LOAD, source.resource.provider)
    with transaction.atomic():
        record(actor, "ingest.source_run", source, summary={"resource": source.resource.code, "name": source.name})
    from shuzheng.ingest.tasks import run_source as queued

    queued(str(source.id))
    return source


def _redacted(config: dict) -> dict:
    return {k: (connectors.mask_url(v) if k == "url" else v) for k, v in config.items()}


def derived_stage(query: str, provider) -> Callable:
    """A derived table: `query` (one SELECT) reads warehouse tables of the same department (`provider`) by
    their resource codes as table names, e.g. SELECT ... FROM "101001000/000001"; the lineage records which
    snapshot of each it read. Another department's data comes through the sharing gateway, with a grant."""
    codes = sorted(set(re.findall(r'"(\d{9}/\d{6})"', query)))
    if not codes:
        raise ValidationFailed.of("config.query", _('Name the input resources as "<code>" in the query.'))
    if not re.match(r"\s*(select|with)\b", query, re.I) or ";" in query.strip().rstrip(";"):
        raise ValidationFailed.of("config.query", _("One SELECT query."))
    foreign = list(Resource.objects.filter(code__in=codes).exclude(provider=provider).values_list("code", flat=True))
    if foreign:
        raise ValidationFailed.of("config.query", _(
            "A derived table reads your own department's resources only; %(codes)s belong to another department: "
            "apply for them through sharing.") % {"codes": ", ".join(foreign)})

    def stage(con):
        inputs = []
        for code in codes:
            resource = Resource.objects.select_related("published").filter(code=code).first()
            if resource is None or resource.mount_kind != MountKind.TABLE:
                raise ValidationFailed.of("config.query", _("%(code)s is not a warehouse table.") % {"code": code})
            table = lake.open_table(resource.mount_target)
            snapshot = table.current_snapshot() if table else None
            items = _items(resource)
            # The department's own data: the loader opens its sealed items, and seals them again on writing.
            lake.view(con, code, table, items, snapshot, cipher=fieldcrypt.cipher_for(resource, items))
            inputs.append({"resource": code, "snapshot_id": snapshot.snapshot_id if snapshot else None})
        try:
            con.execute(f"CREATE TEMP TABLE derived_raw AS {query.strip().rstrip(';')}")
        except duckdb.Error as exc:
            raise ValidationFailed.of("config.query", str(exc).splitlines()[0][:300]) from exc
        columns = [d[0] for d in con.execute("SELECT * FROM derived_raw LIMIT 0").description]
        casts = ", ".join(f"CAST({lake.quote_ident(c)} AS VARCHAR) AS {lake.quote_ident(c)}" for c in columns)
        con.execute(f"CREATE TEMP TABLE derived AS SELECT row_number() OVER () AS _row, {casts} FROM derived_raw")
        rows = con.execute("SELECT count(*) FROM derived").fetchall()[0][0]
        return connectors.Staged(relation="derived", columns=columns, rows=rows, rejected=0, rejects=[],
                                 lineage={"kind": "derived", "query": query, "inputs": inputs, "rows": rows})
    return stage


def _stage_source(source: Source) -> Callable:
    config = source.config
    if source.kind == SourceKind.DERIVED:
        return derived_stage(config["query"], source.resource.provider)
    if source.kind == SourceKind.DATABASE:
        return lambda con: connectors.stage_database(con, config["url"], config["query"])
    if source.kind == SourceKind.HTTP:
        options = {k: v for k, v in config.items() if k != "url"}
        return lambda con: connectors.stage_http(con, config["url"], **options)
    raise ValidationFailed.of("kind", _("Unknown source kind."))


def run_source(actor: Actor, source_id, progress=lambda phase: None) -> Load:
    source = Source.objects.select_related("resource").filter(id=source_id).first()
    if source is None:
        raise NotFound(_("No such source."))
    # Stamped before the run, so a source that keeps failing is retried once per cycle, not every tick.
    Source.objects.filter(pk=source.pk).update(last_run_at=timezone.now())
    return _run(actor, source.resource.code, source.mode, source.kind, _stage_source(source), source.mapping,
                source=source, progress=progress)


def recover_interrupted() -> int:
    """Marks loads whose process died (on this host) as failed, or committed if their snapshot landed."""
    fixed = 0
    for load in Load.objects.filter(state=Load.State.RUNNING, host=HOST).select_related("resource"):
        if load.pid and psutil.pid_exists(load.pid) and load.pid != os.getpid():
            continue
        if load.pid == os.getpid():
            continue  # this process's own load, in progress
        table = lake.open_table(load.resource.mount_target)
        landed = None
        if table is not None:
            landed = next((s for s in table.snapshots() if s.summary.get("shuzheng.load") == str(load.id)), None)
        with transaction.atomic():
            if landed is not None:
                Load.objects.filter(pk=load.pk).update(state=Load.State.COMMITTED, snapshot_id=landed.snapshot_id,
                                                       finished_at=timezone.now())
            else:
                Load.objects.filter(pk=load.pk).update(state=Load.State.FAILED, finished_at=timezone.now(),
                                                       error=_("Interrupted: the loading process ended before "
                                                               "committing; nothing was loaded."))
            record(Actor.cli(), "ingest.load_recover", load, summary={"landed": landed is not None})
        if table is not None and landed is None:
            lake.discard_files(table.location(), load.id)
        scratch = lake.scratch_path(load.id)
        for leftover in scratch.parent.glob(scratch.name + "*"):
            leftover.unlink(missing_ok=True)
        fixed += 1
    return fixed


# --------------------------------------------------------------------------------------------------
# Reading: history, lineage, snapshots
# --------------------------------------------------------------------------------------------------


def list_loads(actor: Actor, code: str) -> QuerySet:
    resource = catalog.get_resource(actor, code)
    return Load.objects.filter(resource=resource).select_related("resource", "source")


def get_load(actor: Actor, load_id) -> Load:
    load = Load.objects.select_related("resource", "resource__provider").filter(id=load_id).first()
    if load is None:
        raise NotFound(_("No such load."))
    catalog.get_resource(actor, load.resource.code)
    return load


def quarantine_load(actor: Actor, load_id) -> tuple[Load, Path]:
    """The quarantined rows hold the department's own data: its loaders only."""
    load = get_load(actor, load_id)
    if not authz.allowed(actor, Perm.DATA_LOAD, load.resource.provider):
        raise NotFound(_("No such load."))
    path = pipeline.quarantine_path(load.id)
    if not path.exists():
        raise NotFound(_("This load quarantined no rows."))
    return load, path


def read_rows(actor: Actor, code: str, *, snapshot_id: int | None = None, as_of: dt.datetime | None = None,
              limit: int = 100) -> dict:
    """A sample of a snapshot's rows for the provider's own staff (sharing, with grants and masks, is the
    gateway's job)."""
    resource = catalog.get_resource(actor, code)
    if not authz.allowed(actor, Perm.DATA_LOAD, resource.provider):
        raise NotFound(_("No resource %(code)s.") % {"code": resource.code})
    table = lake.open_table(resource.mount_target) if resource.mount_kind == MountKind.TABLE else None
    if table is None:
        raise Conflict(_("No data has been loaded into %(code)s.") % {"code": resource.code})
    snapshot = lake.snapshot_for(table, snapshot_id, int(as_of.timestamp() * 1000) if as_of else None)
    items = _items(resource)
    con = lake.duck()
    try:
        lake.view(con, "t", table, items, snapshot)
        result = con.execute(f"SELECT * FROM t LIMIT {int(limit)}")
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
        total = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    finally:
        con.close()
    return {"snapshot_id": snapshot.snapshot_id if snapshot else None, "rows": total, "columns": columns,
            "sample": [dict(zip(columns, r)) for r in rows]}


def snapshots(actor: Actor, code: str) -> list[dict]:
    resource = catalog.get_resource(actor, code)
    table = lake.open_table(resource.mount_target) if resource.mount_kind == MountKind.TABLE else None
    if table is None:
        return []
    loads = {str(l.id): l for l in Load.objects.filter(resource=resource, snapshot_id__isnull=False)}
    result = []
    for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True):
        load = loads.get(s.summary.get("shuzheng.load", ""))
        result.append({"snapshot_id": s.snapshot_id, "parent_id": s.parent_snapshot_id,
                       "at": dt.datetime.fromtimestamp(s.timestamp_ms / 1000, tz=dt.timezone.utc),
                       "operation": str(s.summary.operation.value), "rows": int(s.summary.get("total-records", 0)),
                       "load": load})
    return result


def overdue_visible(actor: Actor) -> list[Resource]:
    """The overdue resources `actor` may see, in code order (the catalog's visibility applies)."""
    ids = [r.pk for r in schedule.overdue_resources()]
    qs = Resource.objects.filter(pk__in=ids).select_related("provider", "published", "pending")
    visible = catalog.visibility_filter(actor)
    if visible is not None:
        qs = qs.filter(visible)
    return list(qs.order_by("code"))


SETTINGS = ("max_failure_share", "max_count_change", "retain_snapshots")


def load_settings(actor: Actor, code: str) -> dict:
    """A table's load settings, or the defaults it will get at its first load (reading creates nothing)."""
    resource = catalog.get_resource(actor, code)
    table = Table.objects.filter(resource=resource).first()
    if table is None:
        return {name: Table._meta.get_field(name).get_default() for name in SETTINGS}
    return {name: getattr(table, name) for name in SETTINGS}
