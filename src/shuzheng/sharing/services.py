"""The sharing workflow: applications (共享申请), decisions, grants, notifications and use.

    apply ──不予共享──────────────────────────────────────────▶ refused (cites the resource's legal basis)
      │──无条件共享 (no clear values asked)─────────────────────▶ approved + grant, at once
      └──有条件共享, or clear values asked──▶ provider ──reject──▶ rejected
                                               │ approve (may narrow)
                                               ├── general level ───────────────▶ approved + grant
                                               └── 重要/核心 ──▶ office ──approve (may narrow)──▶ approved + grant
                                                                  └──reject──▶ rejected
    Overdue at the provider (DECIDE_DAYS): escalated; the platform office may then decide in its place.

Every step is one transaction with its audit record, an event in the application's history and a
notification to the other side. Narrowing only ever takes away: fewer items, fewer clear items, more row
conditions, lower quotas, an earlier expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import LEVEL_RANK, Level, Resource, SharingType
from shuzheng.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from shuzheng.core.numbers import next_daily
from shuzheng.org.models import ApplicationSystem, Organization
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.security import policy
from shuzheng.sharing import filters, masks
from shuzheng.sharing.models import (OPEN_STATES, Application, ApplicationCounter, ApplicationEvent, AppState,
                                     Grant, Meter, Notification)

DECIDE_DAYS = 5
MAX_GRANT_DAYS = 3 * 366
TEXT_LIMIT = 2000
MAX_IPS = 20


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _visible_q(actor: Actor, consumer_field: str = "consumer", provider_field: str = "provider") -> Q | None:
    """Applications and grants an actor may see: its organization's, made or received; all for overseers."""
    if authz.allowed(actor, Perm.SHARE_OVERSEE) and authz.org_ids(actor, Perm.SHARE_OVERSEE) is None:
        return None
    ids = authz.org_ids(actor, Perm.SHARE_VIEW)
    if ids is None:
        return None
    return Q(**{f"{consumer_field}_id__in": ids}) | Q(**{f"{provider_field}_id__in": ids})


def list_applications(actor: Actor, box: str = "", state: str = "") -> QuerySet:
    qs = Application.objects.select_related("resource", "version", "system", "consumer", "provider")
    visible = _visible_q(actor)
    if visible is not None:
        qs = qs.filter(visible)
    ids = authz.org_ids(actor, Perm.SHARE_VIEW)
    if box == "made" and ids is not None:
        qs = qs.filter(consumer_id__in=ids)
    elif box == "received" and ids is not None:
        qs = qs.filter(provider_id__in=ids)
    elif box == "office":
        qs = qs.filter(Q(state=AppState.OFFICE) | Q(state=AppState.PROVIDER, escalated_at__isnull=False))
    if state:
        qs = qs.filter(state=state)
    return qs


def get_application(actor: Actor, number: str, lock: bool = False) -> Application:
    qs = list_applications(actor)
    if lock:
        qs = qs.select_for_update(of=("self",))
    application = qs.filter(number=number).first()
    if application is None:
        raise NotFound(_("No application %(number)s.") % {"number": number})
    return application


def list_grants(actor: Actor, live: bool | None = None) -> QuerySet:
    qs = Grant.objects.select_related("resource", "system", "consumer", "provider", "application")
    visible = _visible_q(actor)
    if visible is not None:
        qs = qs.filter(visible)
    if actor.system is not None and actor.user is None:
        qs = qs.filter(system=actor.system)
    if live is True:
        qs = qs.filter(Grant.live_q(timezone.now()))
    return qs


def get_grant(actor: Actor, grant_id, lock: bool = False) -> Grant:
    qs = list_grants(actor)
    if lock:
        qs = qs.select_for_update(of=("self",))
    try:
        grant = qs.filter(pk=uuid.UUID(str(grant_id))).first()
    except ValueError:  # a malformed id is simply not found
        grant = None
    if grant is None:
        raise NotFound(_("No such grant."))
    return grant


