"""Reading harvested documents: DCAT pages (Turtle, RDF/XML, JSON-LD) and CKAN package_search pages, into
entries described the way the city catalog describes a resource. Nothing here touches the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

import orjson
from django.utils import timezone
from rdflib import Graph, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, SKOS

from shuzheng.catalog.dcat import ADMS, CHANGE, FREQUENCY, HYDRA, LOCN, PROV, SZ

FREQUENCY_CYCLE = {code: cycle for cycle, code in FREQUENCY.items()}
RDF_TYPES = {"text/turtle": "turtle", "application/x-turtle": "turtle", "application/rdf+xml": "xml",
             "application/ld+json": "json-ld", "application/json": "json-ld"}
TEXT_LIMIT = 20000  # longer text is cut, so one verbose entry cannot fill the database
# What a dataset described without its data items (plain DCAT, CKAN) is filed with: one item standing for
# the whole dataset, so an application can still name what it asks for.
WHOLE_DATASET = {"name": "数据集（整体）", "data_type": "string"}


class Invalid(Exception):
    """The document cannot be read at all (the run fails and changes nothing)."""


@dataclass
class Entry:
    identifier: str
    uri: str = ""
    landing_page: str = ""
    access_url: str = ""
    modified: dt.datetime | None = None
    relayed: bool = False  # the source harvested it from elsewhere
    data: dict = field(default_factory=dict)  # catalog.services.save_mirror's description

    def digest(self) -> str:
        body = orjson.dumps({"data": self.data, "access_url": self.access_url, "landing_page": self.landing_page},
                            option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(body).hexdigest()


@dataclass
class Page:
    entries: list[Entry]
    deleted: list[str]           # dataset URIs the source says are gone (incremental feeds)
    next_url: str | None


def _web(value) -> str:
    """An http(s) address, or "" (a source's javascript: or file: link must never reach a page)."""
    text = str(value or "").strip()
    return text[:1000] if text.lower().startswith(("http://", "https://")) else ""


def _cut(value) -> str:
    return str(value or "").strip()[:TEXT_LIMIT]


def _zh(graph: Graph, node, prop) -> str:
    """The Chinese text if there is one, else any."""
    values = list(graph.objects(node, prop))
    for value in values:
        if getattr(value, "language", None) in ("zh", "zh-cn", "zh-hans"):
            return _cut(value)
    return _cut(values[0]) if values else ""


def _when(value) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = value.toPython() if hasattr(value, "toPython") else value
        if isinstance(parsed, dt.datetime):
            return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
        if isinstance(parsed, dt.date):
            return timezone.make_aware(dt.datetime.combine(parsed, dt.time()))
        return _when(dt.datetime.fromisoformat(str(parsed)))
    except (ValueError, TypeError, OverflowError):
        return None


def _date(value) -> str:
    when = value.toPython() if hasattr(value, "toPython") else value
    return when.isoformat()[:10] if isinstance(when, (dt.date, dt.datetime)) else ""


def _access(uri) -> str:
    name = str(uri or "").rsplit("/", 1)[-1]
    return name if name in ("PUBLIC", "RESTRICTED", "NON_PUBLIC") else "NON_PUBLIC"


def _terms(access: str) -> dict:
    """Sharing and opening terms for a source that does not say them in the catalog guide's words."""
    if access == "PUBLIC":
        return {"sharing_type": "unconditional", "open_type": "open", "sharing_methods": ["interface"]}
    if access == "RESTRICTED":
        return {"sharing_type": "conditional", "open_type": "conditional", "sharing_methods": ["interface"],
                "sharing_conditions": "按来源平台的共享条件。", "open_conditions": "按来源平台的开放条件。"}
    return {"sharing_type": "conditional", "open_type": "closed", "sharing_methods": ["interface"],
            "sharing_conditions": "按来源平台的共享条件。"}


def _refuse_active_content(body: bytes, fmt: str) -> None:
    """What would make parsing itself an attack: a DTD in RDF/XML (entity expansion, "billion laughs", which
    expat stops only after minutes) and remote JSON-LD contexts (rdflib would fetch them: a request to any
    address the source names). Catalogs need neither."""
    if fmt == "xml" and re.search(rb"<!(DOCTYPE|ENTITY)", body[:65536], re.IGNORECASE):
        raise Invalid("an RDF/XML document with a DTD (entity declarations are not accepted)")
    if fmt == "json-ld":
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"json-ld document that does not parse: {exc}") from None
        stack = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "@context" and _remote_context(value):
                        raise Invalid("a JSON-LD document with a remote @context (only inline contexts are read)")
                    stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)


def _remote_context(context) -> bool:
    if isinstance(context, str):
        return True
    if isinstance(context, list):
        return any(_remote_context(c) for c in context)
    return isinstance(context, dict) and "@import" in context


def parse_rdf(body: bytes, media_type: str, url: str) -> Page:
    fmt = RDF_TYPES.get(media_type)
    if fmt is None:
        start = body.lstrip()[:1]
        fmt = "xml" if start == b"<" else "json-ld" if start in (b"{", b"[") else "turtle"
    _refuse_active_content(body, fmt)
    graph = Graph()
    try:
        graph.parse(data=body, format=fmt, publicID=url)
    except Exception as exc:  # noqa: BLE001 — rdflib raises many kinds; each means "not a valid document"
        raise Invalid(f"{fmt} document that does not parse: {str(exc)[:300]}") from None
    datasets = sorted(set(graph.subjects(RDF.type, DCAT.Dataset)), key=str)
    entries = [_dataset(graph, node) for node in datasets]
    deleted = sorted({str(topic) for record in graph.subjects(ADMS.status, CHANGE.Deleted)
                      for topic in graph.objects(record, FOAF.primaryTopic)})
    next_url = None
    for view in graph.subjects(RDF.type, HYDRA.PartialCollectionView):
        nxt = graph.value(view, HYDRA.next) or graph.value(view, HYDRA.nextPage)
        if nxt is not None:
            next_url = str(nxt)
    return Page(entries, deleted, next_url)


