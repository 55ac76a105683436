"""The sharing workflow (applications, decisions, escalation, grants) and the gateway's policy path:
verification, records, SQL, quotas, addresses, revocation, audit and metering, on the demo's household
register (100,000 rows) and on small resources of the tests' own."""

from __future__ import annotations

import datetime as dt

import pytest
from data_helpers import person, table_resource, write_csv
from sharing_helpers import (PEOPLE, PEOPLE_URL, application_data, call, granted, records, sample_people, system,
                             verify)

from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.ingest import services as ingest
from shuzheng.org import services as org
from shuzheng.sharing import services
from shuzheng.sharing.models import AppState, Grant, Meter, Notification
from shuzheng.warehouse.models import Table

pytestmark = pytest.mark.django_db


def last_audit(action: str) -> AuditRecord:
    return AuditRecord.objects.filter(action=action).order_by("-seq").first()


# ---- the three sharing types ----


def test_unconditional_resource_is_granted_at_once_with_default_masks(demo, tmp_path):
    resource = table_resource(demo)
    ingest.ingest_file(demo.actor("officer-public-security"), resource.code,
                       write_csv(tmp_path / "p.csv", [person(1, "张三"), person(2, "李四")]))
    code, key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(
        code, resource.code, items=["公民身份号码", "姓名", "性别"]))
    assert application.state == AppState.APPROVED
    grant = application.grant
    assert grant.items == ["公民身份号码", "姓名", "性别"]
    assert grant.masks["性别"] == {"kind": "clear"}  # general level
    assert last_audit("sharing.apply").summary.count('"state":"approved"') == 1
    assert Notification.objects.filter(organization=resource.provider, text__contains=application.number).exists()


def test_unconditional_resource_asked_in_clear_goes_to_the_provider(demo):
    resource = table_resource(demo, items=[{"name": "公民身份号码", "element": "DE00001", "is_key": True,
                                            "nullable": False, "length": 18, "level": "important"},
                                           {"name": "姓名", "element": "DE00002", "length": 50}])
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(
        code, resource.code, items=["公民身份号码", "姓名"], clear_items=["公民身份号码"]))
    assert application.state == AppState.PROVIDER


def test_not_shared_resource_is_refused_at_once_citing_its_basis(demo):
    resource = table_resource(demo, sharing_type="none", sharing_basis="《中华人民共和国反恐怖主义法》第四十八条")
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(
        code, resource.code, items=["公民身份号码"]))
    assert application.state == AppState.REFUSED
    assert "反恐怖主义法" in application.decision_note
    assert not Grant.objects.filter(application=application).exists()
    assert [e.action for e in application.events.all()] == ["submit", "refuse"]


def test_conditional_important_resource_needs_provider_then_office_and_each_may_narrow(demo):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(
        code, clear_items=["姓名"]))
    assert application.state == AppState.PROVIDER and application.due_at is not None
    assert Notification.objects.filter(organization=demo.org("public-security"), text__contains=application.number)

    provider = demo.actor("officer-public-security")
    application = services.decide(provider, application.number, {
        "decision": "approve", "items": ["公民身份号码", "姓名", "出生日期", "户籍地址"],
        "row_filter": [{"item": "户籍地址", "op": "prefix", "value": "河北省定州市"}], "calls_per_day": 1000})
    assert application.state == AppState.OFFICE  # important: the platform office approves too
    with pytest.raises(Forbidden):  # the provider cannot approve again in the office's place
        services.decide(provider, application.number, {"decision": "approve"})

    application = services.decide(demo.actor("reviewer"), application.number, {
        "decision": "approve", "clear_items": [], "calls_per_day": 500})
    assert application.state == AppState.APPROVED
    grant = application.grant
    assert grant.items == ["公民身份号码", "姓名", "出生日期", "户籍地址"]
    assert grant.masks["姓名"]["kind"] == "name"  # the office withdrew the clear name
    assert grant.masks["公民身份号码"]["kind"] == "id_number"
    assert grant.row_filter == [{"item": "户籍地址", "op": "prefix", "value": "河北省定州市"}]
    assert grant.calls_per_day == 500
    assert [e.action for e in application.events.all()] == ["submit", "approve", "approve"]
    # The applicant heard of both approvals (the provider's, then the office's).
    assert Notification.objects.filter(organization=demo.org("civil-affairs"),
                                       text__contains=application.number).count() == 2


