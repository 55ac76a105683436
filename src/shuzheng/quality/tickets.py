"""Correction tickets (数据纠错): a consumer of a resource says that one field of one record is wrong; the
department that provides the resource answers by a deadline; the platform office watches the overdue ones.
API, UI and the demo call these functions; every step is checked and audited here, in one transaction.

Who:
- Anyone signed in to government (a user or an application system) who can see a *published* resource
  may raise a ticket on it. The public cannot.
- A ticket goes to the provider (copied onto the ticket when raised). Its handlers are whoever holds
  Perm.TICKET_HANDLE on that organization (its data officer and data stewards). The resource's steward is
  the assignee when the steward can handle it; otherwise the ticket is the handlers' as a group, and the
  first handler to accept it becomes its assignee.
- Overseers (Perm.TICKET_OVERSEE: the platform office's catalog reviewers, the leading group) see every
  ticket and may decide one (accept, resolve, reject) once it is overdue.
- A ticket is seen by its raiser, its provider's handlers, its assignee and the overseers; for anyone else
  it does not exist (404).

States (anything else is 409):
    open ──accept──▶ accepted ──resolve──▶ resolved
      │                 │
      └────reject───────┴──────reject────▶ rejected
    resolved | rejected ──reopen (the raiser, within REOPEN_DAYS of the decision, with a reason)──▶ open
Resolving and rejecting need a resolution (what was corrected, or why the value stands). Comments are
allowed in every state, from everyone who sees the ticket.

Deadline: due_at = the moment it is raised (or reopened) + TICKET_DAYS (5) calendar days; accepting does
not move it. A ticket is overdue while it is open or accepted after due_at. Calendar days, not working
days, because the platform has no holiday calendar (and 调休 makes "skip weekends" wrong).

Numbers are JC + the local date + a four-digit sequence of that day (JC20261129-0001), taken from the
day's TicketCounter row under a row lock, so concurrent raises never collide.

There is no notification system yet: a handler's inbox is the "assigned to my organization" list, the
platform office's the overdue list (list_tickets and inbox()).

The audit trail names the record's key items but not their values (often ID numbers); the ticket keeps them.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import Resource, Status
from shuzheng.core.errors import AuthenticationFailed, Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from shuzheng.core.numbers import next_daily
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.quality.models import (
    TICKET_ACTIVE,
    CorrectionTicket,
    TicketComment,
    TicketCounter,
    TicketState,
)

TICKET_DAYS = 5
REOPEN_DAYS = 30
TEXT_LIMIT = 2000
VALUE_LIMIT = 2000
KEY_VALUE_LIMIT = 200
KEY_ITEMS_LIMIT = 20
NAME_LIMIT = 100

CLOSED = (TicketState.RESOLVED, TicketState.REJECTED)
BOXES = ("raised", "assigned", "mine")
Action = TicketComment.Action


# --------------------------------------------------------------------------------------------------
# Who may see and do what
# --------------------------------------------------------------------------------------------------


def is_consumer(actor: Actor) -> bool:
    """A signed-in user or an application system: the ones who may raise tickets."""
    if actor.user is not None:
        return actor.user.is_active
    return actor.system is not None


def _require_consumer(actor: Actor) -> None:
    if is_consumer(actor):
        return
    if actor.operator:
        raise Forbidden(_("Correction tickets are raised by a user or an application system."))
    raise AuthenticationFailed(_("Sign in to raise a correction ticket."))


def _scope(actor: Actor) -> Q | None:
    """The tickets `actor` may see, as a filter; None means all of them."""
    orgs = set()
    for perm in (Perm.TICKET_OVERSEE, Perm.TICKET_HANDLE):
        ids = authz.org_ids(actor, perm)
        if ids is None:
            return None
        orgs |= ids
    where = Q(pk__in=[])
    if orgs:
        where |= Q(provider_id__in=orgs)
    if is_consumer(actor):
        where |= Q(raised_by=actor.name)
    if actor.user is not None:
        where |= Q(assignee=actor.user)
    return where


def _visible() -> QuerySet:
    return CorrectionTicket.objects.select_related(
        "resource", "resource__published", "provider", "raised_by_org", "assignee")


def is_raiser(actor: Actor, ticket: CorrectionTicket) -> bool:
    return is_consumer(actor) and ticket.raised_by == actor.name


def is_handler(actor: Actor, ticket: CorrectionTicket) -> bool:
    return authz.allowed(actor, Perm.TICKET_HANDLE, ticket.provider)


def is_overseer(actor: Actor, ticket: CorrectionTicket) -> bool:
    return authz.allowed(actor, Perm.TICKET_OVERSEE, ticket.provider)


def may_decide(actor: Actor, ticket: CorrectionTicket) -> bool:
    """The provider's handlers always; the overseers once the ticket is overdue."""
    return is_handler(actor, ticket) or (is_overseer(actor, ticket) and ticket.is_overdue)


