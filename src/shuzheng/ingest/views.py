"""The data pages: the warehouse tables, one resource's data (summary, upload, load history, quality scores and
trend, rules, lineage, rows at any snapshot), one load (counts, scores, findings, quarantined rows to
download) and the resources whose data is overdue.

Views parse forms, call ingest.services, quality.services and quality.reports with the request's Actor and
render; who may load, see rows, download quarantined rows or change rules is decided there. `authz.allowed`
is asked here only to decide which forms and buttons to show."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import MountKind, Resource, Status
from shuzheng.catalog.templatetags.catalog import url_code
from shuzheng.core.errors import NotFound, ServiceError, ValidationFailed
from shuzheng.ingest import schedule, services
from shuzheng.ingest.forms import (
    RULE_PARAMS,
    RowsForm,
    RuleForm,
    SettingsForm,
    UploadForm,
    no_file_error,
    stream_uploads,
    too_large_error,
)
from shuzheng.ingest.models import Load
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.quality.models import RuleKind
from shuzheng.quality import reports
from shuzheng.quality import services as quality
from shuzheng.security import discovery, fieldcrypt
from shuzheng.warehouse.models import Table
from shuzheng.web.forms import show_service_error
from shuzheng.web.pages import page_of, query_without_page, raise_http_error

LOADS_PER_PAGE = 20
DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency", "timeliness")
DIMENSION_LABELS = {
    "overall": gettext_lazy("Overall"),
    "completeness": gettext_lazy("Completeness"),
    "validity": gettext_lazy("Validity"),
    "uniqueness": gettext_lazy("Uniqueness"),
    "consistency": gettext_lazy("Consistency"),
    "timeliness": gettext_lazy("Timeliness"),
}


LINEAGE_LABELS = {
    "name": gettext_lazy("File name"), "format": gettext_lazy("Format"), "encoding": gettext_lazy("Encoding"),
    "delimiter": gettext_lazy("Delimiter"), "sheet": gettext_lazy("Sheet"), "header_rows": gettext_lazy("Header rows"),
    "bytes": gettext_lazy("Size in bytes"), "sha256": gettext_lazy("SHA-256"), "rows": gettext_lazy("Records read"),
    "rejected": gettext_lazy("Unreadable records"), "url": gettext_lazy("Address"), "query": gettext_lazy("Query"),
    "pages": gettext_lazy("Pages"), "inputs": gettext_lazy("Input snapshots"),
    "source": gettext_lazy("Configured source"),
    "header_line": gettext_lazy("Header line"), "checks": gettext_lazy("Checks made"),
    "page_param": gettext_lazy("Page parameter"), "next_path": gettext_lazy("Next-page field"),
}


def lineage_pairs(lineage: dict) -> list[tuple[str, str]]:
    """A load's source record as (label, value) lines: known keys first, the rest as they are."""
    pairs = []
    for key in sorted(lineage or {}, key=lambda k: (k not in LINEAGE_LABELS, list(LINEAGE_LABELS).index(k)
                                                    if k in LINEAGE_LABELS else 0, k)):
        if key == "kind" or lineage[key] is None:
            continue
        value = lineage[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        pairs.append((str(LINEAGE_LABELS.get(key, key)), text[:500]))
    return pairs


def source_summary(lineage: dict) -> str:
    """One line naming a load's source: the file, the query or the address."""
    lineage = lineage or {}
    for key in ("name", "query", "url"):
        if lineage.get(key):
            return str(lineage[key])[:200]
    inputs = lineage.get("inputs")
    return ", ".join(str(i.get("resource", i)) for i in inputs)[:200] if isinstance(inputs, list) else ""


def rules_applied(rules: list) -> list[dict]:
    """The rules a load applied (from its lineage record) with their kinds' names."""
    labels = dict(RuleKind.choices)
    return [{"label": labels.get(r.get("kind"), r.get("kind")), "version": r.get("version"),
             "element": r.get("element") or "", "columns": "、".join(r.get("items") or [])} for r in rules or []]


def with_lineage(load: Load | None) -> Load | None:
    """Adds what the templates show of a load's lineage record: its lines, a one-line source, the rules."""
    if load is not None:
        load.lineage_pairs = lineage_pairs(load.lineage)
        load.source_summary = source_summary(load.lineage)
        load.rules_applied = rules_applied(load.rules)
    return load


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, str) and value.startswith(fieldcrypt.TOKEN):
        return _("🔒 sealed (SM4)")  # stored encrypted: only the gateway opens it
    return str(value)


