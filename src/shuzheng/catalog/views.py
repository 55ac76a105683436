"""Pages of the data resource catalog and the data standards: search and browse, a resource with its
versions, history and lifecycle buttons, the resource form, version comparison, the review and work lists,
Excel import, and the data elements, code tables and one-datum-one-source report.

Views parse forms, call catalog.services with the request's Actor and render; every rule and permission
check is in the services. `authz.allowed` is asked here only to decide which buttons to show. Searching
and reading the catalog and the standards need no sign-in: the services show the public only open
resources."""

from __future__ import annotations

import math
import re
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from shuzheng.catalog import excel, search, services
from shuzheng.catalog.forms import (
    BLANK_ROWS,
    CatalogSearchForm,
    CodeTableForm,
    CodeValueFilterForm,
    CompareForm,
    DeprecateForm,
    ElementFilterForm,
    ElementForm,
    ImportForm,
    ItemForm,
    ItemFormSet,
    MountForm,
    ResourceForm,
    ReviewForm,
    category_choices,
    code_value_lines,
)
from shuzheng.catalog.models import (
    EDITABLE,
    DataItem,
    DataType,
    Format,
    Kind,
    Level,
    OpenType,
    ResourceVersion,
    ReviewEvent,
    SharingMethod,
    SharingType,
    Status,
    Subject,
    UpdateCycle,
)
from shuzheng.catalog.templatetags.catalog import resource_url
from shuzheng.core.errors import ServiceError, ValidationFailed
from shuzheng.org import services as org_services
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.web.forms import show_service_error
from shuzheng.web.pages import or_http_error, page_of, query_without_page, raise_http_error, show_form_error

SEARCH_PAGE_SIZE = 20

FACET_LABELS = {
    "provider": gettext_lazy("Provider"),
    "kind": gettext_lazy("Kind"),
    "category": gettext_lazy("Classification"),
    "sharing_type": gettext_lazy("Sharing type"),
    "open_type": gettext_lazy("Open type"),
    "update_cycle": gettext_lazy("Update cycle"),
    "format": gettext_lazy("Format"),
    "level": gettext_lazy("Level"),
    "mounted": gettext_lazy("Mount status"),
    "status": gettext_lazy("Status"),
}


def _orgs_for(actor: Actor, perm: str):
    """Organizations the actor may pick for `perm` (for select boxes; the service still checks)."""
    ids = authz.org_ids(actor, perm)
    orgs = org_services.list_organizations().order_by("name")
    return orgs if ids is None else orgs.filter(id__in=ids)


def _error_messages(request, exc: ServiceError) -> None:
    """A refused step as messages: the service's summary, then what each field says."""
    raise_http_error(exc)
    messages.error(request, str(exc.detail))
    for error in exc.errors:
        if str(error.message) != str(exc.detail):
            messages.error(request, str(error.message))


def _visible(actor: Actor, resources) -> set:
    """Which of `resources` (an element's source, the resource an item copies) the actor may see: only
    those are named and linked."""
    who = services.visibility(actor)
    return {r.pk for r in resources if r is not None and who.allows(r)}


# ---- search and browse ----------------------------------------------------------------------------------


def _facet_filters(request) -> dict:
    filters = {}
    for name in search.FACETS:
        values = [v.strip()[:100] for v in request.GET.getlist(name)[:50] if v.strip()]
        if values:
            filters[name] = values
    return filters


def _facets(found: dict, filters: dict) -> list[dict]:
    """The side column: each facet's values with counts, ticked ones first kept even when they count 0."""
    labels = {(name, v): str(label) for name, choices in services.FACET_CHOICES.items() for v, label in choices.choices}
    groups = []
    for name in search.FACETS:
        chosen = filters.get(name, [])
        values = [{"value": v, "label": label, "count": n, "checked": v in chosen}
                  for v, label, n in found.get(name, [])]
        listed = {v["value"] for v in values}
        values += [{"value": v, "label": labels.get((name, v), v), "count": 0, "checked": True}
                   for v in chosen if v not in listed]
        if values:
            groups.append({"name": name, "label": FACET_LABELS[name], "values": values,
                           "selected": bool(chosen)})
    return groups


