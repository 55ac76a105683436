"""Catalog endpoints under /api/v1/catalog. Each parses, calls catalog.services and serialises.

Reading the catalog is open to the public (who see open resources only); every change needs a signed-in
user or an application system's key. Resource codes contain a slash; in paths write it as a hyphen
(101001001-000001)."""

from __future__ import annotations

import datetime as dt

from django.http import HttpResponse
from ninja import Field, File, Query, Router, Schema, Status
from ninja.files import UploadedFile

from shuzheng.api import PUBLIC
from shuzheng.catalog import excel, services
from shuzheng.catalog.models import (
    DataType,
    Format,
    Level,
    MountKind,
    OpenType,
    Resource,
    ResourceVersion,
    SharingMethod,
    SharingType,
    Subject,
    UpdateCycle,
)
from shuzheng.org.services import Actor

router = Router(tags=["catalog"])

# ---- schemas ----


class Ref(Schema):
    code: str
    name: str


class ItemOut(Schema):
    name: str
    data_type: str
    length: int | None
    nullable: bool
    is_key: bool
    element: str | None
    element_name: str | None
    level: str
    subject: str = Field(..., description="data category: personal, legal_entity, public_affairs or other")
    sensitive_personal: bool
    domestic_only: bool
    authoritative: bool
    source: str | None = Field(None, description="the element's authoritative resource, when this item is a copy")


class FindingOut(Schema):
    item: str
    kind: str = Field(..., description="id_number, credit_code, bank_card, mobile, email, plate, name or address")
    share: float = Field(..., description="share of the sampled non-null values that are of this kind")
    sampled: int
    matched: int
    declared_subject: str
    declared_level: str
    declared_sensitive: bool
    implied_subject: str
    implied_level: str
    implied_sensitive: bool
    flagged: bool = Field(..., description="the data shows more than the item declares")
    load_id: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: str

    @staticmethod
    def resolve_load_id(obj):
        return str(obj.load_id)


class MountOut(Schema):
    kind: str
    target: str
    mounted_at: dt.datetime | None


class VersionRef(Schema):
    number: int
    status: str


class ResourceSummary(Schema):
    code: str
    name: str
    summary: str
    provider: Ref
    category: Ref
    kind: str
    status: str
    version: int
    format: str
    sharing_type: str
    open_type: str
    update_cycle: str
    level: str
    mounted: bool
    published_at: dt.datetime | None


class ResourceOut(ResourceSummary):
    sharing_conditions: str
    sharing_basis: str
    sharing_methods: list[str]
    open_conditions: str
    owner: Ref
    manager: Ref
    steward: str | None
    keywords: list[str]
    spatial_coverage: str
    time_coverage_start: dt.date | None
    time_coverage_end: dt.date | None
    related_codes: list[str]
    domestic_only: bool = Field(..., description="export control (出境): domestic destinations only")
    items: list[ItemOut]
    findings: list[FindingOut] = Field([], description="discovery findings (the department and reviewers only)")
    mount: MountOut | None
    published_version: int | None
    pending: VersionRef | None
    actions: list[str] = Field([], description="lifecycle steps the caller may take now")


class FacetValue(Schema):
    value: str
    label: str
    count: int


class SearchOut(Schema):
    total: int
    offset: int
    limit: int
    resources: list[ResourceSummary]
    facets: dict[str, list[FacetValue]]


class ItemIn(Schema):
    name: str = Field(..., max_length=100)
    data_type: DataType | None = Field(None, description="defaults to the data element's type")
    length: int | None = Field(None, ge=1, le=1_000_000)
    nullable: bool = True
    is_key: bool = False
    element: str | None = Field(None, description="data element identifier, e.g. DE00001")
    level: Level | None = Field(None, description="defaults to the data element's level")
    subject: Subject | None = Field(None, description="data category; defaults to the data element's, else other")
    sensitive_personal: bool = Field(False, description="敏感个人信息: personal items only, at least important")
    domestic_only: bool = Field(False, description="export control (出境): domestic destinations only")
    authoritative: bool = Field(False, description="this resource is the element's authoritative source")


