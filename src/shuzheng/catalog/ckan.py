"""CKAN's Action API (2.10) over the data resource catalog, for the portals, harvesters and scripts that speak
it (ckanapi, ckanext-harvest, ckanext-dcat, open-data aggregators).

Plain functions of an Actor and the action's parameters; catalog.ckan_views turns HTTP into calls of these and
their results and errors into CKAN's envelope. Every visibility decision comes from catalog.services
(visibility, list_resources, get_resource, search_catalog): a caller sees through CKAN exactly what it sees in
the catalog, nothing more.

The mapping:
  package        a catalog resource; `name` its code in lower case with "-" for "/" (package_name), `id` its UUID
  organization   the resource's provider; `name` its unified social credit code in lower case (organization_name)
  group          a 项 of the classification (three-digit code such as 101 人口基础信息资源); `name` the code
  tag            a keyword of the resource
  resource       a distribution derived from the mount (distributions): a warehouse table is the gateway's
                 record pages (and, for open resources, the datastore), an external API its address, files the
                 catalog page
  private        the resource is not open (open type "closed", 不予开放)
  licence        open resources "other-at" (the platform's open-data terms: use with attribution); the others
                 "other-closed"
  state          "active" (published), "deleted" (deprecated: only government callers see those), "draft"
                 (unpublished: only the department and the reviewers see those)
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Prefetch, prefetch_related_objects
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import to_locale

from shuzheng.catalog import search
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import Category, DataItem, MountKind, OpenType, Resource, ResourceVersion, Status
from shuzheng.core.errors import NotFound, ServiceError, ValidationFailed
from shuzheng.org.models import Organization
from shuzheng.org.services import Actor
from shuzheng.sharing import opendata

CKAN_VERSION = "2.10.4"
ROWS_DEFAULT = 10
ROWS_MAX = 1000
START_MAX = 1_000_000
LIST_MAX = 1_000_000
TEXT_MAX = 200  # ids, names, sorts
FQ_MAX = 2000
FACET_LIMIT_DEFAULT = 50
ORG_DATASETS_MAX = 1000
DEFAULT_SORT = "score desc, metadata_modified desc"
# Distribution ids are uuid5 of the resource id and the distribution's kind: stable across calls and runs.
RECORDS, API, FILES = "records", "api", "files"
LICENCES = {
    # Open resources: the platform's open-data terms, which let anyone use the data on condition of naming the
    # source department (CKAN's "Other (Attribution)"). The city has adopted no public licence such as CC BY;
    # naming one here would be a legal commitment the platform cannot make for it.
    OpenType.OPEN: ("other-at", "Other (Attribution)", True),
    OpenType.CONDITIONAL: ("other-closed", "Other (Not Open)", False),
    OpenType.CLOSED: ("other-closed", "Other (Not Open)", False),
}
STATES = {Status.PUBLISHED: "active", Status.DEPRECATED: "deleted"}
DRAFT_STATES = (Status.DRAFT, Status.SUBMITTED, Status.RETURNED, Status.APPROVED)


class UnknownAction(ServiceError):
    """An action this API does not have (CKAN answers 400 with a bare message)."""

    status = 400
    title = "Bad request"


# --------------------------------------------------------------------------------------------------
# Names and shapes the DCAT export reuses
# --------------------------------------------------------------------------------------------------


def package_name(resource: Resource) -> str:
    """The CKAN name of a resource: its code in lower case, "/" written "-" (101001000/000001 -> 101001000-000001)."""
    return resource.code.lower().replace("/", "-")


def organization_name(org: Organization) -> str:
    """The CKAN name of an organization: its unified social credit code in lower case."""
    return org.code.lower()


def _url_code(code: str) -> str:
    return code.replace("/", "-")


def page_url(resource: Resource, base_url: str) -> str:
    """The resource's catalog page."""
    return base_url.rstrip("/") + reverse("web:resource", kwargs={"code": _url_code(resource.code)})


def distribution_id(resource_id, kind: str) -> str:
    return str(uuid.uuid5(uuid.UUID(str(resource_id)), kind))