def may_decide(actor: Actor, application: Application) -> bool:
    if application.state == AppState.PROVIDER:
        return (authz.allowed(actor, Perm.SHARE_DECIDE, application.provider)
                or (application.escalated_at is not None and authz.allowed(actor, Perm.SHARE_OVERSEE)))
    if application.state == AppState.OFFICE:
        return authz.allowed(actor, Perm.SHARE_OVERSEE)
    return False


def may_withdraw(actor: Actor, application: Application) -> bool:
    return application.state in OPEN_STATES and authz.allowed(actor, Perm.SHARE_APPLY, application.consumer)


def may_revoke(actor: Actor, grant: Grant) -> bool:
    return grant.revoked_at is None and (authz.allowed(actor, Perm.SHARE_DECIDE, grant.provider)
                                         or authz.allowed(actor, Perm.SHARE_OVERSEE)
                                         or authz.allowed(actor, Perm.SHARE_APPLY, grant.consumer))


# --------------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------------


def _items(resource: Resource) -> dict:
    return {i.name: i for i in resource.published.items.select_related("element").order_by("position")}


def _text(data: dict, name: str, errors: list, required: bool = True) -> str:
    value = data.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if required and not value:
        errors.append(FieldError(name, _("Required.")))
    elif len(value) > TEXT_LIMIT:
        errors.append(FieldError(name, _("At most %(n)s characters.") % {"n": TEXT_LIMIT}))
    return value


def _item_list(value, allowed, field: str, errors: list, required: bool) -> list[str]:
    if value in (None, "") and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (required and not value):
        errors.append(FieldError(field, _("A list of item names.") if not required
                                 else _("Name at least one item.")))
        return []
    unknown = [v for v in value if v not in allowed]
    if unknown:
        errors.append(FieldError(field, _("Not items of this resource: %(items)s") % {"items": ", ".join(unknown[:5])}))
        return []
    return list(dict.fromkeys(value))  # unique, in the order asked


def _conditions(raw, items: dict, field: str, errors: list) -> list[dict]:
    try:
        return [c.as_dict() for c in filters.parse(raw, {n: i.data_type for n, i in items.items()}, field)]
    except filters.FilterError as exc:
        errors.append(exc.as_field_error())
        return []


def _date(value, field: str, errors: list) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except (TypeError, ValueError):
        errors.append(FieldError(field, _("A date like 2027-12-31.")))
        return None


