"""The catalog's rules: registration, the review lifecycle, versions and their comparison, mounting, data
elements and code tables, one datum one source, and who may see what. API, UI, CLI, the Excel importer
and the demo loader all call these functions; each change is audited in its own transaction.

Visibility: the public sees published resources that are open; everyone in government sees published
(and deprecated) ones; resources not yet published are seen by their own department and the reviewers.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlparse

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.catalog import search
from shuzheng.catalog.models import (
    DISCOVERY_KINDS,
    EDITABLE,
    LEVEL_RANK,
    Category,
    CodeTable,
    CodeValue,
    DataElement,
    DataItem,
    DataType,
    DiscoveryFinding,
    Format,
    Kind,
    Level,
    MountKind,
    OpenType,
    Resource,
    ResourceVersion,
    ReviewEvent,
    SharingMethod,
    SharingType,
    Status,
    Subject,
    UpdateCycle,
)
from shuzheng.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from shuzheng.org.models import Organization, User
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, _diff, authz

# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------


def list_categories() -> QuerySet:
    return Category.objects.select_related("parent", "organization")


def get_category(code: str, field_name: str = "category") -> Category:
    category = Category.objects.select_related("parent").filter(code=str(code).strip()).first()
    if category is None:
        raise ValidationFailed.of(field_name, _("Unknown classification %(code)s.") % {"code": code})
    return category


def save_category(actor: Actor, code: str, name: str) -> Category:
    """Creates or renames a classification node; the parent is the code without its last segment."""
    authz.require(actor, Perm.STANDARD_MANAGE)
    return _save_category(actor, code, name, None)


def _save_category(actor: Actor, code: str, name: str, organization: Organization | None) -> Category:
    code = str(code).strip()
    widths = {1: None, 3: 1, 6: 3, 9: 6}
    if not code.isdigit() or len(code) not in widths or code[0] not in "123":
        raise ValidationFailed.of("code", _("A classification code has 1, 3, 6 or 9 digits and starts with 1, 2 or 3."))
    parent = get_category(code[: widths[len(code)]], "code") if widths[len(code)] else None
    with transaction.atomic():
        category = Category.objects.filter(code=code).first()
        if category is not None and (category.name, category.organization_id) == (name, getattr(organization, "id", None)):
            return category
        action = "catalog.category_update" if category else "catalog.category_create"
        category = category or Category(code=code, parent=parent)
        category.name, category.organization = name, organization
        category.save()
        audit.record(actor, action, category, summary={"code": code, "name": name})
    return category


def department_category(actor: Actor, org: Organization) -> Category:
    """The department's own 项 under 类 3 (部门信息资源). It is created with the department's first
    registration: a side effect of registering, so it needs no standards permission (it is still audited)."""
    existing = Category.objects.filter(organization=org).first()
    if existing is not None:
        return existing
    used = set(Category.objects.filter(code__regex=r"^3[0-9][0-9]$").values_list("code", flat=True))
    free = next((f"3{n:02d}" for n in range(1, 100) if f"3{n:02d}" not in used), None)
    if free is None:
        raise Conflict(_("The department classification is full."))
    return _save_category(actor, free, org.name, org)


# --------------------------------------------------------------------------------------------------
# Code tables and data elements (一标准)
# --------------------------------------------------------------------------------------------------


def list_code_tables() -> QuerySet:
    return CodeTable.objects.annotate(size=Count("values"))


def get_code_table(code: str) -> CodeTable:
    table = CodeTable.objects.filter(code=code).first()
    if table is None:
        raise NotFound(_("No code table %(code)s.") % {"code": code})
    return table


def save_code_table(actor: Actor, data: dict, new: bool = False) -> CodeTable:
    """Creates or replaces a code table with its values (a whole standard is loaded at once); with `new`,
    an existing table of that code is an error rather than replaced."""
    authz.require(actor, Perm.STANDARD_MANAGE)
    errors = _missing(data, ["code", "name"])
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", _text(data.get("code")) or "-"):
        errors.append(FieldError("code", _("A code table's code is at most 40 letters, digits, '_', '.' or '-'.")))
    values = data.get("values") or []
    seen: set[str] = set()
    for i, value in enumerate(values):
        code = str(value.get("code") or "").strip()
        if not code or not str(value.get("name") or "").strip():
            errors.append(FieldError(f"values[{i}]", _("Each value needs a code and a name.")))
        elif len(code) > 20 or len(str(value.get("parent") or "").strip()) > 20 or len(value["name"].strip()) > 100:
            errors.append(FieldError(f"values[{i}]", _("A code has at most 20 characters and a name at most 100.")))
        elif code in seen:
            errors.append(FieldError(f"values[{i}].code", _("Code %(code)s appears twice.") % {"code": code}))
        seen.add(code)
    for i, value in enumerate(values):
        parent = str(value.get("parent") or "").strip()
        if parent and parent not in seen:
            errors.append(FieldError(f"values[{i}].parent", _("Unknown parent code %(code)s.") % {"code": parent}))
    _raise(errors)
    with transaction.atomic():
        table = CodeTable.objects.filter(code=data["code"]).first() or CodeTable(code=data["code"])
        creating = table._state.adding
        if new and not creating:
            raise Conflict(_("Code table %(code)s already exists.") % {"code": table.code},
                           [FieldError("code", _("Code table %(code)s already exists.") % {"code": table.code})])
        table.name, table.standard = data["name"], data.get("standard", "")
        table.description = data.get("description", "")
        table.save()
        old = list(table.values.values_list("code", "name", "parent_code").order_by("position"))
        new = [(str(v["code"]).strip(), v["name"].strip(), str(v.get("parent") or "").strip()) for v in values]
        if old != new:
            table.values.all().delete()
            CodeValue.objects.bulk_create(
                CodeValue(table=table, code=c, name=n, parent_code=p, position=i) for i, (c, n, p) in enumerate(new)
            )
        if creating or old != new:
            audit.record(actor, "catalog.codetable_create" if creating else "catalog.codetable_update", table,
                         summary={"code": table.code, "values": len(new)})
    return table


def list_elements(q: str = "") -> QuerySet:
    qs = DataElement.objects.select_related("code_table", "authoritative__published", "authoritative__provider")
    if q:
        qs = qs.filter(Q(identifier__iexact=q) | Q(name__icontains=q) | Q(definition__icontains=q))
    return qs


def get_element(identifier: str, field_name: str = "element") -> DataElement:
    element = list_elements().filter(identifier=str(identifier).strip()).first()
    if element is None:
        raise ValidationFailed.of(field_name, _("Unknown data element %(id)s.") % {"id": identifier})
    return element


def find_element(identifier: str) -> DataElement:
    element = list_elements().filter(identifier=identifier).first()
    if element is None:
        raise NotFound(_("No data element %(id)s.") % {"id": identifier})
    return element


ELEMENT_FIELDS = ("identifier", "name", "definition", "data_type", "format", "value_domain", "code_table", "level",
                  "subject")


def save_element(actor: Actor, data: dict, new: bool = False) -> DataElement:
    """Creates or updates a data element; with `new`, an existing identifier is an error, not an update."""
    authz.require(actor, Perm.STANDARD_MANAGE)
    errors = _missing(data, ["identifier", "name", "definition", "data_type"])
    errors += _choice(data, "data_type", DataType) + _choice(data, "level", Level) + _choice(data, "subject", Subject)
    if data.get("identifier") and not re.fullmatch(r"[A-Z]{2}[0-9A-Z.]{1,18}", str(data["identifier"])):
        errors.append(FieldError("identifier", _("Use capital letters and digits, e.g. DE00001.")))
    table = None
    if data.get("code_table"):
        table = CodeTable.objects.filter(code=data["code_table"]).first()
        if table is None:
            errors.append(FieldError("code_table", _("Unknown code table %(code)s.") % {"code": data["code_table"]}))
    _raise(errors)
    with transaction.atomic():
        element = DataElement.objects.filter(identifier=data["identifier"]).first()
        creating = element is None
        if new and not creating:
            message = _("Data element %(id)s already exists.") % {"id": element.identifier}
            raise Conflict(message, [FieldError("identifier", message)])
        element = element or DataElement(identifier=data["identifier"])
        before = {f: _element_value(element, f) for f in ELEMENT_FIELDS}
        for name in ("name", "definition", "data_type", "format", "value_domain"):
            setattr(element, name, str(data.get(name) or "").strip())
        element.level = data.get("level") or Level.GENERAL
        # An edit that does not name the category keeps it (never declassified by omission).
        element.subject = data.get("subject") or element.subject or Subject.OTHER
        element.code_table = table
        after = {f: _element_value(element, f) for f in ELEMENT_FIELDS}
        if not creating and before == after:
            return element
        clash = DataElement.objects.filter(name=element.name).exclude(pk=element.pk).first()
        if clash is not None:
            raise Conflict(_("Data element %(id)s already has this name.") % {"id": clash.identifier},
                           [FieldError("name", _("Already used by %(id)s.") % {"id": clash.identifier})])
        element.save()
        audit.record(actor, "catalog.element_create" if creating else "catalog.element_update", element,
                     summary=after if creating else {"identifier": element.identifier, "changes": _diff(before, after)})
    return element


def _element_value(element: DataElement, name: str):
    if name == "code_table":
        return element.code_table.code if element.code_table_id else None
    return getattr(element, name)


# --------------------------------------------------------------------------------------------------
# Visibility
# --------------------------------------------------------------------------------------------------


def is_government(actor: Actor) -> bool:
    return actor.operator or actor.system is not None or (actor.user is not None and actor.user.is_active)


def visibility(actor: Actor) -> search.Visibility:
    drafts = authz.org_ids(actor, Perm.CATALOG_DRAFTS)
    if drafts is None:
        return search.Visibility(everything=True)
    if not is_government(actor):
        return search.Visibility(public=True)
    return search.Visibility(draft_orgs=frozenset(drafts))


def visibility_filter(actor: Actor) -> Q | None:
    """The resources `actor` may see, as a filter on Resource; None means all of them. The search index
    applies the same `visibility()`."""
    who = visibility(actor)
    if who.everything:
        return None
    if who.public:
        return Q(status=Status.PUBLISHED, published__open_type__in=[OpenType.OPEN, OpenType.CONDITIONAL])
    seen = Q(status__in=[Status.PUBLISHED, Status.DEPRECATED])
    return seen | Q(provider_id__in=who.draft_orgs) if who.draft_orgs else seen


def may_see_pending(actor: Actor, resource: Resource) -> bool:
    return authz.allowed(actor, Perm.CATALOG_DRAFTS, resource.provider)


def list_resources(actor: Actor) -> QuerySet:
    qs = Resource.objects.select_related("category", "provider", "published", "pending")
    where = visibility_filter(actor)
    return qs if where is None else qs.filter(where)


def normalize_code(code: str) -> str:
    """Resource codes contain a slash (前段码/后段码); URLs write it as a hyphen."""
    return str(code).strip().replace("-", "/")


def get_resource(actor: Actor, code: str, lock: bool = False) -> Resource:
    """The resource if `actor` may see it (404 otherwise, so its existence does not leak); `lock` takes
    the row lock a lifecycle step needs."""
    code = normalize_code(code)
    qs = Resource.objects.select_related("category", "provider", "published", "pending")
    # of=self: PostgreSQL cannot lock the nullable side of the outer joins to the versions.
    resource = (qs.select_for_update(of=("self",)) if lock else qs).filter(code=code).first()
    if resource is None or not visibility(actor).allows(resource):
        raise NotFound(_("No resource %(code)s.") % {"code": code})
    return resource


FACET_CHOICES = {"kind": Kind, "sharing_type": SharingType, "open_type": OpenType, "update_cycle": UpdateCycle,
                 "format": Format, "level": Level, "status": Status}


def search_catalog(actor: Actor, q: str = "", filters: dict | None = None, sort: str = "", offset: int = 0,
                   limit: int = 20) -> dict:
    """Full-text search with facets over what `actor` may see: the page of resources, the total and, per
    facet, (value, label, count)."""
    if len(q) > 200:
        raise ValidationFailed.of("q", _("At most %(n)s characters.") % {"n": 200})
    unknown = [name for name in (filters or {}) if name not in search.FACETS]
    if unknown:
        raise ValidationFailed.of(unknown[0], _("Unknown facet %(f)s.") % {"f": unknown[0]})
    if sort and sort not in search.SORTS:
        raise ValidationFailed.of("sort", _("Choose one of: %(c)s.") % {"c": ", ".join(search.SORTS)})
    result = search.run(visibility(actor), q, filters, sort, offset, limit)
    found = {r.pk: r for r in list_resources(actor).filter(pk__in=result.ids)}
    labels = _facet_labels(result.facets)
    return {
        "total": result.total,
        "resources": [found[i] for i in result.ids if i in found],
        "facets": {name: [(v, labels.get((name, v), v), n) for v, n in counts]
                   for name, counts in result.facets.items()},
    }


def _facet_labels(facets: dict) -> dict:
    labels = {}
    for name, choices in FACET_CHOICES.items():
        labels.update({(name, value): str(label) for value, label in choices.choices})
    labels.update({("mounted", "yes"): _("Mounted"), ("mounted", "no"): _("Not mounted")})
    codes = [v for v, _n in facets.get("provider", [])]
    labels.update({("provider", c): n for c, n in Organization.objects.filter(code__in=codes).values_list("code", "name")})
    codes = [v for v, _n in facets.get("category", [])]
    labels.update({("category", c): n for c, n in Category.objects.filter(code__in=codes).values_list("code", "name")})
    return labels


def visible_pending(actor: Actor, resource: Resource) -> ResourceVersion | None:
    """The version under way, when `actor` may see it (its department and the reviewers)."""
    return resource.pending if resource.pending_id and may_see_pending(actor, resource) else None


def list_versions(actor: Actor, code: str) -> QuerySet:
    return _versions(actor, get_resource(actor, code))


def _versions(actor: Actor, resource: Resource) -> QuerySet:
    """The versions `actor` may see: all of them for the department and reviewers; for everyone else only
    versions that were actually published (a revision withdrawn by deprecation never was), and for the
    public only those that were open."""
    qs = resource.versions.select_related("owner", "manager", "steward")
    if not may_see_pending(actor, resource):
        qs = qs.filter(published_at__isnull=False)
        if visibility(actor).public:
            qs = qs.filter(open_type__in=[OpenType.OPEN, OpenType.CONDITIONAL])
    return qs


def get_version(actor: Actor, code: str, number: int | None = None) -> ResourceVersion:
    """A version by number, or the one `actor` sees first (published, else the pending one)."""
    resource = get_resource(actor, code)
    if number is None and resource.published_id:
        return resource.published
    versions = _versions(actor, resource)
    version = versions.first() if number is None else versions.filter(number=number).first()
    if version is None:
        raise NotFound(_("Resource %(code)s has no version %(n)s.") % {"code": code, "n": number})
    return version


def available_actions(actor: Actor, resource: Resource) -> dict[str, bool]:
    """Which lifecycle steps `actor` may take on `resource` now: what the UI shows as buttons and the API
    reports. Each step's service checks the same permission and state again. A harvested copy takes none:
    it changes at its source."""
    if harvested_from(resource) is not None:
        return dict.fromkeys(("edit", "submit", "review", "publish", "revise", "deprecate", "mount"), False)
    provider = resource.provider
    pending = visible_pending(actor, resource)
    state = pending.status if pending else None
    can_edit = authz.allowed(actor, Perm.CATALOG_EDIT, provider)
    can_submit = authz.allowed(actor, Perm.CATALOG_SUBMIT, provider)
    can_review = authz.allowed(actor, Perm.CATALOG_REVIEW, provider)
    published = resource.status == Status.PUBLISHED
    return {
        "edit": state in EDITABLE and can_edit,
        "submit": state in EDITABLE and can_submit,
        # An approved version can still be returned before it is published.
        "review": state in (Status.SUBMITTED, Status.APPROVED) and can_review,
        "publish": state == Status.APPROVED and can_review,
        "revise": published and not resource.pending_id and can_edit,
        "deprecate": published and (can_review or can_submit),
        "mount": published and can_edit,
    }


def carriers(actor: Actor, element: DataElement) -> QuerySet:
    """The items of published versions `actor` may see that carry `element`: its source and its copies."""
    return (DataItem.objects.filter(element=element, version__status=Status.PUBLISHED,
                                    version__resource__in=list_resources(actor))
            .select_related("version__resource__provider").order_by("version__resource__code", "position"))


def items_of(version: ResourceVersion) -> QuerySet:
    return version.items.select_related("element", "element__authoritative__published")


# --------------------------------------------------------------------------------------------------
# Registration and editing
# --------------------------------------------------------------------------------------------------

VERSION_FIELDS = (
    "name", "summary", "format", "sharing_type", "sharing_conditions", "sharing_basis", "sharing_methods",
    "open_type", "open_conditions", "update_cycle", "level", "owner", "manager", "steward", "keywords",
    "spatial_coverage", "time_coverage_start", "time_coverage_end", "related_codes", "domestic_only",
)
ITEM_FIELDS = ("name", "data_type", "length", "nullable", "is_key", "element", "level", "authoritative", "subject",
               "sensitive_personal", "domestic_only")
REQUIRED = ("name", "summary", "format", "sharing_type", "open_type", "update_cycle")


def create_resource(actor: Actor, data: dict) -> Resource:
    """Registers a resource: a new code under its classification and version 1 as a draft. Every problem
    with the description is reported at once (the workbook import relies on it)."""
    errors = _missing(data, ["category", "provider"])
    provider = None
    if _text(data.get("provider")):
        provider = Organization.objects.filter(code=_text(data["provider"])).first()
        if provider is None:
            errors.append(FieldError("provider", _("Unknown organization %(code)s.") % {"code": data["provider"]}))
        else:
            authz.require(actor, Perm.CATALOG_EDIT, provider)
    category_code = _text(data.get("category"))
    if category_code:
        errors += _category_errors(category_code, provider)
    with transaction.atomic():
        values, items, more = _validated(data, provider, resource=None)
        _raise(errors + more)
        category = department_category(actor, provider) if category_code == "3" else get_category(category_code)
        # Lock the classification node: two registrations cannot take the same sequence number.
        category = Category.objects.select_for_update().get(pk=category.pk)
        code = f"{category.code.ljust(Category.CODE_WIDTH, '0')}/{category.next_sequence:06d}"
        category.next_sequence += 1
        category.save(update_fields=["next_sequence"])
        resource = Resource.objects.create(code=code, category=category, provider=provider, status=Status.DRAFT)
        version = _write_version(ResourceVersion(resource=resource, number=1, created_by=actor.name), values, items)
        resource.pending = version
        resource.save(update_fields=["pending", "updated_at"])
        ReviewEvent.objects.create(version=version, action=ReviewEvent.Action.CREATE, actor=actor.name)
        search.index(resource)
        audit.record(actor, "catalog.resource_create", resource,
                     summary={"code": code, "name": version.name, "provider": provider.code})
    return resource


def update_draft(actor: Actor, code: str, data: dict) -> ResourceVersion:
    """Edits the version under way while it is a draft or returned; `data` replaces what it describes."""
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_EDIT, resource.provider)
        version = resource.pending
        if version is None or version.status not in EDITABLE:
            raise Conflict(_("Only a draft or a returned version can be edited; start a new version first."),
                           [FieldError("status", _("The resource is %(s)s.") % {"s": resource.get_status_display()})])
        before = snapshot(version)
        values, items, errors = _validated(data, resource.provider, resource=resource)
        _raise(errors)
        refused = _opening_refusal(resource, values, items)
        if not refused:
            _write_version(version, values, items)
            changes = compare(before, snapshot(version))
            if changes["fields"] or changes["items"]:
                if not resource.published_id:
                    search.index(resource)
                audit.record(actor, "catalog.resource_update", resource,
                             summary={"code": resource.code, "version": version.number, "changes": changes})
            return version
    _refuse_for_findings(actor, resource, version, refused, "open")


def start_revision(actor: Actor, code: str) -> ResourceVersion:
    """Opens version N+1 of a published resource as a draft, copied from the live version, which stays live."""
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_EDIT, resource.provider)
        if resource.status != Status.PUBLISHED:
            raise Conflict(_("Only a published resource can be revised."), [FieldError("status", resource.status)])
        if resource.pending_id:
            raise Conflict(_("Version %(n)s is already under way.") % {"n": resource.pending.number},
                           [FieldError("status", resource.pending.status)])
        live = resource.published
        number = resource.versions.order_by("-number").values_list("number", flat=True).first() + 1
        version = ResourceVersion(resource=resource, number=number, created_by=actor.name)
        for name in VERSION_FIELDS:
            setattr(version, name, getattr(live, name))
        version.save()
        DataItem.objects.bulk_create(
            DataItem(version=version, **{f: getattr(item, f) for f in ("position",) + ITEM_FIELDS})
            for item in live.items.all()
        )
        resource.pending = version
        resource.save(update_fields=["pending", "updated_at"])
        ReviewEvent.objects.create(version=version, action=ReviewEvent.Action.CREATE, actor=actor.name)
        audit.record(actor, "catalog.resource_revise", resource, summary={"code": resource.code, "version": number})
    return version


# --------------------------------------------------------------------------------------------------
# Lifecycle: draft -> submitted -> approved | returned -> published -> deprecated
# --------------------------------------------------------------------------------------------------


def submit(actor: Actor, code: str, comment: str = "") -> ResourceVersion:
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_SUBMIT, resource.provider)
        version = _pending(resource, EDITABLE, _("Only a draft or a returned version can be submitted."))
        # Rules may have changed since the draft was saved (another resource became an element's source).
        _raise(_authoritative_errors(resource, _claims(version)))
        # What loaded data showed since: told now rather than at publication.
        refused = _finding_errors(resource, _declared(version.items.all()))
        if not refused:
            version.status, version.submitted_at = Status.SUBMITTED, timezone.now()
            version.save(update_fields=["status", "submitted_at", "updated_at"])
            return _transition(actor, resource, version, ReviewEvent.Action.SUBMIT, comment)
    _refuse_for_findings(actor, resource, version, refused, "submit")


def review(actor: Actor, code: str, decision: str, comment: str = "") -> ResourceVersion:
    """A platform-office reviewer approves the submitted version or returns it with a comment; an approved
    version not yet published can still be returned (e.g. when loaded data shows it must declare more)."""
    if decision not in ("approve", "return"):
        raise ValidationFailed.of("decision", _("The decision is approve or return."))
    if decision == "return" and not comment.strip():
        raise ValidationFailed.of("comment", _("Say what must change when returning a resource."))
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_REVIEW, resource.provider)
        states = (Status.SUBMITTED,) if decision == "approve" else (Status.SUBMITTED, Status.APPROVED)
        version = _pending(resource, states, _("Only a submitted version can be reviewed."))
        submitter = version.events.filter(action=ReviewEvent.Action.SUBMIT).order_by("-at", "-id").first()
        if decision == "approve" and submitter is not None and submitter.actor == actor.name:
            raise Forbidden(_("Someone other than the submitter must approve it."))
        version.status = Status.APPROVED if decision == "approve" else Status.RETURNED
        version.save(update_fields=["status", "updated_at"])
        action = ReviewEvent.Action.APPROVE if decision == "approve" else ReviewEvent.Action.RETURN
        return _transition(actor, resource, version, action, comment)


def publish(actor: Actor, code: str, comment: str = "") -> ResourceVersion:
    """Makes the approved version live; the version it replaces is kept as superseded."""
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_REVIEW, resource.provider)
        version = _pending(resource, (Status.APPROVED,), _("Only an approved version can be published."))
        claims = _claims(version)
        _raise(_authoritative_errors(resource, claims))
        refused = _finding_errors(resource, _declared(version.items.all()))
        if not refused:
            return _publish(actor, resource, version, claims, comment)
    _refuse_for_findings(actor, resource, version, refused, "publish")


def _publish(actor: Actor, resource: Resource, version: ResourceVersion, claims: list, comment: str):
    previous = resource.published
    if previous is not None:
        previous.status = Status.SUPERSEDED
        previous.save(update_fields=["status", "updated_at"])
    version.status, version.published_at = Status.PUBLISHED, timezone.now()
    version.save(update_fields=["status", "published_at", "updated_at"])
    # One datum, one source: the published version's claims are the element registry's truth.
    DataElement.objects.filter(authoritative=resource).exclude(id__in=claims).update(authoritative=None)
    DataElement.objects.filter(id__in=claims).update(authoritative=resource)
    resource.published, resource.pending = version, None
    _resolve_findings(resource, version)
    return _transition(actor, resource, version, ReviewEvent.Action.PUBLISH, comment)


def deprecate(actor: Actor, code: str, reason: str) -> Resource:
    """Withdraws a published resource from use; its versions stay for the record."""
    if not reason.strip():
        raise ValidationFailed.of("reason", _("Give the reason for deprecating the resource."))
    with transaction.atomic():
        resource = _lock(actor, code)
        if not (authz.allowed(actor, Perm.CATALOG_REVIEW, resource.provider)
                or authz.allowed(actor, Perm.CATALOG_SUBMIT, resource.provider)):
            raise Forbidden(_("You do not have permission to do this."))
        if resource.status != Status.PUBLISHED:
            raise Conflict(_("Only a published resource can be deprecated."), [FieldError("status", resource.status)])
        ResourceVersion.objects.filter(resource=resource, status__in=[Status.PUBLISHED, *EDITABLE,
                                       Status.SUBMITTED, Status.APPROVED]).update(status=Status.DEPRECATED)
        DataElement.objects.filter(authoritative=resource).update(authoritative=None)
        resource.deprecated_at, resource.pending = timezone.now(), None
        resource.mount_kind, resource.mount_target, resource.mounted_at = "", "", None
        version = resource.published
        version.status = Status.DEPRECATED
        _transition(actor, resource, version, ReviewEvent.Action.DEPRECATE, reason)
    return resource


def _transition(actor: Actor, resource: Resource, version: ResourceVersion, action: str, comment: str):
    """Records the step, recomputes the resource's visible state, reindexes and audits: the tail every
    lifecycle step shares."""
    ReviewEvent.objects.create(version=version, action=action, actor=actor.name, comment=comment.strip())
    if action == ReviewEvent.Action.DEPRECATE:
        resource.status = Status.DEPRECATED
    elif resource.published_id:
        resource.status = Status.PUBLISHED
    else:
        resource.status = version.status
    resource.save(update_fields=["status", "published", "pending", "deprecated_at", "mount_kind",
                                 "mount_target", "mounted_at", "updated_at"])
    # Publishing changes the text people search; the other steps change only facets.
    if action == ReviewEvent.Action.PUBLISH:
        search.index(resource)
    else:
        search.touch()
    audit.record(actor, f"catalog.resource_{action}", resource,
                 summary={"code": resource.code, "version": version.number, "status": version.status,
                          "comment": comment.strip()[:500]})
    return version


# --------------------------------------------------------------------------------------------------
# Mounting (挂接)
# --------------------------------------------------------------------------------------------------


def mount(actor: Actor, code: str, kind: str, target: str) -> Resource:
    target = (target or "").strip()
    if kind not in MountKind.values:
        raise ValidationFailed.of("kind", _("The mount kind is table, api or file."))
    error = _mount_target_error(kind, target)
    if error:
        raise ValidationFailed.of("target", error)
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_EDIT, resource.provider)
        if resource.status != Status.PUBLISHED:
            raise Conflict(_("Only a published resource can be mounted."), [FieldError("status", resource.status)])
        if (resource.mount_kind, resource.mount_target) == (kind, target):
            return resource
        resource.mount_kind, resource.mount_target, resource.mounted_at = kind, target, timezone.now()
        resource.save(update_fields=["mount_kind", "mount_target", "mounted_at", "updated_at"])
        ReviewEvent.objects.create(version=resource.published, action=ReviewEvent.Action.MOUNT, actor=actor.name,
                                   comment=f"{kind}: {target}")
        search.touch()
        audit.record(actor, "catalog.resource_mount", resource, summary={"code": resource.code, "kind": kind, "target": target})
    return resource


def unmount(actor: Actor, code: str) -> Resource:
    with transaction.atomic():
        resource = _lock(actor, code)
        authz.require(actor, Perm.CATALOG_EDIT, resource.provider)
        if not resource.is_mounted:
            return resource
        old = f"{resource.mount_kind}: {resource.mount_target}"
        resource.mount_kind, resource.mount_target, resource.mounted_at = "", "", None
        resource.save(update_fields=["mount_kind", "mount_target", "mounted_at", "updated_at"])
        ReviewEvent.objects.create(version=resource.published, action=ReviewEvent.Action.UNMOUNT, actor=actor.name,
                                   comment=old)
        search.touch()
        audit.record(actor, "catalog.resource_unmount", resource, summary={"code": resource.code, "was": old})
    return resource


def save_mirror(actor: Actor, provider: Organization, resource: Resource | None, data: dict,
                mount_target: str) -> Resource:
    """Creates or updates the read-only copy of another catalog's dataset (harvest): a published version
    saying what the source says, filed under the source node's own 项 (类 3) with a local code, so it never
    takes or overwrites one of the city's own records. Checked like a registration (ValidationFailed
    names the field; the harvest reports it and goes on). Elements and authoritative claims are the
    source's business: they are dropped. Mounted as an external API at the source's address, so city
    departments can apply for it through the usual sharing workflow."""
    data = {**data, "items": [{k: v for k, v in item.items() if k not in ("element", "authoritative")}
                              for item in data.get("items") or [] if isinstance(item, dict)]}
    error = _mount_target_error(MountKind.API, mount_target)
    if error:
        raise ValidationFailed.of("mount_target", error)
    now = timezone.now()
    with transaction.atomic():
        values, items, errors = _validated(data, provider, resource=resource)
        _raise(errors)
        if resource is None:
            category = Category.objects.select_for_update().get(pk=department_category(actor, provider).pk)
            code = f"{category.code.ljust(Category.CODE_WIDTH, '0')}/{category.next_sequence:06d}"
            category.next_sequence += 1
            category.save(update_fields=["next_sequence"])
            resource = Resource.objects.create(code=code, category=category, provider=provider,
                                               status=Status.PUBLISHED)
            number, action = 1, "catalog.mirror_create"
        else:
            resource = Resource.objects.select_for_update().get(pk=resource.pk)
            ResourceVersion.objects.filter(resource=resource, status__in=[Status.PUBLISHED, Status.DEPRECATED]) \
                .update(status=Status.SUPERSEDED)
            number = (resource.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
            action = "catalog.mirror_update"
        version = _write_version(ResourceVersion(resource=resource, number=number, status=Status.PUBLISHED,
                                                 published_at=now, created_by=actor.name), values, items)
        resource.published, resource.pending, resource.status, resource.deprecated_at = version, None, \
            Status.PUBLISHED, None
        resource.mount_kind, resource.mount_target, resource.mounted_at = MountKind.API, mount_target, now
        resource.save()
        ReviewEvent.objects.create(version=version, action=ReviewEvent.Action.PUBLISH, actor=actor.name,
                                   comment=_("Harvested"))
        search.index(resource)
        audit.record(actor, action, resource, summary={"code": resource.code, "name": version.name,
                                                       "provider": provider.code, "version": number})
    return resource


def withdraw_mirror(actor: Actor, resource: Resource, reason: str) -> Resource:
    """The source no longer lists the dataset: its copy is deprecated (kept for the record)."""
    with transaction.atomic():
        resource = Resource.objects.select_for_update(of=("self",)).select_related("published").get(pk=resource.pk)
        if resource.status == Status.DEPRECATED:
            return resource
        ResourceVersion.objects.filter(resource=resource, status=Status.PUBLISHED).update(status=Status.DEPRECATED)
        resource.status, resource.deprecated_at = Status.DEPRECATED, timezone.now()
        resource.mount_kind, resource.mount_target, resource.mounted_at = "", "", None
        resource.save()
        ReviewEvent.objects.create(version=resource.published, action=ReviewEvent.Action.DEPRECATE,
                                   actor=actor.name, comment=reason)
        search.index(resource)
        audit.record(actor, "catalog.mirror_withdraw", resource, summary={"code": resource.code, "reason": reason})
    return resource


def require_grantable(resource: Resource) -> None:
    """What the sharing workflow asks before granting access: published, shareable and mounted."""
    if resource.status != Status.PUBLISHED:
        raise Conflict(_("Resource %(code)s is not published.") % {"code": resource.code})
    if resource.published.sharing_type == SharingType.NONE:
        raise Forbidden(_("Resource %(code)s is not shared: %(basis)s")
                        % {"code": resource.code, "basis": resource.published.sharing_basis})
    if not resource.is_mounted:
        raise Conflict(_("Resource %(code)s is not mounted: there is no data to grant access to yet.")
                       % {"code": resource.code}, [FieldError("resource", _("Not mounted."))])


def _mount_target_error(kind: str, target: str) -> str:
    if not target or len(target) > 500:
        return _("Say where the data lives (at most 500 characters).")
    if kind == MountKind.TABLE and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}", target):
        return _("A warehouse table is written namespace.table in lower case, e.g. public_security.household.")
    if kind == MountKind.API:
        url = urlparse(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            return _("An API endpoint is an http:// or https:// address.")
    if kind == MountKind.FILE and not re.match(r"^https?://", target):
        if target.startswith(("/", "\\")) or "\\" in target or ":" in target or ".." in target.split("/"):
            return _("Files are given as a path inside the file store (no leading '/', no '..') or an http(s) address.")
    return ""


# --------------------------------------------------------------------------------------------------
# Versions: snapshot and comparison
# --------------------------------------------------------------------------------------------------


def snapshot(version: ResourceVersion) -> dict:
    """A version as plain values: what comparison, export and the audit trail show."""
    fields = {}
    for name in VERSION_FIELDS:
        value = getattr(version, name)
        if isinstance(value, Organization):
            value = value.code
        elif isinstance(value, User):
            value = value.username
        elif isinstance(value, dt.date):
            value = value.isoformat()
        fields[name] = value
    items = {}
    for item in version.items.select_related("element").order_by("position"):
        items[item.name] = {f: (item.element.identifier if f == "element" and item.element_id else
                                None if f == "element" else getattr(item, f)) for f in ITEM_FIELDS if f != "name"}
    return {"number": version.number, "status": version.status, "fields": fields, "items": items}


def compare(a: dict, b: dict) -> dict:
    """Field-by-field differences between two snapshots: changed fields, and items added, removed or changed
    (items are matched by name)."""
    fields = {k: [a["fields"][k], b["fields"][k]] for k in VERSION_FIELDS if a["fields"][k] != b["fields"][k]}
    items = {}
    for name in list(a["items"]) + [n for n in b["items"] if n not in a["items"]]:
        old, new = a["items"].get(name), b["items"].get(name)
        if old is None:
            items[name] = {"change": "added", "fields": {k: [None, v] for k, v in new.items()}}
        elif new is None:
            items[name] = {"change": "removed", "fields": {k: [v, None] for k, v in old.items()}}
        elif old != new:
            items[name] = {"change": "changed", "fields": {k: [old[k], new[k]] for k in old if old[k] != new[k]}}
    return {"fields": fields, "items": items}


def diff_versions(actor: Actor, code: str, a: int, b: int) -> dict:
    old, new = get_version(actor, code, a), get_version(actor, code, b)
    return {"code": old.resource.code, "from": a, "to": b, **compare(snapshot(old), snapshot(new))}


# --------------------------------------------------------------------------------------------------
# One datum, one source (一数一源)
# --------------------------------------------------------------------------------------------------


def source_report(actor: Actor) -> dict:
    """Elements collected by several departments (多头采集), and elements no resource is the source of."""
    live = DataItem.objects.filter(version__status=Status.PUBLISHED, element__isnull=False)
    where = visibility_filter(actor)
    if where is not None:
        live = live.filter(version__resource__in=Resource.objects.filter(where))
    providers: dict[str, set] = {}
    for identifier, provider in live.values_list("element__identifier", "version__resource__provider__name"):
        providers.setdefault(identifier, set()).add(provider)
    elements = {e.identifier: e for e in list_elements()}
    multiple = [
        {"identifier": i, "name": elements[i].name, "providers": sorted(p),
         "authoritative": visible_source(actor, elements[i]), "has_source": elements[i].authoritative_id is not None}
        for i, p in sorted(providers.items()) if len(p) > 1
    ]
    no_source = [{"identifier": e.identifier, "name": e.name, "used_by": len(providers.get(e.identifier, ()))}
                 for e in elements.values() if e.authoritative_id is None]
    return {"multiple_collection": multiple, "no_authoritative_source": no_source}


def visible_source(actor: Actor, element: DataElement) -> str | None:
    """The code of the element's authoritative resource, if `actor` may see that resource."""
    source = element.authoritative
    return source.code if source is not None and visibility(actor).allows(source) else None


