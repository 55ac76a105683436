"""Harvesting other catalogs into this one: a running Shuzheng (the `platform` fixture) over its DCAT feed and
over its CKAN API, a body connected on demand (a court) whose datasets are then applied for through the
sharing workflow, withdrawal of what a source stops listing, and hostile sources — invalid documents, huge or
slow answers, redirect and paging loops, duplicate identifiers, too many datasets — each stopped within the
source's limits with a clear report and nothing else changed."""

from __future__ import annotations

import json
import urllib.request

import pytest

from federation_helpers import TTL, FeedServer, dataset, document
from test_fieldcrypt import keys_restored  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def feed():
    server = FeedServer()
    yield server
    server.close()


def node(kind: str):
    from shuzheng.org.models import Organization

    return Organization.objects.get(kind=kind)


def add_source(demo, name: str, url: str, kind: str = "dcat", org_kind: str = "court", **limits):
    from shuzheng.harvest import services

    return services.save_source(demo.actor("reviewer"), {"name": name, "kind": kind, "url": url,
                                                         "organization": node(org_kind).code, **limits})


def harvest(demo, name: str, full: bool = False):
    from shuzheng.harvest import services

    return services.run(demo.actor("reviewer"), name, full=full)


def mirrors(source):
    return {r.identifier: r for r in source.records.select_related("resource__published")}


def snapshot() -> tuple:
    from shuzheng.catalog.models import Resource, ResourceVersion
    from shuzheng.harvest.models import HarvestedRecord

    return (Resource.objects.count(), ResourceVersion.objects.count(),
            sorted(HarvestedRecord.objects.values_list("identifier", "digest", "deleted_at")),
            sorted(Resource.objects.values_list("code", "status")))


def public_dataset_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/catalog.ttl?page_size=1000", timeout=60) as r:
        body = r.read()
    from rdflib import Graph, Namespace, RDF

    return len(set(Graph().parse(data=body, format="turtle").subjects(
        RDF.type, Namespace("http://www.w3.org/ns/dcat#").Dataset)))


def test_harvesting_a_running_shuzheng_instance(demo, platform):
    from shuzheng.audit.models import AuditRecord
    from shuzheng.catalog import services as catalog
    from shuzheng.core.errors import Conflict
    from shuzheng.org.services import Actor

    source = add_source(demo, "省平台", platform.url, kind="shuzheng", org_kind="province_platform")
    run = harvest(demo, "省平台")
    expected = public_dataset_count(platform.url)
    assert run.state == "succeeded" and not run.incremental and run.error == ""
    assert run.created == run.seen == expected > 0 and run.skipped == 0 and run.pages >= 1
    records = mirrors(source)
    assert len(records) == expected
    record = next(iter(records.values()))
    resource = record.resource
    # A read-only, attributed catalog resource of the province node, found by search like any other.
    assert resource.provider == node("province_platform") and resource.status == "published"
    assert resource.code.startswith(resource.category.code.ljust(9, "0") + "/")
    assert catalog.harvested_from(resource) == "省平台"
    assert not any(catalog.available_actions(demo.actor("reviewer"), resource).values())
    with pytest.raises(Conflict):
        catalog.start_revision(demo.actor("reviewer"), resource.code)
    found = catalog.search_catalog(Actor(), resource.published.name)["resources"]
    assert resource in found
    assert AuditRecord.objects.filter(action="harvest.run", object_id=str(run.id)).exists()
    assert AuditRecord.objects.filter(action="catalog.mirror_create", object_id=str(resource.id)).exists()
    # Harvested again: a Shuzheng source is read incrementally and nothing changed.
    again = harvest(demo, "省平台")
    assert again.state == "succeeded" and again.incremental and again.since is not None
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)


def test_the_resource_page_says_where_a_copy_comes_from(client, demo, feed):
    source = add_source(demo, "法院目录", feed.serve("/c.ttl", document(dataset("FY-01", "审判流程公开信息"))))
    assert harvest(demo, "法院目录").created == 1
    resource = mirrors(source)["FY-01"].resource
    client.force_login(demo.user("officer-civil-affairs"))
    page = client.get(f"/catalog/{resource.code.replace('/', '-')}/").content.decode()
    assert "法院目录" in page and "FY-01" in page
    assert "catalog/" + resource.code.replace("/", "-") + "/edit/" not in page


def test_harvesting_a_ckan_site(demo, platform):
    from shuzheng.catalog import ckan

    source = add_source(demo, "CKAN 站点", platform.url, kind="ckan", org_kind="province_platform")
    run = harvest(demo, "CKAN 站点")
    with urllib.request.urlopen(f"{platform.url}/api/3/action/package_search?rows=1000", timeout=60) as r:
        packages = json.loads(r.read())["result"]["results"]
    assert run.state == "succeeded" and run.created == len(packages) > 0, run.problems
    records = mirrors(source)
    assert set(records) == {p["id"] for p in packages}
    first = packages[0]
    copy = records[first["id"]].resource.published
    assert copy.name == first["title"] and copy.open_type == "open"
    assert [i.name for i in copy.items.all()] == ["数据集（整体）"]
    assert ckan.package_name(records[first["id"]].resource) != first["name"]  # a local code, not theirs