def table_of(rows: dict | None) -> dict | None:
    """read_rows' answer with the sample as lists of cells in column order, for the template."""
    if rows is None:
        return None
    return {**rows, "cells": [[_cell(r.get(c)) for c in rows["columns"]] for r in rows["sample"]]}


def data_url(code: str, action: str = "") -> str:
    return reverse(f"web:data_{action}" if action else "web:data", kwargs={"code": url_code(code)})


def _get(call):
    """A read the page cannot do without: not found and forbidden become the HTTP answers."""
    try:
        return call()
    except ServiceError as exc:
        raise_http_error(exc)
        raise


def scores_of(scores: dict) -> list[dict]:
    return [{"name": name, "label": DIMENSION_LABELS[name], "value": scores.get(name)}
            for name in ("overall", *DIMENSIONS) if scores.get(name) is not None]


def trend_data(report: dict) -> dict:
    """The trend chart's input (json_script): one point per finished load, oldest first."""
    points = [{"at": t["at"].isoformat() if t["at"] else None, "state": t["state"],
               "loaded": t["loaded"], "quarantined": t["quarantined"],
               **{name: t["scores"].get(name) for name in ("overall", *DIMENSIONS)}}
              for t in report["trend"] if t["scores"]]
    return {"points": points, "labels": {k: str(v) for k, v in DIMENSION_LABELS.items()}}


# ---- the warehouse tables -------------------------------------------------------------------------------


@login_required
def tables_view(request):
    actor = Actor.from_request(request)
    qs = Resource.objects.filter(mount_kind=MountKind.TABLE, status=Status.PUBLISHED).select_related(
        "provider", "published").order_by("code")
    visible = catalog.visibility_filter(actor)
    if visible is not None:
        qs = qs.filter(visible)
    mine = request.GET.get("mine") == "1"
    if mine:
        ids = authz.org_ids(actor, Perm.DATA_LOAD)
        if ids is not None:
            qs = qs.filter(provider_id__in=ids)
    page = page_of(request, qs)
    tables = {t.resource_id: t for t in Table.objects.filter(resource__in=list(page.object_list))}
    rows = [{"resource": r, "table": tables.get(r.pk), "overdue": schedule.overdue(r)} for r in page.object_list]
    return render(request, "ingest/tables.html", {
        "page": page, "rows": rows, "query": query_without_page(request), "mine": mine,
        "can_load": authz.org_ids(actor, Perm.DATA_LOAD) != set()})


# ---- one resource's data --------------------------------------------------------------------------------


