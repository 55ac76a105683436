"""The sharing workflow under /api/v1/sharing: applications, decisions, grants, use and notifications.
(The gateway itself, where application systems read the data, is /api/v1/share/…, see gateway_views.)
Each endpoint parses, calls sharing.services and serialises; permissions are decided there."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from ninja import Field, File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile

from shuzheng.core.paging import MAX_OFFSET
from shuzheng.org.services import Actor
from shuzheng.sharing import services, subscriptions
from shuzheng.sharing.models import Application, Grant

router = Router(tags=["sharing"])


class Condition(Schema):
    item: str = Field(..., max_length=100)
    op: str = Field(..., description="eq, in, prefix or range")
    value: Any = Field(..., description="a value; a list for in; [low, high] for range (either may be null)")


class ApplicationIn(Schema):
    resource: str = Field(..., max_length=40, description="resource code, e.g. 101001000/000001")
    system: str = Field(..., max_length=48, description="the applying organization's application system")
    purpose: str = Field(..., max_length=services.TEXT_LIMIT)
    legal_basis: str = Field(..., max_length=services.TEXT_LIMIT)
    items: list[str] = Field(..., max_length=500, description="data items needed")
    clear_items: list[str] = Field([], max_length=500, description="items needed unmasked (needs approval)")
    row_filter: list[Condition] = Field([], max_length=20, description="row scope, e.g. one town only")
    method: str = Field("interface", description="interface, table or file")
    period_end: dt.date = Field(..., description="needed until")


class DecisionIn(Schema):
    decision: str = Field(..., description="approve or reject")
    note: str = Field("", max_length=services.TEXT_LIMIT, description="required to reject")
    items: list[str] | None = Field(None, description="narrow to these items")
    clear_items: list[str] | None = Field(None, description="narrow the clear items")
    verify_items: list[str] | None = Field(None, description="items whose mismatch verification may name")
    row_filter: list[Condition] | None = Field(None, description="further row conditions")
    masks: dict[str, dict] | None = Field(None, description="item -> mask spec, e.g. {\"kind\": \"keep\", \"first\": 1}")
    calls_per_day: int | None = None
    rows_per_day: int | None = None
    allowed_ips: list[str] | None = Field(None, description="CIDR blocks the calls may come from")
    expires_at: dt.date | None = Field(None, description="an earlier end than asked")


class RevokeIn(Schema):
    reason: str = Field(..., max_length=services.TEXT_LIMIT)


class EventOut(Schema):
    at: dt.datetime
    actor: str
    action: str
    state: str
    note: str
    details: dict


def application_out(a: Application) -> dict:
    grant = getattr(a, "grant", None) if a.state == "approved" else None
    return {"number": a.number, "state": a.state, "resource": a.resource.code, "resource_name": a.version.name,
            "system": a.system.code, "consumer": a.consumer.code, "consumer_name": a.consumer.name,
            "provider": a.provider.code, "provider_name": a.provider.name, "applicant": a.applicant,
            "purpose": a.purpose, "legal_basis": a.legal_basis, "items": a.items, "clear_items": a.clear_items,
            "row_filter": a.row_filter, "method": a.method, "period_end": a.period_end.isoformat(),
            "terms": a.terms, "due_at": a.due_at, "escalated": a.escalated_at is not None,
            "decided_at": a.decided_at, "decision_note": a.decision_note, "submitted_at": a.created_at,
            "grant": str(grant.id) if grant else None}


def grant_out(g: Grant) -> dict:
    return {"id": str(g.id), "state": g.status(), "resource": g.resource.code, "system": g.system.code,
            "consumer": g.consumer.code, "provider": g.provider.code, "application": g.application.number,
            "items": g.items, "masks": g.masks, "verify_items": g.verify_items, "row_filter": g.row_filter,
            "methods": g.methods, "expires_at": g.expires_at, "calls_per_day": g.calls_per_day,
            "rows_per_day": g.rows_per_day, "allowed_ips": g.allowed_ips, "revoked_at": g.revoked_at,
            "revoke_reason": g.revoke_reason or None, "created_at": g.created_at}


@router.post("/applications", response={201: dict}, summary="Apply for a resource (共享申请)")
def apply(request, payload: ApplicationIn):
    data = payload.dict()
    data["row_filter"] = [dict(c) for c in data["row_filter"]]
    return Status(201, application_out(services.apply(Actor.from_request(request), data)))


@router.get("/applications", response=list[dict], summary="Applications made, received or escalated")
def applications(request, box: str = "", state: str = "", limit: int = Query(100, ge=1, le=500),
                 offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    qs = services.list_applications(Actor.from_request(request), box, state)
    return [application_out(a) for a in qs[offset:offset + limit]]


@router.get("/applications/{number}", response=dict)
def application(request, number: str):
    a = services.get_application(Actor.from_request(request), number)
    return {**application_out(a), "events": [EventOut.from_orm(e).dict() for e in a.events.all()]}


@router.post("/applications/{number}/decision", response=dict, summary="Approve (optionally narrowed) or reject")
def decide(request, number: str, payload: DecisionIn):
    data = payload.dict()
    if data.get("row_filter") is not None:
        data["row_filter"] = [dict(c) for c in data["row_filter"]]
    if data.get("expires_at") is not None:
        data["expires_at"] = data["expires_at"].isoformat()
    return application_out(services.decide(Actor.from_request(request), number, data))


@router.post("/applications/{number}/withdraw", response=dict)
def withdraw(request, number: str):
    return application_out(services.withdraw(Actor.from_request(request), number))


@router.get("/grants", response=list[dict], summary="Grants held or given out")
def grants(request, live: bool | None = None):
    return [grant_out(g) for g in services.list_grants(Actor.from_request(request), live)[:500]]


@router.get("/grants/{grant_id}", response=dict)
def grant(request, grant_id: str):
    return grant_out(services.get_grant(Actor.from_request(request), grant_id))


@router.post("/grants/{grant_id}/revoke", response=dict, summary="Revoke a grant; effective on the next call")
def revoke(request, grant_id: str, payload: RevokeIn):
    return grant_out(services.revoke_grant(Actor.from_request(request), grant_id, payload.reason))


@router.get("/usage", response=list[dict], summary="Gateway calls, rows, bytes and errors (metering)")
def usage(request, by: str = "day", days: int = 30):
    return services.usage(Actor.from_request(request), by, days)


@router.get("/notifications", response=list[dict])
def notifications(request, unread: bool = False):
    return [{"at": n.at, "text": n.text, "link": n.link, "read": n.read_at is not None}
            for n in services.notifications(Actor.from_request(request), unread)[:200]]


@router.post("/leaks", response=dict, summary="Which recipient a leaked export came from (watermark)")
def leak(request, resource: Form[str], file: File[UploadedFile]):
    suffix = Path(file.name or "").suffix.lower()
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        for chunk in file.chunks():
            tmp.write(chunk)
        tmp.flush()
        return services.identify_leak(Actor.from_request(request), resource, Path(tmp.name))


# ---- subscriptions (webhooks on new snapshots) ----


class SubscriptionIn(Schema):
    grant: str = Field(..., description="the grant's id")
    url: str = Field(..., max_length=500, description="http(s) address that receives the signed POSTs")


def subscription_out(s) -> dict:
    return {"id": str(s.id), "grant": str(s.grant_id), "resource": s.grant.resource.code, "system": s.grant.system.code,
            "url": s.url, "active": s.active, "created_at": s.created_at}


def delivery_out(d) -> dict:
    return {"id": str(d.id), "event": d.event_id, "state": d.state, "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at, "last_status": d.last_status, "last_error": d.last_error or None,
            "created_at": d.created_at, "delivered_at": d.delivered_at, "payload": d.payload}


@router.post("/subscriptions", response={201: dict},
             summary="Subscribe to a granted resource's new snapshots; the signing secret is shown once")
def subscribe(request, payload: SubscriptionIn):
    sub, secret = subscriptions.create_subscription(Actor.from_request(request), payload.grant, payload.url)
    return Status(201, {**subscription_out(sub), "secret": secret,
                        "signature": "X-Shuzheng-Signature: t=<unix seconds>,v1=<hex HMAC-SM3(secret, t + '.' + body)>"})


@router.get("/subscriptions", response=list[dict])
def subscriptions_list(request):
    return [subscription_out(s) for s in subscriptions.list_subscriptions(Actor.from_request(request))[:500]]


@router.post("/subscriptions/{subscription_id}/deactivate", response=dict)
def unsubscribe(request, subscription_id: str):
    return subscription_out(subscriptions.deactivate_subscription(Actor.from_request(request), subscription_id))


@router.get("/subscriptions/{subscription_id}/deliveries", response=list[dict], summary="The delivery log")
def deliveries(request, subscription_id: str):
    return [delivery_out(d) for d in subscriptions.list_deliveries(Actor.from_request(request), subscription_id)[:200]]


@router.post("/deliveries/{delivery_id}/redeliver", response=dict)
def redeliver(request, delivery_id: str):
    return delivery_out(subscriptions.redeliver(Actor.from_request(request), delivery_id))
