"""Audit-trail pages for audit administrators: search with paging, CSV export, chain verification.
The services check the permission (audit.view); a refusal is a 403 page."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from shuzheng.audit import services
from shuzheng.core.errors import ServiceError
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.web.pages import or_http_error, page_of, query_without_page, show_form_error

DATETIME_LOCAL = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


class _DateTimeLocal(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%Y-%m-%dT%H:%M")


class AuditFilterForm(forms.Form):
    actor = forms.CharField(label=_("Actor"), required=False, max_length=80,
                            help_text=_("Username, or system:<code> for an application system."),
                            widget=forms.TextInput(attrs={"spellcheck": "false"}))
    actor_org = forms.CharField(label=_("Organization credit code"), required=False, max_length=18,
                                widget=forms.TextInput(attrs={"spellcheck": "false"}))
    action = forms.CharField(label=_("Action"), required=False, max_length=64,
                             help_text=_("Prefix, e.g. auth. or user.role_"),
                             widget=forms.TextInput(attrs={"spellcheck": "false"}))
    ip = forms.CharField(label=_("IP address"), required=False, max_length=45,
                         widget=forms.TextInput(attrs={"spellcheck": "false"}))
    since = forms.DateTimeField(label=_("From"), required=False, input_formats=DATETIME_LOCAL, widget=_DateTimeLocal)
    until = forms.DateTimeField(label=_("Until (exclusive)"), required=False, input_formats=DATETIME_LOCAL,
                                widget=_DateTimeLocal)

    def query(self) -> services.AuditQuery:
        data = self.cleaned_data

        def micros(t: dt.datetime | None) -> int | None:
            if t is None:
                return None
            if timezone.is_naive(t):
                t = timezone.make_aware(t)
            return int(t.timestamp() * 1_000_000)

        return services.AuditQuery(actor=data["actor"].strip(), actor_org=data["actor_org"].strip().upper(),
                                   action=data["action"].strip(), ip=data["ip"].strip(),
                                   since_us=micros(data["since"]), until_us=micros(data["until"]))


def _require_auditor(actor: Actor) -> None:
    # The services refuse too; this only keeps the page itself (the filter form) from non-auditors.
    if not authz.allowed(actor, Perm.AUDIT_VIEW):
        raise PermissionDenied


def _page_context(form, page=None, query="", can_export=False, signature=None) -> dict:
    return {"form": form, "page": page, "query": query, "can_export": can_export, "signature": signature}


@login_required
def audit_view(request):
    actor = Actor.from_request(request)
    _require_auditor(actor)
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "audit/audit.html", _page_context(form))
    try:
        records = services.search(actor, form.query() if form.is_bound else services.AuditQuery())
    except ServiceError as exc:
        show_form_error(form, exc)
        return render(request, "audit/audit.html", _page_context(form))
    return render(request, "audit/audit.html",
                  _page_context(form, page_of(request, records), query_without_page(request), True,
                                services.last_signature_as(actor)))


@never_cache
@login_required
def export_view(request):
    actor = Actor.from_request(request)
    _require_auditor(actor)
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "audit/audit.html", _page_context(form), status=400)
    try:
        rows = services.export(actor, form.query() if form.is_bound else services.AuditQuery())
    except ServiceError as exc:
        show_form_error(form, exc)
        return render(request, "audit/audit.html", _page_context(form), status=400)
    name = timezone.localtime().strftime("audit-%Y%m%d-%H%M%S.csv")
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_POST
def verify_view(request):
    result = or_http_error(services.verify_as, Actor.from_request(request))
    return render(request, "audit/verify.html", {"result": result})
