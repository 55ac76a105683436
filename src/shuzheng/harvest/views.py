"""The harvest page (/harvest/) for the platform office: each source with its node, limits and recent runs
(what was created, updated, withdrawn, skipped and why), a button to harvest it now, and a form to register
another. Views parse and call harvest.services, which checks catalog.review and does every write."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from shuzheng.core.errors import ServiceError
from shuzheng.harvest import services
from shuzheng.harvest.models import HarvestRun, SourceKind
from shuzheng.org.models import Organization
from shuzheng.org.services import Actor
from shuzheng.web.pages import or_http_error, raise_http_error


class SourceForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    kind = forms.ChoiceField(label=gettext_lazy("Kind"), choices=SourceKind.choices)
    url = forms.CharField(label=gettext_lazy("Address"), max_length=500,
                          help_text=gettext_lazy("The platform's address (Shuzheng, CKAN) or the DCAT document's."))
    organization = forms.ChoiceField(label=gettext_lazy("Node"),
                                     help_text=gettext_lazy("Whose datasets these are in the city catalog."))
    credential = forms.CharField(label=gettext_lazy("API key at the source"), required=False, max_length=200,
                                 widget=forms.PasswordInput(render_value=False),
                                 help_text=gettext_lazy("Stored encrypted under the master key; never shown again."))
    interval_minutes = forms.IntegerField(label=gettext_lazy("Harvest every (minutes)"), initial=1440)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        nodes = Organization.objects.filter(kind__in=services.NODE_KINDS, is_active=True).order_by("kind", "name")
        self.fields["organization"].choices = [(o.code, f"{o.name} ({o.get_kind_display()})") for o in nodes]


@login_required
def sources_view(request, form=None):
    actor = Actor.from_request(request)
    sources = list(or_http_error(services.list_sources, actor))
    rows = [{"source": s, "records": s.records.filter(deleted_at=None).count(),
             "runs": list(s.runs.all()[:5])} for s in sources]
    return render(request, "harvest/sources.html", {"rows": rows, "form": form or SourceForm(),
                                                    "failed": HarvestRun.State.FAILED})


@login_required
@require_POST
def create_view(request):
    actor = Actor.from_request(request)
    form = SourceForm(request.POST)
    if form.is_valid():
        try:
            source = services.save_source(actor, form.cleaned_data)
        except ServiceError as exc:
            raise_http_error(exc)
            for error in exc.errors:
                form.add_error(error.field if error.field in form.fields else None, str(error.message))
        else:
            messages.success(request, _("Harvest source %(name)s registered.") % {"name": source.name})
            return redirect("web:harvest")
    return sources_view(request, form=form)


@login_required
@require_POST
def run_view(request, name: str):
    actor = Actor.from_request(request)
    try:
        run = services.run(actor, name, full=request.POST.get("full") == "1")
    except ServiceError as exc:
        raise_http_error(exc)
        messages.error(request, str(exc.detail))
    else:
        summary = _("%(source)s: %(created)s new, %(updated)s changed, %(deleted)s withdrawn, %(skipped)s skipped.") % {
            "source": run.source.name, "created": run.created, "updated": run.updated, "deleted": run.deleted,
            "skipped": run.skipped}
        if run.state == HarvestRun.State.FAILED:
            messages.error(request, _("%(source)s: the harvest failed and changed nothing: %(error)s")
                           % {"source": run.source.name, "error": run.error})
        else:
            messages.success(request, summary)
    return redirect("web:harvest")
