"""Pages of the sharing workflow: the inbox (applications made, received, escalated; grants; notifications),
the application form on a published resource, an application with its history and the decision form, a grant
with its revocation, and the use of the gateway. Views parse forms and call sharing.services; every rule and
permission is decided there (services.may_decide etc. are asked only to choose which forms to show)."""

from __future__ import annotations

import datetime as dt
import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shuzheng.catalog import services as catalog
from shuzheng.core.errors import ServiceError
from shuzheng.org.models import ApplicationSystem
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.sharing import services
from shuzheng.sharing.models import AppState
from shuzheng.web.forms import show_service_error
from shuzheng.web.pages import or_http_error, page_of, raise_http_error

OPS = [("", "—"), ("eq", gettext_lazy("equals")), ("prefix", gettext_lazy("starts with")),
       ("in", gettext_lazy("one of (comma-separated)"))]


class ApplicationForm(forms.Form):
    system = forms.ChoiceField(label=gettext_lazy("Application system"))
    purpose = forms.CharField(label=gettext_lazy("Purpose"), max_length=services.TEXT_LIMIT,
                              widget=forms.Textarea(attrs={"rows": 3}),
                              help_text=gettext_lazy("What the data is for, in the applying department's duties."))
    legal_basis = forms.CharField(label=gettext_lazy("Legal basis"), max_length=services.TEXT_LIMIT,
                                  widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text=gettext_lazy("The law, regulation or document that makes it necessary."))
    items = forms.MultipleChoiceField(label=gettext_lazy("Data items needed"), widget=forms.CheckboxSelectMultiple)
    clear_items = forms.MultipleChoiceField(
        label=gettext_lazy("Items needed unmasked"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Sensitive items are masked unless an approver agrees to clear values."))
    scope_item = forms.ChoiceField(label=gettext_lazy("Row scope: item"), required=False)
    scope_op = forms.ChoiceField(label=gettext_lazy("Row scope: condition"), choices=OPS, required=False)
    scope_value = forms.CharField(label=gettext_lazy("Row scope: value"), required=False, max_length=500,
                                  help_text=gettext_lazy("For example only your town: 户籍地址 starts with 河北省定州市清风店镇."))
    method = forms.ChoiceField(label=gettext_lazy("Method"), choices=[("interface", gettext_lazy("Interface")),
                                                                    ("table", gettext_lazy("Table")),
                                                                    ("file", gettext_lazy("File"))])
    period_end = forms.DateField(label=gettext_lazy("Needed until"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, systems, items, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["system"].choices = [(s.code, f"{s.name} ({s.code})") for s in systems]
        self.fields["items"].choices = [(n, n) for n in items]
        self.fields["clear_items"].choices = [(n, n) for n in items]
        self.fields["scope_item"].choices = [("", "—")] + [(n, n) for n in items]

    def service_data(self, resource_code: str) -> dict:
        data = {k: self.cleaned_data[k] for k in ("system", "purpose", "legal_basis", "items", "clear_items",
                                                  "method")}
        data["resource"] = resource_code
        data["period_end"] = self.cleaned_data["period_end"].isoformat()
        item, op, value = (self.cleaned_data.get(k) for k in ("scope_item", "scope_op", "scope_value"))
        data["row_filter"] = []
        if item and op:
            data["row_filter"] = [{"item": item, "op": op,
                                   "value": [v.strip() for v in value.split(",")] if op == "in" else value}]
        return data


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(label=gettext_lazy("Decision"), widget=forms.RadioSelect,
                                 choices=[("approve", gettext_lazy("Approve")), ("reject", gettext_lazy("Reject"))])
    note = forms.CharField(label=gettext_lazy("Note"), required=False, max_length=services.TEXT_LIMIT,
                           widget=forms.Textarea(attrs={"rows": 2}),
                           help_text=gettext_lazy("Required to reject: the reason the applicant will read."))
    items = forms.MultipleChoiceField(label=gettext_lazy("Items granted"), required=False,
                                      widget=forms.CheckboxSelectMultiple,
                                      help_text=gettext_lazy("Untick items to narrow the grant."))
    clear_items = forms.MultipleChoiceField(label=gettext_lazy("Clear values agreed"), required=False,
                                            widget=forms.CheckboxSelectMultiple)
    calls_per_day = forms.IntegerField(label=gettext_lazy("Calls per day (quota)"), required=False, min_value=1)
    rows_per_day = forms.IntegerField(label=gettext_lazy("Rows per day (quota)"), required=False, min_value=1)
    allowed_ips = forms.CharField(label=gettext_lazy("Allowed source addresses"), required=False, max_length=1000,
                                  help_text=gettext_lazy("CIDR blocks separated by commas; empty: any address."))

    def __init__(self, *args, application, **kwargs):
        super().__init__(*args, **kwargs)
        terms = application.terms
        self.fields["items"].choices = [(n, n) for n in terms["items"]]
        self.fields["items"].initial = terms["items"]
        self.fields["clear_items"].choices = [(n, n) for n in terms["clear_items"]]
        self.fields["clear_items"].initial = terms["clear_items"]
        if not terms["clear_items"]:
            del self.fields["clear_items"]

    def service_data(self) -> dict:
        data = {"decision": self.cleaned_data["decision"], "note": self.cleaned_data["note"]}
        if data["decision"] == "approve":
            data["items"] = self.cleaned_data["items"]
            if "clear_items" in self.cleaned_data:
                data["clear_items"] = self.cleaned_data["clear_items"]
            for name in ("calls_per_day", "rows_per_day"):
                if self.cleaned_data.get(name):
                    data[name] = self.cleaned_data[name]
            ips = [v.strip() for v in (self.cleaned_data.get("allowed_ips") or "").split(",") if v.strip()]
            if ips:
                data["allowed_ips"] = ips
        return data


class RevokeForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=services.TEXT_LIMIT,
                             widget=forms.Textarea(attrs={"rows": 2}))


@login_required
def home_view(request):
    actor = Actor.from_request(request)
    boxes = [("received", _("To decide")), ("made", _("Made by my organization"))]
    if authz.allowed(actor, Perm.SHARE_OVERSEE):
        boxes.insert(0, ("office", _("Platform office")))
    box = request.GET.get("box") or boxes[0][0]
    if box not in dict(boxes):
        box = boxes[0][0]
    qs = services.list_applications(actor, box)
    if box in ("received", "office"):
        qs = qs.filter(state__in=(AppState.PROVIDER, AppState.OFFICE))
    unread = list(services.notifications(actor, unread_only=True)[:20])
    if unread and request.GET.get("read") == "1":
        services.mark_read(actor)
        return redirect(request.path + f"?box={box}")
    return render(request, "sharing/home.html", {
        "boxes": [{"name": n, "label": label} for n, label in boxes], "box": box, "box_label": dict(boxes)[box],
        "page": page_of(request, qs), "grants": services.list_grants(actor, live=True)[:50],
        "notifications": unread, "now": timezone.now()})


@login_required
def apply_view(request, code):
    actor = Actor.from_request(request)
    resource = or_http_error(catalog.get_resource, actor, code)
    if resource.published is None:
        raise Http404(_("Resource %(code)s is not published.") % {"code": resource.code})
    items = list(resource.published.items.order_by("position").values_list("name", flat=True))
    org = actor.organization
    systems = ApplicationSystem.objects.filter(organization=org, is_active=True) if org else []
    initial = {"period_end": timezone.localdate() + dt.timedelta(days=365), "items": items}
    form = ApplicationForm(request.POST or None, systems=systems, items=items, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            application = services.apply(actor, form.service_data(resource.code))
        except ServiceError as exc:
            raise_http_error(exc)
            show_service_error(form, exc)
        else:
            messages.success(request, _("Application %(n)s submitted: %(state)s.")
                             % {"n": application.number, "state": application.get_state_display()})
            return redirect("web:sharing_application", number=application.number)
    return render(request, "sharing/apply.html", {"resource": resource, "version": resource.published,
                                                  "form": form, "systems": systems})


@login_required
def application_view(request, number):
    actor = Actor.from_request(request)
    application = or_http_error(services.get_application, actor, number)
    can_decide = services.may_decide(actor, application)
    form = DecisionForm(request.POST or None, application=application) if can_decide else None
    if request.method == "POST":
        try:
            if request.POST.get("action") == "withdraw":
                services.withdraw(actor, number)
                messages.success(request, _("Application withdrawn."))
                return redirect("web:sharing_application", number=number)
            if form is None:  # not (or no longer) this user's to decide: let the service say why
                services.decide(actor, number, {"decision": request.POST.get("decision")})
            if form.is_valid():
                application = services.decide(actor, number, form.service_data())
                messages.success(request, _("Decision recorded: %(state)s.") % {"state": application.get_state_display()})
                return redirect("web:sharing_application", number=number)
        except ServiceError as exc:
            raise_http_error(exc)
            if form is not None:
                show_service_error(form, exc)
            else:
                messages.error(request, str(exc.detail))
    grant = getattr(application, "grant", None) if application.state == AppState.APPROVED else None
    return render(request, "sharing/application.html", {
        "a": application, "events": application.events.all(), "form": form, "grant": grant,
        "can_withdraw": services.may_withdraw(actor, application),
        "terms_json": json.dumps(application.terms, ensure_ascii=False, indent=1)})


@login_required
def grant_view(request, grant_id):
    actor = Actor.from_request(request)
    grant = or_http_error(services.get_grant, actor, grant_id)
    form = RevokeForm(request.POST or None) if services.may_revoke(actor, grant) else None
    if request.method == "POST" and form is not None and form.is_valid():
        try:
            services.revoke_grant(actor, grant.id, form.cleaned_data["reason"])
        except ServiceError as exc:
            raise_http_error(exc)
            show_service_error(form, exc)
        else:
            messages.success(request, _("Grant revoked; the next call is refused."))
            return redirect("web:sharing_grant", grant_id=grant.id)
    meters = grant.meters.order_by("-day")[:30]
    return render(request, "sharing/grant.html", {"g": grant, "state": grant.status(), "form": form,
                                                  "meters": meters})


@login_required
def usage_view(request):
    actor = Actor.from_request(request)
    by = request.GET.get("by", "day")
    rows = or_http_error(services.usage, actor, by if by in services.USAGE_GROUPS else "day", 30)
    chart = {"keys": [r["key"] for r in rows], "calls": [r["calls"] for r in rows], "rows": [r["rows"] for r in rows],
             "errors": [r["errors"] for r in rows]}
    return render(request, "sharing/usage.html", {"rows": rows, "by": by, "groups": list(services.USAGE_GROUPS),
                                                  "chart": chart})