def _claims(version: ResourceVersion) -> list:
    return list(version.items.filter(authoritative=True).values_list("element_id", flat=True))


def _authoritative_errors(resource: Resource | None, element_ids, positions=None) -> list[FieldError]:
    errors = []
    if not element_ids:
        return errors
    taken = DataElement.objects.filter(id__in=element_ids, authoritative__isnull=False).select_related(
        "authoritative__published", "authoritative__provider")
    for element in taken:
        if resource is not None and element.authoritative_id == resource.pk:
            continue
        source = element.authoritative
        field = f"items[{positions[element.pk]}].authoritative" if positions else "items"
        errors.append(FieldError(field, _(
            "%(element)s already has an authoritative source: %(code)s %(name)s (%(provider)s). One datum, one "
            "source: carry it as a copy, or ask the platform office to move the source.") % {
            "element": f"{element.identifier} {element.name}", "code": source.code,
            "name": source.published.name if source.published_id else "", "provider": source.provider.name}))
    return errors


# --------------------------------------------------------------------------------------------------
# Discovery findings (security.discovery): what the loaded data shows about the items
# --------------------------------------------------------------------------------------------------


def list_findings(actor: Actor, resource: Resource, limit: int = 50) -> list[DiscoveryFinding]:
    """The resource's findings, unresolved flagged ones first, for the department and the reviewers (anyone
    else gets an empty list)."""
    if not may_see_pending(actor, resource):
        return []
    qs = DiscoveryFinding.objects.filter(resource=resource)
    open_ = list(qs.filter(flagged=True, resolved_at__isnull=True).order_by("item", "kind"))
    rest = list(qs.exclude(pk__in=[f.pk for f in open_]).order_by("-created_at", "item")[:max(0, limit - len(open_))])
    return open_ + rest