def _search_page(actor: Actor, request, q: str, filters: dict, sort: str):
    """One page of the service's search as a Paginator page (the pager template's shape) plus the facets."""
    raw = request.GET.get("page", "1")
    number = int(raw) if raw.isdigit() and len(raw) < 7 else 1
    number = max(number, 1)
    found = services.search_catalog(actor, q, filters, sort, (number - 1) * SEARCH_PAGE_SIZE, SEARCH_PAGE_SIZE)
    last = max(1, math.ceil(found["total"] / SEARCH_PAGE_SIZE))
    if number > last:
        number = last
        found = services.search_catalog(actor, q, filters, sort, (number - 1) * SEARCH_PAGE_SIZE, SEARCH_PAGE_SIZE)
    page = Paginator(range(found["total"]), SEARCH_PAGE_SIZE).page(number)
    page.object_list = found["resources"]
    return page, found["facets"]


def catalog_view(request):
    actor = Actor.from_request(request)
    form = CatalogSearchForm(request.GET or None)
    filters = _facet_filters(request)
    q = sort = ""
    page, facets = None, {}
    if not form.is_bound or form.is_valid():
        if form.is_bound:
            q, sort = form.cleaned_data["q"].strip(), form.cleaned_data["sort"]
        try:
            page, facets = _search_page(actor, request, q, filters, sort)
        except ServiceError as exc:
            show_form_error(form, exc)
    # The workbook holds what the page found: the same text and ticked facets.
    chosen = [("q", q)] if q else []
    chosen += [(name, value) for name, values in filters.items() for value in values]
    export = reverse("api:export_workbook") + (f"?{urlencode(chosen)}" if chosen else "")
    can_edit = authz.allowed(actor, Perm.CATALOG_EDIT)
    return render(request, "catalog/search.html", {
        "form": form, "page": page, "query": query_without_page(request), "facets": _facets(facets, filters),
        "export_url": export, "can_create": can_edit, "can_import": can_edit,
        "can_work": can_edit or authz.allowed(actor, Perm.CATALOG_REVIEW),
    })


# ---- one resource ---------------------------------------------------------------------------------------


def _source_of(item, resource) -> dict:
    """What an item is under one datum, one source: the element's source, a claim awaiting publication,
    a copy of another resource, or an element without a source yet."""
    element = item.element
    if element is None:
        return {"kind": ""}
    if element.authoritative_id == resource.pk:
        return {"kind": "source"}
    if item.authoritative:
        return {"kind": "claim"}  # takes effect when this version is published
    if element.authoritative_id:
        return {"kind": "copy", "resource": element.authoritative}
    return {"kind": "none"}


def _version_number(request) -> int | None:
    raw = request.GET.get("version", "")
    return int(raw) if raw.isdigit() and len(raw) < 7 else None