def may_reopen(actor: Actor, ticket: CorrectionTicket, now: dt.datetime | None = None) -> bool:
    now = now or timezone.now()
    return (is_raiser(actor, ticket) and ticket.state in CLOSED and ticket.resolved_at is not None
            and now <= ticket.resolved_at + dt.timedelta(days=REOPEN_DAYS))


def available_actions(actor: Actor, ticket: CorrectionTicket) -> dict[str, bool]:
    """The steps `actor` may take on `ticket` now (the UI's buttons, the API's `actions`); each step's
    service checks again."""
    decide = may_decide(actor, ticket)
    return {
        "comment": True,
        "accept": decide and ticket.state == TicketState.OPEN,
        "resolve": decide and ticket.state == TicketState.ACCEPTED,
        "reject": decide and ticket.state in TICKET_ACTIVE,
        "reopen": may_reopen(actor, ticket),
    }


def boxes(actor: Actor) -> list[str]:
    """The lists `actor` has: tickets they raised, their organization's to handle, the overdue ones."""
    names = []
    if is_consumer(actor):
        names.append("raised")
    if authz.allowed(actor, Perm.TICKET_HANDLE):
        names.append("assigned")
    if authz.allowed(actor, Perm.TICKET_OVERSEE):
        names.append("overdue")
    return names


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def overdue_filter(now: dt.datetime | None = None) -> Q:
    return Q(state__in=TICKET_ACTIVE, due_at__lt=now or timezone.now())


def list_tickets(actor: Actor, state: str = "", resource: str = "", overdue: bool | None = None,
                 box: str = "") -> QuerySet:
    """The tickets `actor` may see, filtered: `state` (one state, or "active" for open and accepted),
    `resource` (a code), `overdue`, and `box`: raised (by me), assigned (to organizations I handle for),
    mine (assigned to me). Lists to work through (assigned, mine, overdue) come soonest deadline first."""
    state, resource, box = (state or "").strip(), (resource or "").strip(), (box or "").strip()
    if state and state != "active" and state not in TicketState.values:
        choices = ", ".join(["active", *TicketState.values])
        raise ValidationFailed.of("state", _("Choose one of: %(c)s.") % {"c": choices})
    if box and box not in BOXES:
        raise ValidationFailed.of("box", _("Choose one of: %(c)s.") % {"c": ", ".join(BOXES)})
    if len(resource) > 40:
        raise ValidationFailed.of("resource", _("At most %(n)s characters.") % {"n": 40})
    qs = _visible()
    where = _scope(actor)
    if where is not None:
        qs = qs.filter(where)
    if state == "active":
        qs = qs.filter(state__in=TICKET_ACTIVE)
    elif state:
        qs = qs.filter(state=state)
    if resource:
        qs = qs.filter(resource__code=catalog.normalize_code(resource))
    if overdue is True:
        qs = qs.filter(overdue_filter())
    elif overdue is False:
        qs = qs.exclude(overdue_filter())
    if box == "raised":
        qs = qs.filter(raised_by=actor.name) if is_consumer(actor) else qs.none()
    elif box == "assigned":
        handled = authz.org_ids(actor, Perm.TICKET_HANDLE)
        qs = qs if handled is None else qs.filter(provider_id__in=handled)
    elif box == "mine":
        qs = qs.filter(assignee=actor.user) if actor.user is not None else qs.none()
    if box in ("assigned", "mine") or overdue:
        return qs.order_by("due_at", "number")
    return qs.order_by("-created_at", "-number")


def inbox(actor: Actor) -> dict[str, int]:
    """What waits for `actor`: their own tickets still open, their organization's to answer, and (for
    overseers) the overdue ones. The stand-in for notifications until the platform has them."""
    counts = {}
    names = boxes(actor)
    if "raised" in names:
        counts["raised"] = list_tickets(actor, state="active", box="raised").count()
    if "assigned" in names:
        counts["assigned"] = list_tickets(actor, state="active", box="assigned").count()
    if "overdue" in names:
        counts["overdue"] = list_tickets(actor, overdue=True).count()
    return counts