def open_findings(resource: Resource) -> list[DiscoveryFinding]:
    return list(DiscoveryFinding.objects.filter(resource=resource, flagged=True, resolved_at__isnull=True)
                .order_by("item", "kind"))


def _declared(items) -> dict[str, dict]:
    """Item name -> what it declares (subject, level, sensitive), from model rows or the service's dicts."""
    out = {}
    for item in items:
        get = item.get if isinstance(item, dict) else (lambda name, item=item: getattr(item, name))
        out[get("name")] = {"subject": get("subject") or Subject.OTHER, "level": get("level") or Level.GENERAL,
                            "sensitive": bool(get("sensitive_personal"))}
    return out


def _shortfall(finding: DiscoveryFinding, declared: dict) -> list[str]:
    """The fields of an item that declare less than the finding implies."""
    from shuzheng.security import policy

    short = []
    if policy.subject_rank(declared["subject"]) < policy.subject_rank(finding.implied_subject):
        short.append("subject")
    if LEVEL_RANK.get(declared["level"], 0) < LEVEL_RANK.get(finding.implied_level, 0):
        short.append("level")
    if finding.implied_sensitive and not declared["sensitive"]:
        short.append("sensitive_personal")
    return short


def _finding_errors(resource: Resource, declared: dict[str, dict]) -> list[FieldError]:
    """One error per item field that declares less than an unresolved finding shows (an item no longer in
    the version is no longer loaded: its findings do not hold the version back)."""
    errors, seen = [], set()
    for finding in open_findings(resource):
        item = declared.get(finding.item)
        if item is None:
            continue
        for name in _shortfall(finding, item):
            if (finding.item, name) in seen:  # the same column flagged again by a later load
                continue
            seen.add((finding.item, name))
            wanted = {"subject": Subject(finding.implied_subject).label, "level": Level(finding.implied_level).label,
                      "sensitive_personal": _("sensitive personal information")}[name]
            errors.append(FieldError(f"items.{finding.item}.{name}", _(
                "The loaded data shows that item %(item)s holds %(kind)s (%(share).0f%% of %(n)s sampled values): "
                "declare it as %(wanted)s before publishing or opening the resource.") % {
                "item": finding.item, "kind": kind_label(finding.kind), "share": finding.share * 100,
                "n": finding.sampled, "wanted": wanted}))
    return errors


