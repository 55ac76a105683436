"""The catalog API under /api/v1/catalog (issue 3), through real HTTP requests to the Django app: status codes,
problem+json bodies naming the field at fault, what each kind of caller sees, and the audit trail each
change leaves. Refusals are checked to write nothing.

The tests create their own resources and never assume how many resources the demo catalog holds."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.test import Client

from catalog_helpers import GENERAL_ITEMS, marker, resource_data
from shuzheng.audit.models import AuditRecord
from shuzheng.catalog import services
from shuzheng.catalog.models import Category, DataElement, DataItem, Resource, ResourceVersion, ReviewEvent
from shuzheng.org import services as org_services
from shuzheng.org.models import UserRole

EN = {"Accept-Language": "en"}
API = "/api/v1/catalog"
CODE = re.compile(r"^\d{9}/\d{6}$")
UNKNOWN_ORG = "91130682MA00000000"


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


# ---- helpers ----


def as_user(demo, name) -> Client:
    client = Client(headers=EN)
    client.force_login(demo.user(name))
    return client


def anonymous() -> Client:
    return Client(headers=EN)


def send(client, method: str, url: str, body=None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body if body is not None else {})
    return getattr(client, method)(url, data, content_type="application/json")


def post(client, url, body=None):
    return send(client, "post", url, body)


def put(client, url, body=None):
    return send(client, "put", url, body)


def problem(resp, status):
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/problem+json"), resp["Content-Type"]
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields(body) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def ok(resp, status=200):
    assert resp.status_code == status, resp.content
    return resp.json()


def url(code: str, tail: str = "") -> str:
    """Resource codes contain a slash; paths write it as a hyphen."""
    return f"{API}/resources/{code.replace('/', '-')}{tail}"


def body_of(demo, provider: str = "public-security", **overrides) -> dict:
    return resource_data(demo, provider, **overrides)


def edit_of(body: dict) -> dict:
    """The body of PUT …/draft: a registration without category and provider."""
    return {k: v for k, v in body.items() if k not in ("category", "provider")}


def register(demo, officer="officer-public-security", provider="public-security", **overrides) -> dict:
    return ok(post(as_user(demo, officer), f"{API}/resources", body_of(demo, provider, **overrides)), 201)


def advance(demo, code: str, officer="officer-public-security", to: str = "published") -> None:
    ok(post(as_user(demo, officer), url(code, "/submit"), {}))
    if to == "submitted":
        return
    reviewer = as_user(demo, "reviewer")
    ok(post(reviewer, url(code, "/review"), {"decision": "approve", "comment": "符合要求"}))
    if to == "approved":
        return
    ok(post(reviewer, url(code, "/publish"), {}))


def actions(code: str) -> list[str]:
    pk = Resource.objects.get(code=code).pk
    return list(AuditRecord.objects.filter(object_id=str(pk)).order_by("seq").values_list("action", flat=True))


def counts() -> tuple:
    return (Resource.objects.count(), ResourceVersion.objects.count(), DataItem.objects.count(),
            ReviewEvent.objects.count(), Category.objects.count(), AuditRecord.objects.count())


def codes_of(resp) -> list[str]:
    return [r["code"] for r in ok(resp)["resources"]]


def new_element(demo) -> DataElement:
    identifier = "TA" + uuid.uuid4().hex[:8].upper()
    return services.save_element(demo.cli(), {"identifier": identifier, "name": f"接口测试数据元{identifier}",
                                              "definition": "测试用。", "data_type": "string"})


# ---- 1. registration ----


def test_register_a_resource(demo):
    officer = as_user(demo, "officer-public-security")
    first = ok(post(officer, f"{API}/resources", body_of(demo, name="定州市暂住人口基本信息（接口测试）")), 201)
    assert CODE.match(first["code"]) and first["code"].startswith("101001000/")
    assert first["status"] == "draft" and first["version"] == 1 and first["kind"] == "base"
    assert first["pending"] == {"number": 1, "status": "draft"} and first["published_version"] is None
    assert first["provider"] == {"code": demo.org("public-security").code, "name": "定州市公安局"}
    assert first["owner"]["code"] == first["manager"]["code"] == demo.org("public-security").code
    assert first["level"] == "important"  # the highest item level
    assert [i["name"] for i in first["items"]] == ["公民身份号码", "姓名", "性别"]
    assert first["items"][0]["element_name"] == "公民身份号码" and first["items"][0]["level"] == "important"
    assert first["mount"] is None and first["mounted"] is False
    second = ok(post(officer, f"{API}/resources", body_of(demo)), 201)
    assert int(second["code"][-6:]) == int(first["code"][-6:]) + 1
    record = AuditRecord.objects.filter(action="catalog.resource_create").latest("seq")
    assert record.actor == "officer-public-security" and second["code"] in record.summary
    assert record.ip == "127.0.0.1"
    # The detail is readable by code, with the slash written as a hyphen or escaped.
    assert ok(officer.get(url(first["code"])))["name"] == "定州市暂住人口基本信息（接口测试）"


def test_register_with_the_csrf_token_of_a_real_sign_in(demo):
    client = Client(enforce_csrf_checks=True, headers=EN)
    page = client.get("/login/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    resp = client.post("/login/", {"username": "officer-civil-affairs", "password": demo.password,
                                   "csrfmiddlewaretoken": token})
    assert resp.status_code == 302
    before = counts()
    body = json.dumps(body_of(demo, "civil-affairs"))
    refused = client.post(f"{API}/resources", body, content_type="application/json")
    assert refused.status_code == 403 and counts() == before
    page = client.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    created = client.post(f"{API}/resources", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201, created.content


def test_class_3_and_other_departments_classifications(demo):
    own = register(demo, category="3")
    assert re.fullmatch(r"3\d\d", own["category"]["code"]) and own["kind"] == "department"
    assert own["category"]["name"] == "定州市公安局"
    assert register(demo, category="3")["category"]["code"] == own["category"]["code"]
    listed = {c["code"]: c for c in ok(anonymous().get(f"{API}/categories"))}
    assert listed[own["category"]["code"]]["organization"] == demo.org("public-security").code
    assert listed["101001"]["parent"] == "101" and listed["101001"]["kind"] == "base"
    before = counts()
    body = problem(post(as_user(demo, "officer-civil-affairs"), f"{API}/resources",
                        body_of(demo, "civil-affairs", category=own["category"]["code"])), 422)
    assert fields(body) == {"category"}
    assert counts() == before


def test_registration_refusals(demo):
    officer = as_user(demo, "officer-civil-affairs")
    before = counts()
    body = problem(post(officer, f"{API}/resources", {**body_of(demo, "civil-affairs"), "provider": UNKNOWN_ORG}),
                   422)
    assert fields(body) == {"provider"}
    assert fields(problem(post(officer, f"{API}/resources", body_of(demo, "civil-affairs", category="109")),
                          422)) == {"category"}
    # Another department's resource: forbidden, whoever asks without the right.
    problem(post(officer, f"{API}/resources", body_of(demo, "public-security")), 403)
    problem(post(as_user(demo, "staff"), f"{API}/resources", body_of(demo, "civil-affairs")), 403)
    problem(post(as_user(demo, "reviewer"), f"{API}/resources", body_of(demo, "civil-affairs")), 403)
    problem(post(anonymous(), f"{API}/resources", body_of(demo, "civil-affairs")), 401)
    assert counts() == before


def test_a_steward_drafts_but_cannot_submit(demo):
    steward = as_user(demo, "steward")
    created = ok(post(steward, f"{API}/resources", body_of(demo, "civil-affairs")), 201)
    before = counts()
    problem(post(steward, url(created["code"], "/submit"), {}), 403)
    assert counts() == before
    assert ok(post(as_user(demo, "officer-civil-affairs"), url(created["code"], "/submit"), {}))["status"] == \
        "submitted"


# ---- 2. metadata rules ----

IMPORTANT_ITEMS = [{"name": "公民身份号码", "element": "DE00001"}, {"name": "性别", "element": "DE00003"}]


def _without(name):
    return lambda body: {k: v for k, v in body.items() if k != name}


def _with(**changes):
    return lambda body: {**body, **changes}


METADATA_CASES = [
    ("name missing", _without("name"), "name"),
    ("name empty", _with(name=" "), "name"),
    ("summary missing", _without("summary"), "summary"),
    ("summary empty", _with(summary=""), "summary"),
    ("format missing", _without("format"), "format"),
    ("format unknown", _with(format="pdf"), "format"),
    ("sharing type missing", _without("sharing_type"), "sharing_type"),
    ("sharing type unknown", _with(sharing_type="sometimes"), "sharing_type"),
    ("open type missing", _without("open_type"), "open_type"),
    ("update cycle missing", _without("update_cycle"), "update_cycle"),
    ("category missing", _without("category"), "category"),
    ("provider missing", _without("provider"), "provider"),
    ("not shared without basis", _with(sharing_type="none"), "sharing_basis"),
    ("conditional without conditions", _with(sharing_type="conditional"), "sharing_conditions"),
    ("shared without methods", _with(sharing_methods=[]), "sharing_methods"),
    ("conditional opening without conditions", _with(open_type="conditional", items=GENERAL_ITEMS),
     "open_conditions"),
    ("open above general", _with(open_type="open", items=IMPORTANT_ITEMS), "open_type"),
    ("level below its items", _with(level="general"), "level"),
    ("unknown element", _with(items=[GENERAL_ITEMS[0], {"name": "x", "element": "DE99999"}]), "items[1].element"),
    ("type differs from element", _with(items=[{"name": "出生日期", "element": "DE00005", "data_type": "string"}]),
     "items[0].data_type"),
    ("duplicate item names", _with(items=[GENERAL_ITEMS[0], {"name": "性别", "data_type": "string"}]),
     "items[1].name"),
    ("no items", _with(items=[]), "items"),
    ("items missing", _without("items"), "items"),
    ("unknown related code", _with(related_codes=["101001000/999999"]), "related_codes"),
    ("unknown owner", _with(owner=UNKNOWN_ORG), "owner"),
    ("unknown steward", _with(steward="nobody-at-all"), "steward"),
    ("bad date", _with(time_coverage_start="2024-02-30"), "time_coverage_start"),
    ("coverage ends before it starts", _with(time_coverage_start="2024-06-01", time_coverage_end="2023-06-01"),
     "time_coverage_end"),
]


@pytest.mark.parametrize("change,field", [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_metadata_rules_are_422_naming_the_field(demo, change, field):
    officer = as_user(demo, "officer-public-security")
    before = counts()
    body = problem(post(officer, f"{API}/resources", change(body_of(demo, category="3"))), 422)
    assert field in fields(body), body
    assert body["title"] == "Validation failed"
    assert counts() == before


def test_the_level_message_names_the_item(demo):
    body = problem(post(as_user(demo, "officer-public-security"), f"{API}/resources",
                        body_of(demo, level="general")), 422)
    [error] = body["errors"]
    assert error["field"] == "level" and "公民身份号码" in error["message"]


def test_a_level_omitted_is_the_highest_items(demo):
    assert register(demo, items=GENERAL_ITEMS)["level"] == "general"
    assert register(demo, items=[*GENERAL_ITEMS, {"name": "指纹", "data_type": "string", "level": "core"}])["level"] \
        == "core"
    assert register(demo)["level"] == "important"


def test_a_draft_edit_is_validated_too(demo):
    created = register(demo, name="编辑前")
    officer = as_user(demo, "officer-public-security")
    before = counts()
    body = problem(put(officer, url(created["code"], "/draft"), edit_of(body_of(demo, sharing_type="none"))), 422)
    assert fields(body) == {"sharing_basis"}
    assert counts() == before
    edited = ok(put(officer, url(created["code"], "/draft"), edit_of(body_of(demo, name="编辑后"))))
    assert edited["name"] == "编辑后" and edited["code"] == created["code"]
    assert actions(created["code"])[-1] == "catalog.resource_update"
    # Another department cannot edit it, and does not even see it.
    problem(put(as_user(demo, "officer-civil-affairs"), url(created["code"], "/draft"),
                edit_of(body_of(demo))), 404)
    problem(put(as_user(demo, "staff"), url(created["code"], "/draft"), edit_of(body_of(demo))), 404)


# ---- 3. lifecycle ----


def test_the_review_loop(demo):
    officer, reviewer = as_user(demo, "officer-public-security"), as_user(demo, "reviewer")
    code = register(demo, name="定州市暂住人口登记信息")["code"]
    submitted = ok(post(officer, url(code, "/submit"), {"comment": "请审核"}))
    assert submitted["status"] == "submitted" and submitted["number"] == 1 and submitted["submitted_at"]

    before = counts()
    assert fields(problem(post(reviewer, url(code, "/review"), {"decision": "return"}), 422)) == {"comment"}
    assert fields(problem(post(reviewer, url(code, "/review"), {"decision": "maybe"}), 422)) == {"decision"}
    assert fields(problem(post(reviewer, url(code, "/review"), {}), 422)) == {"decision"}
    assert counts() == before
    returned = ok(post(reviewer, url(code, "/review"), {"decision": "return", "comment": "请补充数据元引用。"}))
    assert returned["status"] == "returned"
    assert ok(officer.get(url(code)))["status"] == "returned"

    versions = ok(officer.get(url(code, "/versions")))
    assert [v["number"] for v in versions] == [1]
    events = [(e["action"], e["actor"], e["comment"]) for e in versions[0]["events"]]
    assert events == [("create", "officer-public-security", ""), ("submit", "officer-public-security", "请审核"),
                      ("return", "reviewer", "请补充数据元引用。")]

    ok(put(officer, url(code, "/draft"), edit_of(body_of(demo, name="定州市暂住人口登记信息（修订）"))))
    ok(post(officer, url(code, "/submit"), {}))
    assert ok(post(reviewer, url(code, "/review"), {"decision": "approve"}))["status"] == "approved"
    published = ok(post(reviewer, url(code, "/publish"), {"comment": "发布"}))
    assert published["status"] == "published" and published["published_at"]
    detail = ok(officer.get(url(code)))
    assert detail["status"] == "published" and detail["published_version"] == 1 and detail["pending"] is None
    assert detail["name"] == "定州市暂住人口登记信息（修订）" and detail["published_at"]

    assert fields(problem(post(officer, url(code, "/deprecate"), {"reason": " "}), 422)) == {"reason"}
    assert fields(problem(post(officer, url(code, "/deprecate"), {}), 422)) == {"reason"}
    deprecated = ok(post(officer, url(code, "/deprecate"), {"reason": "并入人口综合库"}))
    assert deprecated["status"] == "deprecated"
    events = [e["action"] for e in ok(officer.get(url(code, "/versions")))[0]["events"]]
    assert events == ["create", "submit", "return", "submit", "approve", "publish", "deprecate"]
    assert actions(code) == [
        "catalog.resource_create", "catalog.resource_submit", "catalog.resource_return", "catalog.resource_update",
        "catalog.resource_submit", "catalog.resource_approve", "catalog.resource_publish",
        "catalog.resource_deprecate",
    ]


def test_invalid_transitions_are_409_on_the_status(demo):
    officer, reviewer = as_user(demo, "officer-public-security"), as_user(demo, "reviewer")
    code = register(demo)["code"]

    def conflict(resp):
        assert fields(problem(resp, 409)) == {"status"}

    before = counts()
    conflict(post(reviewer, url(code, "/publish"), {}))
    conflict(post(reviewer, url(code, "/review"), {"decision": "approve"}))
    conflict(post(officer, url(code, "/deprecate"), {"reason": "x"}))
    conflict(put(officer, url(code, "/mount"), {"kind": "table", "target": "public_security.household"}))
    conflict(post(officer, url(code, "/revisions"), {}))
    assert counts() == before
    ok(post(officer, url(code, "/submit"), {}))
    before = counts()
    conflict(post(officer, url(code, "/submit"), {}))
    conflict(put(officer, url(code, "/draft"), edit_of(body_of(demo))))
    conflict(post(reviewer, url(code, "/publish"), {}))
    assert counts() == before


def test_approval_needs_the_reviewer_role(demo):
    code = register(demo, "officer-civil-affairs", "civil-affairs")["code"]
    ok(post(as_user(demo, "officer-civil-affairs"), url(code, "/submit"), {}))
    before = counts()
    for who in ("officer-civil-affairs", "staff", "steward"):
        problem(post(as_user(demo, who), url(code, "/review"), {"decision": "approve"}), 403)
        problem(post(as_user(demo, who), url(code, "/publish"), {}), 403)
    problem(post(as_user(demo, "officer-health"), url(code, "/review"), {"decision": "approve"}), 404)
    problem(post(anonymous(), url(code, "/review"), {"decision": "approve"}), 401)
    assert counts() == before
    assert ok(post(as_user(demo, "reviewer"), url(code, "/review"), {"decision": "approve"}))["status"] == "approved"


def test_the_submitter_cannot_approve(demo):
    org_services.assign_role(demo.cli(), "officer-gov-services", "catalog_reviewer")
    both = as_user(demo, "officer-gov-services")
    code = ok(post(both, f"{API}/resources", body_of(demo, "gov-services", category="201001")), 201)["code"]
    ok(post(both, url(code, "/submit"), {}))
    before = counts()
    body = problem(post(both, url(code, "/review"), {"decision": "approve"}), 403)
    assert "submitter" in body["detail"]
    assert counts() == before
    assert ok(post(as_user(demo, "reviewer"), url(code, "/review"), {"decision": "approve"}))["status"] == "approved"


def test_the_reviewer_role_is_only_for_the_platform_office(demo):
    sec = as_user(demo, "secadmin")
    body = problem(post(sec, "/api/v1/users/steward/roles", {"role": "catalog_reviewer"}), 422)
    assert fields(body) == {"role"}
    assert not UserRole.objects.filter(user__username="steward", role="catalog_reviewer").exists()
    assert post(sec, "/api/v1/users/officer-gov-services/roles", {"role": "catalog_reviewer"}).status_code == 201


# ---- 4. versions ----


def test_revisions_keep_the_live_version(demo):
    officer = as_user(demo, "officer-public-security")
    created = register(demo, name="开放资源版本一", open_type="open", items=GENERAL_ITEMS)
    code = created["code"]
    advance(demo, code)
    revision = ok(post(officer, url(code, "/revisions"), {}), 201)
    assert revision["version"] == 2 and revision["pending"] == {"number": 2, "status": "draft"}
    assert revision["published_version"] == 1
    assert fields(problem(post(officer, url(code, "/revisions"), {}), 409)) == {"status"}
    changed = body_of(demo, name="开放资源版本二", open_type="open",
                      items=[*GENERAL_ITEMS[:2], {"name": "民族", "element": "DE00004"}])
    ok(put(officer, url(code, "/draft"), edit_of(changed)))
    assert actions(code)[-2:] == ["catalog.resource_revise", "catalog.resource_update"]

    # The department sees its draft; the detail still shows the live version.
    mine = ok(officer.get(url(code)))
    assert mine["name"] == "开放资源版本一" and mine["pending"] == {"number": 2, "status": "draft"}
    assert ok(officer.get(url(code, "/versions/2")))["name"] == "开放资源版本二"
    assert [v["number"] for v in ok(officer.get(url(code, "/versions")))] == [2, 1]
    # Another department and the public: version 1 only.
    for outsider in (as_user(demo, "officer-civil-affairs"), anonymous()):
        detail = ok(outsider.get(url(code)))
        assert detail["name"] == "开放资源版本一" and detail["version"] == 1 and detail["pending"] is None
        assert [v["number"] for v in ok(outsider.get(url(code, "/versions")))] == [1]
        problem(outsider.get(url(code, "/versions/2")), 404)
        problem(outsider.get(url(code, "/diff?from=1&to=2")), 404)

    diff = ok(officer.get(url(code, "/diff?from=1&to=2")))
    assert diff["to"] == 2
    assert diff["fields"] == {"name": ["开放资源版本一", "开放资源版本二"]}
    assert diff["items"]["民族"]["change"] == "added" and diff["items"]["备注"]["change"] == "removed"
    assert set(diff["items"]) == {"民族", "备注"}

    advance(demo, code)
    versions = ok(anonymous().get(url(code, "/versions")))
    assert [(v["number"], v["status"]) for v in versions] == [(2, "published"), (1, "superseded")]
    assert [e["action"] for e in versions[0]["events"]] == ["create", "submit", "approve", "publish"]
    assert ok(anonymous().get(url(code)))["name"] == "开放资源版本二"
    assert ok(anonymous().get(url(code, "/versions/1")))["name"] == "开放资源版本一"
    assert ok(anonymous().get(url(code, "/diff?from=1&to=2")))["fields"]["name"][1] == "开放资源版本二"


def test_the_diff_names_the_resource_and_the_versions(demo):
    """The comparison says what it compares: the resource code as the catalog writes it (with its slash) and
    the two version numbers under the keys the query uses, `from` and `to`."""
    officer = as_user(demo, "officer-public-security")
    code = register(demo, name="比较前")["code"]
    advance(demo, code)
    ok(post(officer, url(code, "/revisions"), {}), 201)
    ok(put(officer, url(code, "/draft"), edit_of(body_of(demo, name="比较后"))))
    diff = ok(officer.get(url(code, "/diff?from=1&to=2")))
    assert diff["fields"] == {"name": ["比较前", "比较后"]}
    assert {k: diff.get(k) for k in ("code", "from", "to")} == {"code": code, "from": 1, "to": 2}, diff


def test_the_public_never_sees_a_version_that_was_not_open(demo):
    """A resource opened in version 2 does not open the metadata of version 1, which was not open."""
    code = register(demo, name="未开放的旧版本", open_type="closed")["code"]
    advance(demo, code)
    officer = as_user(demo, "officer-public-security")
    ok(post(officer, url(code, "/revisions"), {}), 201)
    ok(put(officer, url(code, "/draft"), edit_of(body_of(demo, name="开放的新版本", open_type="open",
                                                         items=GENERAL_ITEMS))))
    advance(demo, code)
    public = anonymous()
    assert ok(public.get(url(code)))["name"] == "开放的新版本"
    assert [v["number"] for v in ok(public.get(url(code, "/versions")))] == [2]
    problem(public.get(url(code, "/versions/1")), 404)


# ---- 5. mounting ----


def test_mounting(demo):
    officer = as_user(demo, "officer-public-security")
    code = register(demo)["code"]
    assert fields(problem(put(officer, url(code, "/mount"), {"kind": "table", "target": "public_security.hukou"}),
                          409)) == {"status"}
    advance(demo, code)
    before = counts()
    for kind, target in (("table", "hukou"), ("table", "Public.Hukou"), ("api", "ftp://x.gov.cn/a"),
                         ("api", "javascript:alert(1)"), ("file", "../../etc/passwd"), ("file", "a/../../b")):
        assert fields(problem(put(officer, url(code, "/mount"), {"kind": kind, "target": target}), 422)) == \
            {"target"}, (kind, target)
    assert fields(problem(put(officer, url(code, "/mount"), {"kind": "ftp", "target": "x"}), 422)) == {"kind"}
    assert fields(problem(put(officer, url(code, "/mount"), {"kind": "table"}), 422)) == {"target"}
    problem(put(as_user(demo, "officer-civil-affairs"), url(code, "/mount"),
                {"kind": "table", "target": "civil_affairs.x"}), 403)
    assert counts() == before

    mounted = ok(put(officer, url(code, "/mount"), {"kind": "api", "target": "https://api.dingzhou.gov.cn/hukou"}))
    assert mounted["mounted"] is True and mounted["mount"]["kind"] == "api"
    assert mounted["mount"]["target"] == "https://api.dingzhou.gov.cn/hukou" and mounted["mount"]["mounted_at"]
    assert ok(as_user(demo, "officer-civil-affairs").get(url(code)))["mounted"] is True
    found = ok(officer.get(f"{API}/resources", {"q": code, "mounted": "yes"}))
    assert [r["code"] for r in found["resources"]] == [code]
    unmounted = ok(officer.delete(url(code, "/mount")))
    assert unmounted["mounted"] is False and unmounted["mount"] is None
    assert actions(code)[-2:] == ["catalog.resource_mount", "catalog.resource_unmount"]


# ---- 6. one datum, one source ----


def test_one_datum_one_source(demo):
    element = new_element(demo)
    claim = [{"name": "来源项", "element": element.identifier, "authoritative": True}]
    source = register(demo, items=claim)["code"]
    advance(demo, source)
    assert ok(as_user(demo, "staff").get(f"{API}/elements/{element.identifier}"))["authoritative"] == source
    # The source is closed: the public learns that it exists, not which resource it is.
    assert ok(anonymous().get(f"{API}/elements/{element.identifier}"))["authoritative"] is None

    civil = as_user(demo, "officer-civil-affairs")
    before = counts()
    body = problem(post(civil, f"{API}/resources", body_of(demo, "civil-affairs", items=claim)), 422)
    assert fields(body) == {"items[0].authoritative"}
    assert source in body["detail"] and element.identifier in body["errors"][0]["message"]
    assert counts() == before

    copy = ok(post(civil, f"{API}/resources", body_of(demo, "civil-affairs", items=[
        {"name": "副本项", "element": element.identifier}, {"name": "备注", "data_type": "string"}])), 201)
    assert copy["items"][0]["source"] == source and copy["items"][0]["authoritative"] is False
    assert copy["items"][1]["source"] is None
    own = ok(as_user(demo, "officer-civil-affairs").get(url(source)))
    assert own["items"][0]["authoritative"] is True and own["items"][0]["source"] is None
    advance(demo, copy["code"], "officer-civil-affairs")

    # (closed resources: the public's report does not show them; government's does)
    report = ok(as_user(demo, "leader").get(f"{API}/reports/sources"))
    entry = {e["identifier"]: e for e in report["multiple_collection"]}.get(element.identifier)
    assert entry is not None and entry["authoritative"] == source
    assert sorted(entry["providers"]) == sorted(["定州市公安局", "定州市民政局"])
    unused = new_element(demo)
    report = ok(as_user(demo, "reviewer").get(f"{API}/reports/sources"))
    assert unused.identifier in {e["identifier"] for e in report["no_authoritative_source"]}
    assert element.identifier not in {e["identifier"] for e in report["no_authoritative_source"]}

    # A version without the claim releases the element.
    officer = as_user(demo, "officer-public-security")
    ok(post(officer, url(source, "/revisions"), {}), 201)
    ok(put(officer, url(source, "/draft"), edit_of(body_of(demo, items=[{"name": "来源项",
                                                                          "element": element.identifier}]))))
    advance(demo, source)
    assert ok(anonymous().get(f"{API}/elements/{element.identifier}"))["authoritative"] is None
    assert ok(civil.get(url(copy["code"])))["items"][0]["source"] is None


# ---- 7. search and visibility ----


def test_search_over_http(demo):
    mark = marker()
    # (the demo's public security bureau has a resource of this name already: the statistics bureau registers it)
    created = register(demo, "officer-stats", "stats", name="定州市户籍人口基本信息", keywords=[mark, "户口迁移"],
                       open_type="open", items=[*GENERAL_ITEMS, {"name": "迁入原因", "data_type": "string"}])
    code = created["code"]
    advance(demo, code, "officer-stats")
    for q in ("户籍人口", "户籍", "籍", "迁入原因", "户口迁移", code, code.replace("/", "-"), mark):
        assert code in codes_of(anonymous().get(f"{API}/resources", {"q": q, "limit": 200})), q
    found = ok(anonymous().get(f"{API}/resources", {"q": mark}))
    assert found["total"] == 1 and found["offset"] == 0 and found["limit"] == 20
    [summary] = found["resources"]
    assert summary["name"] == "定州市户籍人口基本信息" and summary["status"] == "published"
    assert summary["provider"]["code"] == demo.org("stats").code
    labels = {f["value"]: f for f in found["facets"]["level"]}
    assert labels["general"]["count"] == 1 and labels["general"]["label"] == "General (一般)"


def test_facets_over_http(demo):
    reviewer = as_user(demo, "reviewer")
    mark = marker()
    register(demo, keywords=[mark], items=GENERAL_ITEMS)
    register(demo, keywords=[mark], sharing_type="conditional", sharing_conditions="凭函")
    register(demo, keywords=[mark], items=GENERAL_ITEMS, sharing_type="conditional", sharing_conditions="凭函")

    def facet(result, name):
        return {f["value"]: f["count"] for f in result["facets"][name]}

    result = ok(reviewer.get(f"{API}/resources", {"q": mark, "level": "general"}))
    assert result["total"] == 2
    assert facet(result, "level") == {"general": 2, "important": 1}
    assert facet(result, "sharing_type") == {"unconditional": 1, "conditional": 1}
    result = ok(reviewer.get(f"{API}/resources", {"q": mark, "level": "general", "sharing_type": "conditional"}))
    assert result["total"] == 1
    assert facet(result, "level") == {"general": 1, "important": 1}
    assert facet(result, "sharing_type") == {"unconditional": 1, "conditional": 1}
    both = ok(reviewer.get(f"{API}/resources?q={mark}&sharing_type=conditional&sharing_type=unconditional"))
    assert both["total"] == 3
    # Unknown query parameters are ignored.
    assert ok(reviewer.get(f"{API}/resources", {"q": mark, "colour": "red"}))["total"] == 3


def test_what_each_caller_sees(demo):
    mark = marker()
    open_published = register(demo, keywords=[mark], open_type="open", items=GENERAL_ITEMS)["code"]
    closed_published = register(demo, keywords=[mark])["code"]
    for code in (open_published, closed_published):
        advance(demo, code)
    open_draft = register(demo, keywords=[mark], open_type="open", items=GENERAL_ITEMS)["code"]
    civil_draft = register(demo, "officer-civil-affairs", "civil-affairs", keywords=[mark])["code"]

    def sees(client):
        return set(codes_of(client.get(f"{API}/resources", {"q": mark, "limit": 200})))

    assert sees(anonymous()) == {open_published}
    assert sees(as_user(demo, "staff")) == {open_published, closed_published, civil_draft}
    assert sees(as_user(demo, "officer-public-security")) == {open_published, closed_published, open_draft}
    assert sees(as_user(demo, "reviewer")) == {open_published, closed_published, open_draft, civil_draft}
    # The same rules for one resource by code.
    problem(anonymous().get(url(closed_published)), 404)
    problem(anonymous().get(url(open_draft)), 404)
    problem(anonymous().get(url(open_draft, "/versions")), 404)
    problem(as_user(demo, "staff").get(url(open_draft)), 404)
    assert ok(as_user(demo, "staff").get(url(civil_draft)))["status"] == "draft"
    assert ok(as_user(demo, "reviewer").get(url(open_draft)))["status"] == "draft"
    assert ok(anonymous().get(url(open_published)))["status"] == "published"
    # An application system's key sees what government sees.
    system = org_services.create_system(demo.cli(), {"code": "catalog-test", "name": "目录测试系统",
                                                     "organization": demo.org("health").code})
    _key, raw = org_services.create_api_key(demo.cli(), system.code, "", 5)
    found = Client(headers=EN).get(f"{API}/resources", {"q": mark}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert set(codes_of(found)) == {open_published, closed_published}


def test_search_is_fresh_after_an_update(demo):
    officer = as_user(demo, "officer-public-security")
    old, new = marker(), marker()
    code = register(demo, name=f"旧名称{old}")["code"]
    assert codes_of(officer.get(f"{API}/resources", {"q": old})) == [code]
    ok(put(officer, url(code, "/draft"), edit_of(body_of(demo, name=f"新名称{new}"))))
    assert codes_of(officer.get(f"{API}/resources", {"q": new})) == [code]
    assert codes_of(officer.get(f"{API}/resources", {"q": old})) == []


def test_search_parameters(demo):
    reviewer = as_user(demo, "reviewer")
    mark = marker()
    for name in ("丙", "甲", "乙"):
        register(demo, name=f"{name}{mark}", keywords=[mark])
    names = [r["name"] for r in ok(reviewer.get(f"{API}/resources", {"q": mark, "sort": "name"}))["resources"]]
    assert names == sorted(names) and len(names) == 3
    paged = ok(reviewer.get(f"{API}/resources", {"q": mark, "sort": "code", "offset": 2, "limit": 1}))
    assert paged["total"] == 3 and len(paged["resources"]) == 1
    assert fields(problem(reviewer.get(f"{API}/resources", {"sort": "popularity"}), 422)) == {"sort"}
    for limit in (0, 201, "x"):
        assert fields(problem(reviewer.get(f"{API}/resources", {"limit": limit}), 422)) == {"limit"}
    assert fields(problem(reviewer.get(f"{API}/resources", {"offset": -1}), 422)) == {"offset"}
    assert fields(problem(reviewer.get(f"{API}/resources", {"q": "户" * 201}), 422)) == {"q"}


# ---- 8. data elements and code tables ----


def test_data_elements_over_http(demo):
    listed = ok(anonymous().get(f"{API}/elements"))
    assert len(listed) >= 50 and {"DE00001", "DE00003"} <= {e["identifier"] for e in listed}
    sex = ok(anonymous().get(f"{API}/elements/DE00003"))
    assert sex["name"] == "性别代码" and sex["code_table"] == "GB_T_2261.1"
    assert [e["identifier"] for e in ok(anonymous().get(f"{API}/elements", {"q": "DE00005"}))] == ["DE00005"]
    problem(anonymous().get(f"{API}/elements/DE99999"), 404)

    reviewer = as_user(demo, "reviewer")
    element = {"name": "接口婚姻状况代码", "definition": "婚姻状况。", "data_type": "string", "code_table": "GB_T_2261.2"}
    created = ok(put(reviewer, f"{API}/elements/TA00001", element))
    assert created["identifier"] == "TA00001" and created["code_table"] == "GB_T_2261.2"
    assert created["level"] == "general" and created["authoritative"] is None
    updated = ok(put(reviewer, f"{API}/elements/TA00001", {**element, "level": "important"}))
    assert updated["level"] == "important"
    pk = DataElement.objects.get(identifier="TA00001").pk
    assert list(AuditRecord.objects.filter(object_id=str(pk)).order_by("seq").values_list("action", "actor")) == [
        ("catalog.element_create", "reviewer"), ("catalog.element_update", "reviewer")]

    before = counts()
    problem(put(as_user(demo, "officer-public-security"), f"{API}/elements/TA00002", element), 403)
    problem(put(anonymous(), f"{API}/elements/TA00002", element), 401)
    assert fields(problem(put(reviewer, f"{API}/elements/TA00002", {**element, "name": "其他",
                                                                     "code_table": "NOPE"}), 422)) == {"code_table"}
    assert fields(problem(put(reviewer, f"{API}/elements/TA00002", {**element, "data_type": "blob"}), 422)) == \
        {"data_type"}
    assert fields(problem(put(reviewer, f"{API}/elements/ta-2", element), 422)) == {"identifier"}
    assert fields(problem(put(reviewer, f"{API}/elements/TA00002", {**element, "name": "姓名"}), 409)) == {"name"}
    assert counts() == before and not DataElement.objects.filter(identifier="TA00002").exists()


def test_code_tables_over_http(demo):
    tables = {t["code"]: t for t in ok(anonymous().get(f"{API}/code-tables"))}
    assert tables["GB_T_3304"]["size"] == 58 and tables["GB_T_2261.1"]["size"] == 4
    ethnic = ok(anonymous().get(f"{API}/code-tables/GB_T_3304"))
    assert len(ethnic["values"]) == 58 and ethnic["size"] == 58
    assert ethnic["values"][0] == {"code": "01", "name": "汉族", "parent": ""}
    regions = ok(anonymous().get(f"{API}/code-tables/GB_T_2260"))
    assert sum(1 for v in regions["values"] if v["parent"] == "130682") == 25
    problem(anonymous().get(f"{API}/code-tables/NOPE"), 404)

    reviewer = as_user(demo, "reviewer")
    values = [{"code": "1", "name": "一级"}, {"code": "2", "name": "二级"}]
    created = ok(put(reviewer, f"{API}/code-tables/TEST_API", {"name": "接口测试代码集", "values": values}))
    assert [v["code"] for v in created["values"]] == ["1", "2"] and created["size"] == 2
    table_pk = services.get_code_table("TEST_API").pk
    assert AuditRecord.objects.filter(object_id=str(table_pk), action="catalog.codetable_create").exists()
    before = counts()
    body = problem(put(reviewer, f"{API}/code-tables/TEST_API",
                       {"name": "接口测试代码集", "values": [*values, {"code": "1", "name": "重复"}]}), 422)
    assert fields(body) == {"values[2].code"}
    problem(put(as_user(demo, "officer-public-security"), f"{API}/code-tables/TEST_API",
                {"name": "x", "values": values}), 403)
    assert counts() == before and len(ok(anonymous().get(f"{API}/code-tables/TEST_API"))["values"]) == 2


# ---- 9. bad input never gives a 500 ----


def test_malformed_bodies(demo):
    officer = as_user(demo, "officer-public-security")
    before = counts()
    resp = officer.post(f"{API}/resources", "{not json", content_type="application/json")
    assert resp.status_code in (400, 422) and resp["Content-Type"].startswith("application/problem+json")
    assert "items" in fields(problem(post(officer, f"{API}/resources", body_of(demo, items="公民身份号码")), 422))
    assert "keywords" in fields(problem(post(officer, f"{API}/resources", body_of(demo, keywords="户籍")), 422))
    assert "name" in fields(problem(post(officer, f"{API}/resources", body_of(demo, name=["x"])), 422))
    problem(post(officer, f"{API}/resources", []), 422)
    problem(post(officer, f"{API}/resources", "null"), 422)
    assert counts() == before


def test_schema_errors_name_the_whole_path(demo):
    """Errors found by the schema name the field the way the service does (items[N].field), not just the
    last part of its path ("0.length" does not say which list the 0 is in)."""
    officer = as_user(demo, "officer-public-security")
    before = counts()
    bad = body_of(demo, items=[{"name": "备注", "data_type": "string", "length": -1}])
    assert fields(problem(post(officer, f"{API}/resources", bad), 422)) == {"items[0].length"}
    bad = body_of(demo, items=[GENERAL_ITEMS[0], {"name": "备注", "data_type": "text"}])
    assert fields(problem(post(officer, f"{API}/resources", bad), 422)) == {"items[1].data_type"}
    bad = body_of(demo, sharing_methods=["interface", "email"])
    assert fields(problem(post(officer, f"{API}/resources", bad), 422)) == {"sharing_methods[1]"}
    assert counts() == before


def test_a_code_table_code_longer_than_its_column_is_422(demo):
    """The code column holds 40 characters: a longer code is a validation error naming `code` (SQLite
    stores it silently, PostgreSQL fails with a 500)."""
    before = (counts(), services.list_code_tables().count())
    resp = put(as_user(demo, "reviewer"), f"{API}/code-tables/{'X' * 41}", {"name": "过长", "values": []})
    assert fields(problem(resp, 422)) == {"code"}
    assert (counts(), services.list_code_tables().count()) == before


def test_unknown_codes_are_404(demo):
    officer, reviewer = as_user(demo, "officer-public-security"), as_user(demo, "reviewer")
    missing = "101001000-999999"
    for resp in (
        anonymous().get(url(missing)),
        anonymous().get(url(missing, "/versions")),
        anonymous().get(url(missing, "/versions/1")),
        anonymous().get(url(missing, "/diff?from=1&to=2")),
        reviewer.get(url("not-a-code")),
        post(officer, url(missing, "/submit"), {}),
        post(reviewer, url(missing, "/review"), {"decision": "approve"}),
        post(reviewer, url(missing, "/publish"), {}),
        post(officer, url(missing, "/revisions"), {}),
        post(officer, url(missing, "/deprecate"), {"reason": "x"}),
        put(officer, url(missing, "/mount"), {"kind": "table", "target": "a.b"}),
        officer.delete(url(missing, "/mount")),
        put(officer, url(missing, "/draft"), edit_of(body_of(demo))),
    ):
        problem(resp, 404)
    code = register(demo)["code"]
    problem(officer.get(url(code, "/versions/9")), 404)
    problem(officer.get(url(code, "/diff?from=1&to=9")), 404)
    assert fields(problem(officer.get(url(code, "/versions/x")), 422)) == {"number"}
    assert fields(problem(officer.get(url(code, "/diff?from=0&to=1")), 422)) == {"from"}
    assert "to" in fields(problem(officer.get(url(code, "/diff?from=1")), 422))


def test_long_and_odd_queries(demo):
    reviewer = as_user(demo, "reviewer")
    problem(reviewer.get(f"{API}/resources", {"q": "籍" * 5000}), 422)
    problem(reviewer.get(f"{API}/elements", {"q": "x" * 101}), 422)
    problem(reviewer.get(f"{API}/export", {"q": "x" * 201}), 422)
    for q in ("%", "_", "'", "\\", "*", "(", "🙂", " ", "a" * 200):
        assert ok(reviewer.get(f"{API}/resources", {"q": q}))["total"] >= 0
    problem(reviewer.get(f"{API}/resources?q=%00"), 400)