def test_a_connected_body_is_harvested_and_applied_for(demo, feed):
    """按需对接: a court's catalog is harvested; a department applies for one of its datasets and the
    application goes to the court through the usual workflow (escalated to the platform office when the
    court does not decide in time), ending in a grant on the copy."""
    import datetime as dt

    from django.utils import timezone

    from shuzheng.sharing import services as sharing
    from sharing_helpers import application_data, system

    url = feed.serve("/court.ttl", document(dataset("FY-02", "失信被执行人名单", access="NON_PUBLIC",
                                                    items=("被执行人名称", "案号", "执行法院"))))
    source = add_source(demo, "定州市人民法院", url)
    assert harvest(demo, "定州市人民法院").created == 1
    resource = mirrors(source)["FY-02"].resource
    assert resource.provider == node("court") and resource.published.sharing_type == "conditional"
    code, _key = system(demo)
    application = sharing.apply(demo.actor("officer-civil-affairs"), application_data(
        code, resource=resource.code, items=["被执行人名称", "案号"]))
    assert application.provider == node("court") and application.state == "provider"
    assert sharing.escalate_overdue(demo.cli(), now=timezone.now() + dt.timedelta(days=30)) >= 1
    decided = sharing.decide(demo.actor("reviewer"), application.number, {"decision": "approve"})
    assert decided.state == "approved" and decided.grant.resource == resource


def test_what_a_source_stops_listing_is_withdrawn_and_comes_back(demo, feed):
    url = feed.serve("/c.ttl", document(dataset("A", "甲数据"), dataset("B", "乙数据")))
    source = add_source(demo, "人大目录", url, org_kind="peoples_congress")
    assert harvest(demo, "人大目录").created == 2
    feed.serve("/c.ttl", document(dataset("A", "甲数据（修订）"), dataset("C", "丙数据")))
    run = harvest(demo, "人大目录")
    assert (run.created, run.updated, run.deleted, run.unchanged) == (1, 1, 1, 0)
    records = mirrors(source)
    assert records["B"].deleted_at is not None and records["B"].resource.status == "deprecated"
    assert records["A"].resource.published.name == "甲数据（修订）" and records["A"].resource.published.number == 2
    feed.serve("/c.ttl", document(dataset("A", "甲数据（修订）"), dataset("B", "乙数据"), dataset("C", "丙数据")))
    run = harvest(demo, "人大目录")
    assert (run.created, run.updated, run.deleted, run.unchanged) == (0, 1, 0, 2)
    b = mirrors(source)["B"]
    assert b.deleted_at is None and b.resource.status == "published" and b.resource.published.number == 2


def huge():
    yield b"@prefix dct: <http://purl.org/dc/terms/> .\n"
    for _ in range(200):
        yield b"# " + b"x" * 65536 + b"\n"