def _data_page(request, code: str, upload_form=None, rule_form=None, settings_form=None, status: int = 200):
    actor = Actor.from_request(request)
    resource = _get(lambda: catalog.get_resource(actor, code))
    version = resource.published or resource.pending
    is_table = resource.mount_kind == MountKind.TABLE
    table = Table.objects.filter(resource=resource).first()
    loads = Paginator(services.list_loads(actor, resource.code), LOADS_PER_PAGE).get_page(request.GET.get("page"))
    report = reports.resource_report(actor, resource.code)
    rules = quality.list_rules(actor, resource.code)
    snapshots = services.snapshots(actor, resource.code) if is_table else []
    for snapshot in snapshots:
        with_lineage(snapshot["load"])
    items = [i.name for i in version.items.order_by("position")] if version else []
    can_load = is_table and resource.status == Status.PUBLISHED and authz.allowed(
        actor, Perm.DATA_LOAD, resource.provider)
    can_rules = resource.status != Status.DEPRECATED and authz.allowed(actor, Perm.QUALITY_MANAGE, resource.provider)
    can_settings = can_load and authz.allowed(actor, Perm.QUALITY_MANAGE, resource.provider)
    settings = services.load_settings(actor, resource.code)
    rows = None
    if can_load and snapshots:
        try:
            rows = table_of(services.read_rows(actor, resource.code, limit=20))
        except ServiceError:
            rows = None
    return render(request, "ingest/data.html", {
        "resource": resource, "version": version, "is_table": is_table, "table": table,
        "overdue": report["overdue"],
        "loads": loads, "query": query_without_page(request),
        "report": report, "scores": scores_of(report["scores"]), "trend": trend_data(report),
        "own_rules": [r for r in rules if r.resource_id], "inherited_rules": [r for r in rules if r.element_id],
        "snapshots": snapshots, "rows": rows, "rows_form": RowsForm(initial={"limit": 20}),
        "can_load": can_load, "can_rules": can_rules,
        "upload_form": upload_form or (UploadForm() if can_load else None),
        "rule_form": rule_form or (RuleForm(items=items, initial={"blocking": True}) if can_rules else None),
        "settings": settings,
        "settings_form": settings_form or (
            SettingsForm(initial={k: "" if v is None else v for k, v in settings.items()}) if can_settings else None),
        "rule_param_kinds": {name: [str(k) for k, names in RULE_PARAMS.items() if name in names]
                             for names in RULE_PARAMS.values() for name in names},
    }, status=status)


@login_required
def data_view(request, code):
    return _data_page(request, code)


def _loaded_message(request, load: Load) -> None:
    if load.state == Load.State.COMMITTED:
        messages.success(request, _(
            "Loaded %(loaded)s rows (%(quarantined)s quarantined, %(unreadable)s unreadable); the table now "
            "holds %(rows)s rows.") % {"loaded": load.loaded, "quarantined": load.quarantined,
                                       "unreadable": load.unreadable, "rows": load.rows_after})
    else:
        messages.error(request, _("The load was rejected: %(reason)s") % {"reason": load.error})


@csrf_protect
def _upload(request, code):
    if request.method != "POST":
        return redirect(data_url(code))
    actor = Actor.from_request(request)
    form = UploadForm(request.POST, request.FILES)
    upload = request.FILES.get("file")
    try:
        if form.is_valid():
            error = too_large_error(request) or (no_file_error() if upload is None else None)
            if error:
                raise error
            data = form.cleaned_data
            try:
                load = services.ingest_file(actor, code, upload.temporary_file_path(), mode=data["mode"],
                                            original_name=upload.name, encoding=data["encoding"] or None,
                                            format=data["format"] or None, sheet=data["sheet"] or None,
                                            mapping=data["mapping"] or None)
            finally:
                upload.close()
            _loaded_message(request, load)
            target = reverse("web:load", kwargs={"load_id": load.id})
            if request.headers.get("HX-Request"):
                response = HttpResponse(status=204)
                response["HX-Redirect"] = target
                return response
            return redirect(target)
    except ValidationFailed as exc:
        form.show_error(exc)
    except ServiceError as exc:
        raise_http_error(exc)
        form.show_error(exc)
    # htmx swaps only 2xx answers: the form with its errors comes back 200 to htmx, 422 to a plain post.
    return _data_page(request, code, upload_form=form, status=200 if request.headers.get("HX-Request") else 422)


@csrf_exempt
@login_required
def upload_view(request, code):
    """Streams the file to SHUZHENG_HOME/tmp before the CSRF check reads the body (see forms.stream_uploads)."""
    return stream_uploads(_upload)(request, code)


@login_required
@require_POST
def rule_create_view(request, code):
    actor = Actor.from_request(request)
    resource = _get(lambda: catalog.get_resource(actor, code))
    version = resource.published or resource.pending
    form = RuleForm(request.POST, items=[i.name for i in version.items.order_by("position")] if version else [])
    if form.is_valid():
        try:
            rule = quality.save_rule(actor, code=resource.code, **form.service_data())
        except ServiceError as exc:
            raise_http_error(exc)
            form.show_error(exc)
        else:
            messages.success(request, _("The rule is saved (version %(n)s); it applies from the next load.")
                             % {"n": rule.version})
            return redirect(data_url(resource.code) + "#rules")
    return _data_page(request, code, rule_form=form, status=422)