def test_narrowing_may_not_widen(demo):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(code, items=["公民身份号码"]))
    provider = demo.actor("officer-public-security")
    with pytest.raises(ValidationFailed) as err:
        services.decide(provider, application.number, {"decision": "approve", "items": ["公民身份号码", "姓名"]})
    assert err.value.errors[0].field == "items"
    with pytest.raises(ValidationFailed) as err:
        services.decide(provider, application.number, {"decision": "approve", "masks": {"公民身份号码": {"kind": "clear"}}})
    assert err.value.errors[0].field == "masks.公民身份号码"
    services.decide(provider, application.number, {"decision": "approve", "calls_per_day": 10})
    with pytest.raises(ValidationFailed) as err:
        services.decide(demo.actor("reviewer"), application.number, {"decision": "approve", "calls_per_day": 20})
    assert err.value.errors[0].field == "calls_per_day"


def test_rejection_needs_a_reason_and_is_final(demo):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(code))
    provider = demo.actor("officer-public-security")
    with pytest.raises(ValidationFailed):
        services.decide(provider, application.number, {"decision": "reject"})
    services.decide(provider, application.number, {"decision": "reject", "note": "用途与职责不符"})
    with pytest.raises(Conflict):
        services.decide(provider, application.number, {"decision": "approve"})


def test_bad_applications_name_the_field(demo):
    code, _key = system(demo)
    actor = demo.actor("officer-civil-affairs")
    cases = [({"items": []}, "items"), ({"items": ["不存在"]}, "items"), ({"purpose": " "}, "purpose"),
             ({"clear_items": ["户号"]}, "clear_items"), ({"method": "fax"}, "method"),
             ({"period_end": "2020-01-01"}, "period_end"), ({"period_end": "tomorrow"}, "period_end"),
             ({"row_filter": [{"item": "出生日期", "op": "range", "value": ["2000-01-01", "1990-01-01"]}]},
              "row_filter[0].value"),
             ({"row_filter": [{"item": "口令", "op": "eq", "value": "x"}]}, "row_filter[0].item"),
             ({"method": "file"}, "method")]  # the household register is shared by interface only
    for override, field in cases:
        with pytest.raises(ValidationFailed) as err:
            services.apply(actor, application_data(code, **override))
        assert field in [e.field for e in err.value.errors], (override, err.value.errors)
    other_code, _ = system(demo, "health", "officer-health")
    with pytest.raises(ValidationFailed) as err:  # not a system of the applicant's organization
        services.apply(actor, application_data(other_code))
    assert err.value.errors[0].field == "system"
    services.apply(actor, application_data(code))
    with pytest.raises(Conflict):  # one open application per system and resource
        services.apply(actor, application_data(code))


def test_overdue_applications_escalate_to_the_platform_office(demo):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(code))
    with pytest.raises(Forbidden):  # not overdue yet: the office does not decide in the provider's place
        services.decide(demo.actor("reviewer"), application.number, {"decision": "approve"})
    later = application.due_at + dt.timedelta(minutes=1)
    assert services.escalate_overdue(demo.cli(), now=later) == 1
    assert services.escalate_overdue(demo.cli(), now=later) == 0
    application.refresh_from_db()
    assert application.escalated_at is not None
    office = demo.actor("reviewer")
    assert application.number in {a.number for a in services.list_applications(office, "office")}
    application = services.decide(office, application.number, {"decision": "approve"})
    assert application.state == AppState.APPROVED  # the office's approval covers its own stage
    assert [e.action for e in application.events.all()] == ["submit", "escalate", "approve"]
    assert last_audit("sharing.escalate").object_id == str(application.id)


