"""Harvest sources under /api/v1/harvest: list and register sources, change one, harvest one now, its runs.
The platform office's reviewers (catalog.review) manage them; the decision is harvest.services'. A run that
fails is a report (200 with state "failed" and the reason), not an error: the source was reached or not."""

import datetime as dt

from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from shuzheng.core.openapi import problem_responses
from shuzheng.core.paging import Paging
from shuzheng.harvest import services
from shuzheng.harvest.models import SourceKind
from shuzheng.org.services import Actor

router = Router(tags=["harvest"])
_WHY = {404: "No such harvest source, or the caller may not manage sources",
        409: "The source is being harvested already", 422: "A field is missing or wrong (named in errors)"}


def problems(*statuses: int) -> dict:
    return problem_responses(_WHY, *statuses)


class SourceOut(Schema):
    name: str
    kind: str
    url: str
    organization: str = Field(..., description="the node's credit code")
    organization_name: str
    interval_minutes: int
    timeout_s: int
    max_bytes: int
    max_pages: int
    max_datasets: int
    enabled: bool
    has_credential: bool
    watermark: dt.datetime | None
    last_run_at: dt.datetime | None
    records: int = Field(..., description="datasets harvested and still listed by the source")

    @staticmethod
    def resolve_organization(obj) -> str:
        return obj.organization.code

    @staticmethod
    def resolve_organization_name(obj) -> str:
        return obj.organization.name

    @staticmethod
    def resolve_has_credential(obj) -> bool:
        return bool(obj.credential)

    @staticmethod
    def resolve_records(obj) -> int:
        return obj.records.filter(deleted_at=None).count()


class SourceIn(Schema):
    name: str
    kind: SourceKind
    url: str
    organization: str = Field(..., description="credit code of the province platform, a city government or a "
                                                "body connected on demand")
    credential: str = Field("", description="the API key this platform holds at the source; stored wrapped, "
                                            "never shown")
    interval_minutes: int = 1440
    timeout_s: int = 30
    max_bytes: int = 50 << 20
    max_pages: int = 200
    max_datasets: int = 20000
    enabled: bool = True


class SourcePatch(Schema):
    name: str | None = None
    kind: SourceKind | None = None
    url: str | None = None
    organization: str | None = None
    credential: str | None = None
    interval_minutes: int | None = None
    timeout_s: int | None = None
    max_bytes: int | None = None
    max_pages: int | None = None
    max_datasets: int | None = None
    enabled: bool | None = None


class RunOut(Schema):
    id: str
    source: str
    state: str
    incremental: bool
    since: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    pages: int
    bytes: int
    seen: int
    created: int
    updated: int
    unchanged: int
    deleted: int
    skipped: int
    relayed: int = Field(..., description="entries the source had harvested from elsewhere, left to their origin")
    error: str
    problems: list[dict] = Field(..., description="each skipped entry: identifier, field, message")

    @staticmethod
    def resolve_id(obj) -> str:
        return str(obj.id)

    @staticmethod
    def resolve_source(obj) -> str:
        return obj.source.name


@router.get("/sources", response=list[SourceOut], summary="Harvest sources")
@paginate(Paging)
def list_sources(request):
    return services.list_sources(Actor.from_request(request))


@router.post("/sources", response={201: SourceOut}, summary="Register a harvest source", openapi_extra=problems(422))
def create_source(request, payload: SourceIn):
    return Status(201, services.save_source(Actor.from_request(request), payload.dict()))


@router.get("/sources/{name}", response=SourceOut, summary="One harvest source", openapi_extra=problems(404))
def get_source(request, name: str):
    return services.get_source(Actor.from_request(request), name)


@router.patch("/sources/{name}", response=SourceOut, summary="Change a harvest source",
              openapi_extra=problems(404, 422))
def change_source(request, name: str, payload: SourcePatch):
    return services.save_source(Actor.from_request(request), payload.dict(exclude_none=True), name=name)


@router.post("/sources/{name}/run", response=RunOut, summary="Harvest now (full=true reads the whole catalog)",
             openapi_extra=problems(404, 409))
def run_now(request, name: str, full: bool = False):
    return services.run(Actor.from_request(request), name, full=full)


@router.get("/sources/{name}/runs", response=list[RunOut], summary="A source's runs, newest first",
            openapi_extra=problems(404))
@paginate(Paging)
def list_runs(request, name: str):
    actor = Actor.from_request(request)
    return services.get_source(actor, name).runs.select_related("source")