def get_ticket(actor: Actor, number: str, lock: bool = False) -> CorrectionTicket:
    """The ticket if `actor` may see it; 404 otherwise, so its existence does not leak."""
    number = str(number or "").strip().upper()[:40]
    qs = _visible()
    where = _scope(actor)
    if where is not None:
        qs = qs.filter(where)
    if lock:
        # of=self: PostgreSQL cannot lock the nullable side of the outer joins.
        qs = qs.select_for_update(of=("self",))
    ticket = qs.filter(number=number).first()
    if ticket is None:
        raise NotFound(_("No correction ticket %(n)s.") % {"n": number})
    return ticket


def history(ticket: CorrectionTicket) -> QuerySet:
    return ticket.comments.select_related("author_org").order_by("at", "id")


def target(actor: Actor, code: str) -> tuple[Resource, list, list]:
    """The published resource a ticket may be raised on: (resource, its item names, its key item names).
    404 when `actor` may not see it, 409 when it is not published."""
    resource = catalog.get_resource(actor, code)
    if resource.status != Status.PUBLISHED or not resource.published_id:
        message = _("Resource %(code)s is not published; tickets are raised on published resources.") % {
            "code": resource.code}
        raise Conflict(message, [FieldError("resource", message)])
    items = list(resource.published.items.order_by("position").values_list("name", "is_key"))
    return resource, [name for name, _key in items], [name for name, key in items if key]


# --------------------------------------------------------------------------------------------------
# Raising
# --------------------------------------------------------------------------------------------------


def raise_ticket(actor: Actor, code: str, data: dict) -> CorrectionTicket:
    """Raises a ticket on one field (`item`) of one record (`record_key`: {key item: value}) of the
    published resource `code`. Every problem with the input is reported at once, each naming its field."""
    _require_consumer(actor)
    errors: list[FieldError] = []
    code = _clean_text(code)
    if not code:
        raise ValidationFailed.of("resource", _("This field is required."))
    try:
        resource, items, keys = target(actor, code[:40])
    except NotFound:
        # The code came in the body: an unknown resource and one the caller may not see read the same.
        raise ValidationFailed.of("resource", _("No resource %(code)s.") % {"code": code[:40]}) from None
    record_key, key_errors = _record_key(data.get("record_key"), items, keys)
    errors += key_errors
    item = _clean_text(data.get("item"))
    if not item:
        errors.append(FieldError("item", _("Say which data item is wrong.")))
    elif item not in items:
        errors.append(FieldError("item", _("%(item)s is not a data item of resource %(code)s.")
                                 % {"item": _shown(item), "code": resource.code}))
    values = {}
    for name, limit, required in (("current_value", VALUE_LIMIT, False), ("proposed_value", VALUE_LIMIT, False),
                                  ("description", TEXT_LIMIT, True)):
        values[name], error = _checked_text(data.get(name), limit, required)
        if error:
            errors.append(FieldError(name, error))
    _raise(errors)
    now = timezone.now()
    with transaction.atomic():
        twin = _open_twin(actor, resource, item, record_key)
        if twin is not None:
            message = _("You already have ticket %(n)s open on this field of this record.") % {"n": twin.number}
            raise Conflict(message, [FieldError("item", message)])
        ticket = CorrectionTicket(
            number=_next_number(timezone.localdate(now)), resource=resource, provider=resource.provider,
            record_key=record_key, item=item, raised_by=actor.name, raised_by_org=actor.organization,
            assignee=_assignee(resource), state=TicketState.OPEN, due_at=now + dt.timedelta(days=TICKET_DAYS),
            **values)
        ticket.save(force_insert=True)
        _entry(actor, ticket, Action.RAISE, "", "", TicketState.OPEN, now)
        audit.record(actor, "quality.ticket_raise", ticket, summary={
            "number": ticket.number, "resource": resource.code, "provider": resource.provider.code,
            "item": item, "record_key": list(record_key), "assignee": _username(ticket),
            "due_at": ticket.due_at.isoformat()})
    return ticket


def _next_number(day: dt.date) -> str:
    return f"JC{day:%Y%m%d}-{next_daily(TicketCounter, day):04d}"


def _assignee(resource: Resource):
    """The resource's steward when the steward may handle the provider's tickets; else nobody (the
    provider's handlers as a group)."""
    steward = resource.published.steward
    if steward is not None and steward.is_active and authz.allowed(Actor(user=steward), Perm.TICKET_HANDLE,
                                                                   resource.provider):
        return steward
    return None


def _open_twin(actor: Actor, resource: Resource, item: str, record_key: dict) -> CorrectionTicket | None:
    candidates = CorrectionTicket.objects.filter(resource=resource, item=item, raised_by=actor.name,
                                                 state__in=TICKET_ACTIVE)
    return next((t for t in candidates if t.record_key == record_key), None)


