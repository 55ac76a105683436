"""Security alerts under /api/v1/security: list (filter by state, rule, severity; paged), one alert with its
history, acknowledge, escalate, close, the dashboard's summary, a scan on demand. Each endpoint parses, calls
security.services and serialises; the permission (security.monitor) is decided there.

Errors are problem+json: 422 names the field (a filter outside its values, a missing or too long note), 404
for an alert that does not exist or that the caller may not see, 409 for a step the alert's state does not
allow (acknowledging a closed alert)."""

import datetime as dt
from typing import Literal

from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from shuzheng.core.openapi import problem_responses
from shuzheng.core.paging import Paging
from shuzheng.org.services import Actor
from shuzheng.security import alerts, services
from shuzheng.security.models import Alert

router = Router(tags=["security"])

StateFilter = Literal["", "open", "acknowledged", "escalated", "closed", "unclosed"]
RuleFilter = Literal["", "bulk_pull", "off_hours", "enumeration", "failed_logins", "bad_api_keys", "new_address",
                     "export_refused", "integrity_failure"]
SeverityFilter = Literal["", "low", "medium", "high", "critical"]
assert set(RuleFilter.__args__) - {""} == set(alerts.RULES)  # one list of rules


_WHY = {404: "No such alert, or not one the caller may see", 409: "The alert's state does not allow this step",
        422: "A field is missing or wrong (named in errors)"}


def problems(*statuses: int) -> dict:
    return problem_responses(_WHY, *statuses)


class AlertOut(Schema):
    id: int
    rule: str
    rule_name: str
    severity: str
    subject_kind: str = Field(..., description="system, user, address or resource")
    subject: str
    summary: str = Field(..., description="in the caller's language")
    details: dict = Field(..., description="counts, thresholds and addresses; never a personal value")
    first_seen: dt.datetime
    last_seen: dt.datetime
    count: int
    first_seq: int = Field(..., description="the audit record where it was first seen")
    last_seq: int
    state: str
    handled_by: str
    handled_at: dt.datetime | None
    note: str

    @staticmethod
    def resolve_rule_name(obj: Alert) -> str:
        return alerts.rule_name(obj.rule)

    @staticmethod
    def resolve_summary(obj: Alert) -> str:
        return alerts.summary_text(obj)

    @staticmethod
    def resolve_details(obj: Alert) -> dict:
        return {k: v for k, v in obj.details.items() if k not in ("text", "args")}


class AlertEventOut(Schema):
    at: dt.datetime
    actor: str
    action: str
    note: str


class AlertDetailOut(AlertOut):
    events: list[AlertEventOut]

    @staticmethod
    def resolve_events(obj: Alert) -> list:
        return list(obj.events.all())


class AlertFilter(Schema):
    state: StateFilter = Field("", description="unclosed: open, acknowledged or escalated")
    rule: RuleFilter = ""
    severity: SeverityFilter = ""


class NoteIn(Schema):
    note: str = Field("", description="required to escalate or close; at most 2,000 characters")


class ScanOut(Schema):
    records: int
    opened: int
    updated: int
    cursor: int


@router.get("/alerts", response=list[AlertOut], summary="Alerts, most severe not closed first",
            openapi_extra=problems(422))
@paginate(Paging)
def list_alerts(request, filters: Query[AlertFilter]):
    return services.list_alerts(Actor.from_request(request), filters.state, filters.rule, filters.severity)


@router.get("/alerts/{alert_id}", response=AlertDetailOut, summary="One alert, with its history",
            openapi_extra=problems(404, 422))
def get_alert(request, alert_id: int):
    return services.get_alert(Actor.from_request(request), alert_id)


@router.post("/alerts/{alert_id}/acknowledge", response=AlertOut, openapi_extra=problems(404, 409, 422),
             summary="Acknowledge an open alert")
def acknowledge(request, alert_id: int, payload: NoteIn | None = None):
    return services.acknowledge(Actor.from_request(request), alert_id, payload.note if payload else "")


@router.post("/alerts/{alert_id}/escalate", response=AlertOut, openapi_extra=problems(404, 409, 422),
             summary="Escalate to the leading group (a note is required)")
def escalate(request, alert_id: int, payload: NoteIn):
    return services.escalate(Actor.from_request(request), alert_id, payload.note)


@router.post("/alerts/{alert_id}/close", response=AlertOut, openapi_extra=problems(404, 409, 422),
             summary="Close an alert (a note is required)")
def close(request, alert_id: int, payload: NoteIn):
    return services.close(Actor.from_request(request), alert_id, payload.note)


@router.get("/summary", response=dict, summary="Alerts not closed by severity; the last 24 hours' traffic")
def summary(request):
    return services.summary(Actor.from_request(request))


@router.post("/scan", response=ScanOut, summary="Scan the audit records since the last scan, now")
def scan(request):
    return services.scan_now(Actor.from_request(request)).as_dict()