def _opening_refusal(resource: Resource, values: dict, items: list[dict]) -> list[FieldError]:
    if values.get("open_type") not in (OpenType.OPEN, OpenType.CONDITIONAL):
        return []
    return _finding_errors(resource, _declared(items))


def _refuse_for_findings(actor: Actor, resource: Resource, version: ResourceVersion, errors: list[FieldError],
                         step: str):
    """Audits the refusal in its own transaction (the step's was rolled back) and raises it."""
    with transaction.atomic():
        audit.record(actor, "catalog.discovery_refused", resource, summary={
            "code": resource.code, "version": version.number, "step": step, "fields": [e.field for e in errors]})
    raise ValidationFailed.listing(errors)


def _resolve_findings(resource: Resource, version: ResourceVersion) -> None:
    """Findings the published version answers: the item now declares at least what the data shows, or the
    version no longer has the item."""
    declared = _declared(version.items.all())
    now = timezone.now()
    for finding in open_findings(resource):
        item = declared.get(finding.item)
        if item is not None and _shortfall(finding, item):
            continue
        finding.resolved_at = now
        finding.resolution = (_("declared in version %(n)s") if item is not None else
                              _("item removed in version %(n)s")) % {"n": version.number}
        finding.save(update_fields=["resolved_at", "resolution", "updated_at"])