def _record_key(raw, items: list[str], keys: list[str]) -> tuple[dict, list[FieldError]]:
    """The record's identification as {item: value} in item order: every key item of the resource and no
    other item, or, when the resource declares no key, any of its items."""
    wanted = ", ".join(keys) if keys else _("any of its data items")
    if not isinstance(raw, dict) or not raw:
        message = _("Identify the record: give the value of %(items)s.") % {"items": wanted}
        return {}, [FieldError("record_key", message)]
    if len(raw) > KEY_ITEMS_LIMIT:
        return {}, [FieldError("record_key", _("At most %(n)s items identify a record.") % {"n": KEY_ITEMS_LIMIT})]
    errors, given = [], {}
    for raw_name, raw_value in raw.items():
        name = _clean_text(raw_name)
        at = f"record_key.{_shown(name)}"
        if not name or len(name) > NAME_LIMIT or _bad_characters(name):
            errors.append(FieldError("record_key", _("%(name)s is not a data item of this resource.")
                                     % {"name": _shown(name)}))
            continue
        if name not in items:
            errors.append(FieldError(at, _("%(name)s is not a data item of this resource.") % {"name": name}))
            continue
        if keys and name not in keys:
            errors.append(FieldError(at, _("%(name)s is not a key item; identify the record by %(keys)s.")
                                     % {"name": name, "keys": wanted}))
            continue
        if isinstance(raw_value, bool) or not isinstance(raw_value, (str, int)):
            errors.append(FieldError(at, _("Give the value as text.")))
            continue
        value, error = _checked_text(raw_value, KEY_VALUE_LIMIT, True)
        if error:
            errors.append(FieldError(at, error))
            continue
        given[name] = value
    for name in keys:
        if name not in given and not any(e.field == f"record_key.{name}" for e in errors):
            errors.append(FieldError(f"record_key.{name}", _("This key item is required to identify the record.")))
    return {name: given[name] for name in items if name in given}, errors


# --------------------------------------------------------------------------------------------------
# Comments and steps
# --------------------------------------------------------------------------------------------------


def comment(actor: Actor, number: str, body: str) -> TicketComment:
    """Anyone who sees the ticket may comment on it, in any state."""
    text, error = _checked_text(body, TEXT_LIMIT, True)
    if error:
        raise ValidationFailed.of("body", error)
    with transaction.atomic():
        ticket = get_ticket(actor, number, lock=True)
        entry = _entry(actor, ticket, Action.COMMENT, text, "", "")
        ticket.save(update_fields=["updated_at"])
        audit.record(actor, "quality.ticket_comment", ticket,
                     summary={"number": ticket.number, "comment": text[:500]})
    return entry


def accept(actor: Actor, number: str, text: str = "") -> CorrectionTicket:
    """The provider confirms the ticket is its own to answer (open → accepted); a handler without an
    assignee ahead of them becomes the assignee."""
    text, error = _checked_text(text, TEXT_LIMIT, False)
    if error:
        raise ValidationFailed.of("comment", error)
    return _step(actor, number, Action.ACCEPT, (TicketState.OPEN,), TicketState.ACCEPTED, text,
                 _("Only an open ticket can be accepted."))


def resolve(actor: Actor, number: str, resolution: str) -> CorrectionTicket:
    """The provider corrected the record (accepted → resolved); the resolution says what changed."""
    resolution = _resolution(resolution, _("Say what was corrected."))
    return _step(actor, number, Action.RESOLVE, (TicketState.ACCEPTED,), TicketState.RESOLVED, resolution,
                 _("Only an accepted ticket can be resolved; accept it first."))


def reject(actor: Actor, number: str, resolution: str) -> CorrectionTicket:
    """The provider keeps the value (open or accepted → rejected); the resolution says why."""
    resolution = _resolution(resolution, _("Say why the value stands."))
    return _step(actor, number, Action.REJECT, TICKET_ACTIVE, TicketState.REJECTED, resolution,
                 _("Only an open or accepted ticket can be rejected."))


def reopen(actor: Actor, number: str, reason: str) -> CorrectionTicket:
    """The raiser disputes the answer (resolved or rejected → open) within REOPEN_DAYS of it; the ticket
    gets a new deadline."""
    reason, error = _checked_text(reason, TEXT_LIMIT, True)
    if error:
        raise ValidationFailed.of("reason", error if reason else _("Say why the answer is not right."))
    return _step(actor, number, Action.REOPEN, CLOSED, TicketState.OPEN, reason,
                 _("Only a resolved or rejected ticket can be reopened."))


