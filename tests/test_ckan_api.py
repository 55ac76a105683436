"""CKAN's Action API (/api/3/action/…): the real `ckanapi` client against a running platform with the Dingzhou
demo (package, organization, group, tag, resource and datastore actions, the public against an application
system's key, ckanapi's exceptions), and Django's test client for what ckanapi cannot send: malformed
parameters, NUL characters, oversized values, other credentials, the audit trail and the item policy.

ckanapi calls /api/action/ by default and CKAN serves the same actions under /api/3/action/: the platform
answers both, and the clients here use ckanapi unchanged (one test reads through /api/3/action/ too)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import ckanapi
import pytest
import requests

from shuzheng.catalog.models import Resource

ENTERPRISES = "企业登记基本信息"  # open, published, a warehouse table loaded by the demo
PEOPLE = "101001000/000001"  # the household register: not open (closed), a warehouse table
PEOPLE_NAME = PEOPLE.replace("/", "-")


def remote(url: str, apikey: str | None = None) -> ckanapi.RemoteCKAN:
    return ckanapi.RemoteCKAN(url, apikey=apikey)


@pytest.fixture(scope="module")
def site(platform):
    with remote(platform.url) as ckan:
        yield ckan


@pytest.fixture(scope="module")
def key(platform) -> str:
    """An API key of a new application system of civil affairs, issued on the running platform."""
    code = f"ckan-{uuid.uuid4().hex[:8]}"
    script = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
        "from shuzheng.org import services as s\n"
        "from shuzheng.demo.loader import demo_credit_code\n"
        "a = s.Actor.cli()\n"
        f"s.create_system(a, {{'code': '{code}', 'name': 'CKAN客户端{code[-4:]}',"
        " 'organization': demo_credit_code('civil-affairs', '130682')})\n"
        f"print(s.create_api_key(a, '{code}', 'ckan', 7)[1])\n")
    done = subprocess.run([sys.executable, "-c", script], env=platform.env, check=True, capture_output=True,
                          text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def keyed(platform, key):
    with remote(platform.url, key) as ckan:
        yield ckan


@pytest.fixture(scope="module")
def enterprises(site) -> dict:
    found = site.action.package_search(q=ENTERPRISES, rows=50)["results"]
    return next(p for p in found if p["title"] == ENTERPRISES)


# --------------------------------------------------------------------------------------------------
# Over HTTP with ckanapi
# --------------------------------------------------------------------------------------------------


def test_status_and_api_version(platform, site):
    status = site.action.status_show()
    assert status["ckan_version"] == "2.10.4" and status["site_url"] == platform.url
    assert status["extensions"] == [] and status["locale_default"] == "zh_Hans" and status["site_title"]
    assert requests.get(platform.url + "/api/3", timeout=10).json() == {"version": 3}
    answer = requests.get(platform.url + "/api/3/action/package_list", timeout=10).json()
    assert answer["success"] is True
    assert answer["help"] == platform.url + "/api/3/action/help_show?name=package_list"
    assert "dataset" in site.action.help_show(name="package_show")


def test_package_list_and_show(site, enterprises):
    names = site.action.package_list()
    assert names == sorted(names) and len(names) == len(set(names)) > 50
    assert enterprises["name"] in names and PEOPLE_NAME not in names  # the household register is not open
    assert site.action.package_list(limit=5, offset=3) == names[3:8]
    by_name = site.action.package_show(id=enterprises["name"])
    by_id = site.action.package_show(id=by_name["id"])
    assert by_name == by_id == enterprises
    pkg = by_name
    assert pkg["type"] == "dataset" and pkg["state"] == "active" and pkg["private"] is False
    assert pkg["name"] == pkg["extras"][0]["value"].lower().replace("/", "-")
    assert pkg["organization"]["id"] == pkg["owner_org"] and pkg["organization"]["title"] == "定州市市场监督管理局"
    assert pkg["license_id"] == "other-at" and pkg["isopen"] is True
    assert {t["name"] for t in pkg["tags"]} >= {"企业", "法人"} and pkg["num_tags"] == len(pkg["tags"])
    assert [g["name"] for g in pkg["groups"]] == ["102"]
    assert pkg["url"].endswith(f"/catalog/{pkg['name']}/")
    assert "T" in pkg["metadata_modified"] and "+" not in pkg["metadata_modified"]
    extras = {e["key"]: e["value"] for e in pkg["extras"]}
    assert extras["open_type"] == "open" and extras["update_cycle"] == "daily" and extras["level"] == "general"
    assert [i["name"] for i in json.loads(extras["data_items"])][:2] == ["统一社会信用代码", "单位名称"]
    [dist] = pkg["resources"]
    assert pkg["num_resources"] == 1 and dist["datastore_active"] is True and dist["format"] == "JSON"
    assert dist["url"].endswith(f"/api/v1/share/{pkg['name']}/records")
    assert dist["id"] == str(uuid.uuid5(uuid.UUID(pkg["id"]), "records"))
    assert site.action.resource_show(id=dist["id"]) == {**dist, "package_name": pkg["name"]}


def test_package_search_in_chinese_with_filters(site, enterprises):
    found = site.action.package_search(q="企业登记")
    assert found["count"] >= 1 and enterprises["name"] in [p["name"] for p in found["results"]]
    assert found["sort"] == "score desc, metadata_modified desc"
    org = enterprises["organization"]["name"]
    by_org = site.action.package_search(fq=f'organization:"{org}"', rows=100)
    assert by_org["count"] == len(by_org["results"]) > 1
    assert {p["organization"]["name"] for p in by_org["results"]} == {org}
    both = site.action.package_search(fq=f"+organization:{org} AND res_format:JSON AND groups:102", rows=100)
    assert enterprises["name"] in [p["name"] for p in both["results"]]
    assert all(any(r["format"] == "JSON" for r in p["resources"]) for p in both["results"])
    tagged = site.action.package_search(fq='tags:"企业"', rows=100)
    assert tagged["count"] >= 1 and all("企业" in [t["name"] for t in p["tags"]] for p in tagged["results"])
    assert site.action.package_search(fq="organization:a organization:b")["count"] == 0  # AND, as Solr
    assert site.action.package_search(q="没有这样的资源词")["count"] == 0


@pytest.mark.parametrize("sort", ["score desc, metadata_modified desc", "metadata_modified desc", "name asc",
                                  "title_string asc"])
def test_paging_gives_the_unpaged_order(site, sort):
    whole = site.action.package_search(sort=sort, rows=1000)
    assert whole["sort"] == sort and whole["count"] == len(whole["results"]) > 20
    paged, start = [], 0
    while start < whole["count"]:
        page = site.action.package_search(sort=sort, rows=9, start=start)
        assert page["count"] == whole["count"]
        paged += [p["name"] for p in page["results"]]
        start += 9
    assert paged == [p["name"] for p in whole["results"]]
    if sort == "name asc":
        assert paged == sorted(paged)
    if sort == "title_string asc":
        titles = [p["title"] for p in whole["results"]]
        assert titles == sorted(titles)
    if sort == "metadata_modified desc":
        stamps = [p["metadata_modified"][:19] for p in whole["results"]]
        assert stamps == sorted(stamps, reverse=True)


def test_facets(site):
    found = site.action.package_search(rows=0, **{"facet.field": json.dumps(["organization", "groups", "res_format",
                                                                              "license_id", "open_type"]),
                                                  "facet.limit": -1})
    assert found["results"] == []
    facets, items = found["facets"], found["search_facets"]
    assert sum(facets["organization"].values()) == sum(facets["license_id"].values()) == found["count"]
    assert set(facets["open_type"]) <= {"open", "conditional"}  # not private: no closed ones
    assert all(len(g) == 3 and g.isdigit() for g in facets["groups"])
    first = items["organization"]["items"][0]
    assert first["count"] == max(facets["organization"].values()) and first["display_name"].startswith("定州市")
    limited = site.action.package_search(rows=0, **{"facet.field": '["organization"]', "facet.limit": 2})
    assert len(limited["facets"]["organization"]) == 2


def test_organizations_groups_and_tags(site, enterprises):
    names = site.action.organization_list()
    org = enterprises["organization"]
    assert org["name"] in names and names == sorted(names)
    full = site.action.organization_list(all_fields=True, sort="package_count desc")
    counts = [o["package_count"] for o in full]
    assert counts == sorted(counts, reverse=True) and all(o["title"] for o in full)
    shown = site.action.organization_show(id=org["name"], include_datasets=True)
    assert shown["id"] == org["id"] and shown["package_count"] >= len(shown["packages"]) > 1
    assert {p["owner_org"] for p in shown["packages"]} == {org["id"]}
    assert site.action.organization_show(id=org["id"])["name"] == org["name"]
    groups = site.action.group_list(all_fields=True)
    assert "102" in [g["name"] for g in groups] and all(g["package_count"] > 0 for g in groups)
    group = site.action.group_show(id="102", include_datasets=True)
    assert group["title"] == "法人单位基础信息资源" and enterprises["name"] in [p["name"] for p in group["packages"]]
    tags = site.action.tag_list()
    assert "企业" in tags and tags == sorted(tags)
    assert set(site.action.tag_list(query="企业")) <= {t for t in tags if "企业" in t}


def test_datastore_search_reads_the_open_rows(site, enterprises):
    rid = enterprises["resources"][0]["id"]
    first = site.action.datastore_search(resource_id=rid, limit=50)
    assert first["total"] > 1000 and len(first["records"]) == 50 and first["resource_id"] == rid
    fields = [f["id"] for f in first["fields"]]
    assert fields[:3] == ["_id", "统一社会信用代码", "单位名称"]
    assert {f["id"]: f["type"] for f in first["fields"]}["注册资本"] == "numeric"
    assert first["_links"]["next"].endswith("offset=50")
    second = site.action.datastore_search(resource_id=rid, limit=50, offset=50)
    both = site.action.datastore_search(resource_id=rid, limit=100)
    assert both["records"] == first["records"] + second["records"]
    record = first["records"][7]
    code = record["统一社会信用代码"]
    assert len(code) == 18
    match = site.action.datastore_search(resource_id=enterprises["name"], filters={"统一社会信用代码": code})
    assert match["total"] == 1 and match["records"] == [record]
    picked = site.action.datastore_search(resource_id=rid, fields=["单位名称", "注册资本"], sort="注册资本 desc",
                                          limit=5)
    money = [r["注册资本"] for r in picked["records"]]
    assert [f["id"] for f in picked["fields"]] == ["单位名称", "注册资本"] and money == sorted(money, reverse=True)
    found = site.action.datastore_search(resource_id=rid, q="科技", limit=20)
    assert found["total"] > 0 and all(any("科技" in str(v) for v in r.values()) for r in found["records"])


def test_closed_resources_only_with_a_key(site, keyed):
    with pytest.raises(ckanapi.NotFound):
        site.action.package_show(id=PEOPLE_NAME)
    pkg = keyed.action.package_show(id=PEOPLE_NAME)
    assert pkg["private"] is True and pkg["license_id"] == "other-closed" and pkg["state"] == "active"
    assert pkg["resources"][0]["datastore_active"] is False
    assert PEOPLE_NAME not in [p["name"] for p in site.action.package_search(q="户籍人口", rows=100,
                                                                             include_private=True)["results"]]
    found = keyed.action.package_search(q="户籍人口", rows=100, include_private=True)["results"]
    assert PEOPLE_NAME in [p["name"] for p in found]
    assert PEOPLE_NAME not in [p["name"] for p in keyed.action.package_search(q="户籍人口", rows=100)["results"]]
    with pytest.raises(ckanapi.NotAuthorized):  # visible, but not open data
        keyed.action.datastore_search(resource_id=PEOPLE_NAME)
    with pytest.raises(ckanapi.NotFound):  # the public does not know it exists
        site.action.datastore_search(resource_id=PEOPLE_NAME)


def test_ckanapi_exceptions(platform, site):
    with pytest.raises(ckanapi.NotFound):
        site.action.package_show(id="no-such-dataset")
    with pytest.raises(ckanapi.NotFound):
        site.action.resource_show(id=str(uuid.uuid4()))
    with pytest.raises(ckanapi.ValidationError) as raised:
        site.action.package_search(rows=-1)
    assert raised.value.error_dict["__type"] == "Validation Error" and "rows" in raised.value.error_dict
    with pytest.raises(ckanapi.ValidationError) as raised:
        site.action.package_search(sort="popularity desc")
    assert "sort" in raised.value.error_dict
    with remote(platform.url, "sz_not-a-real-key") as bad, pytest.raises(ckanapi.NotAuthorized):
        bad.action.package_list()
    with pytest.raises(ckanapi.CKANAPIError, match="Action name not known: package_create"):
        site.action.package_create(name="x")


# --------------------------------------------------------------------------------------------------
# In process: parameters, credentials, audit, the item policy
# --------------------------------------------------------------------------------------------------


def call(client, action: str, params: dict | None = None, method: str = "get", **headers):
    headers.setdefault("HTTP_ACCEPT_LANGUAGE", "en")
    if method == "get":
        return client.get(f"/api/3/action/{action}", params or {}, **headers)
    return client.post(f"/api/3/action/{action}", json.dumps(params or {}), content_type="application/json",
                       **headers)


def enterprise_name() -> str:
    return Resource.objects.get(published__name=ENTERPRISES).code.replace("/", "-")


ENT = "<enterprises>"
BIG = "x" * 10240
MALFORMED = [
    ("package_search", {"rows": "-1"}, "rows"),
    ("package_search", {"rows": "abc"}, "rows"),
    ("package_search", {"rows": "100000"}, "rows"),
    ("package_search", {"rows": "1.5"}, "rows"),
    ("package_search", {"start": "-5"}, "start"),
    ("package_search", {"fq": "nosuchfield:x"}, "fq"),
    ("package_search", {"fq": "organization:(a OR b)"}, "fq"),
    ("package_search", {"fq": 'organization:"unclosed'}, "fq"),
    ("package_search", {"fq": "-organization:x"}, "fq"),
    ("package_search", {"fq": "tags:[a TO b]"}, "fq"),
    ("package_search", {"fq": "metadata_modified:[yesterday TO *]"}, "fq"),
    ("package_search", {"fq": BIG}, "fq"),
    ("package_search", {"q": "企" * 10240}, "q"),
    ("package_search", {"sort": "popularity desc"}, "sort"),
    ("package_search", {"sort": BIG}, "sort"),
    ("package_search", {"facet.field": "organization"}, "facet.field"),
    ("package_search", {"facet.field": '["nosuch"]'}, "facet.field"),
    ("package_search", {"facet.field": '{"a": 1}'}, "facet.field"),
    ("package_search", {"facet.limit": "many"}, "facet.limit"),
    ("package_search", {"include_private": "maybe"}, "include_private"),
    ("package_show", {}, "id"),
    ("package_show", {"id": BIG}, "id"),
    ("package_list", {"limit": "-1"}, "limit"),
    ("package_list", {"offset": "x"}, "offset"),
    ("organization_list", {"sort": "size asc"}, "sort"),
    ("organization_list", {"all_fields": "perhaps"}, "all_fields"),
    ("organization_show", {}, "id"),
    ("group_show", {"id": BIG}, "id"),
    ("resource_show", {}, "id"),
    ("help_show", {}, "name"),
    ("datastore_search", {}, "resource_id"),
    ("datastore_search", {"resource_id": BIG}, "resource_id"),
    ("datastore_search", {"resource_id": ENT, "filters": "[1, 2]"}, "filters"),
    ("datastore_search", {"resource_id": ENT, "filters": "{not json"}, "filters"),
    ("datastore_search", {"resource_id": ENT, "filters": '{"注册资本": "abc"}'}, "filters.注册资本"),
    ("datastore_search", {"resource_id": ENT, "filters": '{"没有的字段": "1"}'}, "filters.没有的字段"),
    ("datastore_search", {"resource_id": ENT, "filters": '{"单位名称": {"a": 1}}'}, "filters.单位名称"),
    ("datastore_search", {"resource_id": ENT, "limit": "1000000"}, "limit"),
    ("datastore_search", {"resource_id": ENT, "offset": "-1"}, "offset"),
    ("datastore_search", {"resource_id": ENT, "sort": "单位名称 sideways"}, "sort"),
    ("datastore_search", {"resource_id": ENT, "sort": "没有的字段"}, "sort"),
    ("datastore_search", {"resource_id": ENT, "fields": "单位名称,没有的字段"}, "fields"),
    ("datastore_search", {"resource_id": ENT, "q": BIG}, "q"),
    ("datastore_search", {"resource_id": ENT, "records_format": "csv"}, "records_format"),
]


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("action,params,field", MALFORMED, ids=[f"{a}-{f}-{i}" for i, (a, _p, f) in
                                                                 enumerate(MALFORMED)])
def test_malformed_parameters_are_validation_errors(demo, client, method, action, params, field):
    params = {k: enterprise_name() if v == ENT else v for k, v in params.items()}
    response = call(client, action, params, method)
    assert response.status_code == 409, response.content[:500]
    body = response.json()
    assert body["success"] is False and body["help"].endswith(f"help_show?name={action}")
    assert body["error"]["__type"] == "Validation Error" and body["error"]["message"]
    assert field in body["error"], body["error"]
    assert isinstance(body["error"][field], list) and body["error"][field][0]


def test_bodies_that_are_not_objects_and_nul_characters(demo, client):
    for raw in ("[1, 2]", '"text"', "{not json", "[" * 100_000):
        response = client.post("/api/3/action/package_search", raw, content_type="application/json")
        assert response.status_code == 409 and "body" in response.json()["error"], raw[:20]
    # A NUL that the platform's NUL guard does not see (a body it does not read as JSON) is refused here.
    response = client.post("/api/3/action/package_search", '{"q": "a\\u0000b"}', content_type="text/plain")
    assert response.status_code == 409 and "q" in response.json()["error"]
    response = client.post("/api/3/action/package_search", '{"fq": ["a\\u0000"]}', content_type="text/plain")
    assert response.status_code == 409 and "fq" in response.json()["error"]
    # In the query string and in JSON bodies the platform's guard answers first (400, problem+json).
    for response in (client.get("/api/3/action/package_search?q=a%00b"),
                     client.post("/api/3/action/package_search", '{"q": "a\\u0000b"}',
                                 content_type="application/json")):
        assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"


def test_unknown_actions_and_methods(demo, client):
    response = call(client, "package_create", {"name": "x"}, "post")
    assert response.status_code == 400 and response.json() == "Bad request - Action name not known: package_create"
    response = client.put("/api/3/action/package_list")
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    response = call(client, "package_show", {"id": "no-such"})
    assert response.status_code == 404
    assert response.json()["error"] == {"__type": "Not Found Error", "message": "Not found: No dataset no-such."}


def test_form_posts_and_repeated_parameters(demo, client):
    response = client.post("/api/3/action/package_show", {"id": enterprise_name()})
    assert response.status_code == 200 and response.json()["result"]["title"] == ENTERPRISES
    response = client.post("/api/3/action/package_show", json.dumps({"id": enterprise_name()}),
                           content_type="application/x-www-form-urlencoded")  # curl -d '{…}'
    assert response.status_code == 200 and response.json()["result"]["title"] == ENTERPRISES
    response = client.get(f"/api/3/action/package_show?id={enterprise_name()}&id=x")
    assert response.status_code == 409 and "id" in response.json()["error"]


def test_api_keys_as_ckan_clients_send_them(demo, client):
    from sharing_helpers import system

    _code, raw = system(demo)
    for headers in ({"HTTP_AUTHORIZATION": raw}, {"HTTP_AUTHORIZATION": f"Bearer {raw}"},
                    {"HTTP_X_CKAN_API_KEY": raw}):
        response = call(client, "package_show", {"id": PEOPLE_NAME}, **headers)
        assert response.status_code == 200 and response.json()["result"]["private"] is True, headers
    assert call(client, "package_show", {"id": PEOPLE_NAME}).status_code == 404
    from shuzheng.audit.models import AuditRecord

    before = AuditRecord.objects.filter(action="auth.apikey_failed").count()
    response = call(client, "package_list", HTTP_X_CKAN_API_KEY="sz_wrong")
    assert response.status_code == 403
    assert response.json()["error"] == {"__type": "Authorization Error",
                                        "message": "Access denied: The API key is not valid."}
    assert AuditRecord.objects.filter(action="auth.apikey_failed").count() == before + 1


def test_a_signed_in_user_sees_what_the_catalog_shows_them(demo, client):
    deprecated = Resource.objects.filter(status="deprecated").first()
    name = deprecated.code.replace("/", "-")
    assert call(client, "package_show", {"id": name}).status_code == 404
    client.force_login(demo.user("staff"))
    assert call(client, "package_show", {"id": name}).json()["result"]["state"] == "deleted"
    assert call(client, "package_show", {"id": PEOPLE_NAME}).json()["result"]["private"] is True
    search = {"fq": f"id:{deprecated.pk}", "include_private": "true"}
    assert call(client, "package_search", search).json()["result"]["count"] == 0
    found = call(client, "package_search", {**search, "include_deleted": "true"}).json()["result"]
    assert [p["name"] for p in found["results"]] == [name]


def test_datastore_calls_are_audited(demo, client):
    from shuzheng.audit.models import AuditRecord

    seq = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    ok = call(client, "datastore_search", {"resource_id": enterprise_name(), "limit": 3})
    assert ok.status_code == 200 and len(ok.json()["result"]["records"]) == 3
    refused = call(client, "datastore_search", {"resource_id": PEOPLE_NAME})
    assert refused.status_code == 404
    bad = call(client, "datastore_search", {"resource_id": enterprise_name(), "limit": "x"})
    assert bad.status_code == 409
    records = list(AuditRecord.objects.filter(seq__gt=seq, action__startswith="share.").order_by("seq"))
    assert [r.action for r in records] == ["share.datastore_search", "share.refused", "share.refused"]
    summaries = [json.loads(r.summary) for r in records]
    assert summaries[0]["rows"] == 3 and summaries[0]["resource"] == enterprise_name().replace("-", "/")
    assert summaries[1]["call"] == "datastore_search" and summaries[1]["status"] == 404
    assert all(r.actor == "anonymous" for r in records)


def test_items_the_policy_does_not_leave_clear_are_withheld(demo, client, tmp_path, monkeypatch):
    """Open resources hold only general items (the catalog refuses to open anything higher); should the
    policy mask a general item by default (here: personal ones hashed), open data leave it out whole."""
    from shuzheng.security import policy

    path = tmp_path / "security-policy.json"
    path.write_text(json.dumps({"default_masks": [
        {"level": "core", "mask": "hash"}, {"sensitive": True, "mask": "hash"},
        {"level": "important", "mask": "suggested"}, {"subject": "personal", "mask": "hash"},
        {"level": "general", "mask": "clear"}]}), encoding="utf-8")
    monkeypatch.setattr(policy, "override_path", lambda: path)
    answer = call(client, "datastore_search", {"resource_id": enterprise_name(), "limit": 2}).json()["result"]
    assert "法定代表人姓名" not in [f["id"] for f in answer["fields"]]
    assert all("法定代表人姓名" not in r for r in answer["records"]) and answer["withheld_fields"] == ["法定代表人姓名"]
    for params in ({"filters": json.dumps({"法定代表人姓名": "王俊"})}, {"sort": "法定代表人姓名"},
                   {"fields": "法定代表人姓名"}, {"q": json.dumps({"法定代表人姓名": "王"})}):
        response = call(client, "datastore_search", {"resource_id": enterprise_name(), **params})
        assert response.status_code == 409, params
        assert "is not open" in json.dumps(response.json()["error"]), params