def _detail_page(request, code: str, review_form=None, deprecate_form=None, mount_form=None):
    actor = Actor.from_request(request)
    try:
        resource = services.get_resource(actor, code)
        version = services.get_version(actor, resource.code, _version_number(request))
        versions = list(services.list_versions(actor, resource.code).prefetch_related("events"))
        items = list(services.items_of(version))
    except ServiceError as exc:
        raise_http_error(exc)
        raise
    pending = services.visible_pending(actor, resource)
    actions = services.available_actions(actor, resource)
    returned = None
    if pending is not None and pending.status == Status.RETURNED:
        events = [e for v in versions if v.pk == pending.pk for e in v.events.all()]
        returned = next((e for e in reversed(events) if e.action == ReviewEvent.Action.RETURN), None)
    history = sorted(((e, v) for v in versions for e in v.events.all()), key=lambda ev: (ev[0].at, ev[0].id),
                     reverse=True)
    numbers = [v.number for v in versions]
    compare = None
    if len(numbers) > 1:
        compare = CompareForm(initial={"from": numbers[1], "to": numbers[0]}, numbers=sorted(numbers))
    return render(request, "catalog/resource_detail.html", {
        "resource": resource,
        "version": version,
        "kind": Kind(resource.category.kind).label,
        "sharing_methods": [str(SharingMethod(m).label) for m in version.sharing_methods if m in SharingMethod.values],
        # The version people see first: the published one, else the one under way.
        "is_current": version.pk == (resource.published_id or resource.pending_id),
        "items": [{"item": i, "source": _source_of(i, resource)} for i in items],
        "findings": services.list_findings(actor, resource),
        "visible": _visible(actor, [i.element.authoritative for i in items if i.element_id]),
        "pending": pending,
        "returned": returned,
        "versions": versions,
        "history": history,
        "actions": actions,
        "any_action": any(actions.values()),
        "harvested": getattr(resource, "harvested", None) if services.harvested_from(resource) else None,
        "compare_form": compare,
        "review_form": review_form or (ReviewForm() if actions["review"] else None),
        "deprecate_form": deprecate_form or (DeprecateForm() if actions["deprecate"] else None),
        "mount_form": mount_form or (MountForm(initial={"kind": resource.mount_kind, "target": resource.mount_target})
                                     if actions["mount"] else None),
    })


def resource_view(request, code):
    return _detail_page(request, code)


def _step(request, code: str, call, success):
    """A lifecycle button: run the service, report the outcome as a message and go back to the resource."""
    try:
        result = call(Actor.from_request(request))
    except ServiceError as exc:
        _error_messages(request, exc)
    else:
        messages.success(request, success(result))
    return redirect(resource_url(code))


def _form_step(request, code: str, form, call, success, form_name: str):
    """A lifecycle step with a form (review comment, deprecation reason, mount target): invalid input comes
    back next to the form's fields; a refusal for any other reason is a message."""
    if form.is_valid():
        try:
            result = call(Actor.from_request(request), form.cleaned_data)
        except ValidationFailed as exc:
            show_service_error(form, exc)
        except ServiceError as exc:
            _error_messages(request, exc)
            return redirect(resource_url(code))
        else:
            messages.success(request, success(result))
            return redirect(resource_url(code))
    return _detail_page(request, code, **{form_name: form})


@login_required
@require_POST
def submit_view(request, code):
    return _step(request, code, lambda actor: services.submit(actor, code),
                 lambda v: _("Version %(n)s is submitted for review.") % {"n": v.number})


@login_required
@require_POST
def review_view(request, code):
    decision = request.POST.get("decision", "")

    def success(v):
        if v.status == Status.RETURNED:
            return _("Version %(n)s is returned to the department.") % {"n": v.number}
        return _("Version %(n)s is approved; it can now be published.") % {"n": v.number}

    return _form_step(request, code, ReviewForm(request.POST),
                      lambda actor, data: services.review(actor, code, decision, data["comment"]),
                      success, "review_form")


@login_required
@require_POST
def publish_view(request, code):
    return _step(request, code, lambda actor: services.publish(actor, code),
                 lambda v: _("Version %(n)s is published.") % {"n": v.number})


@login_required
@require_POST
def revise_view(request, code):
    try:
        version = services.start_revision(Actor.from_request(request), code)
    except ServiceError as exc:
        _error_messages(request, exc)
        return redirect(resource_url(code))
    messages.success(request, _("Version %(n)s is opened as a draft; the published version stays live until it "
                                "replaces it.") % {"n": version.number})
    return redirect(resource_url(code, "edit"))