def apply(actor: Actor, data: dict) -> Application:
    """Submits an application; decides it at once where the catalog's sharing type says so."""
    errors: list[FieldError] = []
    resource = catalog.get_resource(actor, str(data.get("resource") or ""))
    system = ApplicationSystem.objects.select_related("organization").filter(code=data.get("system") or "").first()
    if system is None or not authz.allowed(actor, Perm.SHARE_APPLY, system.organization):
        if actor.system is not None and system == actor.system:
            pass  # a system applies for itself through its own key
        else:
            raise ValidationFailed.of("system", _("Not an application system of your organization."))
    if not system.is_active:
        raise ValidationFailed.of("system", _("The application system is deactivated."))
    if resource.published is None:
        raise Conflict(_("Resource %(code)s is not published.") % {"code": resource.code})
    version = resource.published
    items = _items(resource)
    purpose = _text(data, "purpose", errors)
    legal_basis = _text(data, "legal_basis", errors)
    asked = _item_list(data.get("items"), items, "items", errors, required=True)
    clear = _item_list(data.get("clear_items"), asked, "clear_items", errors, required=False)
    row_filter = _conditions(data.get("row_filter"), items, "row_filter", errors)
    method = data.get("method") or "interface"
    if method not in ("interface", "table", "file"):
        errors.append(FieldError("method", _("One of interface, table, file.")))
    elif version.sharing_methods and method not in version.sharing_methods:
        errors.append(FieldError("method", _("This resource is shared by: %(methods)s.")
                                 % {"methods": ", ".join(version.sharing_methods)}))
    period_end = _date(data.get("period_end"), "period_end", errors)
    today = timezone.localdate()
    if period_end is not None and not today < period_end <= today + dt.timedelta(days=MAX_GRANT_DAYS):
        errors.append(FieldError("period_end", _("After today and at most three years ahead.")))
    if errors:
        raise ValidationFailed.listing(errors)
    if version.sharing_type != SharingType.NONE:
        catalog.require_grantable(resource)
    if Application.objects.filter(system=system, resource=resource, state__in=OPEN_STATES).exists():
        raise Conflict(_("This system already has an open application for %(code)s.") % {"code": resource.code})

    now = timezone.now()
    terms = {"items": asked, "clear_items": clear, "row_filter": row_filter, "masks": {},
             "verify_items": asked, "calls_per_day": None, "rows_per_day": None, "allowed_ips": [],
             "expires_at": _end_of(period_end).isoformat()}
    with transaction.atomic():
        application = Application(
            number=f"GX{today:%Y%m%d}-{next_daily(ApplicationCounter, today):04d}", resource=resource,
            version=version, system=system, consumer=system.organization, provider=resource.provider,
            applicant=actor.name, purpose=purpose, legal_basis=legal_basis, items=asked, clear_items=clear,
            row_filter=row_filter, method=method, period_end=period_end, terms=terms, state=AppState.PROVIDER)
        needs_clear = any(LEVEL_RANK[items[n].level] > LEVEL_RANK[Level.GENERAL] for n in clear)
        if version.sharing_type == SharingType.NONE:
            application.state, application.decided_at = AppState.REFUSED, now
            application.decision_note = version.sharing_basis
        elif version.sharing_type == SharingType.UNCONDITIONAL and not needs_clear:
            application.state, application.decided_at = AppState.APPROVED, now
        else:
            application.due_at = now + dt.timedelta(days=DECIDE_DAYS)
        application.save()
        _event(application, actor, "submit", now, details={"items": asked, "clear_items": clear,
                                                           "row_filter": row_filter, "method": method})
        if application.state == AppState.REFUSED:
            _event(application, actor, "refuse", now, note=version.sharing_basis)
            _notify(application.consumer, _("Application %(n)s for %(code)s: not shared.") % _names(application),
                    application)
        elif application.state == AppState.APPROVED:
            grant = _grant(application, now)
            _event(application, actor, "grant", now, details={"grant": str(grant.id)})
            _notify(application.provider, _("Application %(n)s for %(code)s was granted (unconditional sharing).")
                    % _names(application), application)
        else:
            _notify(application.provider, _("New application %(n)s for %(code)s awaits your decision.")
                    % _names(application), application)
        audit.record(actor, "sharing.apply", application, summary={
            "number": application.number, "resource": resource.code, "system": system.code,
            "items": asked, "clear_items": clear, "row_filter": row_filter, "method": method,
            "purpose": purpose, "state": application.state})
    return application


def _end_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(23, 59, 59)))


def _names(application: Application) -> dict:
    return {"n": application.number, "code": application.resource.code}


def _event(application: Application, actor: Actor, action: str, now, note: str = "", details=None) -> None:
    ApplicationEvent.objects.create(application=application, at=now, actor=actor.name, actor_org=actor.org_code,
                                    action=action, state=application.state, note=note, details=details or {})


def _notify(org: Organization | None, text: str, application: Application) -> None:
    targets = [org] if org is not None else list(Organization.objects.filter(kind=Organization.Kind.PLATFORM_OFFICE))
    Notification.objects.bulk_create([
        Notification(organization=o, at=timezone.now(), text=text[:300], link=f"/sharing/applications/{application.number}/")
        for o in targets])