class ResourceIn(Schema):
    name: str = Field(..., max_length=200)
    summary: str = Field(..., max_length=4000)
    format: Format
    sharing_type: SharingType
    sharing_conditions: str = Field("", max_length=2000)
    sharing_basis: str = Field("", max_length=2000)
    sharing_methods: list[SharingMethod] = []
    open_type: OpenType
    open_conditions: str = Field("", max_length=2000)
    update_cycle: UpdateCycle
    level: Level | None = Field(None, description="defaults to the highest item level")
    owner: str = Field("", description="credit code; defaults to the provider")
    manager: str = Field("", description="credit code; defaults to the provider")
    steward: str = Field("", description="username of the responsible steward")
    keywords: list[str] = Field([], max_length=30)
    spatial_coverage: str = Field("", max_length=100)
    time_coverage_start: dt.date | None = None
    time_coverage_end: dt.date | None = None
    related_codes: list[str] = Field([], max_length=100)
    domestic_only: bool = Field(False, description="export control (出境): domestic destinations only")
    items: list[ItemIn] = Field(..., max_length=500)


class ResourceCreate(ResourceIn):
    category: str = Field(..., description="classification code (类/项/目/细目), or 3 for the provider's own")
    provider: str = Field(..., description="credit code of the providing organization")


class CommentIn(Schema):
    comment: str = Field("", max_length=2000)


class ReviewIn(Schema):
    decision: str = Field(..., pattern="^(approve|return)$")
    comment: str = Field("", max_length=2000)


class ReasonIn(Schema):
    reason: str = Field(..., max_length=2000)


class MountIn(Schema):
    kind: MountKind
    target: str = Field(..., max_length=500)


class EventOut(Schema):
    action: str
    actor: str
    comment: str
    at: dt.datetime


class VersionOut(Schema):
    number: int
    status: str
    name: str
    created_by: str
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    published_at: dt.datetime | None
    events: list[EventOut]

    @staticmethod
    def resolve_events(obj):
        return list(obj.events.all())


class DiffOut(Schema):
    code: str
    from_: int = Field(..., alias="from")
    to: int
    fields: dict[str, list]
    items: dict[str, dict]


class ElementOut(Schema):
    identifier: str
    name: str
    definition: str
    data_type: str
    format: str
    value_domain: str
    code_table: str | None = Field(None, alias="code_table.code")
    level: str
    subject: str
    authoritative: str | None = Field(None, description="code of the authoritative source, when you may see it")

    @staticmethod
    def resolve_authoritative(obj, context):
        return services.visible_source(Actor.from_request(context["request"]), obj)


class ElementIn(Schema):
    name: str = Field(..., max_length=60)
    definition: str = Field(..., max_length=2000)
    data_type: DataType
    format: str = Field("", max_length=40)
    value_domain: str = Field("", max_length=200)
    code_table: str | None = None
    level: Level = Level.GENERAL
    subject: Subject | None = Field(None, description="data category; kept when an update omits it, else other")


class CodeValueOut(Schema):
    code: str
    name: str
    parent: str = Field("", alias="parent_code")


class CodeValueIn(Schema):
    code: str = Field(..., max_length=20)
    name: str = Field(..., max_length=100)
    parent: str = Field("", max_length=20)


class CodeTableOut(Schema):
    code: str
    name: str
    standard: str
    description: str
    size: int = 0


class CodeTableDetail(CodeTableOut):
    values: list[CodeValueOut]

    @staticmethod
    def resolve_values(obj):
        return list(obj.values.all())

    @staticmethod
    def resolve_size(obj):
        return obj.values.count()


class CodeTableIn(Schema):
    name: str = Field(..., max_length=100)
    standard: str = Field("", max_length=60)
    description: str = Field("", max_length=2000)
    values: list[CodeValueIn] = Field(..., max_length=5000)


class CategoryOut(Schema):
    code: str
    name: str
    kind: str
    parent: str | None = Field(None, alias="parent.code")
    organization: str | None = Field(None, alias="organization.code")


class SourceEntry(Schema):
    identifier: str
    name: str
    providers: list[str]
    authoritative: str | None = Field(None, description="the source's code, when you may see it")
    has_source: bool


class NoSourceEntry(Schema):
    identifier: str
    name: str
    used_by: int


class SourceReport(Schema):
    multiple_collection: list[SourceEntry]
    no_authoritative_source: list[NoSourceEntry]


class ImportOut(Schema):
    resources: list[str]


# ---- serialisation ----


def _ref(org) -> dict:
    return {"code": org.code, "name": org.name}