def test_who_sees_and_decides(demo):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(code))
    with pytest.raises(Forbidden):  # the applicant cannot decide its own application
        services.decide(demo.actor("officer-civil-affairs"), application.number, {"decision": "approve"})
    with pytest.raises(NotFound):  # an unrelated department does not even see it
        services.get_application(demo.actor("officer-health"), application.number)
    assert services.get_application(demo.actor("staff"), application.number)  # the applicant's staff see it
    services.withdraw(demo.actor("officer-civil-affairs"), application.number)
    with pytest.raises(Conflict):
        services.decide(demo.actor("officer-public-security"), application.number, {"decision": "approve"})


# ---- the gateway ----


@pytest.fixture
def people_grant(demo):
    code, key = system(demo)
    grant = granted(demo, code, provider_terms={"verify_items": ["公民身份号码", "姓名", "出生日期"]})
    return grant, key


def test_verification_answers_match_and_which_items_differ(demo, client, people_grant):
    grant, key = people_grant
    row = sample_people(demo, 1)[0]
    ok = verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]})
    assert ok.status_code == 200, ok.content
    assert ok.json()["match"] is True and ok.json()["differs"] == []
    wrong = verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"] + "某",
                                 "出生日期": str(row["出生日期"])}).json()
    assert wrong == {**wrong, "match": False, "found": True, "differs": ["姓名"]}
    absent = verify(client, key, {"公民身份号码": "130682190001010000", "姓名": "无此人"}).json()
    assert absent["match"] is False and absent["found"] is False
    assert "姓名" not in str(ok.content, "utf-8").replace('"姓名"', "")  # no value comes back
    record = last_audit("share.verify")
    assert record.actor == f"system:{grant.system.code}" and record.actor_org == grant.consumer.code
    assert '"purpose":"高龄津贴资格审核' in record.summary and '"resource":"101001000/000001"' in record.summary


def test_verification_refuses_what_the_grant_does_not_cover(demo, client, people_grant):
    _grant, key = people_grant
    row = sample_people(demo, 1)[0]
    hidden = verify(client, key, {"公民身份号码": row["公民身份号码"], "户号": "x"})
    assert hidden.status_code == 422 and hidden.json()["errors"][0]["field"] == "candidates.户号"
    no_key = verify(client, key, {"姓名": row["姓名"]})
    assert no_key.status_code == 422 and "key items" in no_key.json()["errors"][0]["message"]
    bad_date = verify(client, key, {"公民身份号码": row["公民身份号码"], "出生日期": "1990-13-45"})
    assert bad_date.status_code == 422 and bad_date.json()["errors"][0]["field"] == "candidates.出生日期"
    not_json = call(client, key, f"/api/v1/share/{PEOPLE_URL}/verify")
    assert not_json.status_code == 422
    refusals = AuditRecord.objects.filter(action="share.refused").order_by("-seq")[:4]
    assert len(refusals) == 4 and all('"outcome":"refused"' in r.summary for r in refusals)


def test_row_filter_applies_to_verification_and_records(demo, client):
    rows = sample_people(demo, 50)
    town = rows[0]["户籍地址"][:9]
    outside = next(r for r in rows if not r["户籍地址"].startswith(town))
    code, key = system(demo)
    granted(demo, code, provider_terms={"row_filter": [{"item": "户籍地址", "op": "prefix", "value": town}]})
    inside = verify(client, key, {"公民身份号码": rows[0]["公民身份号码"], "姓名": rows[0]["姓名"]}).json()
    assert inside["match"] is True
    other = verify(client, key, {"公民身份号码": outside["公民身份号码"], "姓名": outside["姓名"]}).json()
    assert other["match"] is False and other["found"] is False
    page = records(client, key, {"limit": "200"}).json()
    assert page["rows"] and all(r["户籍地址"].startswith(town[:6]) for r in page["rows"])