def kind_label(kind: str) -> str:
    return str(DISCOVERY_KINDS.get(kind, kind))


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _validated(data: dict, provider: Organization | None,
               resource: Resource | None) -> tuple[dict, list[dict], list[FieldError]]:
    """Checks a resource description: (version values, item values, every problem with its field)."""
    errors = _missing(data, list(REQUIRED))
    for name, choices in (("format", Format), ("sharing_type", SharingType), ("open_type", OpenType),
                          ("update_cycle", UpdateCycle), ("level", Level)):
        errors += _choice(data, name, choices)
    values = {name: _text(data.get(name)) for name in (
        "name", "summary", "format", "sharing_type", "sharing_conditions", "sharing_basis", "open_type",
        "open_conditions", "update_cycle", "level", "spatial_coverage")}
    for name, limit in (("name", 200), ("spatial_coverage", 100), ("summary", 4000), ("sharing_conditions", 2000),
                        ("sharing_basis", 2000), ("open_conditions", 2000)):
        if len(values[name]) > limit:
            errors.append(FieldError(name, _("At most %(n)s characters.") % {"n": limit}))
    methods = _list(data.get("sharing_methods"))
    bad = [m for m in methods if m not in SharingMethod.values]
    if bad:
        errors.append(FieldError("sharing_methods", _("Unknown sharing method %(m)s; use interface, table or file.")
                                 % {"m": bad[0]}))
    values["sharing_methods"] = [m for m in SharingMethod.values if m in methods]
    values["keywords"] = list(dict.fromkeys(k for k in _list(data.get("keywords")) if k))[:30]
    for name in ("owner", "manager"):
        code = _text(data.get(name))
        values[name] = provider
        if code:
            org = Organization.objects.filter(code=code).first()
            if org is None:
                errors.append(FieldError(name, _("Unknown organization %(code)s.") % {"code": code}))
            values[name] = org or provider
    values["steward"] = None
    if _text(data.get("steward")):
        values["steward"] = User.objects.filter(username=_text(data["steward"]), is_active=True).first()
        if values["steward"] is None:
            errors.append(FieldError("steward", _("Unknown user %(u)s.") % {"u": data["steward"]}))
    for name in ("time_coverage_start", "time_coverage_end"):
        values[name], error = _date(data.get(name))
        if error:
            errors.append(FieldError(name, error))
    if values["time_coverage_start"] and values["time_coverage_end"] and \
            values["time_coverage_end"] < values["time_coverage_start"]:
        errors.append(FieldError("time_coverage_end", _("The coverage ends before it starts.")))
    related = list(dict.fromkeys(_list(data.get("related_codes"))))
    known = set(Resource.objects.filter(code__in=related).values_list("code", flat=True))
    for code in related:
        if code not in known:
            errors.append(FieldError("related_codes", _("Unknown resource code %(code)s.") % {"code": code}))
        elif resource is not None and code == resource.code:
            errors.append(FieldError("related_codes", _("A resource cannot be related to itself.")))
    values["related_codes"] = related
    values["domestic_only"] = _bool(data.get("domestic_only"))

    items, item_errors = _validated_items(data.get("items"))
    errors += item_errors
    errors += _terms_errors(values, items)
    elements = {i["element"].pk: n for n, i in enumerate(items) if i["authoritative"] and i["element"]}
    errors += _authoritative_errors(resource, list(elements), elements)
    if provider is not None and values["name"]:
        twin = (Resource.objects.filter(provider=provider).exclude(status=Status.DEPRECATED)
                .filter(Q(published__name=values["name"]) | Q(pending__name=values["name"]))
                .exclude(pk=getattr(resource, "pk", None)).values_list("code", flat=True).first())
        if twin:
            errors.append(FieldError("name", _("%(provider)s already has resource %(code)s with this name.")
                                     % {"provider": provider.name, "code": twin}))
    return values, items, errors


