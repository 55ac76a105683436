"""Pages of the correction tickets (数据纠错): the lists (raised by me, my organization's to answer, overdue
for the platform office), a ticket with its history and the steps the user may take, and the form that
raises a ticket on a record of a published resource (/tickets/new/?resource=<code>).

Views parse forms, call quality.tickets with the request's Actor and render; every rule and permission
check is in the service. `tickets.available_actions` is asked here only to decide which forms to show."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shuzheng.core.errors import Conflict, NotFound, ServiceError, ValidationFailed
from shuzheng.org.services import Actor
from shuzheng.quality import tickets
from shuzheng.quality.models import TicketState
from shuzheng.web.forms import show_service_error
from shuzheng.web.pages import or_http_error, page_of, query_without_page, raise_http_error

# ---- forms ----------------------------------------------------------------------------------------------

FREE_KEY_ROWS = 3


class _ServiceChoiceField(forms.ChoiceField):
    """A select whose value the service judges (its message is the one the API gives too)."""

    def valid_value(self, value):
        return True


class TicketForm(forms.Form):
    """What is wrong: the record (one field per key item of the resource, or item/value rows when it
    declares no key), the data item, the values and a description. Field names are the service's, so its
    errors land next to them; record_key.<item> errors land on that item's input."""

    def __init__(self, *args, items: list[str], keys: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.keys = keys
        if keys:
            for n, name in enumerate(keys):
                self.fields[f"key_{n}"] = forms.CharField(label=name, max_length=tickets.KEY_VALUE_LIMIT)
        else:
            choices = [("", "—")] + [(name, name) for name in items]
            for n in range(FREE_KEY_ROWS):
                self.fields[f"key_item_{n}"] = _ServiceChoiceField(
                    label=_("Identifying item %(n)s") % {"n": n + 1}, choices=choices, required=False)
                self.fields[f"key_value_{n}"] = forms.CharField(
                    label=_("Its value"), max_length=tickets.KEY_VALUE_LIMIT, required=False)
        self.fields["item"] = _ServiceChoiceField(
            label=_("Data item that is wrong"), choices=[("", "—")] + [(name, name) for name in items])
        self.fields["current_value"] = forms.CharField(
            label=_("Current value"), required=False, max_length=tickets.VALUE_LIMIT,
            widget=forms.Textarea(attrs={"rows": 2}), help_text=_("What the platform holds now (optional)."))
        self.fields["proposed_value"] = forms.CharField(
            label=_("Proposed value"), required=False, max_length=tickets.VALUE_LIMIT,
            widget=forms.Textarea(attrs={"rows": 2}), help_text=_("What it should be, if you know (optional)."))
        self.fields["description"] = forms.CharField(
            label=_("Description"), max_length=tickets.TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 4}),
            help_text=_("What is wrong and how you know: the document or source you checked it against."))

    def key_fields(self):
        return [self[name] for name in self.fields if name.startswith("key_")]

    def other_fields(self):
        return [self[name] for name in self.fields if not name.startswith("key_")]

    def service_data(self) -> dict:
        data = {name: self.cleaned_data[name] for name in ("item", "current_value", "proposed_value", "description")}
        record_key = {}
        if self.keys:
            for n, name in enumerate(self.keys):
                if self.cleaned_data.get(f"key_{n}"):
                    record_key[name] = self.cleaned_data[f"key_{n}"]
        else:
            for n in range(FREE_KEY_ROWS):
                item, value = self.cleaned_data.get(f"key_item_{n}"), self.cleaned_data.get(f"key_value_{n}")
                if item or value:
                    record_key[item] = value
        data["record_key"] = record_key
        return data

    def field_of(self, error_field: str) -> str | None:
        """The input a service error belongs to."""
        if error_field.startswith("record_key."):
            name = error_field[len("record_key."):]
            if self.keys:
                return f"key_{self.keys.index(name)}" if name in self.keys else None
            for n in range(FREE_KEY_ROWS):
                if self.cleaned_data.get(f"key_item_{n}") == name:
                    return f"key_value_{n}"
            return "key_item_0"
        if error_field == "record_key":
            return "key_0" if self.keys else "key_item_0"
        return error_field if error_field in self.fields else None