HOSTILE = {
    # name: (answer kwargs, source limits, words the report must contain)
    "invalid RDF": (dict(body="这不是 RDF <<< @@@ .", content_type=TTL), {}, "does not parse"),
    "invalid RDF/XML": (dict(body="<rdf:RDF><unclosed>", content_type="application/rdf+xml"), {}, "does not parse"),
    "huge answer": (dict(body=huge), {"max_bytes": 1 << 20}, "exceed the limit"),
    "slow server": (dict(body="", delay=3), {"timeout_s": 1}, "no answer within"),
    "server error": (dict(body="oops", status=500), {}, "HTTP 500"),
    "redirect loop": (dict(status=302, headers={"Location": "/bad"}), {}, "redirect"),
    "paging loop": (dict(body=document(dataset("P", "分页"), next_page="{url}")), {}, "points back"),
    "paging to another host": (dict(body=document(dataset("P", "分页"), next_page="https://elsewhere.example/p2")),
                               {}, "another host"),
    "entity expansion": (dict(body='<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + ']><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="http://x/d">&j;'
        '</rdf:Description></rdf:RDF>', content_type="application/rdf+xml"), {}, "DTD"),
    "remote JSON-LD context": (dict(body='{"@context": "http://169.254.169.254/latest/meta-data/", "@id": "x"}',
                                    content_type="application/ld+json"), {}, "remote @context"),
    "too many datasets": (dict(body=document(*(dataset(f"N{i}", f"数据{i}") for i in range(3)))),
                          {"max_datasets": 2}, "more than 2 datasets"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_source_is_stopped_and_changes_nothing(demo, feed, english, case):
    from shuzheng.audit.models import AuditRecord

    answer, limits, words = HOSTILE[case]
    good = feed.serve("/good", document(dataset("G", "正常数据")))
    source = add_source(demo, "政协目录", good, org_kind="cppcc", **limits)
    assert harvest(demo, "政协目录").created == 1
    before = snapshot()
    answer = {k: (v.replace("{url}", feed.url + "/bad") if isinstance(v, str) else v) for k, v in answer.items()}
    feed.serve("/bad", **answer)
    from shuzheng.harvest import services

    services.save_source(demo.actor("reviewer"), {"url": feed.url + "/bad"}, name="政协目录")
    run = harvest(demo, "政协目录")
    assert run.state == "failed" and words in run.error, run.error
    assert (run.created, run.updated, run.deleted) == (0, 0, 0)
    assert snapshot() == before
    assert mirrors(source)["G"].resource.status == "published"
    audited = json.loads(AuditRecord.objects.filter(action="harvest.run", object_id=str(run.id)).get().summary)
    assert audited["state"] == "failed" and words in audited["error"]


def test_bad_entries_are_skipped_and_reported(demo, feed, english):
    long_title = "长" * 300
    url = feed.serve("/c.ttl", document(
        dataset("D", "重复一"), dataset("D", "重复二", uri="D-again"), dataset("OK", "正常数据", landing="javascript:alert(1)"),
        dataset("LONG", long_title),
        dataset("BAD", "坏数据", extra='sz:sharingType "none" ;')))
    source = add_source(demo, "纪委目录", url, org_kind="discipline_commission")
    run = harvest(demo, "纪委目录")
    assert run.state == "partial" and run.created == 1 and run.skipped == 3
    problems = {p["identifier"]: p for p in run.problems}
    assert problems["D"]["field"] == "identifier" and "2" in problems["D"]["message"]
    assert problems["LONG"]["field"] == "name"
    assert problems["BAD"]["field"] == "sharing_basis"
    assert set(mirrors(source)) == {"OK"} and mirrors(source)["OK"].landing_page == ""


def test_a_ckan_site_is_read_page_by_page(demo, feed):
    packages = [{"id": f"pkg-{i:03d}", "name": f"pkg-{i:03d}", "title": f"分页数据集{i:03d}", "notes": "说明",
                 "private": False, "tags": [{"name": "分页"}],
                 "resources": [{"url": f"https://ckan.example.org/dataset/pkg-{i:03d}.csv"}]} for i in range(150)]
    for start in (0, 100):
        body = {"success": True, "result": {"count": 150, "results": packages[start:start + 100]}}
        feed.serve(f"/api/3/action/package_search?rows=100&start={start}&sort=name+asc", json.dumps(body),
                   content_type="application/json")
    source = add_source(demo, "开放平台", feed.url, kind="ckan", org_kind="province_platform")
    run = harvest(demo, "开放平台")
    assert run.state == "succeeded" and run.pages == 2 and run.created == 150
    assert set(mirrors(source)) == {p["id"] for p in packages}
    # Published again by this platform, each copy names its origin (the site's dataset page), so another
    # harvester of this catalog leaves it to be taken from there.
    from rdflib import URIRef

    from shuzheng.catalog import dcat
    from shuzheng.harvest import parse

    copy = mirrors(source)["pkg-007"].resource
    graph = dcat.dataset_graph(demo.cli(), "https://sjgx.dingzhou.gov.cn", copy.code)
    assert (None, dcat.PROV.wasDerivedFrom, URIRef(f"{feed.url}/dataset/pkg-007")) in graph
    again = parse.parse_rdf(dcat.serialize(graph, "ttl"), "text/turtle", "https://sjgx.dingzhou.gov.cn/catalog.ttl")
    assert [e.relayed for e in again.entries] == [True]


def test_ckan_answers_that_are_not_ckan_fail_cleanly(demo, feed, english):
    feed.serve("/api/3/action/package_search", "<html>maintenance</html>", content_type="text/html")
    add_source(demo, "坏 CKAN", feed.url, kind="ckan", org_kind="military")
    run = harvest(demo, "坏 CKAN")
    assert run.state == "failed" and "not JSON" in run.error
    feed.serve("/api/3/action/package_search", json.dumps({"success": False, "error": {"message": "x"}}),
               content_type="application/json")
    run = harvest(demo, "坏 CKAN")
    assert run.state == "failed" and "without success" in run.error


@pytest.mark.parametrize("data, field", [
    ({"url": "ftp://example.org/c.ttl"}, "url"), ({"url": "javascript:alert(1)"}, "url"),
    ({"kind": "oai"}, "kind"), ({"organization": "not-a-code"}, "organization"),
    ({"organization": "department"}, "organization"), ({"name": ""}, "name"), ({"name": "x" * 101}, "name"),
    ({"timeout_s": 0}, "timeout_s"), ({"max_bytes": "lots"}, "max_bytes"), ({"interval_minutes": 1}, "interval_minutes"),
])
def test_source_registration_names_the_field_at_fault(demo, data, field):
    from shuzheng.core.errors import ValidationFailed
    from shuzheng.harvest import services
    from shuzheng.harvest.models import HarvestSource

    body = {"name": "测试源", "kind": "dcat", "url": "https://example.org/c.ttl", "organization": node("court").code}
    if data.get("organization") == "department":
        data = {"organization": demo.org("civil-affairs").code}
    with pytest.raises(ValidationFailed) as exc:
        services.save_source(demo.actor("reviewer"), {**body, **data})
    assert exc.value.errors[0].field == field
    assert not HarvestSource.objects.exists()


def test_the_api_manages_sources_for_the_platform_office_only(client, demo, feed):
    from shuzheng.harvest.models import HarvestSource

    url = feed.serve("/c.ttl", document(dataset("X", "军队目录数据")))
    body = {"name": "人武部", "kind": "dcat", "url": url, "organization": node("military").code,
            "credential": "sz_secret_value_never_shown"}
    client.force_login(demo.user("officer-civil-affairs"))
    assert client.post("/api/v1/harvest/sources", body, content_type="application/json").status_code == 403
    assert client.get("/api/v1/harvest/sources").status_code == 403
    client.force_login(demo.user("reviewer"))
    response = client.post("/api/v1/harvest/sources", body, content_type="application/json")
    assert response.status_code == 201 and response.json()["has_credential"] is True
    assert "sz_secret_value_never_shown" not in response.content.decode()
    stored = HarvestSource.objects.get(name="人武部")
    assert b"sz_secret_value_never_shown" not in bytes(stored.credential)
    response = client.post("/api/v1/harvest/sources", {**body, "name": "另一个", "url": "file:///etc/passwd"},
                           content_type="application/json")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "url"
    run = client.post("/api/v1/harvest/sources/人武部/run").json()
    assert run["state"] == "succeeded" and run["created"] == 1
    # The key went to the source as a bearer credential.
    assert feed.requests[-1][1].get("Authorization") == "Bearer sz_secret_value_never_shown"
    runs = client.get("/api/v1/harvest/sources/人武部/runs").json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]
    assert client.patch("/api/v1/harvest/sources/人武部", {"enabled": False},
                        content_type="application/json").json()["enabled"] is False
    assert client.get("/api/v1/harvest/sources/nothing").status_code == 404