def _validated_items(raw) -> tuple[list[dict], list[FieldError]]:
    errors: list[FieldError] = []
    if not isinstance(raw, list) or not raw:
        return [], [FieldError("items", _("A resource describes at least one data item."))]
    if len(raw) > 500:
        return [], [FieldError("items", _("At most 500 data items."))]
    identifiers = {_text(i.get("element")) for i in raw if isinstance(i, dict)} - {""}
    elements = {e.identifier: e for e in DataElement.objects.filter(identifier__in=identifiers)}
    items, names = [], set()
    for n, item in enumerate(raw):
        at = f"items[{n}]"
        if not isinstance(item, dict):
            errors.append(FieldError(at, _("Each data item is an object.")))
            continue
        name = _text(item.get("name"))
        element = elements.get(_text(item.get("element")))
        if not name:
            errors.append(FieldError(f"{at}.name", _("This field is required.")))
        elif len(name) > 100:
            errors.append(FieldError(f"{at}.name", _("At most %(n)s characters.") % {"n": 100}))
        elif name in names:
            errors.append(FieldError(f"{at}.name", _("Item %(name)s appears twice.") % {"name": name}))
        names.add(name)
        if _text(item.get("element")) and element is None:
            errors.append(FieldError(f"{at}.element", _("Unknown data element %(id)s.") % {"id": item["element"]}))
        data_type = _text(item.get("data_type")) or (element.data_type if element else "")
        if data_type not in DataType.values:
            errors.append(FieldError(f"{at}.data_type", _("Choose one of: %(c)s.") % {"c": ", ".join(DataType.values)}))
        elif element is not None and data_type != element.data_type:
            errors.append(FieldError(f"{at}.data_type", _("Data element %(id)s is %(type)s; one datum, one standard.")
                                     % {"id": element.identifier, "type": element.data_type}))
        length, error = _length(item.get("length"))
        if error:
            errors.append(FieldError(f"{at}.length", error))
        subject = _text(item.get("subject")) or (element.subject if element else Subject.OTHER)
        if subject not in Subject.values:
            errors.append(FieldError(f"{at}.subject", _("Choose one of: %(c)s.") % {"c": ", ".join(Subject.values)}))
        sensitive = _bool(item.get("sensitive_personal"))
        if sensitive and subject != Subject.PERSONAL:
            errors.append(FieldError(f"{at}.sensitive_personal", _(
                "Only personal information (个人) can be sensitive personal information.")))
        given_level = _text(item.get("level"))
        level = given_level or (element.level if element else Level.GENERAL)
        if level not in Level.values:
            errors.append(FieldError(f"{at}.level", _("Choose one of: %(c)s.") % {"c": ", ".join(Level.values)}))
        elif sensitive and LEVEL_RANK[level] < LEVEL_RANK[Level.IMPORTANT]:
            if given_level:
                errors.append(FieldError(f"{at}.level", _(
                    "Sensitive personal information is at least important (重要).")))
            level = Level.IMPORTANT
        authoritative = _bool(item.get("authoritative"))
        if authoritative and element is None:
            errors.append(FieldError(f"{at}.authoritative", _("Only an item tied to a data element can be its source.")))
        items.append({"name": name, "data_type": data_type, "length": length, "nullable": item.get("nullable") in (None, "") or _bool(item["nullable"]),
                      "is_key": _bool(item.get("is_key")), "element": element, "level": level,
                      "authoritative": authoritative, "subject": subject, "sensitive_personal": sensitive,
                      "domestic_only": _bool(item.get("domestic_only"))})
    return items, errors