def test_records_are_masked_filtered_and_paged_with_cursors(demo, client, people_grant):
    _grant, key = people_grant
    first = records(client, key, {"limit": "3"})
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["items"] == ["公民身份号码", "姓名", "性别", "出生日期", "户籍地址"]
    for row in body["rows"]:
        assert "*" in row["公民身份号码"] and row["公民身份号码"][:6].isdigit() and len(row["公民身份号码"]) == 18
        assert row["姓名"][1:] == "*" * (len(row["姓名"]) - 1)
        assert row["性别"] in ("1", "2", None)  # general level: clear
    # Sort on a clear item, page through with cursors: the pages join up to the unpaged order.
    params = {"eq.性别": "2", "gte.出生日期": "1950-01-01", "lte.出生日期": "1950-12-31", "sort": "-出生日期",
              "items": "出生日期,性别"}
    whole = records(client, key, {**params, "limit": "1000"}).json()["rows"]
    assert whole and all(r["性别"] == "2" and r["出生日期"].startswith("1950") for r in whole)
    paged, cursor = [], None
    while True:
        page = records(client, key, {**params, "limit": "7", **({"cursor": cursor} if cursor else {})}).json()
        paged += page["rows"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == whole
    dates = [r["出生日期"] for r in whole]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize("params, field", [
    ({"eq.户号": "1"}, "eq.户号"),  # not granted: a filter on a hidden item would leak it
    ({"prefix.公民身份号码": "1306"}, "prefix.公民身份号码"),  # masked: same
    ({"sort": "姓名"}, "sort"),  # masked
    ({"items": "户号"}, "items"),
    ({"limit": "100000"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"cursor": "bm90LWEtY3Vyc29y.00"}, "cursor"),
    ({"cursor": "%%%"}, "cursor"),
    ({"gte.出生日期": "not-a-date"}, "gte.出生日期"),
    ({"like.性别": "1"}, "like.性别"),
])
def test_records_refuse_bad_parameters(demo, client, people_grant, params, field):
    _grant, key = people_grant
    response = records(client, key, params)
    assert response.status_code == 422, response.content
    assert field in [e["field"] for e in response.json()["errors"]]
    assert '"outcome":"refused"' in last_audit("share.refused").summary


def test_a_cursor_only_works_for_the_query_that_made_it(demo, client, people_grant):
    _grant, key = people_grant
    page = records(client, key, {"limit": "2", "eq.性别": "1"}).json()
    other = records(client, key, {"limit": "2", "eq.性别": "2", "cursor": page["next_cursor"]})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "cursor"


def test_revocation_takes_effect_on_the_next_call(demo, client, people_grant):
    grant, key = people_grant
    row = sample_people(demo, 1)[0]
    candidates = {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}
    assert verify(client, key, candidates).status_code == 200
    services.revoke_grant(demo.actor("officer-public-security"), grant.id, "用途已结束")
    refused = verify(client, key, candidates)
    assert refused.status_code == 403 and "no live grant" in refused.json()["detail"]
    assert '"status":403' in last_audit("share.refused").summary


def test_a_deprecated_resource_is_no_longer_shared(demo, client, tmp_path):
    from shuzheng.catalog import services as catalog

    resource = table_resource(demo)
    ingest.ingest_file(demo.actor("officer-public-security"), resource.code,
                       write_csv(tmp_path / "p.csv", [person(1, "张三")]))
    code, key = system(demo)
    services.apply(demo.actor("officer-civil-affairs"), application_data(code, resource.code, items=["公民身份号码"]))
    url_code = resource.code.replace("/", "-")
    candidates = {"公民身份号码": person(1)[0]}
    assert verify(client, key, candidates, code=url_code).json()["match"] is True
    catalog.deprecate(demo.actor("officer-public-security"), resource.code, "停用")
    refused = verify(client, key, candidates, code=url_code)
    assert refused.status_code == 403 and "no longer published" in refused.json()["detail"]


def test_keys_and_addresses(demo, client, people_grant):
    grant, key = people_grant
    row = sample_people(demo, 1)[0]
    candidates = {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}
    _other_code, other_key = system(demo)  # same department, another system without a grant
    assert verify(client, other_key, candidates).status_code == 403
    assert verify(client, "", candidates).status_code == 401
    assert verify(client, "sz_forged-key", candidates).status_code == 401
    key_row = grant.system.keys.first()
    org.revoke_api_key(demo.actor("officer-civil-affairs"), key_row.id)
    revoked = verify(client, key, candidates)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_allowed_addresses(demo, client):
    code, key = system(demo)
    granted(demo, code, provider_terms={"allowed_ips": ["10.1.0.0/16"]})
    row = sample_people(demo, 1)[0]
    candidates = {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}
    assert verify(client, key, candidates).status_code == 403  # the test client calls from 127.0.0.1
    assert verify(client, key, candidates, REMOTE_ADDR="10.1.2.3").status_code == 200


def test_quotas_answer_429(demo, client):
    code, key = system(demo)
    granted(demo, code, provider_terms={"calls_per_day": 2})
    row = sample_people(demo, 1)[0]
    candidates = {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}
    assert [verify(client, key, candidates).status_code for _ in range(3)] == [200, 200, 429]
    assert "daily quota of 2 calls" in verify(client, key, candidates).json()["detail"]
    code, key = system(demo)
    granted(demo, code, provider_terms={"rows_per_day": 5})
    assert len(records(client, key, {"limit": "3"}).json()["rows"]) == 3
    assert len(records(client, key, {"limit": "3"}).json()["rows"]) == 2  # capped to what is left
    assert records(client, key, {"limit": "3"}).status_code == 429


def test_expired_grant_is_refused(demo, client, people_grant):
    grant, key = people_grant
    Grant.objects.filter(pk=grant.pk).update(expires_at=grant.created_at)
    row = sample_people(demo, 1)[0]
    response = verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]})
    assert response.status_code == 403 and "expired" in response.json()["detail"]