# --------------------------------------------------------------------------------------------------
# Deciding
# --------------------------------------------------------------------------------------------------


def _narrow(application: Application, data: dict, items: dict, errors: list) -> dict:
    """The terms after this approver's narrowing; anything that would widen them is an error."""
    terms = dict(application.terms)
    if data.get("items") is not None:
        terms["items"] = _item_list(data["items"], terms["items"], "items", errors, required=True)
    kept = terms["items"]
    terms["clear_items"] = [n for n in terms["clear_items"] if n in kept]
    if data.get("clear_items") is not None:
        terms["clear_items"] = _item_list(data["clear_items"], terms["clear_items"], "clear_items", errors,
                                          required=False)
    terms["verify_items"] = [n for n in terms.get("verify_items", kept) if n in kept]
    if data.get("verify_items") is not None:
        terms["verify_items"] = _item_list(data["verify_items"], kept, "verify_items", errors, required=False)
    if data.get("row_filter"):
        terms["row_filter"] = terms["row_filter"] + _conditions(data["row_filter"], items, "row_filter", errors)
    if data.get("masks") is not None:
        if not isinstance(data["masks"], dict):
            errors.append(FieldError("masks", _("An object: item name to mask.")))
        else:
            chosen = dict(terms.get("masks") or {})
            for name, spec in data["masks"].items():
                if name not in kept:
                    errors.append(FieldError(f"masks.{name}", _("Not a granted item.")))
                    continue
                try:
                    spec = masks.validate(spec, items[name].data_type)
                except masks.MaskError as exc:
                    errors.append(FieldError(f"masks.{name}", str(exc)))
                    continue
                if spec.get("kind") == "clear" and name not in terms["clear_items"] \
                        and items[name].level != Level.GENERAL:
                    errors.append(FieldError(f"masks.{name}", _("Clear values were not asked for this item.")))
                    continue
                chosen[name] = spec
            terms["masks"] = {n: s for n, s in chosen.items() if n in kept}
    for field in ("calls_per_day", "rows_per_day"):
        if data.get(field) is not None:
            value = data[field]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append(FieldError(field, _("A whole number of at least 1.")))
            elif terms.get(field) is not None and value > terms[field]:
                errors.append(FieldError(field, _("Approvers may lower a quota, not raise it.")))
            else:
                terms[field] = value
    if data.get("allowed_ips") is not None:
        terms["allowed_ips"] = _networks(data["allowed_ips"], errors)
    if data.get("expires_at"):
        day = _date(data["expires_at"], "expires_at", errors)
        if day is not None:
            end = _end_of(day)
            if end > dt.datetime.fromisoformat(terms["expires_at"]) or day <= timezone.localdate():
                errors.append(FieldError("expires_at", _("After today and not later than asked.")))
            else:
                terms["expires_at"] = end.isoformat()
    return terms


def _networks(value, errors: list) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_IPS:
        errors.append(FieldError("allowed_ips", _("A list of at most %(n)s addresses or CIDR blocks.") % {"n": MAX_IPS}))
        return []
    result = []
    for i, entry in enumerate(value):
        try:
            result.append(str(ipaddress.ip_network(str(entry).strip(), strict=False)))
        except ValueError:
            errors.append(FieldError(f"allowed_ips[{i}]", _("Not an address or CIDR block: %(v)s") % {"v": str(entry)[:50]}))
    return result