def _terms_errors(values: dict, items: list[dict]) -> list[FieldError]:
    """The sharing, opening and grading rules of the guide and GB/T 43697."""
    errors = []
    sharing, opening = values["sharing_type"], values["open_type"]
    if sharing == SharingType.NONE and not values["sharing_basis"]:
        errors.append(FieldError("sharing_basis", _("A resource that is not shared must cite its legal basis.")))
    if sharing == SharingType.CONDITIONAL and not values["sharing_conditions"]:
        errors.append(FieldError("sharing_conditions", _("State the conditions of conditional sharing.")))
    if sharing in (SharingType.UNCONDITIONAL, SharingType.CONDITIONAL) and not values["sharing_methods"]:
        errors.append(FieldError("sharing_methods", _("Say how it is shared: interface, table or file.")))
    if sharing == SharingType.NONE:
        values["sharing_methods"] = []
    if opening == OpenType.CONDITIONAL and not values["open_conditions"]:
        errors.append(FieldError("open_conditions", _("State the conditions of conditional opening.")))
    highest = max(items, key=lambda i: LEVEL_RANK.get(i["level"], 0), default=None)
    floor = highest["level"] if highest and highest["level"] in Level.values else Level.GENERAL
    values["level"] = values["level"] or floor
    if values["level"] in Level.values and LEVEL_RANK[values["level"]] < LEVEL_RANK[floor]:
        errors.append(FieldError("level", _("The resource must be at least %(level)s because item %(item)s is.")
                                 % {"level": Level(floor).label, "item": highest["name"]}))
    if opening in (OpenType.OPEN, OpenType.CONDITIONAL) and values["level"] != Level.GENERAL:
        errors.append(FieldError("open_type", _("Only a resource graded general (一般) can be opened.")))
    return errors


