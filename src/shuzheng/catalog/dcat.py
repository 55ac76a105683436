"""The published catalog as DCAT-AP 3.0 (D2, D1 上联省级): what other platforms harvest.

One graph per page of the catalog or per dataset, built from what `catalog.services` lets the caller see:
the public sees open and conditionally open resources, a government caller (signed in, or an application
system's key such as the province platform's) everything published. Identifiers are URIs under the
platform's public address (SHUZHENG_PUBLIC_URL), so they stay the same whoever asks and however.

Where DCAT-AP has a controlled vocabulary the EU authority tables are used (frequency, access right,
language, file type); the national catalog guide's own fields that DCAT has no term for (sharing and open
type, grading level, data items) are said with the Shuzheng vocabulary (SZ), which a Shuzheng harvester
reads back and any other harvester ignores.

Incremental feeds (`modified_since`): datasets changed since then, and a catalog record with ADMS change
type "Deleted" for each dataset the caller could see before that is gone now (deprecated, or no longer
open), so a harvester can follow a catalog without reading all of it each time.
"""

from __future__ import annotations

import datetime as dt
import math
from urllib.parse import quote
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, prefetch_related_objects
from django.utils import timezone
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, RDFS, SKOS, XSD

from shuzheng.catalog import ckan, services
from shuzheng.catalog.models import (
    Category, DataItem, OpenType, Resource, ResourceVersion, SharingType, Status, UpdateCycle,
)
from shuzheng.core.errors import ValidationFailed
from shuzheng.org.models import Organization
from shuzheng.org.services import Actor