def decide(actor: Actor, number: str, data: dict) -> Application:
    """approve (with optional narrowing) or reject (with a reason) at the provider or the platform office."""
    decision = data.get("decision")
    if decision not in ("approve", "reject"):
        raise ValidationFailed.of("decision", _("approve or reject."))
    with transaction.atomic():
        application = get_application(actor, number, lock=True)
        if application.state not in OPEN_STATES:
            raise Conflict(_("Application %(n)s is already decided.") % {"n": number})
        if not may_decide(actor, application):
            raise Forbidden(_("You do not have permission to do this."))
        note = (data.get("note") or "").strip()[:TEXT_LIMIT] if isinstance(data.get("note"), str) else ""
        now = timezone.now()
        at_office = application.state == AppState.OFFICE or not authz.allowed(actor, Perm.SHARE_DECIDE,
                                                                                application.provider)
        if decision == "reject":
            if not note:
                raise ValidationFailed.of("note", _("Say why the application is rejected."))
            application.state, application.decided_at, application.decision_note = AppState.REJECTED, now, note
            application.save()
            _event(application, actor, "reject", now, note=note)
            _notify(application.consumer, _("Application %(n)s for %(code)s was rejected.") % _names(application),
                    application)
        else:
            errors: list[FieldError] = []
            resource = application.resource
            if resource.published is None:
                raise Conflict(_("Resource %(code)s is no longer published.") % {"code": resource.code})
            terms = _narrow(application, data, _items(resource), errors)
            if errors:
                raise ValidationFailed.listing(errors)
            narrowed = terms != application.terms
            application.terms = terms
            # Which levels go on to the platform office is the classification policy's (security.policy).
            needs_office = not at_office and policy.needs_office(resource.published.level)
            if needs_office:
                application.state, application.due_at = AppState.OFFICE, now + dt.timedelta(days=DECIDE_DAYS)
                application.save()
                _event(application, actor, "approve", now, note=note, details={"narrowed": narrowed, "terms": terms})
                _notify(None, _("Application %(n)s for %(code)s (important or core data) awaits the platform "
                                "office.") % _names(application), application)
                _notify(application.consumer, _("Application %(n)s was approved by the provider and goes to the "
                                                "platform office.") % _names(application), application)
            else:
                catalog.require_grantable(resource)
                application.state, application.decided_at, application.decision_note = AppState.APPROVED, now, note
                application.save()
                grant = _grant(application, now)
                _event(application, actor, "approve", now, note=note,
                       details={"narrowed": narrowed, "terms": terms, "grant": str(grant.id)})
                _notify(application.consumer, _("Application %(n)s for %(code)s was approved; the grant is live.")
                        % _names(application), application)
                if at_office:
                    _notify(application.provider, _("The platform office approved application %(n)s for %(code)s.")
                            % _names(application), application)
        audit.record(actor, f"sharing.{decision}", application, summary={
            "number": application.number, "resource": application.resource.code, "state": application.state,
            "note": note, "terms": application.terms if decision == "approve" else None})
    return application


def withdraw(actor: Actor, number: str) -> Application:
    with transaction.atomic():
        application = get_application(actor, number, lock=True)
        if not may_withdraw(actor, application):
            if application.state not in OPEN_STATES:
                raise Conflict(_("Application %(n)s is already decided.") % {"n": number})
            raise Forbidden(_("You do not have permission to do this."))
        now = timezone.now()
        application.state, application.decided_at = AppState.WITHDRAWN, now
        application.save()
        _event(application, actor, "withdraw", now)
        _notify(application.provider, _("Application %(n)s for %(code)s was withdrawn.") % _names(application),
                application)
        audit.record(actor, "sharing.withdraw", application, summary={"number": number})
    return application


def escalate_overdue(actor: Actor, now=None) -> int:
    """Applications the provider left past their deadline go to the platform office (which may then decide).
    `now` is the moment deadlines are judged against (tests pass a later one); records carry the real time."""
    count = 0
    for application in Application.objects.filter(state=AppState.PROVIDER, escalated_at__isnull=True,
                                                  due_at__lt=now or timezone.now()).select_related("resource"):
        with transaction.atomic():
            locked = Application.objects.select_for_update().get(pk=application.pk)
            if locked.escalated_at is not None or locked.state != AppState.PROVIDER:
                continue
            now = timezone.now()
            locked.escalated_at = now
            locked.save(update_fields=["escalated_at", "updated_at"])
            _event(locked, actor, "escalate", now)
            _notify(None, _("Application %(n)s for %(code)s is overdue at the provider and escalated to the "
                            "platform office.") % _names(application), locked)
            _notify(locked.consumer, _("Application %(n)s is overdue and was escalated to the platform office.")
                    % _names(application), locked)
            audit.record(actor, "sharing.escalate", locked, summary={"number": locked.number,
                                                                     "due_at": locked.due_at.isoformat()})
            count += 1
    return count