@login_required
@require_POST
def deprecate_view(request, code):
    return _form_step(request, code, DeprecateForm(request.POST),
                      lambda actor, data: services.deprecate(actor, code, data["reason"]),
                      lambda r: _("Resource %(code)s is deprecated.") % {"code": r.code}, "deprecate_form")


@login_required
@require_POST
def mount_view(request, code):
    return _form_step(request, code, MountForm(request.POST),
                      lambda actor, data: services.mount(actor, code, data["kind"], data["target"]),
                      lambda r: _("Resource %(code)s is mounted.") % {"code": r.code}, "mount_form")


@login_required
@require_POST
def unmount_view(request, code):
    return _step(request, code, lambda actor: services.unmount(actor, code),
                 lambda r: _("Resource %(code)s is unmounted.") % {"code": r.code})


# ---- the resource form ----------------------------------------------------------------------------------

ITEM_ERROR = re.compile(r"^items\[(\d+)\](?:\.(\w+))?$")


def _item_rows(formset) -> tuple[list[dict], list[int]]:
    """The filled-in rows as the service's item dicts, and the row each item came from."""
    items, rows = [], []
    for n, form in enumerate(formset.forms):
        if not form.is_blank():
            items.append(form.service_item())
            rows.append(n)
    return items, rows


def _show_resource_errors(form, formset, rows: list[int], exc: ServiceError) -> list[str]:
    """Service errors next to their fields: items[n].field on the row the n-th item came from, the rest on
    the resource form. Returns errors about the item list as a whole."""
    raise_http_error(exc)
    if not exc.errors:
        form.add_error(None, str(exc.detail))
    general = []
    for error in exc.errors:
        message = str(error.message)
        match = ITEM_ERROR.match(error.field)
        if match and int(match.group(1)) < len(rows):
            row = formset.forms[rows[int(match.group(1))]]
            name = match.group(2)
            row.add_error(name if name in row.fields else None, message)
        elif error.field.startswith("items"):
            general.append(message)
        else:
            form.add_error(error.field if error.field in form.fields else None, message)
    return general


def _rows_of(version) -> list[dict]:
    return [{"name": i.name, "data_type": i.data_type, "length": "" if i.length is None else str(i.length),
             "nullable": i.nullable, "is_key": i.is_key, "element": i.element.identifier if i.element_id else "",
             "level": i.level, "subject": i.subject, "sensitive_personal": i.sensitive_personal,
             "domestic_only": i.domestic_only, "authoritative": i.authoritative} for i in services.items_of(version)]


def _initial_of(version) -> dict:
    return {
        **{name: getattr(version, name) for name in (
            "name", "summary", "format", "sharing_type", "sharing_conditions", "sharing_basis", "sharing_methods",
            "open_type", "open_conditions", "update_cycle", "level", "spatial_coverage", "domestic_only")},
        "owner": version.owner.code, "manager": version.manager.code,
        "steward": version.steward.username if version.steward_id else "",
        "keywords": ", ".join(version.keywords), "related_codes": ", ".join(version.related_codes),
        "time_coverage_start": version.time_coverage_start.isoformat() if version.time_coverage_start else "",
        "time_coverage_end": version.time_coverage_end.isoformat() if version.time_coverage_end else "",
    }