ADMS = Namespace("http://www.w3.org/ns/adms#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
LOCN = Namespace("http://www.w3.org/ns/locn#")
SZ = Namespace("https://shuzheng.org/ns/catalog#")
PROV = Namespace("http://www.w3.org/ns/prov#")
EU = "http://publications.europa.eu/resource/authority/"
CHANGE = Namespace("http://purl.org/adms/changetype/")
PUBLISHER_TYPE = Namespace("http://purl.org/adms/publishertype/")
DCAT_VERSION = URIRef(f"{DCAT}version")  # DCAT 3; rdflib's DCAT namespace stops at DCAT 2

FORMATS = {  # serialization: (rdflib format, media type)
    "ttl": ("turtle", "text/turtle"),
    "rdf": ("pretty-xml", "application/rdf+xml"),
    "jsonld": ("json-ld", "application/ld+json"),
}
MEDIA_TYPES = {media: suffix for suffix, (_fmt, media) in FORMATS.items()}

FREQUENCY = {
    UpdateCycle.REALTIME: "CONT", UpdateCycle.DAILY: "DAILY", UpdateCycle.WEEKLY: "WEEKLY",
    UpdateCycle.MONTHLY: "MONTHLY", UpdateCycle.QUARTERLY: "QUARTERLY", UpdateCycle.SEMIANNUAL: "ANNUAL_2",
    UpdateCycle.YEARLY: "ANNUAL", UpdateCycle.IRREGULAR: "IRREG",
}
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def public_url(request=None) -> str:
    """The platform's public address, without a trailing slash. Configured (SHUZHENG_PUBLIC_URL) in
    production so identifiers never depend on the Host header a caller sends."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return "http://localhost"


def access_right(version: ResourceVersion) -> str:
    """EU access-right authority: open → PUBLIC, conditionally open → RESTRICTED, government-only → NON_PUBLIC."""
    if version.open_type == OpenType.OPEN:
        return "PUBLIC"
    if version.open_type == OpenType.CONDITIONAL:
        return "RESTRICTED"
    return "NON_PUBLIC"


@dataclass
class Page:
    graph: Graph
    total: int
    page: int
    pages: int


class Uris:
    def __init__(self, base: str):
        self.base = base

    def catalog(self) -> URIRef:
        return URIRef(f"{self.base}/catalog")

    def dataset(self, code: str) -> URIRef:
        return URIRef(f"{self.base}/dataset/{code.replace('/', '-')}")

    def record(self, code: str) -> URIRef:
        return URIRef(f"{self.base}/dataset/{code.replace('/', '-')}#record")

    def organization(self, org: Organization) -> URIRef:
        return URIRef(f"{self.base}/organization/{org.code}")

    def theme(self, category_code: str) -> URIRef:
        return URIRef(f"{self.base}/themes/{category_code}")

    def gateway(self) -> URIRef:
        return URIRef(f"{self.base}/api/v1/share")


def _text(graph: Graph, node, prop, value: str, lang: str = "zh") -> None:
    if value:
        graph.add((node, prop, Literal(value, lang=lang)))


def _datetime(value: dt.datetime) -> Literal:
    return Literal(timezone.localtime(value).replace(microsecond=0), datatype=XSD.dateTime)


def _term(graph: Graph, uri: str, *classes, label: str = "") -> URIRef:
    """A controlled-vocabulary term or a web address, typed with the class DCAT-AP expects of it (and a
    concept's label): the document then validates without the vocabularies loaded beside it."""
    node = URIRef(uri)
    for cls in classes:
        graph.add((node, RDF.type, cls))
    if label:
        graph.add((node, SKOS.prefLabel, Literal(label, lang="en")))
    return node


def _concept(graph: Graph, uri: URIRef) -> URIRef:
    """An ADMS concept (change type, publisher type), labelled with its local name spelt out."""
    name = str(uri).rsplit("/", 1)[-1]
    return _term(graph, uri, SKOS.Concept, label="".join(f" {c}" if c.isupper() else c for c in name).strip())


def _new_graph() -> Graph:
    g = Graph()
    for prefix, ns in (("dcat", DCAT), ("dct", DCTERMS), ("foaf", FOAF), ("adms", ADMS), ("vcard", VCARD),
                       ("skos", SKOS), ("hydra", HYDRA), ("locn", LOCN), ("sz", SZ), ("xsd", XSD),
                       ("prov", PROV)):
        g.bind(prefix, ns)
    return g


class Builder:
    """Adds catalog things to one graph, each agent, theme and service once."""

    def __init__(self, actor: Actor, base: str):
        self.actor, self.uris, self.g = actor, Uris(base), _new_graph()
        self.government = services.is_government(actor)
        self._agents: set = set()
        self._themes: set = set()
        self._served: list[URIRef] = []
        self._issued: dict = {}

    def prepare(self, versions: list[ResourceVersion]) -> None:
        """Reads what the datasets of a page need in three queries instead of three per dataset: items with
        their elements and code tables, and each resource's first publication."""
        prefetch_related_objects(versions, Prefetch(
            "items", queryset=DataItem.objects.select_related("element__code_table").order_by("position")))
        self._issued = dict(ResourceVersion.objects.filter(resource__in=[v.resource_id for v in versions], number=1)
                            .values_list("resource_id", "published_at"))

    def agent(self, org: Organization) -> URIRef:
        node = self.uris.organization(org)
        if node not in self._agents:
            self._agents.add(node)
            g = self.g
            g.add((node, RDF.type, FOAF.Agent))
            g.add((node, RDF.type, FOAF.Organization))
            _text(g, node, FOAF.name, org.name)
            if org.name_en:
                _text(g, node, FOAF.name, org.name_en, "en")
            g.add((node, DCTERMS.identifier, Literal(org.code)))
            kind = PUBLISHER_TYPE.RegionalAuthority if org.kind == Organization.Kind.PROVINCE_PLATFORM \
                else PUBLISHER_TYPE.LocalAuthority
            g.add((node, DCTERMS.type, _concept(g, kind)))
        return node

    def theme(self, category: Category) -> URIRef:
        node = self.uris.theme(category.code)
        if node not in self._themes:
            self._themes.add(node)
            scheme = URIRef(f"{self.uris.base}/themes")
            self.g.add((node, RDF.type, SKOS.Concept))
            _text(self.g, node, SKOS.prefLabel, category.name)
            self.g.add((node, SKOS.notation, Literal(category.code)))
            self.g.add((node, SKOS.inScheme, scheme))
            if scheme not in self._themes:
                self._themes.add(scheme)
                self.g.add((scheme, RDF.type, SKOS.ConceptScheme))
                _text(self.g, scheme, DCTERMS.title, "政务数据资源目录分类")
        return node

    def dataset(self, resource: Resource, version: ResourceVersion) -> URIRef:
        g, uris = self.g, self.uris
        node = uris.dataset(resource.code)
        g.add((node, RDF.type, DCAT.Dataset))
        g.add((node, RDF.type, DCAT.Resource))
        _text(g, node, DCTERMS.title, version.name)
        _text(g, node, DCTERMS.description, version.summary)
        g.add((node, DCTERMS.identifier, Literal(resource.code)))
        g.add((node, DCTERMS.publisher, self.agent(resource.provider)))
        if version.owner_id and version.owner_id != resource.provider_id:
            g.add((node, DCTERMS.rightsHolder, self.agent(version.owner)))
        landing = URIRef(ckan.page_url(resource, uris.base))
        contact = URIRef(f"{node}#contact")
        g.add((node, DCAT.contactPoint, contact))
        g.add((contact, RDF.type, VCARD.Organization))
        g.add((contact, RDF.type, VCARD.Kind))
        _text(g, contact, VCARD.fn, version.manager.name if version.manager_id else resource.provider.name)
        g.add((contact, VCARD.hasURL, landing))
        for word in version.keywords or []:
            _text(g, node, DCAT.keyword, str(word))
        g.add((node, DCAT.theme, self.theme(resource.category)))
        g.add((node, DCTERMS.accrualPeriodicity,
               _term(g, f"{EU}frequency/{FREQUENCY[version.update_cycle]}", DCTERMS.Frequency)))
        g.add((node, DCTERMS.accessRights, _term(g, f"{EU}access-right/{access_right(version)}", DCTERMS.RightsStatement)))
        g.add((node, DCTERMS.language, _term(g, f"{EU}language/ZHO", DCTERMS.LinguisticSystem)))
        if version.time_coverage_start or version.time_coverage_end:
            period = URIRef(f"{node}#temporal")
            g.add((node, DCTERMS.temporal, period))
            g.add((period, RDF.type, DCTERMS.PeriodOfTime))
            if version.time_coverage_start:
                g.add((period, DCAT.startDate, Literal(version.time_coverage_start, datatype=XSD.date)))
            if version.time_coverage_end:
                g.add((period, DCAT.endDate, Literal(version.time_coverage_end, datatype=XSD.date)))
        if version.spatial_coverage:
            place = URIRef(f"{node}#spatial")
            g.add((node, DCTERMS.spatial, place))
            g.add((place, RDF.type, DCTERMS.Location))
            _text(g, place, LOCN.geographicName, version.spatial_coverage)
        first = self._issued.get(resource.pk)
        if first or version.published_at:
            g.add((node, DCTERMS.issued, _datetime(first or version.published_at)))
        g.add((node, DCTERMS.modified, _datetime(version.published_at or resource.updated_at)))
        g.add((node, DCAT_VERSION, Literal(str(version.number))))
        g.add((node, DCAT.landingPage, landing))
        g.add((landing, RDF.type, FOAF.Document))
        items = list(version.items.all())  # prefetched by prepare()
        self._standards(node, items)
        self._catalog_guide_fields(node, resource, version, items)
        if services.harvested_from(resource) is not None:
            # A copy harvested from elsewhere says where from: other harvesters take it from its origin.
            g.add((node, PROV.wasDerivedFrom, _term(g, _origin_uri(resource.harvested), RDFS.Resource)))
        for distribution in self._distributions(resource, version):
            g.add((node, DCAT.distribution, distribution))
        return node

    def _standards(self, node: URIRef, items: list) -> None:
        """dct:conformsTo: the platform's data-element standard when an item carries an element, and the
        national standard of each code table the elements use (GB/T 2261.1 and the like)."""
        g = self.g
        if any(i.element_id for i in items):
            std = URIRef(f"{self.uris.base}/standards/elements/")
            g.add((node, DCTERMS.conformsTo, std))
            g.add((std, RDF.type, DCTERMS.Standard))
            _text(g, std, DCTERMS.title, "政务数据元标准")
        for table in {i.element.code_table for i in items if i.element_id and i.element.code_table_id}:
            std = URIRef(f"{self.uris.base}/standards/code-tables/{table.code}/")
            g.add((node, DCTERMS.conformsTo, std))
            g.add((std, RDF.type, DCTERMS.Standard))
            _text(g, std, DCTERMS.title, f"{table.standard} {table.name}".strip())

    def _catalog_guide_fields(self, node: URIRef, resource: Resource, version: ResourceVersion, items: list) -> None:
        g = self.g
        g.add((node, SZ.sharingType, Literal(version.sharing_type)))
        _text(g, node, SZ.sharingConditions, version.sharing_conditions)
        _text(g, node, SZ.sharingBasis, version.sharing_basis)
        for method in version.sharing_methods or []:
            g.add((node, SZ.sharingMethod, Literal(method)))
        g.add((node, SZ.openType, Literal(version.open_type)))
        _text(g, node, SZ.openConditions, version.open_conditions)
        g.add((node, SZ.updateCycle, Literal(version.update_cycle)))
        g.add((node, SZ.level, Literal(version.level)))
        g.add((node, SZ["format"], Literal(version.format)))
        g.add((node, SZ.category, Literal(resource.category.code)))
        if version.domestic_only:
            g.add((node, SZ.domesticOnly, Literal(True)))
        if version.sharing_type != SharingType.NONE:
            rights = URIRef(f"{node}#rights")
            g.add((node, DCTERMS.rights, rights))
            g.add((rights, RDF.type, DCTERMS.RightsStatement))
            _text(g, rights, RDFS.label, {
                SharingType.UNCONDITIONAL: "无条件共享", SharingType.CONDITIONAL: "有条件共享",
            }[version.sharing_type] + (f"：{version.sharing_conditions}" if version.sharing_conditions else ""))
        for item in items:
            cell = BNode()
            g.add((node, SZ.item, cell))
            g.add((cell, SZ.position, Literal(item.position)))
            g.add((cell, SZ.name, Literal(item.name)))
            g.add((cell, SZ.dataType, Literal(item.data_type)))
            if item.length:
                g.add((cell, SZ.length, Literal(item.length)))
            g.add((cell, SZ.nullable, Literal(item.nullable)))
            g.add((cell, SZ.key, Literal(item.is_key)))
            g.add((cell, SZ.level, Literal(item.level)))
            g.add((cell, SZ.subject, Literal(item.subject)))
            if item.element_id:
                g.add((cell, SZ.element, Literal(item.element.identifier)))

    def _distributions(self, resource: Resource, version: ResourceVersion) -> list[URIRef]:
        g, out = self.g, []
        dataset = self.uris.dataset(resource.code)
        for entry in ckan.distributions(resource, self.uris.base):
            node = URIRef(f"{dataset}/resource/{entry['id']}")
            out.append(node)
            g.add((node, RDF.type, DCAT.Distribution))
            _text(g, node, DCTERMS.title, entry.get("name") or version.name)
            _text(g, node, DCTERMS.description, entry.get("description") or "")
            g.add((node, DCAT.accessURL, _term(g, entry["url"], RDFS.Resource)))
            if entry.get("mimetype"):
                g.add((node, DCAT.mediaType, _term(g, f"https://www.iana.org/assignments/media-types/{entry['mimetype']}",
                                                    DCTERMS.MediaType)))
            if entry.get("format"):
                g.add((node, DCTERMS.format, _term(g, f"{EU}file-type/{entry['format'].upper()}", DCTERMS.MediaTypeOrExtent)))
            if entry.get("license_url"):
                g.add((node, DCTERMS.license, URIRef(entry["license_url"])))
                g.add((URIRef(entry["license_url"]), RDF.type, DCTERMS.LicenseDocument))
            g.add((node, DCTERMS.accessRights,
                   _term(g, f"{EU}access-right/{access_right(version)}", DCTERMS.RightsStatement)))
            if entry.get("gateway"):
                g.add((node, DCAT.accessService, self.uris.gateway()))
                self._served.append(dataset)
        return out

    def gateway_service(self) -> URIRef | None:
        """The sharing gateway as a dcat:DataService serving every dataset on this page mounted as a table."""
        if not self._served:
            return None
        g, node = self.g, self.uris.gateway()
        g.add((node, RDF.type, DCAT.DataService))
        g.add((node, RDF.type, DCAT.Resource))
        _text(g, node, DCTERMS.title, "政务数据共享网关")
        _text(g, node, DCTERMS.description, "按共享授权调用数据资源：核验、分页查询、SQL 与导出。")
        g.add((node, DCAT.endpointURL, _term(g, node, RDFS.Resource)))
        g.add((node, DCAT.endpointDescription, _term(g, f"{self.uris.base}/api/v1/openapi.json", RDFS.Resource)))
        g.add((node, DCTERMS.accessRights, _term(g, f"{EU}access-right/NON_PUBLIC", DCTERMS.RightsStatement)))
        office = Organization.objects.filter(kind=Organization.Kind.PLATFORM_OFFICE).first()
        if office is not None:
            g.add((node, DCTERMS.publisher, self.agent(office)))
        for dataset in self._served:
            g.add((node, DCAT.servesDataset, dataset))
        return node

    def record(self, resource: Resource, status: URIRef, modified: dt.datetime) -> URIRef:
        g = self.g
        node, topic = self.uris.record(resource.code), self.uris.dataset(resource.code)
        g.add((node, RDF.type, DCAT.CatalogRecord))
        g.add((node, FOAF.primaryTopic, topic))
        g.add((topic, RDF.type, DCAT.Resource))  # a deleted dataset is described no further
        g.add((node, DCTERMS.modified, _datetime(modified)))
        g.add((node, ADMS.status, _concept(g, status)))
        return node


def _origin_uri(record) -> str:
    """The harvested dataset's own URI; for a source that gave none (CKAN names), one under the source's address."""
    if record.uri.startswith(("http://", "https://")):
        return record.uri
    return f"{record.source.url.rstrip('/')}#{quote(record.identifier, safe='')}"


def _live(actor: Actor):
    """What the feed lists as datasets: published resources the caller may see (deprecated ones are
    deletions, not datasets)."""
    return services.list_resources(actor).filter(status=Status.PUBLISHED).select_related(
        "provider", "category", "published__owner", "published__manager", "harvested__source")


def _gone(actor: Actor, since: dt.datetime):
    """Resources changed since `since` that the caller could see once and cannot now: deprecated, or (for
    the public) no longer open. Only their codes and names go out, which the caller has seen before."""
    live = _live(actor).values("pk")
    changed = Resource.objects.filter(updated_at__gte=since).exclude(pk__in=live).select_related("provider")
    if services.is_government(actor):
        return changed.filter(status=Status.DEPRECATED)
    was_open = ResourceVersion.objects.filter(
        resource=OuterRef("pk"), status__in=[Status.PUBLISHED, Status.SUPERSEDED, Status.DEPRECATED],
        open_type__in=[OpenType.OPEN, OpenType.CONDITIONAL])
    return changed.filter(Exists(was_open))


def parse_since(value: str | None) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.of("modified_since", "An ISO 8601 date and time, such as 2026-11-01T08:00:00+08:00.")
    return timezone.make_aware(when) if timezone.is_naive(when) else when


def catalog_page(actor: Actor, base: str, page: int = 1, page_size: int = PAGE_SIZE,
                 since: dt.datetime | None = None, suffix: str = "ttl") -> Page:
    """One page of the catalog the caller may see (all datasets, or those changed since `since` with the
    deletions), with hydra paging links."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed.of("page_size", f"From 1 to {MAX_PAGE_SIZE}.")
    if page < 1 or page > 10**6:
        raise ValidationFailed.of("page", "A page number from 1.")
    b = Builder(actor, base)
    g, uris = b.g, b.uris
    live = _live(actor)
    entries = [(r, False) for r in (live.filter(updated_at__gte=since) if since else live).order_by("code")]
    if since is not None:
        entries += [(r, True) for r in _gone(actor, since).order_by("code")]
    total = len(entries)
    pages = max(1, math.ceil(total / page_size))
    chunk = entries[(page - 1) * page_size: page * page_size]

    cat = uris.catalog()
    g.add((cat, RDF.type, DCAT.Catalog))
    _text(g, cat, DCTERMS.title, settings.PLATFORM_NAME)
    _text(g, cat, DCTERMS.description, "政务数据资源目录（DCAT-AP 3.0）：" + ("政务共享目录" if b.government
                                                                             else "公共数据开放目录"))
    office = Organization.objects.filter(kind=Organization.Kind.PLATFORM_OFFICE).first()
    if office is not None:
        g.add((cat, DCTERMS.publisher, b.agent(office)))
    g.add((cat, FOAF.homepage, URIRef(f"{base}/catalog/")))
    g.add((URIRef(f"{base}/catalog/"), RDF.type, FOAF.Document))
    g.add((cat, DCTERMS.language, _term(g, f"{EU}language/ZHO", DCTERMS.LinguisticSystem)))
    g.add((cat, DCTERMS.modified, _datetime(timezone.now())))
    g.add((cat, DCAT.themeTaxonomy, URIRef(f"{base}/themes")))
    b.prepare([resource.published for resource, gone in chunk if not gone])
    for resource, gone in chunk:
        if gone:
            b.record(resource, CHANGE.Deleted, resource.updated_at)
            continue
        version = resource.published
        node = b.dataset(resource, version)
        g.add((cat, DCAT.dataset, node))
        created = since is None or resource.published.number == 1 and resource.created_at >= since
        b.record(resource, CHANGE.Created if created else CHANGE.Updated, resource.updated_at)
        g.add((cat, DCAT.record, uris.record(resource.code)))
    service = b.gateway_service()
    if service is not None:
        g.add((cat, DCAT.service, service))
    for resource, gone in chunk:
        if gone:
            g.add((cat, DCAT.record, uris.record(resource.code)))
    _paging(g, base, suffix, page, pages, page_size, total, since)
    return Page(g, total, page, pages)


def _paging(g: Graph, base: str, suffix: str, page: int, pages: int, size: int, total: int, since) -> None:
    from urllib.parse import urlencode

    def link(n: int) -> URIRef:
        query = {"page": n}
        if size != PAGE_SIZE:
            query["page_size"] = size
        if since is not None:
            query["modified_since"] = since.isoformat()
        return URIRef(f"{base}/catalog.{suffix}?{urlencode(query)}")

    view = link(page)
    g.add((view, RDF.type, HYDRA.PartialCollectionView))
    g.add((view, HYDRA.totalItems, Literal(total, datatype=XSD.nonNegativeInteger)))
    g.add((view, HYDRA.itemsPerPage, Literal(size, datatype=XSD.nonNegativeInteger)))
    g.add((view, HYDRA.first, link(1)))
    g.add((view, HYDRA.last, link(pages)))
    if page < pages:
        g.add((view, HYDRA.next, link(page + 1)))
    if page > 1:
        g.add((view, HYDRA.previous, link(page - 1)))


def dataset_graph(actor: Actor, base: str, code: str) -> Graph:
    """One resource (its published version, or for its own department the version under way)."""
    resource = services.get_resource(actor, code)
    version = resource.published or services.visible_pending(actor, resource)
    if version is None:
        from shuzheng.core.errors import NotFound

        raise NotFound(f"No resource {resource.code}.")
    b = Builder(actor, base)
    b.prepare([version])
    b.dataset(resource, version)
    b.gateway_service()
    return b.g


def serialize(graph: Graph, suffix: str) -> bytes:
    fmt, _media = FORMATS[suffix]
    if fmt == "json-ld":
        context = {p: str(ns) for p, ns in graph.namespaces() if p in (
            "dcat", "dct", "foaf", "adms", "vcard", "skos", "hydra", "locn", "sz", "xsd", "prov")}
        return graph.serialize(format="json-ld", context=context, auto_compact=True).encode("utf-8")
    return graph.serialize(format=fmt, encoding="utf-8")


def negotiate(accept: str) -> str | None:
    """The suffix of the RDF serialization the Accept header prefers; None when it prefers HTML or names
    none of them (a browser), which then gets the catalog's web page."""
    offers = []
    for position, part in enumerate((accept or "").split(",")):
        media, *params = [f.strip() for f in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/html":
            offers.append((q, -position, None))
        elif media in MEDIA_TYPES:
            offers.append((q, -position, MEDIA_TYPES[media]))
    offers = [o for o in offers if o[0] > 0]
    return max(offers)[2] if offers else None