# --------------------------------------------------------------------------------------------------
# Grants
# --------------------------------------------------------------------------------------------------


def _grant(application: Application, now) -> Grant:
    """The grant an approval produces; replaces the system's earlier grant on the resource, if any."""
    terms = application.terms
    items = _items(application.resource)
    chosen = terms.get("masks") or {}
    mask_specs = {}
    for name in terms["items"]:
        item = items[name]
        if name in chosen:
            mask_specs[name] = chosen[name]
        elif name in terms["clear_items"]:
            mask_specs[name] = {"kind": "clear"}
        else:
            mask_specs[name] = masks.default_mask(name, item.data_type, item.level,
                                                  item.element.identifier if item.element else None,
                                                  subject=item.subject, sensitive=item.sensitive_personal)
    for old in Grant.objects.select_for_update().filter(system=application.system, resource=application.resource,
                                                         revoked_at__isnull=True):
        old.revoked_at, old.revoked_by = now, "replaced"
        old.revoke_reason = _("Replaced by application %(n)s.") % {"n": application.number}
        old.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "updated_at"])
    return Grant.objects.create(
        application=application, system=application.system, resource=application.resource,
        consumer=application.consumer, provider=application.provider, items=terms["items"], masks=mask_specs,
        verify_items=terms.get("verify_items") or [], row_filter=terms["row_filter"],
        methods=[application.method], expires_at=dt.datetime.fromisoformat(terms["expires_at"]),
        calls_per_day=terms.get("calls_per_day"), rows_per_day=terms.get("rows_per_day"),
        allowed_ips=terms.get("allowed_ips") or [])


def revoke_grant(actor: Actor, grant_id, reason: str) -> Grant:
    reason = (reason or "").strip()[:TEXT_LIMIT] if isinstance(reason, str) else ""
    if not reason:
        raise ValidationFailed.of("reason", _("Say why the grant is revoked."))
    with transaction.atomic():
        grant = get_grant(actor, grant_id, lock=True)
        if grant.revoked_at is not None:
            raise Conflict(_("This grant is already revoked."))
        if not may_revoke(actor, grant):
            raise Forbidden(_("You do not have permission to do this."))
        now = timezone.now()
        grant.revoked_at, grant.revoked_by, grant.revoke_reason = now, actor.name, reason
        grant.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "updated_at"])
        other = grant.consumer if authz.allowed(actor, Perm.SHARE_DECIDE, grant.provider) else grant.provider
        _notify(other, _("The grant of %(code)s to %(system)s was revoked: %(reason)s")
                % {"code": grant.resource.code, "system": grant.system.code, "reason": reason}, grant.application)
        audit.record(actor, "sharing.revoke", grant, summary={"resource": grant.resource.code,
                                                              "system": grant.system.code, "reason": reason})
    return grant


# --------------------------------------------------------------------------------------------------
# Notifications and use
# --------------------------------------------------------------------------------------------------


def notifications(actor: Actor, unread_only: bool = False) -> QuerySet:
    org = actor.organization
    if org is None:
        return Notification.objects.none()
    qs = Notification.objects.filter(organization=org)
    return qs.filter(read_at__isnull=True) if unread_only else qs


def mark_read(actor: Actor) -> int:
    return notifications(actor, unread_only=True).update(read_at=timezone.now())


USAGE_GROUPS = {"consumer": "consumer", "provider": "provider", "resource": "resource", "system": "system",
                "day": "day"}