@login_required
@require_POST
def rule_active_view(request, code, rule_id):
    """Switches a resource rule on or off (a new version of the rule)."""
    actor = Actor.from_request(request)
    rule = next((r for r in _get(lambda: quality.list_rules(actor, code)) if str(r.id) == str(rule_id)), None)
    if rule is None or not rule.resource_id:
        raise_http_error(NotFound(_("No such rule.")))
    try:
        quality.save_rule(actor, rule_id=rule.id, kind=rule.kind, items=rule.items, params=rule.params,
                          blocking=rule.blocking, description=rule.description,
                          active=request.POST.get("active") == "1")
    except ServiceError as exc:
        raise_http_error(exc)
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, _("The rule is switched on.") if request.POST.get("active") == "1"
                         else _("The rule is switched off."))
    return redirect(data_url(code) + "#rules")


@login_required
@require_POST
def settings_view(request, code):
    form = SettingsForm(request.POST)
    if form.is_valid():
        try:
            services.update_settings(Actor.from_request(request), code, form.service_data())
        except ServiceError as exc:
            raise_http_error(exc)
            show_service_error(form, exc)
        else:
            messages.success(request, _("The load settings are saved."))
            return redirect(data_url(code) + "#summary")
    return _data_page(request, code, settings_form=form, status=422)


@login_required
def rows_view(request, code):
    """The rows of one snapshot (time travel), for the provider's own staff; htmx swaps #rows in place."""
    actor = Actor.from_request(request)
    resource = _get(lambda: catalog.get_resource(actor, code))
    # Always bound (defaults when the query is empty), so that a service's refusal can sit on the form.
    form = RowsForm(request.GET or {"limit": 20})
    rows, snapshots = None, services.snapshots(actor, resource.code)
    if form.is_valid():
        data = form.cleaned_data
        try:
            rows = table_of(services.read_rows(actor, resource.code, snapshot_id=data.get("snapshot"),
                                               limit=data.get("limit") or 20))
        except ServiceError as exc:
            raise_http_error(exc)
            form.add_error("snapshot" if any(e.field == "snapshot" for e in exc.errors) else None, str(exc.detail))
    return render(request, "ingest/rows.html", {"resource": resource, "version": resource.published or
                                                resource.pending, "rows": rows, "rows_form": form,
                                                "snapshots": snapshots}, status=200 if rows is not None else 422)


# ---- one load -------------------------------------------------------------------------------------------


@login_required
def load_view(request, load_id):
    actor = Actor.from_request(request)
    load = with_lineage(_get(lambda: services.get_load(actor, load_id)))
    can_download = False
    if load.quarantined or load.unreadable:
        try:
            services.quarantine_load(actor, load.id)
            can_download = True
        except ServiceError:
            can_download = False
    findings = sorted(load.findings, key=lambda f: (not f.get("blocking"), -f.get("count", 0)))
    version = load.resource.published or load.resource.pending
    order = {name: n for n, name in enumerate(version.items.order_by("position").values_list("name", flat=True))}
    mapping = sorted((load.mapping or {}).items(), key=lambda pair: (order.get(pair[0], len(order)), pair[0]))
    return render(request, "ingest/load.html", {
        "load": load, "resource": load.resource, "version": version, "scores": scores_of(load.scores or {}),
        "findings": findings, "can_download": can_download, "mapping": mapping,
        "discovery": discovery.for_load(load.id),
    })


@login_required
def quarantine_view(request, load_id, fmt):
    if fmt not in ("csv", "xlsx"):
        raise Http404(_("The quarantined rows download as csv or xlsx."))
    name, data = _get(lambda: reports.quarantine_export(Actor.from_request(request), load_id, fmt))
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# ---- overdue --------------------------------------------------------------------------------------------


@login_required
def overdue_view(request):
    actor = Actor.from_request(request)
    rows = []
    for resource in services.overdue_visible(actor):
        version = resource.published or resource.pending
        rows.append({"resource": resource, "version": version, "last": schedule.last_commit(resource)})
    return render(request, "ingest/overdue.html", {"rows": rows})

