"""The catalog as DCAT-AP 3.0 (/catalog.ttl|.rdf|.jsonld, /dataset/<code>.ttl…): every document validates
against the official SHACL shapes (tests/data/dcat-ap-3.0.0-SHACL.ttl, SEMIC's release 3.0.0, unchanged)
with no violation; the public sees the open catalog and a government caller the shared one; paging,
incremental feeds with deletions, content negotiation and bad parameters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF

from catalog_helpers import GENERAL_ITEMS, published
from sharing_helpers import system

SHAPES = Graph().parse(Path(__file__).parent / "data" / "dcat-ap-3.0.0-SHACL.ttl")
# Open namespaces: rdflib's closed ones warn when pytest looks for attributes they lack.
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCTERMS = Namespace("http://purl.org/dc/terms/")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
SH = Namespace("http://www.w3.org/ns/shacl#")
ADMS = Namespace("http://www.w3.org/ns/adms#")
HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
EU = "http://publications.europa.eu/resource/authority/"
BASE = "https://sjgx.dingzhou.gov.cn"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.PUBLIC_URL = BASE


def violations(graph: Graph) -> list[str]:
    conforms, results, _text = validate(graph, shacl_graph=SHAPES, inference="none", advanced=True)
    found = [f"{results.value(r, SH.focusNode)} {results.value(r, SH.resultPath)}: {results.value(r, SH.resultMessage)}"
             for r in results.subjects(SH.resultSeverity, SH.Violation)]
    assert conforms == (not found)
    return found


def fetch(client, path: str, fmt: str = "turtle", **headers) -> Graph:
    response = client.get(path, **headers)
    assert response.status_code == 200, response.content[:500]
    return Graph().parse(data=response.content, format=fmt)


def datasets(graph: Graph) -> set[str]:
    return {str(graph.value(d, DCTERMS.identifier)) for d in graph.subjects(RDF.type, DCAT.Dataset)}


def visible_codes(actor) -> set[str]:
    from shuzheng.catalog import services

    return set(services.list_resources(actor).filter(status="published").values_list("code", flat=True))


def test_public_catalog_is_valid_dcat_ap_and_only_open(client, demo):
    from shuzheng.org.services import Actor

    graph = fetch(client, "/catalog.ttl?page_size=1000")
    assert violations(graph) == []
    assert datasets(graph) == visible_codes(Actor())
    for node in graph.subjects(RDF.type, DCAT.Dataset):
        assert str(graph.value(node, DCTERMS.accessRights)).rsplit("/", 1)[-1] in ("PUBLIC", "RESTRICTED")
    catalog = URIRef(f"{BASE}/catalog")
    assert (catalog, RDF.type, DCAT.Catalog) in graph
    office = graph.value(catalog, DCTERMS.publisher)
    assert Literal("定州市政务服务管理办公室", lang="zh") in set(graph.objects(office, FOAF.name))


def test_government_catalog_with_an_api_key_in_three_serializations(client, demo):
    from shuzheng.org.services import Actor

    _code, key = system(demo)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    turtle = fetch(client, "/catalog.ttl?page_size=1000", **auth)
    assert violations(turtle) == []
    codes = datasets(turtle)
    assert codes == visible_codes(Actor.cli()) and len(codes) > len(visible_codes(Actor()))
    for suffix, fmt in (("rdf", "xml"), ("jsonld", "json-ld")):
        other = fetch(client, f"/catalog.{suffix}?page_size=1000", fmt, **auth)
        assert len(other) == len(turtle) and datasets(other) == codes
    # A closed resource says so, with the catalog guide's terms beside DCAT's.
    closed = next(d for d in turtle.subjects(RDF.type, DCAT.Dataset)
                  if str(turtle.value(d, DCTERMS.accessRights)).endswith("NON_PUBLIC"))
    assert turtle.value(closed, URIRef("https://shuzheng.org/ns/catalog#openType")) == Literal("closed")
    # A bad key is refused, not treated as the public.
    response = client.get("/catalog.ttl", HTTP_AUTHORIZATION="Bearer sz_not-a-key")
    assert response.status_code == 401 and response["Content-Type"] == "application/problem+json"


def test_one_dataset_maps_the_catalog_guide(client, demo):
    from shuzheng.catalog.models import Resource

    resource = Resource.objects.select_related("published", "provider").get(
        status="published", published__name="企业登记基本信息")
    code = resource.code.replace("/", "-")
    graph = fetch(client, f"/dataset/{code}.ttl")
    assert violations(graph) == []
    node = URIRef(f"{BASE}/dataset/{code}")
    version = resource.published
    assert graph.value(node, DCTERMS.title) == Literal(version.name, lang="zh")
    assert graph.value(node, DCTERMS.identifier) == Literal(resource.code)
    publisher = graph.value(node, DCTERMS.publisher)
    assert Literal(resource.provider.name, lang="zh") in set(graph.objects(publisher, FOAF.name))
    assert graph.value(node, DCTERMS.accrualPeriodicity) == URIRef(f"{EU}frequency/DAILY")
    assert graph.value(node, DCTERMS.accessRights) == URIRef(f"{EU}access-right/PUBLIC")
    assert {str(k) for k in graph.objects(node, DCAT.keyword)} == set(version.keywords)
    assert URIRef(f"{BASE}/standards/elements/") in set(graph.objects(node, DCTERMS.conformsTo))
    theme = graph.value(node, DCAT.theme)
    assert graph.value(theme, SKOS.notation) == Literal(resource.category.code)
    period = graph.value(node, DCTERMS.temporal)
    assert graph.value(period, DCAT.startDate).toPython() == version.time_coverage_start
    # Mounted as a warehouse table: a distribution served by the sharing gateway's DataService.
    distribution = graph.value(node, DCAT.distribution)
    service = graph.value(distribution, DCAT.accessService)
    assert (service, RDF.type, DCAT.DataService) in graph and (service, DCAT.servesDataset, node) in graph
    assert str(graph.value(distribution, DCAT.accessURL)).endswith(f"/api/v1/share/{code}/records")
    items = {str(graph.value(i, URIRef("https://shuzheng.org/ns/catalog#name")))
             for i in graph.objects(node, URIRef("https://shuzheng.org/ns/catalog#item"))}
    assert items == set(version.items.values_list("name", flat=True))


def test_content_negotiation_and_suffixes(client, demo):
    from shuzheng.catalog.models import Resource

    code = Resource.objects.filter(status="published", published__open_type="open").order_by("code") \
        .values_list("code", flat=True).first().replace("/", "-")
    for accept, media in (("text/turtle", "text/turtle"), ("application/rdf+xml", "application/rdf+xml"),
                          ("application/ld+json;q=0.9, text/html;q=0.5", "application/ld+json")):
        for path in ("/catalog", f"/dataset/{code}"):
            response = client.get(path, HTTP_ACCEPT=accept)
            assert response.status_code == 200 and response["Content-Type"].startswith(media), (path, accept)
            assert "Accept" in response["Vary"]
    # A browser gets the web pages.
    html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert client.get("/catalog", HTTP_ACCEPT=html)["Location"] == "/catalog/"
    assert client.get(f"/dataset/{code}", HTTP_ACCEPT=html)["Location"] == f"/catalog/{code}/"
    for path in ("/catalog.xml", f"/dataset/{code}.csv", "/dataset/999999999-999999.ttl"):
        response = client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json", path
    assert client.post("/catalog.ttl").status_code == 405


def test_a_draft_is_described_only_to_its_department(client, demo):
    from shuzheng.catalog import services

    from catalog_helpers import resource_data

    draft = services.create_resource(demo.actor("officer-public-security"), resource_data(demo))
    path = f"/dataset/{draft.code.replace('/', '-')}.ttl"
    assert client.get(path).status_code == 404
    client.force_login(demo.user("officer-civil-affairs"))
    assert client.get(path).status_code == 404
    client.force_login(demo.user("officer-public-security"))
    graph = fetch(client, path)
    assert datasets(graph) == {draft.code} and violations(graph) == []


def test_paging_covers_the_catalog_once(client, demo):
    whole = datasets(fetch(client, "/catalog.ttl?page_size=1000"))
    seen, url, pages = [], "/catalog.ttl?page_size=7", 0
    while url:
        graph = fetch(client, url)
        view = next(graph.subjects(RDF.type, HYDRA.PartialCollectionView))
        assert int(graph.value(view, HYDRA.totalItems)) == len(whole)
        page = datasets(graph)
        assert len(page) <= 7
        seen += sorted(page)
        nxt = graph.value(view, HYDRA.next)
        url = str(nxt).replace(BASE, "") if nxt else None
        pages += 1
    assert sorted(seen) == sorted(whole) and len(seen) == len(set(seen)) and pages == -(-len(whole) // 7)


def test_incremental_feed_lists_changes_and_deletions(client, demo):
    from shuzheng.catalog import services

    since = timezone.now() - dt.timedelta(seconds=1)
    changed = published(demo, **{"open_type": "open", "items": [dict(i) for i in GENERAL_ITEMS]})
    gone = published(demo, **{"open_type": "open", "items": [dict(i) for i in GENERAL_ITEMS]})
    services.deprecate(demo.actor("reviewer"), gone.code, "由新资源替代")
    query = f"modified_since={since.isoformat()}"
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {system(demo)[1]}"}):
        graph = fetch(client, f"/catalog.ttl?{query.replace('+', '%2B')}", **headers)
        assert violations(graph) == []
        assert datasets(graph) == {changed.code}
        deleted = {str(graph.value(r, FOAF.primaryTopic)) for r in graph.subjects(
            ADMS.status, URIRef("http://purl.org/adms/changetype/Deleted"))}
        assert deleted == {f"{BASE}/dataset/{gone.code.replace('/', '-')}"}
    # Nothing changed since now.
    later = (timezone.now() + dt.timedelta(seconds=1)).isoformat().replace("+", "%2B")
    graph = fetch(client, f"/catalog.ttl?modified_since={later}")
    assert datasets(graph) == set() and not list(graph.subjects(RDF.type, DCAT.CatalogRecord))


@pytest.mark.parametrize("query, field", [
    ("page=0", "page"), ("page=abc", "page"), ("page_size=0", "page_size"), ("page_size=5000", "page_size"),
    ("page_size=99999999999", "page_size"), ("modified_since=yesterday", "modified_since"),
    ("modified_since=2026-13-45", "modified_since"),
])
def test_bad_parameters_name_the_field(client, demo, query, field):
    response = client.get(f"/catalog.ttl?{query}")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