def usage(actor: Actor, by: str = "day", days: int = 30) -> list[dict]:
    """Calls, rows, bytes and errors of the gateway, summed by day, consumer, provider, resource or system,
    over what the actor may see (its organization's side of each grant; everything for overseers)."""
    if by not in USAGE_GROUPS:
        raise ValidationFailed.of("by", _("One of: %(v)s.") % {"v": ", ".join(USAGE_GROUPS)})
    if not isinstance(days, int) or not 1 <= days <= 366:
        raise ValidationFailed.of("days", _("1 to 366."))
    qs = Meter.objects.filter(day__gt=timezone.localdate() - dt.timedelta(days=days))
    visible = _visible_q(actor, "grant__consumer", "grant__provider")
    if visible is not None:
        qs = qs.filter(visible)
    rows = (qs.values(USAGE_GROUPS[by]).annotate(calls=Sum("calls"), rows=Sum("rows"), bytes=Sum("bytes"),
                                                 errors=Sum("errors")).order_by(USAGE_GROUPS[by]))
    return [{"key": str(r[USAGE_GROUPS[by]]), "calls": r["calls"], "rows": r["rows"], "bytes": r["bytes"],
             "errors": r["errors"]} for r in rows]


def identify_leak(actor: Actor, code: str, path) -> dict:
    """Which recipient an export file found outside came from: for the provider and the platform office."""
    from shuzheng.sharing import gateway

    if "\x00" in code:  # a multipart field the NUL middleware does not read
        raise ValidationFailed.of("resource", _("Not a resource code."))
    resource = catalog.get_resource(actor, code)
    if not (authz.allowed(actor, Perm.SHARE_DECIDE, resource.provider) or authz.allowed(actor, Perm.SHARE_OVERSEE)):
        raise Forbidden(_("You do not have permission to do this."))
    try:
        found = gateway.identify_leak(path, resource.code)
    except ValueError as exc:
        raise ValidationFailed.of("file", str(exc))
    with transaction.atomic():
        audit.record(actor, "sharing.leak_identify", resource, summary={"resource": resource.code, **found})
    return found


# --------------------------------------------------------------------------------------------------
# Export control (出境, S5)
# --------------------------------------------------------------------------------------------------


def domestic_only(grant: Grant) -> bool:
    """Whether a grant's data may go only to domestic destinations: its resource's live version, or one of
    the granted items, is marked domestic-only (不得出境)."""
    version = grant.resource.published
    if version is None:
        return False
    return version.domestic_only or version.items.filter(name__in=grant.items, domestic_only=True).exists()


def _refused(actor, grant: Grant, channel: str, destination: str, reason: str) -> str:
    """Audits an export-control refusal (its own transaction: the caller is about to fail) and returns the
    reason. The anomaly alerts scan the trail for this action."""
    with transaction.atomic():
        audit.record(actor, "export_control.refused", grant, summary={
            "resource": grant.resource.code, "system": grant.system.code, "channel": channel,
            "destination": destination, "reason": reason})
    return reason


def export_refusal_for_host(actor, grant: Grant, host: str, channel: str, destination: str) -> str:
    """Empty when `grant`'s data may be sent to `host` (a host name or IP literal); otherwise the reason,
    audited. Host names are resolved now and every address must be on the allow-list (security.policy)."""
    if not domestic_only(grant):
        return ""
    allowed, reason = policy.destination_check(host)
    return "" if allowed else _refused(actor, grant, channel, destination, reason)


def export_refusal_for_client(actor, grant: Grant, ip: str, channel: str) -> str:
    """Empty when a client at `ip` may receive `grant`'s data; otherwise the reason, audited."""
    if not domestic_only(grant) or policy.address_allowed(ip or ""):
        return ""
    return _refused(actor, grant, channel, ip or "", f"client address {ip or '(none)'} is outside the domestic "
                                                      "allow-list")