def _resource_form(request, actor: Actor, resource=None):
    """The form of a new resource (resource None) or of the draft of `resource`."""
    elements = list(services.list_elements())
    kwargs = {"organizations": org_services.list_organizations().order_by("name"), "editing": resource is not None}
    if resource is None:
        kwargs["providers"] = _orgs_for(actor, Perm.CATALOG_EDIT)
        kwargs["categories"] = category_choices(services.list_categories(), authz.org_ids(actor, Perm.CATALOG_EDIT))
    item_kwargs = {"elements": elements}
    item_errors: list[str] = []

    if request.method != "POST":
        if resource is None:
            initial, rows = {"provider": actor.org_code, "category": "3"}, []
        else:
            initial, rows = _initial_of(resource.pending), _rows_of(resource.pending)
        form = ResourceForm(initial=initial, **kwargs)
        formset = ItemFormSet(prefix="items", initial=rows + [{}] * BLANK_ROWS, form_kwargs=item_kwargs)
        return form, formset, item_errors, None

    form = ResourceForm(request.POST, **kwargs)
    formset = ItemFormSet(request.POST, prefix="items", form_kwargs=item_kwargs)
    if "add_rows" in request.POST:
        # Same page, what was typed kept, five more blank rows; nothing is checked yet.
        initial = {name: form[name].value() for name in form.fields}
        rows = [{name: f[name].value() for name in ItemForm.FIELDS} for f in formset.forms]
        form = ResourceForm(initial=initial, **kwargs)
        formset = ItemFormSet(prefix="items", initial=rows + [{}] * BLANK_ROWS, form_kwargs=item_kwargs)
        return form, formset, item_errors, None
    if not (form.is_valid() and formset.is_valid()):
        item_errors += [str(e) for e in formset.non_form_errors()]
        return form, formset, item_errors, None
    data = form.service_data()
    data["items"], rows = _item_rows(formset)
    try:
        if resource is None:
            saved = services.create_resource(actor, data)
        else:
            saved = services.update_draft(actor, resource.code, data)
    except ServiceError as exc:
        item_errors += _show_resource_errors(form, formset, rows, exc)
        return form, formset, item_errors, None
    return form, formset, item_errors, saved


@login_required
def resource_create_view(request):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.CATALOG_EDIT):
        raise PermissionDenied
    form, formset, item_errors, resource = _resource_form(request, actor)
    if resource is not None:
        messages.success(request, _("Resource %(code)s is registered as a draft.") % {"code": resource.code})
        return redirect(resource_url(resource))
    return render(request, "catalog/resource_form.html",
                  {"form": form, "formset": formset, "item_errors": item_errors, "resource": None})


@login_required
def resource_edit_view(request, code):
    actor = Actor.from_request(request)
    resource = or_http_error(services.get_resource, actor, code)
    if not authz.allowed(actor, Perm.CATALOG_EDIT, resource.provider):
        raise PermissionDenied
    if resource.pending is None or resource.pending.status not in EDITABLE:
        messages.error(request, _("There is no draft or returned version to edit. Start a new version first."))
        return redirect(resource_url(resource))
    form, formset, item_errors, version = _resource_form(request, actor, resource)
    if version is not None:
        messages.success(request, _("Version %(n)s is saved.") % {"n": version.number})
        return redirect(resource_url(resource))
    return render(request, "catalog/resource_form.html",
                  {"form": form, "formset": formset, "item_errors": item_errors, "resource": resource,
                   "version": resource.pending})


# ---- comparing versions ---------------------------------------------------------------------------------

CHOICES = {"format": Format, "sharing_type": SharingType, "open_type": OpenType, "update_cycle": UpdateCycle,
           "level": Level, "data_type": DataType, "subject": Subject}
ITEM_ATTRIBUTES = [f for f in services.ITEM_FIELDS if f != "name"]