def summary_of(resource: Resource, version: ResourceVersion | None = None) -> dict:
    version = version or resource.current
    return {
        "code": resource.code, "name": version.name, "summary": version.summary, "provider": _ref(resource.provider),
        "category": {"code": resource.category.code, "name": resource.category.name},
        "kind": resource.category.kind, "status": resource.status, "version": version.number,
        "format": version.format, "sharing_type": version.sharing_type, "open_type": version.open_type,
        "update_cycle": version.update_cycle, "level": version.level, "mounted": resource.is_mounted,
        "published_at": version.published_at,
    }


def detail_of(actor: Actor, resource: Resource, version: ResourceVersion) -> dict:
    pending = services.visible_pending(actor, resource)
    items = []
    for item in services.items_of(version):
        element = item.element
        source = element.authoritative.code if element and element.authoritative_id else None
        items.append({
            "name": item.name, "data_type": item.data_type, "length": item.length, "nullable": item.nullable,
            "is_key": item.is_key, "element": element.identifier if element else None,
            "element_name": element.name if element else None, "level": item.level, "subject": item.subject,
            "sensitive_personal": item.sensitive_personal, "domestic_only": item.domestic_only,
            "authoritative": item.authoritative, "source": source if source != resource.code else None,
        })
    return {
        **summary_of(resource, version),
        **{name: getattr(version, name) for name in (
            "sharing_conditions", "sharing_basis", "sharing_methods", "open_conditions", "keywords",
            "spatial_coverage", "time_coverage_start", "time_coverage_end", "related_codes", "domestic_only")},
        "owner": _ref(version.owner), "manager": _ref(version.manager),
        "steward": version.steward.username if version.steward_id else None,
        "items": items,
        "findings": services.list_findings(actor, resource),
        "mount": {"kind": resource.mount_kind, "target": resource.mount_target, "mounted_at": resource.mounted_at}
        if resource.is_mounted else None,
        "published_version": resource.published.number if resource.published_id else None,
        "pending": {"number": pending.number, "status": pending.status} if pending else None,
        "actions": sorted(a for a, allowed in services.available_actions(actor, resource).items() if allowed),
    }


def _detail(request, code: str, version: ResourceVersion | None = None):
    actor = Actor.from_request(request)
    resource = services.get_resource(actor, code)
    return detail_of(actor, resource, version or services.get_version(actor, resource.code))


# ---- resources ----


class FacetFilters(Schema):
    """Facet values to keep (several values of one facet are ORed; facets are ANDed)."""

    provider: list[str] = Field([], description="provider credit codes")
    kind: list[str] = []
    category: list[str] = Field([], description="项 codes, e.g. 101")
    sharing_type: list[str] = []
    open_type: list[str] = []
    update_cycle: list[str] = []
    format: list[str] = []
    level: list[str] = []
    mounted: list[str] = Field([], description="yes or no")
    status: list[str] = []

    def chosen(self) -> dict:
        return {name: values for name, values in self.dict().items() if values}


@router.get("/resources", response=SearchOut, auth=PUBLIC, summary="Search the catalog")
def search_resources(
    request,
    facets: Query[FacetFilters],
    q: str = Query("", max_length=200, description="Chinese full text: names, summaries, items, keywords"),
    sort: str = Query("", description="relevance, newest, name or code"),
    offset: int = Query(0, ge=0, le=1_000_000), limit: int = Query(20, ge=1, le=200),
):
    found = services.search_catalog(Actor.from_request(request), q, facets.chosen(), sort, offset, limit)
    return {
        "total": found["total"], "offset": offset, "limit": limit,
        "resources": [summary_of(r) for r in found["resources"]],
        "facets": {name: [{"value": v, "label": label, "count": n} for v, label, n in values]
                   for name, values in found["facets"].items()},
    }


@router.post("/resources", response={201: ResourceOut}, summary="Register a resource (a draft)")
def create_resource(request, body: ResourceCreate):
    actor = Actor.from_request(request)
    resource = services.create_resource(actor, body.dict())
    return Status(201, detail_of(actor, resource, resource.pending))


@router.get("/resources/{code}", response=ResourceOut, auth=PUBLIC,
            summary="A resource: the published version, or the one under way if never published")
def get_resource(request, code: str):
    return _detail(request, code)


@router.put("/resources/{code}/draft", response=ResourceOut, summary="Replace the draft or returned version")
def update_draft(request, code: str, body: ResourceIn):
    actor = Actor.from_request(request)
    version = services.update_draft(actor, code, body.dict())
    return detail_of(actor, services.get_resource(actor, code), version)


@router.post("/resources/{code}/revisions", response={201: ResourceOut},
             summary="Start a new version of a published resource")
