"""Security alerts for the people who handle them: list and filter, acknowledge, escalate to the leading group,
close; the dashboard's figures; a scan on demand. Every rule and permission check is here (security.monitor,
held by the security administrator); the API and the pages only parse and call these. Every change is audited
in its own transaction, and the alert's own history (AlertEvent) records who did what with which note.

States:  open ──acknowledge──▶ acknowledged
           │                      │
           ├──────escalate────────┴──▶ escalated      (notifies the leading group's organizations)
           └──────close (any state but closed) ──────▶ closed  (a later finding opens a new alert)
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Case, Count, IntegerField, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import Conflict, NotFound, ValidationFailed
from shuzheng.org.roles import Perm, Role
from shuzheng.org.services import Actor, authz
from shuzheng.security import alerts
from shuzheng.security.models import (SEVERITY_LEVEL, Alert, AlertEvent, AlertState, ScanCursor, Severity,
                                      Tally)

NOTE_LIMIT = 2000
UNCLOSED = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED)
# state -> the states an action may start from
FROM = {
    "acknowledge": (AlertState.OPEN,),
    "escalate": (AlertState.OPEN, AlertState.ACKNOWLEDGED),
    "close": UNCLOSED,
}
TO = {"acknowledge": AlertState.ACKNOWLEDGED, "escalate": AlertState.ESCALATED, "close": AlertState.CLOSED}
NOTE_REQUIRED = {"escalate", "close"}


def may_monitor(actor: Actor) -> bool:
    return authz.allowed(actor, Perm.SECURITY_MONITOR)


def _require(actor: Actor) -> None:
    authz.require(actor, Perm.SECURITY_MONITOR)


def _choice(value: str, choices, name: str) -> str:
    value = (value or "").strip()
    if value and value not in choices:
        raise ValidationFailed.of(name, _("One of: %(v)s.") % {"v": ", ".join(choices)})
    return value


def list_alerts(actor: Actor, state: str = "", rule: str = "", severity: str = "") -> QuerySet:
    """Alerts, most severe unclosed first, then the latest. `state` may be "unclosed" (open, acknowledged or
    escalated)."""
    _require(actor)
    state = _choice(state, [*AlertState.values, "unclosed"], "state")
    rule = _choice(rule, alerts.RULES, "rule")
    severity = _choice(severity, Severity.values, "severity")
    qs = Alert.objects.all()
    if state == "unclosed":
        qs = qs.filter(state__in=UNCLOSED)
    elif state:
        qs = qs.filter(state=state)
    if rule:
        qs = qs.filter(rule=rule)
    if severity:
        qs = qs.filter(severity=severity)
    closed_last = Case(When(state=AlertState.CLOSED, then=Value(1)), default=Value(0), output_field=IntegerField())
    return qs.order_by(closed_last, "-level", "-last_seen", "-id")


def get_alert(actor: Actor, alert_id) -> Alert:
    """One alert; anyone without security.monitor gets "not found", as for an alert that does not exist."""
    if not may_monitor(actor):
        raise NotFound(_("No such alert."))
    try:
        pk = int(alert_id)
        if not 0 < pk < 2**63:  # beyond any id (and beyond what the database's integer can even compare)
            raise ValueError
        return Alert.objects.get(pk=pk)
    except (Alert.DoesNotExist, TypeError, ValueError):
        raise NotFound(_("No such alert.")) from None


def _note(note, action: str) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_LIMIT:
        raise ValidationFailed.of("note", _("At most %(n)s characters.") % {"n": NOTE_LIMIT})
    if action in NOTE_REQUIRED and not note:
        raise ValidationFailed.of("note", _("Say why: the note is required to escalate or close an alert."))
    return note


def _handle(actor: Actor, alert_id, action: str, note) -> Alert:
    get_alert(actor, alert_id)  # not found before anything else
    note = _note(note, action)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=int(alert_id))  # get_alert checked it
        if alert.state not in FROM[action]:
            raise Conflict(_("This alert is %(state)s; it cannot be %(action)s.")
                           % {"state": alert.get_state_display(), "action": _past(action)})
        now = timezone.now()
        before = alert.state
        alert.state = TO[action]
        alert.handled_by = actor.name
        alert.handled_at = now
        alert.note = note
        alert.save(update_fields=["state", "handled_by", "handled_at", "note"])
        AlertEvent.objects.create(alert=alert, at=now, actor=actor.name, action=TO[action], note=note)
        notified = _notify_leading_group(alert, note) if action == "escalate" else []
        audit.record(actor, f"security.alert_{action}", alert,
                     summary={"rule": alert.rule, "subject": alert.subject, "from": before, "to": alert.state,
                              "note": note[:300], **({"notified": notified} if action == "escalate" else {})})
    return alert


def _past(action: str) -> str:
    return {"acknowledge": _("acknowledged"), "escalate": _("escalated"), "close": _("closed")}[action]


def acknowledge(actor: Actor, alert_id, note: str = "") -> Alert:
    return _handle(actor, alert_id, "acknowledge", note)


def escalate(actor: Actor, alert_id, note: str) -> Alert:
    return _handle(actor, alert_id, "escalate", note)


def close(actor: Actor, alert_id, note: str) -> Alert:
    return _handle(actor, alert_id, "close", note)


def _notify_leading_group(alert: Alert, note: str) -> list[str]:
    """A notification in the inbox of every organization with an active leading-group member (the sharing
    inbox, which they read); returns those organizations' codes."""
    from shuzheng.org.models import Organization, UserRole
    from shuzheng.sharing.models import Notification

    org_ids = set(UserRole.objects.filter(role=Role.LEADING_GROUP, user__is_active=True)
                  .values_list("organization_id", flat=True))
    orgs = list(Organization.objects.filter(id__in=org_ids).order_by("code"))
    text = _("Security alert #%(id)s escalated (%(severity)s, %(rule)s): %(summary)s Note: %(note)s") % {
        "id": alert.pk, "severity": alert.get_severity_display(), "rule": alerts.rule_name(alert.rule),
        "summary": alert.summary, "note": note}
    now = timezone.now()
    Notification.objects.bulk_create([Notification(organization=o, at=now, text=text[:300],
                                                   link=f"/security/alerts/{alert.pk}/") for o in orgs])
    return [o.code for o in orgs]