class ResourceChoiceForm(forms.Form):
    resource = forms.CharField(label=gettext_lazy("Resource code"), max_length=40,
                               help_text=gettext_lazy("The code of a published resource, e.g. 101001001/000001."))


class CommentForm(forms.Form):
    body = forms.CharField(label=gettext_lazy("Comment"), max_length=tickets.TEXT_LIMIT,
                           widget=forms.Textarea(attrs={"rows": 3}))


class AcceptForm(forms.Form):
    comment = forms.CharField(label=gettext_lazy("Comment (optional)"), required=False, max_length=tickets.TEXT_LIMIT,
                              widget=forms.Textarea(attrs={"rows": 2}))


class DecisionForm(forms.Form):
    resolution = forms.CharField(
        label=gettext_lazy("Resolution"), max_length=tickets.TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Resolve: what was corrected, and where. Reject: why the value stands."))


class ReopenForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Why the answer is not right"), max_length=tickets.TEXT_LIMIT,
                             widget=forms.Textarea(attrs={"rows": 3}))


STATE_CHOICES = [
    ("active", gettext_lazy("Open or accepted")),
    ("all", gettext_lazy("All states")),
    *TicketState.choices,
]


class StateFilterForm(forms.Form):
    state = forms.ChoiceField(label=_("State"), choices=STATE_CHOICES, required=False)


LIST_LABELS = {
    "raised": gettext_lazy("Raised by me"),
    "assigned": gettext_lazy("Assigned to my organization"),
    "overdue": gettext_lazy("Overdue"),
    "all": gettext_lazy("All tickets"),
}


def ticket_url(ticket, action: str = "") -> str:
    number = getattr(ticket, "number", ticket)
    return reverse(f"web:ticket_{action}" if action else "web:ticket", kwargs={"number": number})


# ---- the lists ------------------------------------------------------------------------------------------


@login_required
def tickets_view(request):
    """One list at a time: what I raised; what my organization must answer (its inbox); for the platform
    office the overdue tickets (its inbox) and all of them."""
    actor = Actor.from_request(request)
    lists = tickets.boxes(actor)
    if "overdue" in lists:
        lists.append("all")
    default = next((name for name in ("assigned", "overdue", "raised") if name in lists), None)
    shown = request.GET.get("list") if request.GET.get("list") in lists else default
    chosen = request.GET.get("state", "")
    if chosen not in dict(STATE_CHOICES):
        chosen = "active" if shown == "assigned" else "all"
    form = StateFilterForm(initial={"state": chosen})
    state = "" if chosen == "all" else chosen
    page = None
    if shown == "overdue":
        page = page_of(request, tickets.list_tickets(actor, overdue=True))
    elif shown == "all":
        page = page_of(request, tickets.list_tickets(actor, state=state))
    elif shown:
        page = page_of(request, tickets.list_tickets(actor, state=state, box=shown))
    counts = tickets.inbox(actor)
    return render(request, "quality/tickets.html", {
        "lists": [{"name": name, "label": LIST_LABELS[name], "count": counts.get(name)} for name in lists],
        "shown": shown, "shown_label": LIST_LABELS.get(shown, ""), "form": form, "page": page,
        "query": query_without_page(request), "now_overdue": counts.get("overdue"),
    })


# ---- one ticket -----------------------------------------------------------------------------------------


def _ticket_page(request, number: str, **forms_given):
    actor = Actor.from_request(request)
    ticket = or_http_error(tickets.get_ticket, actor, number)
    actions = tickets.available_actions(actor, ticket)
    decide = actions["resolve"] or actions["reject"]
    return render(request, "quality/ticket_detail.html", {
        "ticket": ticket,
        "history": list(tickets.history(ticket)),
        "actions": actions,
        "as_overseer": (actions["accept"] or decide) and not tickets.is_handler(actor, ticket),
        "reopen_days": tickets.REOPEN_DAYS,
        "comment_form": forms_given.get("comment_form") or CommentForm(),
        "accept_form": forms_given.get("accept_form") or (AcceptForm() if actions["accept"] else None),
        "decision_form": forms_given.get("decision_form") or (DecisionForm() if decide else None),
        "reopen_form": forms_given.get("reopen_form") or (ReopenForm() if actions["reopen"] else None),
    })