def test_metering_counts_calls_rows_and_errors(demo, client, people_grant):
    grant, key = people_grant
    records(client, key, {"limit": "4"})
    records(client, key, {"limit": "bad"})
    meter = Meter.objects.get(grant=grant)
    assert (meter.calls, meter.rows, meter.errors) == (2, 4, 1)
    by_consumer = services.usage(demo.actor("officer-civil-affairs"), "consumer")
    assert {"key": grant.consumer.code, "calls": 2, "rows": 4, "bytes": 0, "errors": 1} in by_consumer
    assert services.usage(demo.actor("officer-health"), "consumer") == []


# ---- SQL ----


def test_sql_over_a_grant_is_masked_and_filtered(demo, client, people_grant):
    _grant, key = people_grant
    response = call(client, key, "/api/v1/share/sql", {
        "sql": 'SELECT p."公民身份号码", p."姓名", p."性别" FROM public_security.household_register AS p '
               "WHERE p.\"性别\" = '2' ORDER BY p.\"出生日期\" LIMIT 5"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["columns"] == ["公民身份号码", "姓名", "性别"] and len(body["rows"]) == 5
    assert all("*" in r[0] and r[1][1:] == "*" * (len(r[1]) - 1) and r[2] == "2" for r in body["rows"])
    counted = call(client, key, "/api/v1/share/sql", {
        "sql": 'SELECT "性别", count(*) AS n FROM public_security.household_register GROUP BY 1 ORDER BY 1'}).json()
    assert sum(n for _sex, n in counted["rows"]) == Table.objects.get(resource__code=PEOPLE).rows > 90_000
    assert '"call":"sql"' in last_audit("share.sql").summary


@pytest.mark.parametrize("query", [
    "SELECT * FROM market_regulation.enterprise_register",  # not granted
    "SELECT \"户号\" FROM public_security.household_register",  # item not granted
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT 1) TO '/tmp/x.csv'",
    "SELECT 1; DROP TABLE x",
])
def test_sql_refusals_are_422_and_audited(demo, client, people_grant, query):
    _grant, key = people_grant
    response = call(client, key, "/api/v1/share/sql", {"sql": query})
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["field"] == "sql"
    assert AuditRecord.objects.filter(action="share.refused").order_by("-seq").first().summary.count("sql") >= 1


def test_sql_without_a_valid_key_is_401(client):
    assert call(client, "", "/api/v1/share/sql", {"sql": "SELECT 1"}).status_code == 401


# ---- the workflow's API ----


def test_workflow_over_the_api(demo, client):
    code, _key = system(demo)
    client.force_login(demo.user("officer-civil-affairs"))
    created = client.post("/api/v1/sharing/applications", application_data(code), content_type="application/json")
    assert created.status_code == 201, created.content
    number = created.json()["number"]
    bad = client.post("/api/v1/sharing/applications", {**application_data(code), "items": ["不存在"]},
                      content_type="application/json")
    assert bad.status_code in (409, 422)
    client.force_login(demo.user("officer-public-security"))
    assert number in [a["number"] for a in client.get("/api/v1/sharing/applications?box=received").json()]
    decided = client.post(f"/api/v1/sharing/applications/{number}/decision",
                          {"decision": "approve", "items": ["公民身份号码", "姓名"]}, content_type="application/json")
    assert decided.status_code == 200 and decided.json()["state"] == "office"
    client.force_login(demo.user("reviewer"))
    done = client.post(f"/api/v1/sharing/applications/{number}/decision", {"decision": "approve"},
                       content_type="application/json").json()
    assert done["state"] == "approved" and done["grant"]
    detail = client.get(f"/api/v1/sharing/applications/{number}").json()
    assert [e["action"] for e in detail["events"]] == ["submit", "approve", "approve"]
    grant = client.get(f"/api/v1/sharing/grants/{done['grant']}").json()
    assert grant["items"] == ["公民身份号码", "姓名"] and grant["state"] == "live"
    assert client.get("/api/v1/sharing/grants/not-a-uuid").status_code == 404


# ---- bulk export with a watermark ----


def test_export_download_and_watermark_identifies_the_recipient(demo, client, tmp_path, jobs_now,
                                                                django_capture_on_commit_callbacks):
    resource = table_resource(demo, sharing_methods=["interface", "file"])
    people = [person(i, f"张{i}") for i in range(300)]
    ingest.ingest_file(demo.actor("officer-public-security"), resource.code, write_csv(tmp_path / "p.csv", people))
    url_code = resource.code.replace("/", "-")
    keys = []
    for _n in range(3):  # three recipients of the same resource
        code, key = system(demo)
        services.apply(demo.actor("officer-civil-affairs"), application_data(
            code, resource.code, items=["公民身份号码", "姓名", "性别", "出生日期"], method="file"))
        keys.append(key)
    exports = []
    for key in keys:
        with django_capture_on_commit_callbacks(execute=True):
            created = call(client, key, f"/api/v1/share/{url_code}/exports", {"format": "csv"})
        assert created.status_code == 202, created.content
        status = call(client, key, f"/api/v1/share/exports/{created.json()['id']}", method="get").json()
        assert status["state"] == "ready" and status["rows"] == 300, status
        exports.append(status)
    # Another system's key cannot see the export; a forged link finds nothing.
    assert call(client, keys[1], f"/api/v1/share/exports/{exports[0]['id']}", method="get").status_code == 404
    assert client.get("/api/v1/share/exports/download/not-a-token").status_code == 404
    download = client.get(exports[0]["download"])
    assert download.status_code == 200
    leaked = tmp_path / "leaked.csv"
    leaked.write_bytes(b"".join(download.streaming_content))
    text = leaked.read_text(encoding="utf-8-sig")
    assert "张*" in text and "130682" in text and "********" in text  # masked as the grant says
    assert '"call":"export_download"' not in text
    assert last_audit("share.export_download").summary.count('"rows":300') == 1
    # A leaked part of the file names its recipient.
    lines = text.splitlines()
    (tmp_path / "part.csv").write_text("\n".join(lines[:1] + lines[40:140]), encoding="utf-8")
    client.force_login(demo.user("officer-public-security"))
    with open(tmp_path / "part.csv", "rb") as f:
        found = client.post("/api/v1/sharing/leaks", {"resource": resource.code, "file": f}).json()
    assert found["export"] == exports[0]["id"] and found["score"] >= 0.9
    assert found["system"] == Grant.objects.get(exports__id=exports[0]["id"]).system.code
    assert last_audit("sharing.leak_identify") is not None


def test_export_refusals(demo, client, people_grant):
    _grant, key = people_grant
    wrong_method = call(client, key, f"/api/v1/share/{PEOPLE_URL}/exports", {"format": "csv"})
    assert wrong_method.status_code == 403  # the grant is for the interface only
    bad_format = call(client, key, f"/api/v1/share/{PEOPLE_URL}/exports", {"format": "exe"})
    assert bad_format.status_code in (403, 422)


# ---- the journal that carries gateway calls into the audit trail ----


def test_journaled_calls_reach_the_audit_trail_exactly_once(demo, people_grant):
    from shuzheng.audit.services import Entry
    from shuzheng.sharing import recorder as rec

    grant, _key = people_grant
    journal = rec.Recorder(ship_in_background=False)
    use = rec.Use(grant.id, grant.system.code, grant.consumer.code, grant.provider.code, grant.resource.code, rows=7)
    before = AuditRecord.objects.filter(action="share.journal_test").count()
    for n in range(5):
        journal.journal(Entry(f"system:{grant.system.code}", grant.consumer.code, "127.0.0.1", "share.journal_test",
                              "sharing.grant", str(grant.id), {"n": n}), use)
    assert journal.today(grant.id) == (5, 35)  # counted for quotas before shipping
    assert journal.ship() >= 5
    assert journal.ship() == 0  # nothing twice
    records = list(AuditRecord.objects.filter(action="share.journal_test").order_by("seq"))
    assert len(records) - before == 5 and [r.summary for r in records[-5:]] == [f'{{"n":{n}}}' for n in range(5)]
    meter = Meter.objects.get(grant=grant)
    assert (meter.calls, meter.rows) == (5, 35) and journal.today(grant.id) == (5, 35)
    # A journal left by a process that is gone (killed mid-run) is shipped by another, then removed.
    orphan = rec.folder() / "999999999-dead.jsonl"
    orphan.write_bytes(b'{"e":["system:x","","10.0.0.1","share.journal_test","","",{"n":99},1],"u":null}\n'
                       b'{"e":["system:x","","10.0.0.1","share.journal_test","","",{"n":100}')  # cut mid-line
    assert journal.ship() == 1
    assert AuditRecord.objects.filter(action="share.journal_test", summary='{"n":99}').count() == 1
    # The incomplete line is a call that was never answered; the next round drops it with the file.
    assert journal.ship() == 0 and not orphan.exists()


def test_a_new_snapshot_of_a_shared_resource_gets_its_serving_store_at_once(demo, tmp_path, jobs_now,
                                                                          django_capture_on_commit_callbacks):
    from shuzheng.sharing import serving

    resource = table_resource(demo)
    code, _key = system(demo)
    officer = demo.actor("officer-public-security")
    ingest.ingest_file(officer, resource.code, write_csv(tmp_path / "a.csv", [person(1)]))
    services.apply(demo.actor("officer-civil-affairs"), application_data(code, resource.code, items=["公民身份号码"]))
    with django_capture_on_commit_callbacks(execute=True):
        load = ingest.ingest_file(officer, resource.code, write_csv(tmp_path / "b.csv", [person(2)]))
    assert serving.path_for(resource.mount_target, load.snapshot_id, serving.items_of(resource.published)).exists()  # before any gateway call
