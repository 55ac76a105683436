"""The data plane under /api/v1/data: loads (归集) into a resource's warehouse table, their quality findings and
quarantined rows, the table's snapshots and lineage, time travel, quality rules and overdue resources.

Each endpoint parses, calls ingest.services / quality.services / quality.reports and serialises; who may
load, read rows or change rules is decided there. Every endpoint needs a signed-in user or an application
system's key. Resource codes contain a slash; in paths write it as a hyphen (101001001-000001).

A load that runs but is refused as a whole (too many failing rows, a suspicious change of the row count)
answers 201 with state "rejected": the request did what it asked — it made a load, recorded with its
findings and quarantined rows — and the data was judged. This is what `shuzheng ingest --json` prints too.
A request the service cannot act on (no file, an unknown mode, a missing required column) is a 4xx
problem+json naming the field (`mapping.<item>` for a data item without a column); nothing is loaded, and a
load that had started is kept as failed, for the record.

Uploads are streamed to a temporary file under SHUZHENG_HOME/tmp (never held in memory), at most
settings.INGEST_MAX_UPLOAD_BYTES (default 2 GB), and deleted when the load ends."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from ninja import Field, File, Form, Query, Router, Schema, Status
from ninja.decorators import decorate_view
from ninja.files import UploadedFile
from ninja.pagination import paginate

from shuzheng.catalog.api import FindingOut as DiscoveryOut
from shuzheng.core.paging import Paging
from shuzheng.ingest import schedule, services
from shuzheng.ingest.forms import no_file_error, parse_mapping_json, stream_uploads, too_large_error
from shuzheng.ingest.models import Load, Mode
from shuzheng.org.services import Actor
from shuzheng.quality import reports
from shuzheng.quality import services as quality
from shuzheng.quality.models import RuleKind

router = Router(tags=["data"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---- schemas ----


class FindingOut(Schema):
    item: str = Field("", description="the data item, or empty for a whole-record problem")
    message: str
    count: int = Field(..., description="rows that failed this check")
    blocking: bool = Field(..., description="true: failing rows were quarantined; false: a warning")
    code: str = ""
    kind: str = ""
    rule: str = Field("", description="the rule's id, or builtin/item:… for checks every load makes")
    dimension: str = Field("", description="completeness, validity, uniqueness or consistency")
    rows: list[int] = Field([], description="up to five source row numbers that failed it")


class LoadSummary(Schema):
    id: uuid.UUID
    resource: str
    state: str = Field(..., description="running, committed, rejected or failed")
    rejected: bool = Field(..., description="the load ran and its data was refused as a whole")
    mode: str
    kind: str = Field(..., description="file, database, http or derived")
    source: str | None = Field(None, description="the configured pull's name, for pulls")
    started_by: str
    organization: str | None = Field(None, description="credit code of the loading organization")
    created_at: dt.datetime
    finished_at: dt.datetime | None
    rows_read: int
    loaded: int
    quarantined: int
    unreadable: int = Field(..., description="source records that could not be parsed at all")
    warned: int
    rows_after: int | None = Field(None, description="rows in the table after the load")
    snapshot_id: int | None = Field(None, description="the Iceberg snapshot the load committed")
    parent_snapshot_id: int | None
    scores: dict[str, float] = Field({}, description="completeness, validity, uniqueness, consistency, "
                                                     "timeliness and overall, 0–100")
    error: str


class LoadOut(LoadSummary):
    findings: list[FindingOut]
    discovery: list[DiscoveryOut] = Field([], description="what the data showed about the items (S1): ID numbers, "
                                          "credit codes, cards, phones, e-mail, plates, names, addresses; "
                                          "flagged when an item declares less")
    warnings: list[str]
    mapping: dict[str, str] = Field({}, description="data item → source column, as applied")
    lineage: dict[str, Any] = Field({}, description="the source: file name and hash, query, request, inputs")
    rules: list[dict[str, Any]] = Field([], description="the rules applied, with their versions")
    quarantine: str | None = Field(None, description="where the quarantined rows can be downloaded, when "
                                                     "there are any (the provider's loaders only)")


class LoadRef(Schema):
    id: uuid.UUID
    state: str
    mode: str
    kind: str
    started_by: str
    created_at: dt.datetime
    loaded: int
    quarantined: int


class SnapshotOut(Schema):
    snapshot_id: int
    parent_id: int | None
    at: dt.datetime
    operation: str = Field(..., description="append, overwrite, …")
    rows: int = Field(..., description="rows in the table at this snapshot")
    load: LoadRef | None = Field(None, description="the load that committed it")


class LineageLoad(LoadRef):
    source: str | None
    lineage: dict[str, Any]
    mapping: dict[str, str]
    rules: list[dict[str, Any]]
    rows_read: int
    unreadable: int
    parent_snapshot_id: int | None


class LineageOut(Schema):
    snapshot_id: int
    parent_id: int | None
    at: dt.datetime
    operation: str
    rows: int
    load: LineageLoad | None


class RowsOut(Schema):
    snapshot_id: int | None = Field(None, description="the snapshot read (null: the table is empty)")
    rows: int = Field(..., description="rows in that snapshot")
    columns: list[str]
    sample: list[dict[str, Any]]


class TrendPoint(Schema):
    load: str
    at: dt.datetime | None
    state: str
    loaded: int
    quarantined: int
    scores: dict[str, float]


class QualityOut(Schema):
    resource: str
    name: str
    update_cycle: str
    overdue: bool = Field(..., description="no load committed within the update cycle")
    last_load_at: dt.datetime | None
    scores: dict[str, float] = Field({}, description="the latest load's scores")
    findings: list[FindingOut] = Field([], description="the latest load's findings")
    latest_load: str | None
    trend: list[TrendPoint] = Field([], description="the last loads, oldest first")


class RuleOut(Schema):
    id: uuid.UUID
    kind: str
    items: list[str]
    params: dict[str, Any]
    blocking: bool
    active: bool
    version: int
    element: str | None = Field(None, description="set for a data element's rule (a data standard)")
    resource: str | None = Field(None, description="set for the resource's own rule")
    description: str
    inherited: bool = Field(False, description="the rule comes from a data element the resource's items carry")


class RuleIn(Schema):
    kind: RuleKind
    items: list[str] = Field([], max_length=50)
    params: dict[str, Any] = {}
    blocking: bool = True
    active: bool = True
    description: str = Field("", max_length=200)


class OverdueOut(Schema):
    code: str
    name: str
    provider: str
    provider_name: str
    update_cycle: str
    last_load_at: dt.datetime | None
    mounted_at: dt.datetime | None


# ---- serialisation ----


def _quarantine_url(load: Load) -> str | None:
    if not (load.quarantined or load.unreadable):
        return None
    return reverse("api:quarantine", kwargs={"load_id": load.id})


def summary_of(load: Load) -> dict:
    return {
        "id": load.id, "resource": load.resource.code, "state": load.state, "rejected": load.rejected,
        "mode": load.mode, "kind": load.kind, "source": load.source.name if load.source_id else None,
        "started_by": load.started_by, "organization": load.organization.code if load.organization_id else None,
        "created_at": load.created_at, "finished_at": load.finished_at, "rows_read": load.rows_read,
        "loaded": load.loaded, "quarantined": load.quarantined, "unreadable": load.unreadable, "warned": load.warned,
        "rows_after": load.rows_after, "snapshot_id": load.snapshot_id, "parent_snapshot_id": load.parent_snapshot_id,
        "scores": load.scores or {}, "error": load.error,
    }


def load_of(load: Load) -> dict:
    from shuzheng.security import discovery

    return {**summary_of(load), "findings": load.findings, "discovery": discovery.for_load(load.id),
            "warnings": [str(w) for w in load.warnings],
            "mapping": load.mapping, "lineage": load.lineage, "rules": load.rules, "quarantine": _quarantine_url(load)}


def _load_ref(load: Load | None, lineage: bool = False) -> dict | None:
    if load is None:
        return None
    ref = {"id": load.id, "state": load.state, "mode": load.mode, "kind": load.kind, "started_by": load.started_by,
           "created_at": load.created_at, "loaded": load.loaded, "quarantined": load.quarantined}
    if lineage:
        ref.update({"source": load.source.name if load.source_id else None, "lineage": load.lineage,
                    "mapping": load.mapping, "rules": load.rules, "rows_read": load.rows_read,
                    "unreadable": load.unreadable, "parent_snapshot_id": load.parent_snapshot_id})
    return ref


def rules_of(actor: Actor, code: str) -> list[dict]:
    return [{**quality.rule_dict(rule), "inherited": rule.element_id is not None}
            for rule in quality.list_rules(actor, code)]


# ---- loads ----


class UploadIn(Schema):
    mode: Mode = Field(..., description="append, upsert (by the key items) or replace")
    encoding: str = Field("", max_length=20, description="utf-8, gbk or gb18030 (CSV; default: detected)")
    format: str = Field("", max_length=10, description="csv, xlsx, json, jsonl or parquet (default: by suffix)")
    sheet: str = Field("", max_length=100, description="XLSX sheet (default: the first)")
    mapping: str = Field("", max_length=20_000, description='JSON object {data item: source column}, for '
                                                            'columns whose names differ from the items')


@router.post("/resources/{code}/loads", response={201: LoadOut},
             summary="Load a file into the resource's warehouse table (one snapshot, or nothing)")
@decorate_view(stream_uploads)
def upload(request, code: str, data: Form[UploadIn], file: File[UploadedFile] = None):
    error = too_large_error(request)
    if error:
        raise error
    if file is None:
        raise no_file_error()
    mapping = parse_mapping_json(data.mapping)
    try:
        load = services.ingest_file(Actor.from_request(request), code, file.temporary_file_path(), mode=data.mode,
                                    original_name=file.name, encoding=data.encoding or None,
                                    format=data.format or None, sheet=data.sheet or None, mapping=mapping)
    finally:
        file.close()  # removes the temporary file
    return Status(201, load_of(load))


@router.get("/resources/{code}/loads", response=list[LoadSummary], summary="The resource's loads, newest first")
@paginate(Paging)
def list_loads(request, code: str):
    return _Serialised(services.list_loads(Actor.from_request(request), code).select_related("organization"))


class _Serialised:
    """A queryset the paginator slices and counts; only the page it takes is serialised."""

    def __init__(self, qs):
        self.qs = qs

    def __getitem__(self, page: slice) -> list[dict]:
        return [summary_of(load) for load in self.qs[page]]

    def __len__(self) -> int:
        return self.qs.count()


@router.get("/loads/{load_id}", response=LoadOut)
def get_load(request, load_id: uuid.UUID):
    return load_of(services.get_load(Actor.from_request(request), load_id))


@router.get("/loads/{load_id}/quarantine", url_name="quarantine",
            summary="The load's quarantined rows with every reason, as CSV or XLSX (the provider's loaders)")
def quarantine(request, load_id: uuid.UUID, format: str = Query("csv", pattern="^(csv|xlsx)$")):
    name, data = reports.quarantine_export(Actor.from_request(request), load_id, format)
    response = HttpResponse(data, content_type="text/csv; charset=utf-8" if format == "csv" else XLSX)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# ---- the table: rows, snapshots, lineage, quality ----


@router.get("/resources/{code}/rows", response=RowsOut,
            summary="A sample of the rows, now or at a snapshot or time (the provider's own staff)")
def read_rows(request, code: str, snapshot: int | None = Query(None, ge=0),
              as_of: dt.datetime | None = Query(None, description="the snapshot current at this time"),
              limit: int = Query(100, ge=1, le=1000)):
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.timezone.utc)
    return services.read_rows(Actor.from_request(request), code, snapshot_id=snapshot, as_of=as_of, limit=limit)


@router.get("/resources/{code}/snapshots", response=list[SnapshotOut], summary="The table's snapshots, newest first")
def snapshots(request, code: str):
    return [{**s, "load": _load_ref(s["load"])} for s in services.snapshots(Actor.from_request(request), code)]


@router.get("/resources/{code}/lineage", response=list[LineageOut],
            summary="Each snapshot with the load that made it: source, mapping, rules and counts")
def lineage(request, code: str):
    return [{**s, "load": _load_ref(s["load"], lineage=True)}
            for s in services.snapshots(Actor.from_request(request), code)]


@router.get("/resources/{code}/quality", response=QualityOut,
            summary="Latest scores and findings, the trend across loads, and whether a load is overdue")
def quality_report(request, code: str):
    return reports.resource_report(Actor.from_request(request), code)


# ---- load settings ----


class SettingsOut(Schema):
    max_failure_share: float = Field(..., description="a load whose share of failing rows exceeds this is rejected")
    max_count_change: float | None = Field(..., description="a replace load that changes the row count by more "
                                                             "than this share is rejected (null: not checked)")
    retain_snapshots: int = Field(..., description="snapshots kept for time travel")


class SettingsIn(Schema):
    max_failure_share: float | None = Field(None, description="0 to 1")
    max_count_change: float | None = Field(None, description="0 to 10, or null for no check")
    retain_snapshots: int | None = Field(None, description="1 to 10000")


@router.get("/resources/{code}/settings", response=SettingsOut, summary="The table's load settings")
def get_settings(request, code: str):
    return services.load_settings(Actor.from_request(request), code)


@router.put("/resources/{code}/settings", response=SettingsOut,
            summary="Change the table's load settings (the provider's data officers and stewards)")
def update_settings(request, code: str, body: SettingsIn):
    data = body.dict(exclude_unset=True)
    for name in ("max_failure_share", "retain_snapshots"):
        if name in data and data[name] is None:
            data.pop(name)
    table = services.update_settings(Actor.from_request(request), code, data)
    return {name: getattr(table, name) for name in ("max_failure_share", "max_count_change", "retain_snapshots")}


# ---- rules ----


@router.get("/resources/{code}/rules", response=list[RuleOut],
            summary="The rules a load applies: the resource's own and those of its items' data elements")
def list_rules(request, code: str):
    return rules_of(Actor.from_request(request), code)


@router.post("/resources/{code}/rules", response={201: RuleOut}, summary="Add a rule of the resource's own")
def create_rule(request, code: str, body: RuleIn):
    rule = quality.save_rule(Actor.from_request(request), code=code, **body.dict())
    return Status(201, {**quality.rule_dict(rule), "inherited": False})


@router.put("/rules/{rule_id}", response=RuleOut, summary="Change a rule (its version goes up)")
def update_rule(request, rule_id: uuid.UUID, body: RuleIn):
    rule = quality.save_rule(Actor.from_request(request), rule_id=rule_id, **body.dict())
    return {**quality.rule_dict(rule), "inherited": rule.element_id is not None}


# ---- overdue ----


@router.get("/overdue", response=list[OverdueOut],
            summary="Resources whose data did not arrive within their update cycle (those you may see)")
def overdue(request):
    result = []
    for resource in services.overdue_visible(Actor.from_request(request)):
        version = resource.published or resource.pending
        result.append({"code": resource.code, "name": version.name if version else "",
                       "provider": resource.provider.code, "provider_name": resource.provider.name,
                       "update_cycle": version.update_cycle if version else "",
                       "last_load_at": schedule.last_commit(resource), "mounted_at": resource.mounted_at})
    return result



# ---- configured pulls ----


class SourceIn(Schema):
    name: str = Field(..., max_length=100)
    kind: str = Field(..., description="database, http or derived")
    mode: str = Field("replace", description="append, upsert or replace")
    config: dict[str, Any] = Field(..., description='database: {"url", "query"}; http: {"url", "items_path", '
                                                    '"page_param", "size_param", "next_path", ...}; derived: {"query"}')
    mapping: dict[str, str] = Field({}, description="data item -> source column")
    active: bool = True


class SourceOut(Schema):
    id: uuid.UUID
    name: str
    kind: str
    mode: str
    config: dict[str, Any] = Field(..., description="the configuration, passwords masked")
    mapping: dict[str, str]
    version: int
    active: bool
    last_run_at: dt.datetime | None


@router.get("/resources/{code}/sources", response=list[SourceOut], summary="The resource's configured pulls")
def list_sources(request, code: str):
    return [services.source_dict(s) for s in services.list_sources(Actor.from_request(request), code)]


@router.post("/resources/{code}/sources", response={201: SourceOut},
             summary="Configure a pull (database query, HTTP JSON API or derived table); its update cycle schedules it")
def create_source(request, code: str, body: SourceIn):
    source = services.save_source(Actor.from_request(request), code, body.dict())
    return Status(201, services.source_dict(source))


@router.put("/resources/{code}/sources/{source_id}", response=SourceOut, summary="Change a pull (its version goes up)")
def update_source(request, code: str, source_id: uuid.UUID, body: SourceIn):
    return services.source_dict(services.save_source(Actor.from_request(request), code, body.dict(), source_id))


@router.post("/sources/{source_id}/run", response={202: SourceOut}, summary="Queue a pull now")
def run_source(request, source_id: uuid.UUID):
    return Status(202, services.source_dict(services.request_run(Actor.from_request(request), source_id)))