def _dataset(graph: Graph, node) -> Entry:
    identifier = _cut(graph.value(node, DCTERMS.identifier)) or str(node)
    access = _access(graph.value(node, DCTERMS.accessRights))
    data = _terms(access)
    cycle = FREQUENCY_CYCLE.get(str(graph.value(node, DCTERMS.accrualPeriodicity) or "").rsplit("/", 1)[-1])
    data.update({
        "name": _zh(graph, node, DCTERMS.title),
        "summary": _zh(graph, node, DCTERMS.description) or _zh(graph, node, DCTERMS.title),
        "format": "other", "level": "general", "update_cycle": cycle or "irregular",
        "keywords": sorted({_cut(k)[:50] for k in graph.objects(node, DCAT.keyword)})[:30],
    })
    period = graph.value(node, DCTERMS.temporal)
    if period is not None:
        data["time_coverage_start"] = _date(graph.value(period, DCAT.startDate))
        data["time_coverage_end"] = _date(graph.value(period, DCAT.endDate))
    place = graph.value(node, DCTERMS.spatial)
    if place is not None:
        data["spatial_coverage"] = (_zh(graph, place, LOCN.geographicName) or _zh(graph, place, SKOS.prefLabel))[:100]
    # A Shuzheng source says the catalog guide's own terms and data items.
    for key, prop in (("sharing_type", SZ.sharingType), ("sharing_conditions", SZ.sharingConditions),
                      ("sharing_basis", SZ.sharingBasis),
                      ("open_type", SZ.openType), ("open_conditions", SZ.openConditions),
                      ("update_cycle", SZ.updateCycle), ("level", SZ.level), ("format", SZ["format"])):
        value = graph.value(node, prop)
        if value is not None:
            data[key] = _cut(value)
    methods = sorted(_cut(m) for m in graph.objects(node, SZ.sharingMethod))
    if methods:
        data["sharing_methods"] = methods
    items = []
    for cell in graph.objects(node, SZ.item):
        item = {"name": _cut(graph.value(cell, SZ.name))[:200], "data_type": _cut(graph.value(cell, SZ.dataType)),
                "nullable": bool(graph.value(cell, SZ.nullable) is None or graph.value(cell, SZ.nullable).toPython()),
                "is_key": bool(graph.value(cell, SZ.key) is not None and graph.value(cell, SZ.key).toPython()),
                "level": _cut(graph.value(cell, SZ.level)), "subject": _cut(graph.value(cell, SZ.subject))}
        length = graph.value(cell, SZ.length)
        if length is not None:
            item["length"] = str(length)
        position = graph.value(cell, SZ.position)
        items.append((int(position) if position is not None and str(position).isdigit() else 10**6, item))
    data["items"] = [item for _pos, item in sorted(items, key=lambda p: (p[0], p[1]["name"]))][:500] \
        or [dict(WHOLE_DATASET)]
    landing = _web(graph.value(node, DCAT.landingPage))
    access_url = ""
    for distribution in sorted(graph.objects(node, DCAT.distribution), key=str):
        url = graph.value(distribution, DCAT.accessURL) or graph.value(distribution, DCAT.downloadURL)
        if isinstance(url, URIRef):
            access_url = str(url)
            break
    return Entry(identifier=identifier[:300], uri=str(node)[:1000], landing_page=landing,
                 access_url=(access_url or landing or str(node))[:500],
                 modified=_when(graph.value(node, DCTERMS.modified)),
                 relayed=graph.value(node, PROV.wasDerivedFrom) is not None, data=data)


def parse_ckan(body: bytes, base: str) -> tuple[list[Entry], int]:
    """One package_search page of the CKAN site at `base`: its entries and the total count it reports."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"a CKAN answer that is not JSON: {exc}") from None
    if not isinstance(answer, dict) or answer.get("success") is not True or not isinstance(answer.get("result"), dict):
        raise Invalid("a CKAN answer without success and a result object")
    result = answer["result"]
    packages = result.get("results")
    if not isinstance(packages, list) or not isinstance(result.get("count"), int):
        raise Invalid("a CKAN package_search result without results and count")
    entries = []
    for package in packages:
        if not isinstance(package, dict) or not package.get("id"):
            raise Invalid("a CKAN package without an id")
        entries.append(_package(package, base))
    return entries, result["count"]


def _package(package: dict, base: str) -> Entry:
    access = "NON_PUBLIC" if package.get("private") else "PUBLIC"
    data = _terms(access)
    tags = [t.get("name") for t in package.get("tags") or [] if isinstance(t, dict)]
    data.update({"name": _cut(package.get("title") or package.get("name")),
                 "summary": _cut(package.get("notes") or package.get("title") or package.get("name")),
                 "format": "other", "level": "general", "update_cycle": "irregular",
                 "keywords": sorted({_cut(t)[:50] for t in tags if t})[:30], "items": [dict(WHOLE_DATASET)]})
    resources = [r for r in package.get("resources") or [] if isinstance(r, dict) and r.get("url")]
    landing = _web(package.get("url"))
    # The dataset's page on the site: the URI CKAN's own DCAT export gives it.
    uri = f"{base.rstrip('/')}/dataset/{_cut(package.get('name') or package['id'])}"[:1000]
    return Entry(identifier=_cut(package["id"])[:300], uri=uri, landing_page=landing,
                 access_url=_cut(resources[0]["url"] if resources else landing)[:500],
                 modified=_when(package.get("metadata_modified")), data=data)


