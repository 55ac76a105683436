"""Correction tickets (数据纠错) under /api/v1/tickets. Each endpoint parses, calls quality.tickets and
serialises; who may see and do what is decided there. Every endpoint needs a signed-in user or an
application system's key: the public cannot raise or read tickets. Resource codes are written as in the
catalog (101001001/000001; the hyphen form is accepted too)."""

from __future__ import annotations

import datetime as dt

from ninja import Field, Query, Router, Schema, Status

from shuzheng.org.services import Actor
from shuzheng.quality import tickets
from shuzheng.quality.models import CorrectionTicket

router = Router(tags=["tickets"])


# ---- schemas ----


class Ref(Schema):
    code: str
    name: str


class TicketIn(Schema):
    resource: str = Field(..., max_length=40, description="resource code, e.g. 101001001/000001")
    record_key: dict[str, str] = Field(..., description="the record: {key item: value}, every key item of the "
                                                         "resource (any items when it declares no key)")
    item: str = Field(..., max_length=100, description="the data item (field) that is wrong")
    current_value: str = Field("", max_length=tickets.VALUE_LIMIT, description="the value the platform holds")
    proposed_value: str = Field("", max_length=tickets.VALUE_LIMIT, description="the value it should be")
    description: str = Field(..., max_length=tickets.TEXT_LIMIT, description="what is wrong, and how you know")


class CommentIn(Schema):
    body: str = Field(..., max_length=tickets.TEXT_LIMIT)


class AcceptIn(Schema):
    comment: str = Field("", max_length=tickets.TEXT_LIMIT)


class ResolutionIn(Schema):
    resolution: str = Field(..., max_length=tickets.TEXT_LIMIT,
                            description="what was corrected (resolve), or why the value stands (reject)")


class ReopenIn(Schema):
    reason: str = Field(..., max_length=tickets.TEXT_LIMIT, description="why the answer is not right")


class EntryOut(Schema):
    action: str = Field(..., description="raise, comment, accept, resolve, reject or reopen")
    author: str
    author_org: Ref | None
    body: str
    from_state: str
    to_state: str
    at: dt.datetime


class TicketSummary(Schema):
    number: str
    resource: Ref
    provider: Ref
    record_key: dict[str, str]
    item: str
    state: str
    overdue: bool
    due_at: dt.datetime
    raised_by: str
    raised_by_org: Ref
    assignee: str | None = Field(None, description="username of the steward answering it; null: the "
                                                   "provider's data officer and stewards as a group")
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class TicketOut(TicketSummary):
    current_value: str
    proposed_value: str
    description: str
    resolution: str
    history: list[EntryOut]
    actions: list[str] = Field([], description="steps the caller may take now")


class TicketPage(Schema):
    total: int
    offset: int
    limit: int
    tickets: list[TicketSummary]


# ---- serialisation ----


def _ref(org) -> dict | None:
    return {"code": org.code, "name": org.name} if org is not None else None


def summary_of(ticket: CorrectionTicket) -> dict:
    resource = ticket.resource
    return {
        "number": ticket.number,
        "resource": {"code": resource.code, "name": resource.published.name if resource.published_id else ""},
        "provider": _ref(ticket.provider), "record_key": ticket.record_key, "item": ticket.item,
        "state": ticket.state, "overdue": ticket.is_overdue, "due_at": ticket.due_at,
        "raised_by": ticket.raised_by, "raised_by_org": _ref(ticket.raised_by_org),
        "assignee": ticket.assignee.username if ticket.assignee_id else None,
        "created_at": ticket.created_at, "resolved_at": ticket.resolved_at,
    }


def detail_of(actor: Actor, ticket: CorrectionTicket) -> dict:
    return {
        **summary_of(ticket),
        "current_value": ticket.current_value, "proposed_value": ticket.proposed_value,
        "description": ticket.description, "resolution": ticket.resolution,
        "history": [{"action": e.action, "author": e.author, "author_org": _ref(e.author_org), "body": e.body,
                     "from_state": e.from_state, "to_state": e.to_state, "at": e.at}
                    for e in tickets.history(ticket)],
        "actions": sorted(a for a, allowed in tickets.available_actions(actor, ticket).items() if allowed),
    }


def _detail(request, number: str) -> dict:
    actor = Actor.from_request(request)
    return detail_of(actor, tickets.get_ticket(actor, number))


# ---- endpoints ----


@router.post("", response={201: TicketOut}, summary="Raise a correction ticket on a field of a record")
def raise_ticket(request, body: TicketIn):
    actor = Actor.from_request(request)
    ticket = tickets.raise_ticket(actor, body.resource, body.dict())
    return Status(201, detail_of(actor, tickets.get_ticket(actor, ticket.number)))


@router.get("", response=TicketPage, summary="The tickets you may see: raised by you, your organization's, or all "
                                             "(the platform office)")
def list_tickets(
    request,
    state: str = Query("", description="open, accepted, resolved, rejected, or active (open and accepted)"),
    resource: str = Query("", max_length=40, description="resource code"),
    overdue: bool | None = Query(None, description="only overdue (true) or only not overdue (false) tickets"),
    box: str = Query("", description="raised (by you), assigned (to organizations you answer for), mine "
                                     "(assigned to you)"),
    offset: int = Query(0, ge=0, le=1_000_000), limit: int = Query(20, ge=1, le=200),
):
    qs = tickets.list_tickets(Actor.from_request(request), state=state, resource=resource, overdue=overdue, box=box)
    return {"total": qs.count(), "offset": offset, "limit": limit,
            "tickets": [summary_of(t) for t in qs[offset:offset + limit]]}


@router.get("/{number}", response=TicketOut, summary="A ticket with its history")
def get_ticket(request, number: str):
    return _detail(request, number)


@router.post("/{number}/comments", response={201: TicketOut}, summary="Comment on a ticket")
def comment(request, number: str, body: CommentIn):
    tickets.comment(Actor.from_request(request), number, body.body)
    return Status(201, _detail(request, number))


@router.post("/{number}/accept", response=TicketOut, summary="Accept an open ticket (the provider)")
def accept(request, number: str, body: AcceptIn):
    tickets.accept(Actor.from_request(request), number, body.comment)
    return _detail(request, number)


@router.post("/{number}/resolve", response=TicketOut, summary="Resolve an accepted ticket: the record is corrected")
def resolve(request, number: str, body: ResolutionIn):
    tickets.resolve(Actor.from_request(request), number, body.resolution)
    return _detail(request, number)


@router.post("/{number}/reject", response=TicketOut, summary="Reject an open or accepted ticket: the value stands")
def reject(request, number: str, body: ResolutionIn):
    tickets.reject(Actor.from_request(request), number, body.resolution)
    return _detail(request, number)


@router.post("/{number}/reopen", response=TicketOut, summary="Reopen a resolved or rejected ticket (its raiser)")
def reopen(request, number: str, body: ReopenIn):
    tickets.reopen(Actor.from_request(request), number, body.reason)
    return _detail(request, number)