# --------------------------------------------------------------------------------------------------
# The dashboard's figures
# --------------------------------------------------------------------------------------------------


def open_by_severity() -> dict[str, int]:
    counts = dict(Alert.objects.filter(state__in=UNCLOSED).values_list("severity").annotate(n=Count("id")))
    return {s: counts.get(s, 0) for s in sorted(Severity.values, key=lambda s: -SEVERITY_LEVEL[s])}


def summary(actor: Actor, now: dt.datetime | None = None) -> dict:
    """Unclosed alerts by severity and by state, the last 24 hours' gateway calls, refusals, failed sign-ins and
    bad keys (from the scan's hourly counts, so as of the last scan), hour by hour, and the scan's position."""
    _require(actor)
    now = now or timezone.now()
    hour = int(now.timestamp()) // 3600 * 3600
    hours = list(range(hour - 23 * 3600, hour + 1, 3600))
    cells = {(s, start): n for s, start, n in Tally.objects.filter(kind=alerts.TOTAL_H, start__gte=hours[0])
             .values_list("subject", "start", "n")}
    series = {name: [cells.get((name, h), 0) for h in hours] for name in alerts.TOTALS}
    states = dict(Alert.objects.filter(state__in=UNCLOSED).values_list("state").annotate(n=Count("id")))
    cursor = ScanCursor.objects.filter(pk=1).first()
    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    return {
        "open_by_severity": open_by_severity(),
        "unclosed_by_state": {s: states.get(s, 0) for s in UNCLOSED},
        "last_24h": {"gateway_calls": sum(series["gateway.ok"]) + sum(series["gateway.refused"]),
                     "gateway_refusals": sum(series["gateway.refused"]),
                     "failed_logins": sum(series["login.failed"]),
                     "bad_api_keys": sum(series["apikey.failed"])},
        "hourly": {"hours": [dt.datetime.fromtimestamp(h, timezone.get_current_timezone()).strftime("%H:00")
                             for h in hours],
                   "gateway_ok": series["gateway.ok"], "gateway_refused": series["gateway.refused"],
                   "failed_logins": series["login.failed"], "bad_api_keys": series["apikey.failed"]},
        "scan": {"cursor": cursor.seq if cursor else 0, "audit_head": head,
                 "behind": max(0, head - (cursor.seq if cursor else 0)),
                 "scanned_at": cursor.scanned_at if cursor else None},
    }


def totals() -> dict[str, int]:
    """Running totals the scan keeps (since its cursor was created), for /metrics."""
    return dict(Tally.objects.filter(kind=alerts.TOTAL, start=0).values_list("subject", "n"))


def scan_now(actor: Actor) -> alerts.ScanResult:
    """A scan on demand (the dashboard's button), besides the job worker's every minute."""
    _require(actor)
    result = alerts.scan()
    with transaction.atomic():
        audit.record(actor, "security.scan", object_type="security.scancursor", summary=result.as_dict())
    return result


def unclosed_total() -> int:
    return Alert.objects.filter(state__in=UNCLOSED).count()