def _display(name: str, value, lookups: dict) -> str:
    """A snapshot value as people read it."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if name in CHOICES and value in CHOICES[name].values:
        return str(CHOICES[name](value).label)
    if name == "sharing_methods":
        return ", ".join(str(SharingMethod(v).label) if v in SharingMethod.values else v for v in value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if name in ("owner", "manager"):
        return f"{lookups['orgs'].get(value, '')} ({value})".strip()
    if name == "element":
        return f"{value} {lookups['elements'].get(value, '')}".strip()
    return str(value)


def diff_view(request, code):
    actor = Actor.from_request(request)
    try:
        resource = services.get_resource(actor, code)
        numbers = sorted(services.list_versions(actor, resource.code).values_list("number", flat=True))
    except ServiceError as exc:
        raise_http_error(exc)
        raise
    form = CompareForm(request.GET or None, numbers=numbers,
                       initial={"from": numbers[-2] if len(numbers) > 1 else numbers[0], "to": numbers[-1]})
    context = {"resource": resource, "form": form, "numbers": numbers, "diff": None}
    if form.is_bound and form.is_valid():
        a, b = form.cleaned_data["from"], form.cleaned_data["to"]
        try:
            diff = services.diff_versions(actor, resource.code, a, b)
            old = services.snapshot(services.get_version(actor, resource.code, a))
            new = services.snapshot(services.get_version(actor, resource.code, b))
        except ServiceError as exc:
            show_form_error(form, exc)
            return render(request, "catalog/diff.html", context)
        orgs = {o.code: o.name for o in org_services.list_organizations().filter(
            code__in=[v for pair in diff["fields"].values() for v in pair if isinstance(v, str)])}
        lookups = {"orgs": orgs, "elements": {e.identifier: e.name for e in services.list_elements()}}
        fields = [{"label": ResourceVersion._meta.get_field(name).verbose_name,
                   "old": _display(name, pair[0], lookups), "new": _display(name, pair[1], lookups)}
                  for name, pair in diff["fields"].items()]
        items = []
        for name, change in diff["items"].items():
            changed = set(change["fields"]) if change["change"] == "changed" else set(ITEM_ATTRIBUTES)

            def cells(snap, changed=changed):
                if snap is None:
                    return None
                return [{"value": _display(a, snap[a], lookups), "changed": a in changed} for a in ITEM_ATTRIBUTES]

            items.append({"name": name, "change": change["change"], "old": cells(old["items"].get(name)),
                          "new": cells(new["items"].get(name))})
        context.update({
            "diff": diff, "fields": fields, "items": items, "a": a, "b": b,
            "item_headers": [DataItem._meta.get_field(f).verbose_name for f in ITEM_ATTRIBUTES],
            "old_status": Status(old["status"]).label, "new_status": Status(new["status"]).label,
        })
    return render(request, "catalog/diff.html", context)


# ---- review queue and the department's work list --------------------------------------------------------


@login_required
def work_view(request):
    actor = Actor.from_request(request)
    can_review = authz.allowed(actor, Perm.CATALOG_REVIEW)
    can_edit = authz.allowed(actor, Perm.CATALOG_EDIT) or authz.allowed(actor, Perm.CATALOG_SUBMIT)
    lists = [name for name, allowed in (("review", can_review), ("department", can_edit)) if allowed]
    shown = request.GET.get("list") if request.GET.get("list") in lists else (lists[0] if lists else None)
    page = None
    if shown == "review":
        qs = services.list_resources(actor).filter(pending__status__in=[Status.SUBMITTED, Status.APPROVED])
        page = page_of(request, qs.order_by("pending__status", "pending__submitted_at", "code"))
    elif shown == "department":
        # The department's versions under way: drafts and returned ones to work on, submitted and approved
        # ones waiting for the platform office.
        qs = services.list_resources(actor).filter(
            pending__status__in=[Status.RETURNED, Status.DRAFT, Status.SUBMITTED, Status.APPROVED])
        edit, submit = authz.org_ids(actor, Perm.CATALOG_EDIT), authz.org_ids(actor, Perm.CATALOG_SUBMIT)
        if edit is not None and submit is not None:
            qs = qs.filter(provider_id__in=edit | submit)
        page = page_of(request, qs.order_by("-pending__updated_at", "code"))
    return render(request, "catalog/work.html", {
        "lists": lists, "shown": shown, "page": page, "query": query_without_page(request),
        "can_create": authz.allowed(actor, Perm.CATALOG_EDIT),
    })


# ---- Excel import ---------------------------------------------------------------------------------------

# Where the importer says a problem is: "资源!C5" (A1), "资源!R5C3" (R1C1), or just the sheet's name.
CELL_A1 = re.compile(r"^(?P<sheet>.+)!(?P<col>[A-Z]{1,3})(?P<row>\d+)$")
CELL_R1C1 = re.compile(r"^(?P<sheet>.+)!R(?P<row>\d+)C(?P<col>\d+)$")


def _column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _import_error(error) -> dict:
    """A FieldError of the importer as sheet, row, column and message."""
    where, message = error.field or "", str(error.message)
    match = CELL_R1C1.match(where)
    if match:
        return {"sheet": match.group("sheet"), "row": match.group("row"),
                "column": _column_letters(int(match.group("col"))), "message": message}
    match = CELL_A1.match(where)
    if match:
        return {"sheet": match.group("sheet"), "row": match.group("row"), "column": match.group("col"),
                "message": message}
    return {"sheet": where, "row": "", "column": "", "message": message}


@login_required
def import_view(request):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.CATALOG_EDIT):
        raise PermissionDenied
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    errors, detail = [], ""
    if request.method == "POST" and form.is_valid():
        try:
            created = excel.import_workbook(actor, form.cleaned_data["file"])
        except ValidationFailed as exc:
            # Problems with the upload itself go next to the file field; those inside it into the table.
            inside = [e for e in exc.errors if e.field not in form.fields]
            for e in exc.errors:
                if e.field in form.fields:
                    form.add_error(e.field, str(e.message))
            if inside or not exc.errors:
                detail = str(exc.detail)
                errors = [_import_error(e) for e in inside]
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, ngettext(
                "%(n)s resource imported as a draft.", "%(n)s resources imported as drafts.", len(created))
                % {"n": len(created)})
            return redirect(reverse("web:catalog_work") + "?list=department")
    return render(request, "catalog/import.html", {"form": form, "errors": errors, "detail": detail},
                  status=422 if errors or detail else 200)


# ---- data standards: elements, code tables, one datum one source ----------------------------------------


def standards_view(request):
    return redirect("web:elements")


def elements_view(request):
    form = ElementFilterForm(request.GET or None)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    page = page_of(request, services.list_elements(q))
    visible = _visible(Actor.from_request(request), [e.authoritative for e in page.object_list])
    return render(request, "catalog/elements.html",
                  {"form": form, "page": page, "query": query_without_page(request), "visible": visible,
                   "can_manage": authz.allowed(Actor.from_request(request), Perm.STANDARD_MANAGE)})


def element_view(request, identifier):
    actor = Actor.from_request(request)
    element = or_http_error(services.find_element, identifier)
    # The published resources the caller may see that carry the element: its source and its copies.
    return render(request, "catalog/element_detail.html", {
        "element": element, "carriers": services.carriers(actor, element), "visible": _visible(actor, [element.authoritative]),
        "can_manage": authz.allowed(actor, Perm.STANDARD_MANAGE)})


def code_tables_view(request):
    return render(request, "catalog/code_tables.html",
                  {"page": page_of(request, services.list_code_tables().order_by("code")),
                   "can_manage": authz.allowed(Actor.from_request(request), Perm.STANDARD_MANAGE)})


def code_table_view(request, code):
    table = or_http_error(services.get_code_table, code)
    form = CodeValueFilterForm(request.GET or None)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    values = table.values.all()
    names = dict(values.values_list("code", "name"))
    if q:
        values = values.filter(code__startswith=q) | values.filter(name__icontains=q)
    page = page_of(request, values.order_by("position"))
    page.object_list = list(page.object_list)
    for value in page.object_list:
        value.parent_name = names.get(value.parent_code, "")
    return render(request, "catalog/code_table_detail.html",
                  {"table": table, "form": form, "page": page, "query": query_without_page(request),
                   "can_manage": authz.allowed(Actor.from_request(request), Perm.STANDARD_MANAGE)})


def sources_view(request):
    actor = Actor.from_request(request)
    return render(request, "catalog/sources.html", {"report": services.source_report(actor)})


# ---- data standards: the element and code-table forms ---------------------------------------------------


def _require_standards(actor: Actor) -> None:
    """The forms are for those who maintain the standards; anyone else gets 403 (the services check again)."""
    try:
        authz.require(actor, Perm.STANDARD_MANAGE)
    except ServiceError as exc:
        raise_http_error(exc)
        raise


def _element_form(request, actor: Actor, element=None):
    """The form of a new data element (element None) or of `element`."""
    initial = {"level": Level.GENERAL}
    if element is not None:
        initial = {name: getattr(element, name) for name in (
            "name", "definition", "data_type", "format", "value_domain", "level", "subject")}
        initial["code_table"] = element.code_table.code if element.code_table_id else ""
    form = ElementForm(request.POST or None, initial=initial, editing=element is not None,
                       code_tables=services.list_code_tables().order_by("code"))
    if request.method == "POST" and form.is_valid():
        data = form.service_data()
        if element is not None:
            data["identifier"] = element.identifier
        try:
            saved = services.save_element(actor, data, new=element is None)
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            if element is None:
                messages.success(request, _("Data element %(id)s is created.") % {"id": saved.identifier})
            else:
                messages.success(request, _("Data element %(id)s is saved.") % {"id": saved.identifier})
            return redirect("web:element", identifier=saved.identifier)
    return render(request, "catalog/element_form.html", {"form": form, "element": element})


@login_required
def element_create_view(request):
    actor = Actor.from_request(request)
    _require_standards(actor)
    return _element_form(request, actor)


@login_required
def element_edit_view(request, identifier):
    actor = Actor.from_request(request)
    _require_standards(actor)
    element = or_http_error(services.find_element, identifier)
    return _element_form(request, actor, element)


VALUE_ERROR = re.compile(r"^values\[(\d+)\]")


def _show_code_table_errors(form, exc: ServiceError) -> None:
    """Service errors next to the fields; values[n]... on the values box, naming the line value n came from."""
    raise_http_error(exc)
    if not exc.errors:
        form.add_error(None, str(exc.detail))
    for error in exc.errors:
        message = str(error.message)
        match = VALUE_ERROR.match(error.field)
        if match and int(match.group(1)) < len(form.line_numbers):
            line = form.line_numbers[int(match.group(1))]
            form.add_error("values", _("Line %(n)s: %(error)s") % {"n": line, "error": message})
        else:
            form.add_error(error.field if error.field in form.fields else None, message)


def _code_table_form(request, actor: Actor, table=None):
    """The form of a new code table (table None) or of `table`, its values one per line."""
    initial = {}
    if table is not None:
        initial = {"name": table.name, "standard": table.standard, "description": table.description,
                   "values": code_value_lines(table.values.order_by("position"))}
    form = CodeTableForm(request.POST or None, initial=initial, editing=table is not None)
    if request.method == "POST" and form.is_valid():
        data = form.service_data()
        if table is not None:
            data["code"] = table.code
        try:
            saved = services.save_code_table(actor, data, new=table is None)
        except ServiceError as exc:
            _show_code_table_errors(form, exc)
        else:
            n = len(data["values"])
            messages.success(request, ngettext(
                "Code table %(code)s is saved with %(n)s value.",
                "Code table %(code)s is saved with %(n)s values.", n) % {"code": saved.code, "n": n})
            return redirect("web:code_table", code=saved.code)
    return render(request, "catalog/code_table_form.html", {"form": form, "table": table})


@login_required
def code_table_create_view(request):
    actor = Actor.from_request(request)
    _require_standards(actor)
    return _code_table_form(request, actor)


@login_required
def code_table_edit_view(request, code):
    actor = Actor.from_request(request)
    _require_standards(actor)
    table = or_http_error(services.get_code_table, code)
    return _code_table_form(request, actor, table)