def test_the_harvest_page(client, demo, feed):
    url = feed.serve("/c.ttl", document(dataset("Y", "党委目录数据")))
    client.force_login(demo.user("reviewer"))
    page = client.get("/harvest/").content.decode()
    assert "/harvest/new/" in page
    response = client.post("/harvest/new/", {"name": "市委目录", "kind": "dcat", "url": url,
                                              "organization": node("party_committee").code,
                                              "interval_minutes": 60})
    assert response.status_code == 302
    response = client.post("/harvest/市委目录/run/", follow=True)
    page = response.content.decode()
    assert "市委目录" in page and "run-succeeded" in page
    bad = client.post("/harvest/new/", {"name": "坏", "kind": "dcat", "url": "gopher://x",
                                         "organization": node("party_committee").code, "interval_minutes": 60})
    assert bad.status_code == 200 and "http://" in bad.content.decode()
    client.force_login(demo.user("officer-civil-affairs"))
    assert client.get("/harvest/").status_code == 403


def test_a_master_key_rotation_rewraps_source_credentials(demo, feed, keys_restored):  # noqa: F811
    from shuzheng.harvest import services
    from shuzheng.harvest.models import HarvestRun
    from shuzheng.security import keys, rotation

    url = feed.serve("/c.ttl", document(dataset("K", "密钥轮换测试数据")))
    source = services.save_source(demo.actor("reviewer"), {
        "name": "检察院目录", "kind": "dcat", "url": url, "organization": node("procuratorate").code,
        "credential": "sz_key_at_the_source"})
    before = keys.wrapped_by(bytes(source.credential))
    result = rotation.rotate_master(demo.cli())
    source.refresh_from_db()
    assert keys.wrapped_by(bytes(source.credential)) == result["master"] != before
    assert result["removed"] == [before]  # nothing is left under the old master
    assert harvest(demo, "检察院目录").state == "succeeded"
    assert feed.requests[-1][1]["Authorization"] == "Bearer sz_key_at_the_source"
    # A run left "running" by a process that died does not block the source for ever.
    from django.utils import timezone

    HarvestRun.objects.create(source=source, started_at=timezone.now() - services.STALE)
    assert harvest(demo, "检察院目录").state == "succeeded"
    assert source.runs.filter(state="failed", finished_at__isnull=False).count() == 1