def distributions(resource: Resource, base_url: str) -> list[dict]:
    """The CKAN resources (DCAT distributions) of a catalog resource, from its mount: none before it is mounted
    (or once deprecated, which unmounts it). A warehouse table gives the gateway's record pages (`gateway` true;
    `datastore_active` when the resource is open data), an external API its own address, files the catalog
    page. Ids are uuid5(resource id, kind): the same in every answer and every export."""
    if not resource.is_mounted:
        return []
    base = base_url.rstrip("/")
    common = {"package_id": str(resource.id), "position": 0, "state": "active", "created": _iso(resource.mounted_at),
              "last_modified": None, "size": None, "hash": "", "url_type": None, "cache_url": None,
              "mimetype_inner": None}
    if resource.mount_kind == MountKind.TABLE:
        open_rows = opendata.is_open(resource)
        description = _("Record pages through the data sharing gateway, for application systems holding a grant "
                        "on this resource.")
        if open_rows:
            description += " " + _("Open data: anyone may also read its rows without a key through the "
                                   "datastore_search action.")
        return [{**common, "id": distribution_id(resource.id, RECORDS), "name": _("Records (data sharing gateway)"),
                 "description": description, "url": f"{base}/api/v1/share/{_url_code(resource.code)}/records",
                 "format": "JSON", "mimetype": "application/json", "resource_type": "api",
                 "datastore_active": open_rows, "gateway": True}]
    if resource.mount_kind == MountKind.API:
        return [{**common, "id": distribution_id(resource.id, API), "name": _("Interface of the providing system"),
                 "description": _("The provider's own interface serving this resource's data."),
                 "url": resource.mount_target, "format": "API", "mimetype": None, "resource_type": "api",
                 "datastore_active": False, "gateway": False}]
    return [{**common, "id": distribution_id(resource.id, FILES), "name": _("Files"),
             "description": _("The data are files in the platform's file store; the catalog page says how to "
                              "obtain them."),
             "url": page_url(resource, base), "format": "HTML", "mimetype": "text/html", "resource_type": None,
             "datastore_active": False, "gateway": False}]


def _iso(value) -> str | None:
    """ISO 8601 without a timezone, in UTC, as CKAN writes its timestamps."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if timezone.is_aware(value):
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    return value.isoformat()


def _organization(org: Organization, package_count: int | None = None) -> dict:
    data = {"id": str(org.id), "name": organization_name(org), "title": org.name, "display_name": org.name,
            "description": "", "type": "organization", "is_organization": True, "state": "active",
            "approval_status": "approved", "image_url": "", "image_display_url": "", "created": _iso(org.created_at),
            "num_followers": 0,
            "extras": [{"key": "credit_code", "value": org.code}, {"key": "kind", "value": org.kind},
                       {"key": "short_name", "value": org.short_name}, {"key": "name_en", "value": org.name_en}]}
    if package_count is not None:
        data["package_count"] = package_count
    return data


def _group(category: Category, description: str, package_count: int | None = None) -> dict:
    data = {"id": str(category.id), "name": category.code, "title": category.name, "display_name": category.name,
            "description": description, "type": "group", "is_organization": False, "state": "active",
            "approval_status": "approved", "image_url": "", "image_display_url": "", "created": _iso(category.created_at),
            "num_followers": 0}
    if package_count is not None:
        data["package_count"] = package_count
    return data


def _tag(name: str) -> dict:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"shuzheng:tag:{name}")), "name": name, "display_name": name,
            "state": "active", "vocabulary_id": None}


class _Packer:
    """Package dicts for one call: the 项 categories read once, the versions' items and organizations read in
    one query each for a whole page."""

    def __init__(self, actor: Actor, base_url: str):
        self.actor, self.base_url = actor, base_url.rstrip("/")
        self._categories = self._groups = None

    @property
    def categories(self) -> dict[str, Category]:
        if self._categories is None:
            self._categories = {c.code: c for c in catalog.list_categories()}
        return self._categories

    @property
    def groups(self) -> dict[str, Category]:
        """The 项: the classification's three-digit nodes."""
        if self._groups is None:
            self._groups = {code: c for code, c in self.categories.items() if len(code) == 3}
        return self._groups

    def full_name(self, code: str) -> str:
        """类 / 项 / 目 / 细目 names of a classification code, from the categories read once."""
        names, width = [], 0
        for digits in Category.SEGMENTS:
            width += digits
            node = self.categories.get(code[:width]) if len(code) >= width else None
            if node is not None:
                names.append(node.name)
        return " / ".join(names)

    def group(self, category: Category, package_count: int | None = None) -> dict:
        return _group(category, self.full_name(category.code), package_count)

    def version(self, resource: Resource) -> ResourceVersion | None:
        return resource.published or catalog.visible_pending(self.actor, resource)

    def packages(self, resources: list[Resource]) -> list[dict]:
        versions = [v for v in (self.version(r) for r in resources) if v is not None]
        prefetch_related_objects(versions, Prefetch("items", queryset=DataItem.objects.order_by("position")),
                                 "owner", "manager")
        return [self.package(r) for r in resources if self.version(r) is not None]

    def package(self, resource: Resource) -> dict:
        version = self.version(resource)
        licence_id, licence_title, is_open = LICENCES.get(version.open_type, LICENCES[OpenType.CLOSED])
        group = self.groups.get(resource.category.code[:3])
        items = [{"name": i.name, "type": i.data_type, "length": i.length, "key": i.is_key, "level": i.level}
                 for i in version.items.all()]
        extras = {
            "resource_code": resource.code, "classification": resource.category.code,
            "classification_name": self.full_name(resource.category.code), "format": version.format,
            "sharing_type": version.sharing_type, "sharing_conditions": version.sharing_conditions,
            "sharing_methods": ",".join(version.sharing_methods or []), "open_type": version.open_type,
            "open_conditions": version.open_conditions, "update_cycle": version.update_cycle, "level": version.level,
            "owner": version.owner.name, "manager": version.manager.name,
            "spatial_coverage": version.spatial_coverage,
            "temporal_coverage_start": _iso(version.time_coverage_start) or "",
            "temporal_coverage_end": _iso(version.time_coverage_end) or "",
            "related_resources": ",".join(version.related_codes or []),
            "domestic_only": "true" if version.domestic_only else "false", "version": str(version.number),
            "mount_kind": resource.mount_kind, "data_items": json.dumps(items, ensure_ascii=False),
        }
        resources = distributions(resource, self.base_url)
        tags = [_tag(k) for k in version.keywords or []]
        modified = version.published_at or version.updated_at or version.created_at
        return {
            "id": str(resource.id), "name": package_name(resource), "title": version.name, "notes": version.summary,
            "type": "dataset", "state": STATES.get(resource.status, "draft"),
            "private": version.open_type == OpenType.CLOSED, "owner_org": str(resource.provider_id),
            "organization": _organization(resource.provider), "author": version.owner.name, "author_email": None,
            "maintainer": version.manager.name, "maintainer_email": None, "version": str(version.number),
            "license_id": licence_id, "license_title": licence_title, "license_url": None, "isopen": is_open,
            "url": page_url(resource, self.base_url), "metadata_created": _iso(resource.created_at),
            "metadata_modified": _iso(modified), "creator_user_id": None,
            "tags": tags, "num_tags": len(tags), "groups": [self.group(group)] if group else [],
            "resources": resources, "num_resources": len(resources),
            "extras": [{"key": k, "value": v if isinstance(v, str) else str(v)} for k, v in extras.items()],
            "relationships_as_object": [], "relationships_as_subject": [],
        }