def _write_version(version: ResourceVersion, values: dict, items: list[dict]) -> ResourceVersion:
    for name, value in values.items():
        setattr(version, name, value)
    version.save()
    version.items.all().delete()
    DataItem.objects.bulk_create(DataItem(version=version, position=n, **item) for n, item in enumerate(items))
    return version


def _category_errors(code: str, provider: Organization | None) -> list[FieldError]:
    """Problems with the classification a resource is registered under; 类 3 alone means the provider's own
    department 项 (created on first use), and department classifications belong to their department."""
    if code == "3":
        return []
    category = Category.objects.filter(code=code).first()
    if category is None:
        return [FieldError("category", _("Unknown classification %(code)s.") % {"code": code})]
    if category.kind == Kind.DEPARTMENT:
        own = Category.objects.filter(organization=provider).first() if provider else None
        if own is None or not category.code.startswith(own.code):
            return [FieldError("category", _("Department classifications (类 3) are the provider's own."))]
    return []


def _lock(actor: Actor, code: str) -> Resource:
    resource = get_resource(actor, code, lock=True)
    origin = harvested_from(resource)
    if origin is not None:
        raise Conflict(_("Resource %(code)s is a copy harvested from %(source)s; change it at its source.")
                       % {"code": resource.code, "source": origin}, [FieldError("resource", _("Harvested."))])
    return resource


def harvested_from(resource: Resource) -> str | None:
    """The harvest source a resource is a read-only copy from, by name; None for the city's own."""
    try:
        return resource.harvested.source.name
    except ObjectDoesNotExist:
        return None


def _pending(resource: Resource, allowed: tuple, message: str) -> ResourceVersion:
    version = resource.pending
    if version is None or version.status not in allowed:
        state = version.get_status_display() if version else resource.get_status_display()
        raise Conflict(message, [FieldError("status", _("The version is %(s)s.") % {"s": state})])
    return version


def _missing(data: dict, names: list[str]) -> list[FieldError]:
    return [FieldError(n, _("This field is required.")) for n in names if not _text(data.get(n))]


def _choice(data: dict, name: str, choices) -> list[FieldError]:
    value = _text(data.get(name))
    if value and value not in choices.values:
        return [FieldError(name, _("Choose one of: %(c)s.") % {"c": ", ".join(choices.values)})]
    return []


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed.listing(errors)


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = re.split(r"[,;，；、\s]+", value)
    return [_text(v) for v in value if _text(v)]


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "是", "√")
    return bool(value)


def _date(value) -> tuple[dt.date | None, str]:
    if value in (None, ""):
        return None, ""
    if isinstance(value, dt.datetime):
        return value.date(), ""
    if isinstance(value, dt.date):
        return value, ""
    try:
        return dt.date.fromisoformat(str(value).strip()), ""
    except ValueError:
        return None, _("Write the date as YYYY-MM-DD.")


def _length(value) -> tuple[int | None, str]:
    if value in (None, ""):
        return None, ""
    try:
        number = int(str(value).strip())
    except ValueError:
        return None, _("The length is a whole number.")
    if not 0 < number <= 1_000_000:
        return None, _("The length is between 1 and 1000000.")
    return number, ""
