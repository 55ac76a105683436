"""The security dashboard (/security/) for the security administrator: unclosed alerts by severity, the last
24 hours' gateway calls, refusals, failed sign-ins and bad keys with a chart, the alerts table with a note and
acknowledge / escalate buttons on each row (htmx swaps the row; without JavaScript the form posts and the page
reloads), one alert with its history, and a scan on demand. Views parse and call security.services, which
checks security.monitor and decides every transition."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shuzheng.core.errors import ServiceError
from shuzheng.org.services import Actor
from shuzheng.security import alerts, services
from shuzheng.security.models import AlertState, Severity
from shuzheng.web.pages import or_http_error, page_of, query_without_page, raise_http_error

ACTIONS = {"acknowledge": services.acknowledge, "escalate": services.escalate, "close": services.close}
EVENT_LABELS = {"opened": gettext_lazy("Opened"), **dict(AlertState.choices)}


class AlertFilterForm(forms.Form):
    state = forms.ChoiceField(label=gettext_lazy("State"), required=False)
    rule = forms.ChoiceField(label=gettext_lazy("Rule"), required=False)
    severity = forms.ChoiceField(label=gettext_lazy("Severity"), required=False,
                                 choices=[("", gettext_lazy("Any")), *Severity.choices])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("unclosed", _("Not closed")), ("", _("Any")), *AlertState.choices]
        self.fields["rule"].choices = [("", _("Any"))] + [(r, alerts.rule_name(r)) for r in alerts.RULES]


def _row(alert) -> dict:
    return {"a": alert, "summary": alerts.summary_text(alert), "rule_name": alerts.rule_name(alert.rule),
            "can_acknowledge": alert.state in services.FROM["acknowledge"],
            "can_escalate": alert.state in services.FROM["escalate"],
            "can_close": alert.state in services.FROM["close"]}


@login_required
def dashboard_view(request):
    actor = Actor.from_request(request)
    summary = or_http_error(services.summary, actor)
    data = request.GET.copy()
    data.setdefault("state", "unclosed")
    form = AlertFilterForm(data)
    page = None
    if form.is_valid():
        try:
            qs = services.list_alerts(actor, **form.cleaned_data)
        except ServiceError as exc:
            raise_http_error(exc)
            form.add_error(None, str(exc.detail))
        else:
            page = page_of(request, qs)
            page.rows = [_row(a) for a in page.object_list]
    chart = {"hours": summary["hourly"]["hours"], "ok": summary["hourly"]["gateway_ok"],
             "refused": summary["hourly"]["gateway_refused"], "failed_logins": summary["hourly"]["failed_logins"],
             "bad_keys": summary["hourly"]["bad_api_keys"]}
    severities = [{"name": s, "label": Severity(s).label, "n": n} for s, n in summary["open_by_severity"].items()]
    return render(request, "security/dashboard.html", {
        "summary": summary, "severities": severities, "chart": chart, "form": form, "page": page,
        "query": query_without_page(request)})


@login_required
def alert_view(request, alert_id: int):
    actor = Actor.from_request(request)
    alert = or_http_error(services.get_alert, actor, alert_id)
    events = [{"e": e, "label": EVENT_LABELS.get(e.action, e.action)} for e in alert.events.all()]
    return render(request, "security/alert.html", {**_row(alert), "events": events,
                                                   "details": {k: v for k, v in alert.details.items()
                                                               if k not in ("text", "args")}})


@login_required
@require_POST
def handle_view(request, alert_id: int):
    """One step on an alert: the clicked button names it (acknowledge, escalate or close), with the note."""
    actor = Actor.from_request(request)
    action = request.POST.get("action", "")
    note = request.POST.get("note", "")
    htmx = request.headers.get("HX-Request") == "true"
    error = ""
    if action not in ACTIONS:
        error = _("Choose acknowledge, escalate or close.")
    else:
        try:
            alert = ACTIONS[action](actor, alert_id, note)
        except ServiceError as exc:
            raise_http_error(exc)
            error = str(exc.errors[0].message if exc.errors else exc.detail)
        else:
            done = {"acknowledge": _("Alert #%(id)s acknowledged."), "escalate": _("Alert #%(id)s escalated to the "
                    "leading group."), "close": _("Alert #%(id)s closed.")}[action] % {"id": alert.pk}
            if htmx:
                return render(request, "security/_alert_row.html", {"row": _row(alert), "done": done})
            messages.success(request, done)
    if htmx:
        alert = or_http_error(services.get_alert, actor, alert_id)
        return render(request, "security/_alert_row.html", {"row": _row(alert), "error": error, "note": note})
    if error:
        messages.error(request, error)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) or not back.startswith("/"):
        back = "/security/"
    return redirect(back)


@login_required
@require_POST
def scan_view(request):
    result = or_http_error(services.scan_now, Actor.from_request(request))
    messages.success(request, _("Scanned %(records)s new audit records: %(opened)s new alerts, %(updated)s "
                                "updated.") % result.as_dict())
    return redirect("web:security")