# --------------------------------------------------------------------------------------------------
# Parameters: everything a client sends is checked here and refused as a Validation Error naming it
# --------------------------------------------------------------------------------------------------


def _fail(name: str, message) -> ValidationFailed:
    return ValidationFailed.of(name, str(message))


def _text(data: dict, name: str, default: str | None = "", required: bool = False, limit: int = TEXT_MAX) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise _fail(name, _("Missing value"))
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _fail(name, _("A text is expected."))
    if len(value) > limit:
        raise _fail(name, _("At most %(n)s characters.") % {"n": limit})
    return value.strip()


def _int(data: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail(name, _("Invalid integer"))
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,12}", text):
            raise _fail(name, _("Invalid integer"))
        value = int(text)
    if not low <= value <= high:
        raise _fail(name, _("Must be between %(low)s and %(high)s.") % {"low": low, "high": high})
    return value


def _bool(data: dict, name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise _fail(name, _("true or false."))


def _json_value(data: dict, name: str, kinds: tuple, message):
    """A parameter given as JSON text (what GET requests carry) or already decoded (a POST body)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if len(value) > FQ_MAX * 5:
            raise _fail(name, _("At most %(n)s characters.") % {"n": FQ_MAX * 5})
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _fail(name, message)
    if not isinstance(value, kinds):
        raise _fail(name, message)
    return value


def _names(data: dict, name: str, limit: int = 100) -> list[str] | None:
    """A list of names: a JSON list, or (as CKAN also takes them) text separated by commas."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and not value.lstrip().startswith("["):
        value = [v.strip() for v in value.split(",") if v.strip()]
    else:
        value = _json_value(data, name, (list,), _("A list of names."))
    if len(value) > limit or not all(isinstance(v, str) and 0 < len(v) <= TEXT_MAX for v in value):
        raise _fail(name, _("A list of at most %(n)s names.") % {"n": limit})
    return value


def _sort_of(data: dict, allowed: dict, default: str) -> tuple[str, str]:
    """(the sort as given, normalized; what it maps to)."""
    raw = _text(data, "sort", default) or default
    key = ", ".join(" ".join(part.split()) for part in raw.lower().split(","))
    if key not in allowed:
        raise _fail("sort", _("Unknown sort %(s)s; choose one of: %(c)s.")
                    % {"s": raw[:100], "c": "; ".join(sorted(allowed))})
    return key, allowed[key]


def _resource_by_id(actor: Actor, ident: str) -> Resource:
    """A resource the caller may see, by UUID or CKAN name (or its code)."""
    try:
        pk = uuid.UUID(ident)
    except ValueError:
        pk = None
    if pk is not None:
        resource = catalog.list_resources(actor).filter(pk=pk).first()
        if resource is None:
            raise NotFound(_("No dataset %(id)s.") % {"id": ident})
        return resource
    try:
        return catalog.get_resource(actor, ident.upper())
    except NotFound:
        raise NotFound(_("No dataset %(id)s.") % {"id": ident})


def _distribution(actor: Actor, ident: str, base_url: str) -> tuple[Resource, dict]:
    """The resource and the distribution with CKAN resource id `ident`, among what the caller may see."""
    try:
        wanted = str(uuid.UUID(ident))
    except ValueError:
        raise NotFound(_("No resource %(id)s.") % {"id": ident})
    kinds = {MountKind.TABLE: RECORDS, MountKind.API: API, MountKind.FILE: FILES}
    for pk, kind in catalog.list_resources(actor).exclude(mount_kind="").values_list("pk", "mount_kind"):
        if kind in kinds and distribution_id(pk, kinds[kind]) == wanted:
            resource = catalog.list_resources(actor).get(pk=pk)
            return resource, distributions(resource, base_url)[0]
    raise NotFound(_("No resource %(id)s.") % {"id": ident})


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


def status_show(actor: Actor, data: dict, base_url: str) -> dict:
    """The site's name, address, CKAN version, default locale and extensions."""
    return {"site_title": settings.PLATFORM_NAME,
            "site_url": base_url.rstrip("/"),
            "site_description": _("The city's data resource catalog (政务数据资源目录): the resources of its "
                                  "departments, their metadata and, for open data, their rows."),
            "ckan_version": CKAN_VERSION, "error_emails_to": None,
            "locale_default": to_locale(settings.LANGUAGE_CODE), "extensions": []}


def help_show(actor: Actor, data: dict, base_url: str) -> str:
    """The help text of an action (parameter: name)."""
    name = _text(data, "name", required=True)
    fn = ACTIONS.get(name)
    if fn is None:
        raise NotFound(_("No action %(name)s.") % {"name": name})
    return fn.__doc__ or ""


def _published(actor: Actor):
    return catalog.list_resources(actor).filter(status=Status.PUBLISHED)


def package_list(actor: Actor, data: dict, base_url: str) -> list[str]:
    """Names of the published datasets that are not private, in name order (parameters: limit, offset)."""
    limit = _int(data, "limit", None, 0, LIST_MAX)
    offset = _int(data, "offset", 0, 0, LIST_MAX)
    codes = (_published(actor).exclude(published__open_type=OpenType.CLOSED).order_by("code")
             .values_list("code", flat=True))
    codes = codes[offset:] if limit is None else codes[offset:offset + limit]
    return [c.lower().replace("/", "-") for c in codes]


def package_show(actor: Actor, data: dict, base_url: str) -> dict:
    """One dataset (parameter: id, the dataset's id or name)."""
    ident = _text(data, "id", required=True)
    packages = _Packer(actor, base_url).packages([_resource_by_id(actor, ident)])
    if not packages:
        raise NotFound(_("No dataset %(id)s.") % {"id": ident})
    return packages[0]


# fq fields that are facets of the catalog's search (filtered in the index) and what they are called there.
FQ_INDEX = {"organization": "provider", "groups": "category", **{f: f for f in search.FACETS}}
# fq fields that only narrow the index's status and open type (dataset_type:dataset, capacity:public|private).
FQ_SCOPE = ("dataset_type", "capacity")
# fq fields filtered on the package dicts of the search's hits.
FQ_AFTER = ("tags", "res_format", "license_id", "metadata_modified", "metadata_created", "owner_org", "name", "id")
FACET_FIELDS = ("organization", "groups", "tags", "res_format", "license_id", *search.FACETS)
SEARCH_SORTS = {"score desc": "relevance", "score desc, metadata_modified desc": "relevance",
                "relevance": "relevance", "metadata_modified desc": "newest", "name asc": "code",
                "title_string asc": "name", "title asc": "name"}
_FQ_TERM = re.compile(
    r'\s*(?:(?P<and>AND|&&)(?=\s)|(?P<all>\*:\*)|(?P<plus>\+)?(?P<field>[A-Za-z_][\w.]*):'
    r'(?P<value>"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^\s"()\[\]{}]+))')
_RANGE = re.compile(r"\[\s*(\S+)\s+TO\s+(\S+)\s*\]")


def parse_fq(fq: str) -> list[tuple[str, object]]:
    """CKAN's (Solr's) filter query, the subset clients send: `field:value` terms, values quoted or bare,
    joined by spaces or AND, each optionally prefixed with +; `metadata_modified:[FROM TO UNTIL]` with ISO
    times or *; `*:*`. Every term must hold."""
    terms, pos = [], 0
    while pos < len(fq):
        if not fq[pos:].strip():
            break
        m = _FQ_TERM.match(fq, pos)
        if m is None or m.end() == pos:
            raise _fail("fq", _("Cannot read the filter at “%(rest)s”: write field:value or field:\"value\", "
                                "joined by spaces or AND.") % {"rest": fq[pos:pos + 30].strip()})
        pos = m.end()
        if m.group("and") or m.group("all"):
            continue
        field, value = m.group("field"), m.group("value")
        if field not in FQ_INDEX and field not in FQ_SCOPE and field not in FQ_AFTER:
            raise _fail("fq", _("Unknown filter field %(f)s; use one of: %(c)s.")
                        % {"f": field[:50], "c": ", ".join([*FQ_INDEX, *FQ_SCOPE, *FQ_AFTER])})
        if value.startswith("["):
            if field not in ("metadata_modified", "metadata_created"):
                raise _fail("fq", _("Ranges apply to metadata_modified and metadata_created only."))
            found = _RANGE.fullmatch(value)
            if not found:
                raise _fail("fq", _("A range is written [FROM TO UNTIL], either end may be *."))
            value = (_fq_time(found.group(1)), _fq_time(found.group(2)))
        elif field in ("metadata_modified", "metadata_created"):
            raise _fail("fq", _("%(f)s takes a range: [FROM TO UNTIL].") % {"f": field})
        elif value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        terms.append((field, value))
    return terms


def _fq_time(text: str) -> str | None:
    if text == "*":
        return None
    try:
        moment = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise _fail("fq", _("Not an ISO date or time: %(t)s") % {"t": text[:40]})
    return _iso(moment)  # compared with the packages' times: UTC, without a timezone


def _facet_label(field: str, value: str, packer: _Packer, orgs: dict) -> str:
    if field == "organization":
        return orgs.get(value, value)
    if field == "groups":
        group = packer.groups.get(value)
        return group.name if group else value
    if field == "provider":
        return orgs.get(value.lower(), value)
    if field == "category":
        group = packer.groups.get(value)
        return group.name if group else value
    if field in catalog.FACET_CHOICES:
        return str(dict(catalog.FACET_CHOICES[field].choices).get(value, value))
    if field == "mounted":
        return _("Mounted") if value == "yes" else _("Not mounted")
    return value


def _facet_values(field: str, resource: Resource, package: dict, version: ResourceVersion) -> list[str]:
    if field == "organization":
        return [package["organization"]["name"]]
    if field == "groups":
        return [g["name"] for g in package["groups"]]
    if field == "tags":
        return [t["name"] for t in package["tags"]]
    if field == "res_format":
        return sorted({r["format"] for r in package["resources"]})
    if field == "license_id":
        return [package["license_id"]]
    if field == "provider":
        return [resource.provider.code]
    if field == "kind":
        return [resource.category.kind]
    if field == "category":
        return [resource.category.code[:3]]
    if field == "mounted":
        return ["yes" if resource.is_mounted else "no"]
    if field == "status":
        return [resource.status]
    return [getattr(version, field)]


def _matches(field: str, value, resource: Resource, package: dict) -> bool:
    if field == "tags":
        return value in [t["name"] for t in package["tags"]]
    if field == "res_format":
        return value.lower() in [r["format"].lower() for r in package["resources"]]
    if field == "license_id":
        return package["license_id"] == value
    if field in ("metadata_modified", "metadata_created"):
        low, high = value
        stamp = package[field] or ""
        return (low is None or stamp >= low) and (high is None or stamp <= high)
    if field == "owner_org":
        return package["owner_org"] == value
    if field == "name":
        return package["name"] == value
    if field == "id":
        return package["id"] == value
    raise AssertionError(field)


def package_search(actor: Actor, data: dict, base_url: str) -> dict:
    """Searches the datasets: q (Chinese full text), fq (field:value terms on organization, groups, tags,
    res_format, license_id, metadata_modified ranges, dataset_type, capacity and the catalog's facets), rows (0 to
    1000, default 10),
    start, sort (score desc, metadata_modified desc, name asc, title_string asc), facet.field (a JSON list),
    facet.limit, facet.mincount, include_private, include_drafts, include_deleted."""
    q = _text(data, "q", "", limit=TEXT_MAX)
    if q.strip() in ("*:*", "*"):
        q = ""
    fq = _text(data, "fq", "", limit=FQ_MAX)
    rows = _int(data, "rows", ROWS_DEFAULT, 0, ROWS_MAX)
    start = _int(data, "start", 0, 0, START_MAX)
    sort_key, sort = _sort_of(data, SEARCH_SORTS, DEFAULT_SORT)
    facet_fields = _json_value(data, "facet.field", (list,), _("A JSON list of field names, e.g. "
                                                                '["organization", "tags"].')) or []
    for field in facet_fields:
        if field not in FACET_FIELDS:
            raise _fail("facet.field", _("Unknown facet %(f)s; use one of: %(c)s.")
                        % {"f": str(field)[:50], "c": ", ".join(FACET_FIELDS)})
    facet_limit = _int(data, "facet.limit", FACET_LIMIT_DEFAULT, -1, 10_000)
    facet_mincount = _int(data, "facet.mincount", 1, 0, 1_000_000)
    include_private = _bool(data, "include_private", False)
    include_drafts = _bool(data, "include_drafts", False)
    include_deleted = _bool(data, "include_deleted", False)

    # Facets of the index narrow its search; within one field every value must hold (Solr's AND), and a
    # resource has one value of each, so two different values find nothing.
    wanted: dict[str, set] = {"status": {Status.PUBLISHED} | (set(DRAFT_STATES) if include_drafts else set())
                              | ({Status.DEPRECATED} if include_deleted else set())}
    if not include_private:
        wanted["open_type"] = {OpenType.OPEN, OpenType.CONDITIONAL}
    after: list[tuple[str, object]] = []
    for field, value in parse_fq(fq):
        if field == "dataset_type":  # every package is a dataset (clients add +dataset_type:dataset)
            wanted["status"] = wanted["status"] if value == "dataset" else set()
        elif field == "capacity":  # older clients' way of saying public or private
            private = {OpenType.CLOSED} if value == "private" else set()
            public = {OpenType.OPEN, OpenType.CONDITIONAL} if value == "public" else set()
            wanted["open_type"] = wanted.get("open_type", set(OpenType.values)) & (private | public)
        elif field in FQ_INDEX:
            facet = FQ_INDEX[field]
            value = value.upper() if facet == "provider" else value
            wanted[facet] = wanted.get(facet, {value}) & {value}
        else:
            after.append((field, value))
    packer = _Packer(actor, base_url)
    empty = any(not values for values in wanted.values())
    filters = {name: sorted(values) for name, values in wanted.items()}
    if empty:
        total, page, hits = 0, [], []
    elif after or facet_fields:
        # Filters and facets over fields the index does not keep: every hit is read and judged here.
        found = catalog.search_catalog(actor, q, filters, sort, 0, START_MAX)
        hits = []
        resources = found["resources"]
        for resource, package in zip(resources, packer.packages(resources)):
            if all(_matches(f, v, resource, package) for f, v in after):
                hits.append((resource, package))
        total, page = len(hits), [p for _r, p in hits[start:start + rows]]
    else:
        found = catalog.search_catalog(actor, q, filters, sort, start, rows)
        total, page, hits = found["total"], packer.packages(found["resources"]), []

    facets, search_facets = {}, {}
    if facet_fields:
        orgs = {p["organization"]["name"]: p["organization"]["title"] for _r, p in hits}
        for field in facet_fields:
            counts: dict[str, int] = {}
            for resource, package in hits:
                for value in _facet_values(field, resource, package, packer.version(resource)):
                    counts[value] = counts.get(value, 0) + 1
            ranked = sorted(((v, n) for v, n in counts.items() if n >= facet_mincount), key=lambda vn: (-vn[1], vn[0]))
            if facet_limit >= 0:
                ranked = ranked[:facet_limit]
            facets[field] = dict(ranked)
            search_facets[field] = {"title": field, "items": [
                {"name": v, "display_name": _facet_label(field, v, packer, orgs), "count": n} for v, n in ranked]}
    return {"count": total, "results": page, "facets": facets, "search_facets": search_facets, "sort": sort_key}


def _providers(actor: Actor) -> dict:
    """Organizations that provide a published resource the caller may see, with how many."""
    counts: dict = {}
    for org_id in _published(actor).values_list("provider_id", flat=True):
        counts[org_id] = counts.get(org_id, 0) + 1
    return counts


ORG_SORTS = {"name asc": ("name", False), "name desc": ("name", True), "title asc": ("title", False),
             "title desc": ("title", True), "package_count asc": ("package_count", False),
             "package_count desc": ("package_count", True)}


def _listing(data: dict, dicts: list[dict], include_all: bool):
    _key, (field, descending) = _sort_of(data, ORG_SORTS, "name asc")
    dicts.sort(key=lambda d: (d[field], d["name"]), reverse=descending)
    limit = _int(data, "limit", None, 0, LIST_MAX)
    offset = _int(data, "offset", 0, 0, LIST_MAX)
    dicts = dicts[offset:] if limit is None else dicts[offset:offset + limit]
    return dicts if include_all else [d["name"] for d in dicts]


def organization_list(actor: Actor, data: dict, base_url: str) -> list:
    """The organizations that provide a published dataset the caller may see (parameters: all_fields, sort
    of name/title/package_count asc/desc, limit, offset, organizations: names to keep)."""
    all_fields = _bool(data, "all_fields", False)
    only = _names(data, "organizations")
    counts = _providers(actor)
    orgs = [_organization(o, counts[o.pk]) for o in Organization.objects.filter(pk__in=list(counts))]
    if only is not None:
        orgs = [o for o in orgs if o["name"] in only]
    return _listing(data, orgs, all_fields)


def organization_show(actor: Actor, data: dict, base_url: str) -> dict:
    """One organization (parameters: id, its id or name; include_datasets)."""
    ident = _text(data, "id", required=True)
    include = _bool(data, "include_datasets", False)
    counts = _providers(actor)
    org = Organization.objects.filter(pk__in=list(counts), code=ident.upper()).first()
    if org is None:
        try:
            org = Organization.objects.filter(pk__in=list(counts), pk=uuid.UUID(ident)).first()
        except ValueError:
            org = None
    if org is None:
        raise NotFound(_("No organization %(id)s.") % {"id": ident})
    result = _organization(org, counts[org.pk])
    if include:
        resources = list(_published(actor).filter(provider=org).order_by("code")[:ORG_DATASETS_MAX])
        result["packages"] = _Packer(actor, base_url).packages(resources)
    result.update({"users": [], "groups": [], "tags": []})
    return result


def _groups_seen(actor: Actor) -> dict[str, int]:
    counts: dict[str, int] = {}
    for code in _published(actor).values_list("category__code", flat=True):
        counts[code[:3]] = counts.get(code[:3], 0) + 1
    return counts


def group_list(actor: Actor, data: dict, base_url: str) -> list:
    """The classification's 项 (three-digit categories) that hold a published dataset the caller may see
    (parameters: all_fields, sort, limit, offset, groups: names to keep)."""
    all_fields = _bool(data, "all_fields", False)
    only = _names(data, "groups")
    counts = _groups_seen(actor)
    packer = _Packer(actor, base_url)
    groups = packer.groups
    dicts = [packer.group(groups[c], n) for c, n in counts.items() if c in groups]
    if only is not None:
        dicts = [g for g in dicts if g["name"] in only]
    return _listing(data, dicts, all_fields)


def group_show(actor: Actor, data: dict, base_url: str) -> dict:
    """One group (parameters: id, its id or name, the 项 code; include_datasets)."""
    ident = _text(data, "id", required=True)
    include = _bool(data, "include_datasets", False)
    counts = _groups_seen(actor)
    packer = _Packer(actor, base_url)
    group = packer.groups.get(ident) or next((g for g in packer.groups.values() if str(g.id) == ident), None)
    if group is None or group.code not in counts:
        raise NotFound(_("No group %(id)s.") % {"id": ident})
    result = packer.group(group, counts[group.code])
    if include:
        resources = list(_published(actor).filter(category__code__startswith=group.code)
                         .order_by("code")[:ORG_DATASETS_MAX])
        result["packages"] = packer.packages(resources)
    result.update({"users": [], "groups": [], "tags": [], "extras": []})
    return result


def tag_list(actor: Actor, data: dict, base_url: str) -> list:
    """Keywords of the published datasets the caller may see, in order (parameters: query, text a tag must
    contain; all_fields; vocabulary_id: there are no vocabularies)."""
    query = _text(data, "query", "")
    all_fields = _bool(data, "all_fields", False)
    if _text(data, "vocabulary_id", ""):
        raise NotFound(_("There are no tag vocabularies."))
    tags = set()
    for keywords in _published(actor).values_list("published__keywords", flat=True):
        tags.update(k for k in keywords or [] if isinstance(k, str))
    names = sorted(t for t in tags if not query or query.lower() in t.lower())
    return [_tag(n) for n in names] if all_fields else names


def resource_show(actor: Actor, data: dict, base_url: str) -> dict:
    """One resource (distribution) of a dataset (parameter: id)."""
    ident = _text(data, "id", required=True)
    resource, dist = _distribution(actor, ident, base_url)
    return {**dist, "package_name": package_name(resource)}


def datastore_search(actor: Actor, data: dict, base_url: str) -> dict:
    """Rows of an open dataset's warehouse table (parameters: resource_id, the CKAN resource id or the
    dataset's id or name; filters, a JSON object of exact values; q, text to find; fields; sort, "field asc,
    field desc"; limit, 0 to 1000, default 100; offset; include_total)."""
    ident = _text(data, "resource_id", "") or _text(data, "id", "")
    if not ident:
        raise _fail("resource_id", _("Missing value"))
    try:
        limit = _int(data, "limit", opendata.LIMIT_DEFAULT, 0, opendata.LIMIT_MAX)
        offset = _int(data, "offset", 0, 0, opendata.OFFSET_MAX)
        wanted = _json_value(data, "filters", (dict,), _("A JSON object of field names and values."))
        q = data.get("q")
        if isinstance(q, str) and q.lstrip().startswith("{"):
            q = _json_value(data, "q", (dict,), _("Text, or a JSON object of field names and texts."))
        fields = _names(data, "fields", limit=1000)
        sort = []
        for part in (_text(data, "sort", "", limit=FQ_MAX) or "").split(","):
            words = part.split()
            if not words:
                continue
            if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
                raise _fail("sort", _("Write field, field asc or field desc, separated by commas."))
            sort.append((words[0].strip('"'), len(words) == 2 and words[1].lower() == "desc"))
        include_total = _bool(data, "include_total", True)
        records_format = _text(data, "records_format", "objects")
        if records_format != "objects":
            raise _fail("records_format", _("Only objects are served."))
        code = _code_of(actor, ident, base_url)
    except ServiceError as exc:
        opendata.refused(actor, ident, exc)
        raise
    found = opendata.records(actor, code, filters_=wanted, q=q, fields=fields, sort=sort, limit=limit,
                             offset=offset, include_total=include_total)
    types = {"string": "text", "integer": "int", "decimal": "numeric", "date": "date", "datetime": "timestamp",
             "boolean": "bool"}
    records = [{k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in found["records"]]
    params = {"resource_id": ident, **({"limit": limit} if "limit" in data else {})}
    start = "/api/3/action/datastore_search?" + urlencode(params)
    result = {"resource_id": ident, "fields": [{"id": f.name, "type": types[f.data_type]} for f in found["fields"]],
              "records": records, "limit": limit, "offset": offset,
              "_links": {"start": start, "next": start + f"&offset={offset + limit}"}}
    if found["total"] is not None:
        result["total"] = found["total"]
        result["total_was_estimated"] = False
    if found["withheld"]:
        result["withheld_fields"] = found["withheld"]
    return result


def _code_of(actor: Actor, ident: str, base_url: str) -> str:
    """The resource code a datastore resource_id names: a distribution's id, a dataset's id, name or code."""
    try:
        uuid.UUID(ident)
    except ValueError:
        return ident
    try:
        return _distribution(actor, ident, base_url)[0].code
    except NotFound:
        return _resource_by_id(actor, ident).code


ACTIONS = {fn.__name__: fn for fn in (
    status_show, help_show, package_list, package_show, package_search, organization_list, organization_show,
    group_list, group_show, tag_list, resource_show, datastore_search)}


def call(actor: Actor, action: str, data: dict, base_url: str):
    """Runs an action; ServiceError subclasses say what went wrong (ckan_views renders them as CKAN does)."""
    fn = ACTIONS.get(action)
    if fn is None:
        raise UnknownAction(f"Action name not known: {action[:100]}")
    for key, value in data.items():
        _no_nul("body" if "\x00" in key else key[:100], key)
        _no_nul(key[:100], value)
    return fn(actor, data, base_url)


def _no_nul(name: str, value, depth: int = 0) -> None:
    """NUL characters have no use in any parameter (and PostgreSQL text cannot hold them)."""
    if depth > 20:
        raise _fail(name, _("Nested too deeply."))
    if isinstance(value, str):
        if "\x00" in value:
            raise _fail(name, _("Contains a NUL character."))
    elif isinstance(value, list):
        for v in value:
            _no_nul(name, v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(name, k, depth + 1)
            _no_nul(name, v, depth + 1)