@login_required
def ticket_view(request, number):
    return _ticket_page(request, number)


def _ticket_step(request, number: str, form, call, success, form_name: str):
    """A step with a form: invalid input comes back next to the form's fields; a refusal for any other reason
    (409: the ticket moved on) is a message; 404 and 403 are the HTTP answers."""
    if form.is_valid():
        try:
            call(Actor.from_request(request), form.cleaned_data)
        except ValidationFailed as exc:
            show_service_error(form, exc)
        except ServiceError as exc:
            raise_http_error(exc)
            messages.error(request, str(exc.detail))
            return redirect(ticket_url(number))
        else:
            messages.success(request, success)
            return redirect(ticket_url(number))
    return _ticket_page(request, number, **{form_name: form})


@login_required
@require_POST
def comment_view(request, number):
    return _ticket_step(request, number, CommentForm(request.POST),
                        lambda actor, data: tickets.comment(actor, number, data["body"]),
                        _("Your comment is added."), "comment_form")


@login_required
@require_POST
def accept_view(request, number):
    return _ticket_step(request, number, AcceptForm(request.POST),
                        lambda actor, data: tickets.accept(actor, number, data["comment"]),
                        _("The ticket is accepted."), "accept_form")


@login_required
@require_POST
def resolve_view(request, number):
    return _ticket_step(request, number, DecisionForm(request.POST),
                        lambda actor, data: tickets.resolve(actor, number, data["resolution"]),
                        _("The ticket is resolved."), "decision_form")


@login_required
@require_POST
def reject_view(request, number):
    return _ticket_step(request, number, DecisionForm(request.POST),
                        lambda actor, data: tickets.reject(actor, number, data["resolution"]),
                        _("The ticket is rejected."), "decision_form")


@login_required
@require_POST
def reopen_view(request, number):
    return _ticket_step(request, number, ReopenForm(request.POST),
                        lambda actor, data: tickets.reopen(actor, number, data["reason"]),
                        _("The ticket is reopened."), "reopen_form")


# ---- raising a ticket -----------------------------------------------------------------------------------


@login_required
def ticket_create_view(request):
    """GET ?resource=<code>: the form for that resource (or, without one, a box asking for the code);
    POST to the same address raises the ticket and opens it."""
    actor = Actor.from_request(request)
    code = request.GET.get("resource", "").strip()[:40]
    chooser = ResourceChoiceForm(request.GET if code else None)
    if not code or not chooser.is_valid():
        return render(request, "quality/ticket_form.html", {"chooser": chooser})
    try:
        resource, items, keys = tickets.target(actor, code)
    except (NotFound, Conflict) as exc:
        # A code typed into the box: say so next to it, with the status the API would give.
        chooser.add_error("resource", str(exc.detail))
        return render(request, "quality/ticket_form.html", {"chooser": chooser}, status=exc.status)
    form = TicketForm(request.POST if request.method == "POST" else None, items=items, keys=keys)
    if request.method == "POST" and form.is_valid():
        try:
            ticket = tickets.raise_ticket(actor, resource.code, form.service_data())
        except ValidationFailed as exc:
            for error in exc.errors or []:
                form.add_error(form.field_of(error.field), str(error.message))
            if not exc.errors:
                form.add_error(None, str(exc.detail))
        except ServiceError as exc:
            raise_http_error(exc)
            form.add_error(None, str(exc.detail))
        else:
            messages.success(request, _("Ticket %(n)s is raised; %(org)s answers it by %(due)s.") % {
                "n": ticket.number, "org": resource.provider.name,
                "due": timezone.localtime(ticket.due_at).strftime("%Y-%m-%d %H:%M")})
            return redirect(ticket_url(ticket))
    return render(request, "quality/ticket_form.html", {
        "resource": resource, "version": resource.published, "form": form, "keys": keys,
        "ticket_days": tickets.TICKET_DAYS,
    })