def start_revision(request, code: str):
    actor = Actor.from_request(request)
    version = services.start_revision(actor, code)
    return Status(201, detail_of(actor, services.get_resource(actor, code), version))


@router.post("/resources/{code}/submit", response=VersionOut)
def submit(request, code: str, body: CommentIn):
    return services.submit(Actor.from_request(request), code, body.comment)


@router.post("/resources/{code}/review", response=VersionOut, summary="Approve or return (reviewers)")
def review(request, code: str, body: ReviewIn):
    return services.review(Actor.from_request(request), code, body.decision, body.comment)


@router.post("/resources/{code}/publish", response=VersionOut, summary="Publish the approved version (reviewers)")
def publish(request, code: str, body: CommentIn):
    return services.publish(Actor.from_request(request), code, body.comment)


@router.post("/resources/{code}/deprecate", response=ResourceOut)
def deprecate(request, code: str, body: ReasonIn):
    services.deprecate(Actor.from_request(request), code, body.reason)
    return _detail(request, code)


@router.put("/resources/{code}/mount", response=ResourceOut, summary="Mount (挂接) a published resource")
def mount(request, code: str, body: MountIn):
    services.mount(Actor.from_request(request), code, body.kind, body.target)
    return _detail(request, code)


@router.delete("/resources/{code}/mount", response=ResourceOut)
def unmount(request, code: str):
    services.unmount(Actor.from_request(request), code)
    return _detail(request, code)


@router.get("/resources/{code}/versions", response=list[VersionOut], auth=PUBLIC)
def list_versions(request, code: str):
    return list(services.list_versions(Actor.from_request(request), code).prefetch_related("events"))


@router.get("/resources/{code}/versions/{number}", response=ResourceOut, auth=PUBLIC)
def get_version(request, code: str, number: int):
    actor = Actor.from_request(request)
    return _detail(request, code, services.get_version(actor, code, number))


@router.get("/resources/{code}/diff", response=DiffOut, auth=PUBLIC, by_alias=True,
            summary="Compare two versions field by field")
def diff(request, code: str, a: int = Query(..., alias="from", ge=1), b: int = Query(..., alias="to", ge=1)):
    return services.diff_versions(Actor.from_request(request), code, a, b)


# ---- import and export ----


@router.post("/import", response={201: ImportOut}, summary="Import resources from the catalog workbook (all or nothing)")
def import_workbook(request, file: File[UploadedFile]):
    created = excel.import_workbook(Actor.from_request(request), file)
    return Status(201, {"resources": [r.code for r in created]})


@router.get("/export", auth=PUBLIC, summary="The resources you can see (or the search's), as the catalog workbook")
def export_workbook(request, facets: Query[FacetFilters], q: str = Query("", max_length=200)):
    data = excel.export_workbook(Actor.from_request(request), q=q, filters=facets.chosen())
    response = HttpResponse(data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response["Content-Disposition"] = 'attachment; filename="catalog.xlsx"'
    return response


# ---- standards: elements, code tables, classification ----


@router.get("/elements", response=list[ElementOut], auth=PUBLIC)
def list_elements(request, q: str = Query("", max_length=100)):
    return list(services.list_elements(q))


@router.get("/elements/{identifier}", response=ElementOut, auth=PUBLIC)
def get_element(request, identifier: str):
    return services.find_element(identifier)


@router.put("/elements/{identifier}", response=ElementOut, summary="Create or update a data element")
def save_element(request, identifier: str, body: ElementIn):
    return services.save_element(Actor.from_request(request), {"identifier": identifier, **body.dict()})


@router.get("/code-tables", response=list[CodeTableOut], auth=PUBLIC)
def list_code_tables(request):
    return list(services.list_code_tables())


@router.get("/code-tables/{code}", response=CodeTableDetail, auth=PUBLIC)
def get_code_table(request, code: str):
    return services.get_code_table(code)


@router.put("/code-tables/{code}", response=CodeTableDetail, summary="Create or replace a code table")
def save_code_table(request, code: str, body: CodeTableIn):
    return services.save_code_table(Actor.from_request(request), {"code": code, **body.dict()})


@router.get("/categories", response=list[CategoryOut], auth=PUBLIC)
def list_categories(request):
    return list(services.list_categories())


@router.get("/reports/sources", response=SourceReport, auth=PUBLIC,
            summary="One datum, one source: elements collected by several departments, and without a source")
def source_report(request):
    return services.source_report(Actor.from_request(request))