def _resolution(text: str, missing: str) -> str:
    text, error = _checked_text(text, TEXT_LIMIT, True)
    if error:
        raise ValidationFailed.of("resolution", error if text else missing)
    return text


def _step(actor: Actor, number: str, action: str, allowed: tuple, to_state: str, text: str,
          wrong_state: str) -> CorrectionTicket:
    """A state change: who may take it (403), from which states (409), the history entry and the audit
    record, in one transaction under the ticket's row lock."""
    now = timezone.now()
    with transaction.atomic():
        ticket = get_ticket(actor, number, lock=True)
        if action == Action.REOPEN:
            if not is_raiser(actor, ticket):
                raise Forbidden(_("Only whoever raised the ticket can reopen it."))
        elif not (is_handler(actor, ticket) or is_overseer(actor, ticket)):
            raise Forbidden(_("Only the providing department's data officer and stewards answer this ticket."))
        if ticket.state not in allowed:
            raise Conflict(wrong_state, [FieldError("state", _("The ticket is %(s)s.") % {
                "s": ticket.get_state_display()})])
        if action == Action.REOPEN and not may_reopen(actor, ticket, now):
            message = _("A ticket can be reopened within %(n)s days of its answer; raise a new one.") % {
                "n": REOPEN_DAYS}
            raise Conflict(message, [FieldError("state", message)])
        if action != Action.REOPEN and not is_handler(actor, ticket) and not ticket.is_overdue:
            raise Forbidden(_("The platform office decides a ticket only when it is overdue."))
        from_state = ticket.state
        ticket.state = to_state
        fields = ["state", "updated_at"]
        if action == Action.ACCEPT and ticket.assignee_id is None and actor.user is not None \
                and is_handler(actor, ticket):
            ticket.assignee = actor.user
            fields.append("assignee")
        if action in (Action.RESOLVE, Action.REJECT):
            ticket.resolution, ticket.resolved_at = text, now
            fields += ["resolution", "resolved_at"]
        if action == Action.REOPEN:
            ticket.resolution, ticket.resolved_at = "", None
            ticket.due_at = now + dt.timedelta(days=TICKET_DAYS)
            fields += ["resolution", "resolved_at", "due_at"]
        ticket.save(update_fields=fields)
        _entry(actor, ticket, action, text, from_state, to_state, now)
        summary = {"number": ticket.number, "from": from_state, "to": to_state, "comment": text[:500]}
        if action == Action.ACCEPT:
            summary["assignee"] = _username(ticket)
        if action == Action.REOPEN:
            summary["due_at"] = ticket.due_at.isoformat()
        audit.record(actor, f"quality.ticket_{action}", ticket, summary=summary)
    return ticket


def _entry(actor: Actor, ticket: CorrectionTicket, action: str, body: str, from_state: str, to_state: str,
           at: dt.datetime | None = None) -> TicketComment:
    return TicketComment.objects.create(ticket=ticket, action=action, author=actor.name,
                                        author_org=actor.organization, body=body, from_state=from_state,
                                        to_state=to_state, at=at or timezone.now())


def _username(ticket: CorrectionTicket) -> str | None:
    return ticket.assignee.username if ticket.assignee_id else None


# --------------------------------------------------------------------------------------------------
# Text checks
# --------------------------------------------------------------------------------------------------


def _clean_text(value) -> str:
    return "" if value is None else str(value).strip()


def _bad_characters(text: str) -> bool:
    """NUL and other control characters (tabs and line breaks aside): PostgreSQL refuses NUL in text, and
    none of them belongs in a description or a value people read."""
    return any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text)


def _checked_text(value, limit: int, required: bool) -> tuple[str, str]:
    """(the text, stripped; the problem with it or "")."""
    text = _clean_text(value)
    if not text:
        return "", _("This field is required.") if required else ""
    if len(text) > limit:
        return text, _("At most %(n)s characters.") % {"n": limit}
    if _bad_characters(text):
        return text, _("Control characters (such as NUL) are not allowed.")
    return text, ""


def _shown(text: str) -> str:
    """A name the caller sent, safe to repeat in an error: printable and short."""
    return "".join(c if unicodedata.category(c) != "Cc" else "?" for c in text)[:NAME_LIMIT]


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed(errors[0].message if len(errors) == 1 else
                               _("%(n)s problems: %(first)s") % {"n": len(errors), "first": errors[0].message},
                               errors)
