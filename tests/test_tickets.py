"""Correction tickets (数据纠错, issue 4 item 7) through the API (/api/v1/tickets) and the pages (/tickets/),
with Django's test client over the real views, services and database (the Dingzhou demo).

Cast: the resource is the civil affairs bureau's (民政局), its steward `steward`, its data officer
`officer-civil-affairs`; the consumer who raises tickets is the public security bureau's data officer;
`staff` (civil affairs, no ticket permission) and the market regulator's officer are outsiders; `reviewer`
(platform office) and `leader` oversee."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from catalog_helpers import resource_data
from shuzheng.audit.models import AuditRecord
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import Resource
from shuzheng.org import services as org_services
from shuzheng.quality import tickets
from shuzheng.quality.models import CorrectionTicket, TicketComment, TicketCounter

EN = {"Accept-Language": "en"}
API = "/api/v1/tickets"
NUMBER = re.compile(r"^JC\d{8}-\d{4}$")
ID = "130682199001011234"

RAISER = "officer-public-security"
STEWARD = "steward"
OFFICER = "officer-civil-affairs"
OUTSIDER = "officer-market-regulation"


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


def post(client, url, body=None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body if body is not None else {})
    return client.post(url, data, content_type="application/json")


def ok(resp, status=200):
    assert resp.status_code == status, resp.content
    return resp.json()


def problem(resp, status):
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/problem+json"), resp["Content-Type"]
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields(body) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def publish(demo, provider="civil-affairs", officer=OFFICER, **overrides):
    """A published resource of `provider` (registered, submitted, approved and published)."""
    data = resource_data(demo, provider, **overrides)
    resource = catalog.create_resource(demo.actor(officer), data)
    catalog.submit(demo.actor(officer), resource.code)
    catalog.review(demo.actor("reviewer"), resource.code, "approve")
    catalog.publish(demo.actor("reviewer"), resource.code)
    return Resource.objects.select_related("published", "provider").get(pk=resource.pk)


@pytest.fixture
def resource(demo):
    """Civil affairs' resource keyed by 公民身份号码, its steward `steward`."""
    return publish(demo, steward=STEWARD)


def body_of(target, **overrides) -> dict:
    body = {"resource": target.code, "record_key": {"公民身份号码": ID}, "item": "姓名",
            "current_value": "张三丰", "proposed_value": "张三", "description": "户籍底册登记为张三，系录入错误。"}
    body.update(overrides)
    return body


def raise_one(demo, resource, who=RAISER, **overrides) -> dict:
    return ok(post(as_user(demo, who), API, body_of(resource, **overrides)), 201)


def audit_actions(number: str) -> list[str]:
    pk = CorrectionTicket.objects.get(number=number).pk
    return list(AuditRecord.objects.filter(object_id=str(pk)).order_by("seq").values_list("action", flat=True))


def counts() -> tuple:
    return (CorrectionTicket.objects.count(), TicketComment.objects.count(), AuditRecord.objects.count())


def make_overdue(number: str) -> None:
    CorrectionTicket.objects.filter(number=number).update(due_at=timezone.now() - dt.timedelta(hours=1))


# ---- the whole loop ----


def test_raise_comment_accept_resolve_reopen_reject(demo, resource):
    before = timezone.now()
    ticket = raise_one(demo, resource)
    number = ticket["number"]
    assert NUMBER.match(number)
    assert ticket["state"] == "open" and not ticket["overdue"]
    assert ticket["resource"] == {"code": resource.code, "name": resource.published.name}
    assert ticket["provider"]["code"] == demo.org("civil-affairs").code
    assert ticket["raised_by"] == RAISER and ticket["raised_by_org"]["code"] == demo.org("public-security").code
    assert ticket["record_key"] == {"公民身份号码": ID} and ticket["item"] == "姓名"
    assert ticket["assignee"] == STEWARD  # the resource's steward
    due = dt.datetime.fromisoformat(ticket["due_at"])
    days = dt.timedelta(days=tickets.TICKET_DAYS)
    assert before + days <= due <= timezone.now() + days
    assert ticket["actions"] == ["comment"]
    assert [e["action"] for e in ticket["history"]] == ["raise"]

    raiser, steward, officer = as_user(demo, RAISER), as_user(demo, STEWARD), as_user(demo, OFFICER)
    after = ok(post(raiser, f"{API}/{number}/comments", {"body": "附户籍底册扫描件。"}), 201)
    assert after["history"][-1] | {"at": None} == {
        "action": "comment", "author": RAISER, "author_org": ticket["raised_by_org"], "body": "附户籍底册扫描件。",
        "from_state": "", "to_state": "", "at": None}

    seen = ok(steward.get(f"{API}/{number}"))
    assert seen["actions"] == ["accept", "comment", "reject"]
    accepted = ok(post(steward, f"{API}/{number}/accept", {"comment": "已核实，正在更正。"}))
    assert accepted["state"] == "accepted" and accepted["assignee"] == STEWARD
    assert accepted["due_at"] == ticket["due_at"]  # accepting does not move the deadline
    resolved = ok(post(steward, f"{API}/{number}/resolve", {"resolution": "已按户籍底册更正姓名。"}))
    assert resolved["state"] == "resolved" and resolved["resolution"] == "已按户籍底册更正姓名。"
    assert resolved["resolved_at"] is not None
    assert ok(raiser.get(f"{API}/{number}"))["actions"] == ["comment", "reopen"]

    reopened = ok(post(raiser, f"{API}/{number}/reopen", {"reason": "共享库中仍为张三丰。"}))
    assert reopened["state"] == "open" and reopened["resolution"] == "" and reopened["resolved_at"] is None
    assert reopened["due_at"] > ticket["due_at"]  # a new deadline
    rejected = ok(post(officer, f"{API}/{number}/reject", {"resolution": "共享库次日同步，已核对无误。"}))
    assert rejected["state"] == "rejected"

    history = rejected["history"]
    assert [(e["action"], e["from_state"], e["to_state"], e["author"]) for e in history] == [
        ("raise", "", "open", RAISER), ("comment", "", "", RAISER), ("accept", "open", "accepted", STEWARD),
        ("resolve", "accepted", "resolved", STEWARD), ("reopen", "resolved", "open", RAISER),
        ("reject", "open", "rejected", OFFICER)]
    assert history[3]["body"] == "已按户籍底册更正姓名。" and history[4]["body"] == "共享库中仍为张三丰。"

    # Every step is in the audit trail, by whom it was taken; the record's key values are not.
    assert audit_actions(number) == ["quality.ticket_raise", "quality.ticket_comment", "quality.ticket_accept",
                                     "quality.ticket_resolve", "quality.ticket_reopen", "quality.ticket_reject"]
    pk = str(CorrectionTicket.objects.get(number=number).pk)
    records = list(AuditRecord.objects.filter(object_id=pk).order_by("seq"))
    assert [r.actor for r in records] == [RAISER, RAISER, STEWARD, STEWARD, RAISER, OFFICER]
    assert all(r.object_type == "quality.correctionticket" and number in r.summary for r in records)
    assert ID not in records[0].summary and "公民身份号码" in records[0].summary


def test_numbers_follow_on_within_a_day(demo, resource):
    first = raise_one(demo, resource)["number"]
    second = raise_one(demo, resource, record_key={"公民身份号码": "130682199001015678"})["number"]
    assert first[:11] == second[:11] == f"JC{timezone.localdate():%Y%m%d}-"
    assert int(second[-4:]) == int(first[-4:]) + 1
    assert TicketCounter.objects.get(day=timezone.localdate()).last == int(second[-4:])


def test_no_key_resource_takes_any_items_and_without_steward_goes_to_the_department(demo):
    resource = publish(demo, items=[{"name": "姓名", "element": "DE00002", "length": 50},
                                    {"name": "出生日期", "element": "DE00005"},
                                    {"name": "住址", "data_type": "string", "length": 200}])
    ticket = raise_one(demo, resource, record_key={"姓名": "李四", "出生日期": "1990-01-01"}, item="住址")
    assert ticket["assignee"] is None and ticket["record_key"] == {"姓名": "李四", "出生日期": "1990-01-01"}
    # The first handler to accept it becomes its assignee.
    accepted = ok(post(as_user(demo, OFFICER), f"{API}/{ticket['number']}/accept", {}))
    assert accepted["assignee"] == OFFICER


def test_application_systems_raise_tickets_and_the_public_cannot(demo, resource):
    system = org_services.create_system(demo.cli(), {"code": "ticket-test", "name": "纠错测试系统",
                                                     "organization": demo.org("health").code})
    _key, raw = org_services.create_api_key(demo.cli(), system.code, "", 5)
    resp = Client(headers=EN).post(API, json.dumps(body_of(resource)), content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {raw}")
    ticket = ok(resp, 201)
    assert ticket["raised_by"] == "system:ticket-test" and ticket["raised_by_org"]["code"] == demo.org("health").code
    mine = ok(Client(headers=EN).get(API, {"box": "raised"}, HTTP_AUTHORIZATION=f"Bearer {raw}"))
    assert [t["number"] for t in mine["tickets"]] == [ticket["number"]]

    before = counts()
    problem(post(Client(headers=EN), API, body_of(resource)), 401)
    problem(Client(headers=EN).get(API), 401)
    problem(Client(headers=EN).get(f"{API}/{ticket['number']}"), 401)
    assert counts() == before


# ---- who sees what ----


def test_scoping(demo, resource):
    number = raise_one(demo, resource)["number"]
    other = publish(demo, "public-security", "officer-public-security")
    foreign = raise_one(demo, other, who=STEWARD)["number"]  # civil affairs raises on public security's

    for name in (RAISER, STEWARD, OFFICER, "reviewer", "leader"):
        assert ok(as_user(demo, name).get(f"{API}/{number}"))["number"] == number, name
    for name in (OUTSIDER, "staff", "developer"):
        client = as_user(demo, name)
        problem(client.get(f"{API}/{number}"), 404)
        problem(post(client, f"{API}/{number}/comments", {"body": "看看"}), 404)
        problem(post(client, f"{API}/{number}/accept", {}), 404)
        assert number not in [t["number"] for t in ok(client.get(API, {"limit": 200}))["tickets"]], name
    problem(as_user(demo, RAISER).get(f"{API}/JC19990101-0001"), 404)

    def listed(name, **params):
        return {t["number"] for t in ok(as_user(demo, name).get(API, {"limit": 200, **params}))["tickets"]}

    assert {number, foreign} <= listed(STEWARD)  # raised by it, and its department's to answer
    assert listed(STEWARD, box="assigned") >= {number} and foreign not in listed(STEWARD, box="assigned")
    assert foreign in listed(STEWARD, box="raised") and number not in listed(STEWARD, box="raised")
    assert number in listed(STEWARD, box="mine") and number not in listed(OFFICER, box="mine")
    assert number in listed(RAISER, box="raised") and number not in listed(RAISER, box="assigned")
    assert foreign in listed(RAISER, box="assigned")  # the public security officer answers for its own
    assert {number, foreign} <= listed("reviewer") and {number, foreign} <= listed("leader")
    assert number in listed(RAISER, resource=resource.code.replace("/", "-"))
    assert number not in listed(RAISER, resource=other.code)
    assert number in listed(STEWARD, state="open") and number not in listed(STEWARD, state="resolved")
    assert number in listed(STEWARD, state="active")
    problem(as_user(demo, STEWARD).get(API, {"state": "closed"}), 422)
    problem(as_user(demo, STEWARD).get(API, {"box": "everything"}), 422)
    page = ok(as_user(demo, "reviewer").get(API, {"limit": 1, "offset": 0}))
    assert page["limit"] == 1 and len(page["tickets"]) == 1 and page["total"] >= 2


def test_only_visible_published_resources_take_tickets(demo):
    draft = catalog.create_resource(demo.actor(OFFICER), resource_data(demo, "civil-affairs"))
    # A draft is invisible to other departments: the same answer as an unknown code.
    body = problem(post(as_user(demo, RAISER), API, body_of(draft)), 422)
    assert fields(body) == {"resource"}
    unknown = body_of(draft, resource="101001001/999999")
    assert fields(problem(post(as_user(demo, RAISER), API, unknown), 422)) == {"resource"}
    # Its own department sees the draft, but there is nothing published to correct yet.
    body = problem(post(as_user(demo, STEWARD), API, body_of(draft)), 409)
    assert fields(body) == {"resource"}


# ---- overdue tickets and the platform office ----


def test_overdue_tickets_are_the_overseers_to_decide(demo, resource):
    number = raise_one(demo, resource)["number"]
    reviewer = as_user(demo, "reviewer")
    assert number not in {t["number"] for t in ok(reviewer.get(API, {"overdue": True, "limit": 200}))["tickets"]}
    problem(post(reviewer, f"{API}/{number}/accept", {}), 403)  # not overdue yet: the department's call
    assert ok(reviewer.get(f"{API}/{number}"))["actions"] == ["comment"]

    make_overdue(number)
    overdue = ok(reviewer.get(API, {"overdue": True, "limit": 200}))["tickets"]
    assert number in {t["number"] for t in overdue} and all(t["overdue"] for t in overdue)
    assert number not in {t["number"] for t in ok(reviewer.get(API, {"overdue": False, "limit": 200}))["tickets"]}
    assert ok(as_user(demo, RAISER).get(f"{API}/{number}"))["overdue"] is True
    assert ok(reviewer.get(f"{API}/{number}"))["actions"] == ["accept", "comment", "reject"]
    accepted = ok(post(reviewer, f"{API}/{number}/accept", {"comment": "平台办督办。"}))
    assert accepted["state"] == "accepted" and accepted["assignee"] == STEWARD  # the overseer does not take it
    assert accepted["overdue"] is True  # still owed, still late
    ok(post(as_user(demo, "leader"), f"{API}/{number}/resolve", {"resolution": "督办后已更正。"}))
    assert audit_actions(number)[-2:] == ["quality.ticket_accept", "quality.ticket_resolve"]
    assert AuditRecord.objects.filter(action="quality.ticket_resolve").order_by("-seq").first().actor == "leader"
    assert number not in {t["number"] for t in ok(reviewer.get(API, {"overdue": True, "limit": 200}))["tickets"]}


# ---- refusals ----


def test_invalid_transitions_are_409_and_change_nothing(demo, resource):
    number = raise_one(demo, resource)["number"]
    steward, raiser = as_user(demo, STEWARD), as_user(demo, RAISER)

    def refused(client, step, body):
        before = counts()
        result = problem(post(client, f"{API}/{number}/{step}", body), 409)
        assert counts() == before
        return result

    assert fields(refused(steward, "resolve", {"resolution": "已更正"})) == {"state"}  # accept first
    refused(raiser, "reopen", {"reason": "再看看"})  # it is open
    ok(post(steward, f"{API}/{number}/accept", {}))
    refused(steward, "accept", {})
    ok(post(steward, f"{API}/{number}/reject", {"resolution": "值无误"}))
    refused(steward, "reject", {"resolution": "值无误"})
    refused(steward, "resolve", {"resolution": "已更正"})
    refused(steward, "accept", {})
    # The raiser may reopen within REOPEN_DAYS of the answer, not after.
    CorrectionTicket.objects.filter(number=number).update(
        resolved_at=timezone.now() - dt.timedelta(days=tickets.REOPEN_DAYS, minutes=1))
    refused(raiser, "reopen", {"reason": "再看看"})
    assert ok(raiser.get(f"{API}/{number}"))["actions"] == ["comment"]
    assert CorrectionTicket.objects.get(number=number).state == "rejected"


def test_only_the_right_people_take_each_step(demo, resource):
    number = raise_one(demo, resource)["number"]
    before = counts()
    problem(post(as_user(demo, RAISER), f"{API}/{number}/accept", {}), 403)  # the raiser cannot answer
    problem(post(as_user(demo, RAISER), f"{API}/{number}/reject", {"resolution": "算了"}), 403)
    ok(post(as_user(demo, STEWARD), f"{API}/{number}/reject", {"resolution": "值无误"}))
    middle = counts()
    problem(post(as_user(demo, STEWARD), f"{API}/{number}/reopen", {"reason": "再议"}), 403)  # only the raiser
    problem(post(as_user(demo, "reviewer"), f"{API}/{number}/reopen", {"reason": "再议"}), 403)
    assert counts() == middle and middle != before
    # Everyone who sees it may comment, in any state.
    ok(post(as_user(demo, "reviewer"), f"{API}/{number}/comments", {"body": "已阅。"}), 201)
    ok(post(as_user(demo, OFFICER), f"{API}/{number}/comments", {"body": "同意驳回。"}), 201)


def test_a_second_open_ticket_on_the_same_field_of_the_same_record_is_refused(demo, resource):
    first = raise_one(demo, resource)["number"]
    body = problem(post(as_user(demo, RAISER), API, body_of(resource)), 409)
    assert first in body["detail"]
    raise_one(demo, resource, who="reviewer")  # someone else may
    raise_one(demo, resource, item="公民身份号码")  # and another field is another ticket


@pytest.mark.parametrize("overrides, field", [
    ({"item": "婚姻状况"}, "item"),
    ({"item": ""}, "item"),
    ({"record_key": {"身份证": ID}}, "record_key.身份证"),
    ({"record_key": {"姓名": "张三"}}, "record_key.姓名"),  # not a key item
    ({"record_key": {}}, "record_key"),
    ({"record_key": {"公民身份号码": ""}}, "record_key.公民身份号码"),
    ({"record_key": {"公民身份号码": "1" * 201}}, "record_key.公民身份号码"),
    ({"record_key": {"公民身份号码": "1306\x1b82"}}, "record_key.公民身份号码"),
    ({"record_key": {"公民身份号码": 130682199001011234}}, "record_key.公民身份号码"),
    ({"description": ""}, "description"),
    ({"description": "   "}, "description"),
    ({"description": "长" * 2001}, "description"),
    ({"description": "错误\x07"}, "description"),
    ({"current_value": "x" * 2001}, "current_value"),
    ({"proposed_value": "a\x08b"}, "proposed_value"),
    ({"resource": "101001001/999999"}, "resource"),
])
def test_bad_input_is_422_naming_the_field(demo, resource, overrides, field):
    before = counts()
    body = problem(post(as_user(demo, RAISER), API, body_of(resource, **overrides)), 422)
    assert field in fields(body), body
    assert counts() == before


def test_bad_step_input_is_422_naming_the_field(demo, resource):
    number = raise_one(demo, resource)["number"]
    steward = as_user(demo, STEWARD)
    before = counts()
    assert fields(problem(post(steward, f"{API}/{number}/comments", {"body": " "}), 422)) == {"body"}
    assert fields(problem(post(steward, f"{API}/{number}/comments", {"body": "x\x1b[31m"}), 422)) == {"body"}
    assert fields(problem(post(steward, f"{API}/{number}/comments", {"body": "x" * 2001}), 422)) == {"body"}
    assert fields(problem(post(steward, f"{API}/{number}/reject", {"resolution": ""}), 422)) == {"resolution"}
    assert fields(problem(post(steward, f"{API}/{number}/reject", {}), 422)) == {"resolution"}
    assert fields(problem(post(as_user(demo, RAISER), f"{API}/{number}/reopen", {"reason": ""}), 422)) == {"reason"}
    assert counts() == before


def test_nul_bytes_are_refused(demo, resource):
    """The platform answers any request carrying NUL with 400 before a view runs (core.middleware); the
    service refuses it too, naming the field, for callers that do not come over HTTP."""
    from shuzheng.core.errors import ValidationFailed

    number = raise_one(demo, resource)["number"]
    before = counts()
    problem(post(as_user(demo, RAISER), API, body_of(resource, description="错误\x00")), 400)
    problem(post(as_user(demo, RAISER), API, body_of(resource, record_key={"公民身份号码": "1306\x0082"})), 400)
    problem(post(as_user(demo, STEWARD), f"{API}/{number}/reject", {"resolution": "x\x00"}), 400)
    assert counts() == before
    for data, field in (({"description": "错误\x00"}, "description"),
                        ({"record_key": {"公民身份号码": "1306\x0082"}}, "record_key.公民身份号码"),
                        ({"current_value": "\x00"}, "current_value")):
        with pytest.raises(ValidationFailed) as caught:
            tickets.raise_ticket(demo.actor(RAISER), resource.code, {**body_of(resource), **data})
        assert [e.field for e in caught.value.errors] == [field]
    with pytest.raises(ValidationFailed) as caught:
        tickets.comment(demo.actor(STEWARD), number, "x\x00")
    assert caught.value.errors[0].field == "body"
    assert counts() == before


def test_the_service_reports_every_problem_at_once(demo, resource):
    from shuzheng.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        tickets.raise_ticket(demo.actor(RAISER), resource.code, {
            "record_key": {"身份证": ID}, "item": "婚姻状况", "description": "", "current_value": "\x00"})
    assert {e.field for e in caught.value.errors} == {
        "record_key.身份证", "record_key.公民身份号码", "item", "description", "current_value"}


# ---- the pages ----


def html(response) -> str:
    return response.content.decode()


def field_errors(response, name: str) -> str:
    match = re.search(rf'<div id="id_{re.escape(name)}_error">(.*?)</div>', html(response), re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def form_url(resource) -> str:
    return f"/tickets/new/?resource={resource.code.replace('/', '-')}"


def test_raising_through_the_form(demo, resource):
    raiser = as_user(demo, RAISER)
    page = raiser.get(form_url(resource))
    assert page.status_code == 200
    text = html(page)
    assert 'name="key_0"' in text and "公民身份号码" in text and 'name="item"' in text
    assert 'name="csrfmiddlewaretoken"' in text and resource.published.name in text
    # Errors come back next to their fields, nothing is written.
    before = counts()
    bad = raiser.post(form_url(resource), {"key_0": ID, "item": "姓名", "description": ""})
    assert bad.status_code == 200 and field_errors(bad, "description")
    bad = raiser.post(form_url(resource), {"key_0": "1306\x0082", "item": "姓名", "description": "错了"})
    assert field_errors(bad, "key_0")  # Django's forms refuse NUL too
    bad = raiser.post(form_url(resource), {"key_0": "1306\x1b82", "item": "婚姻状况", "description": "错了"})
    assert field_errors(bad, "key_0") and field_errors(bad, "item")  # the service's errors, at their fields
    bad = raiser.post(form_url(resource), {"key_0": ID, "item": "姓名", "description": "长" * 2001})
    assert field_errors(bad, "description")
    assert counts() == before
    done = raiser.post(form_url(resource), {"key_0": ID, "item": "姓名", "current_value": "张三丰",
                                            "proposed_value": "张三", "description": "录入错误"})
    assert done.status_code == 302
    number = CorrectionTicket.objects.filter(resource=resource).get().number
    assert done["Location"] == f"/tickets/{number}/"
    detail = raiser.get(done["Location"])
    assert number in html(detail) and "录入错误" in html(detail) and ID in html(detail)
    assert f'action="/tickets/{number}/comment/"' in html(detail)
    assert f'action="/tickets/{number}/accept/"' not in html(detail)  # the raiser does not answer it


def test_the_form_for_a_resource_without_key(demo):
    resource = publish(demo, items=[{"name": "姓名", "element": "DE00002", "length": 50},
                                    {"name": "住址", "data_type": "string", "length": 200}])
    raiser = as_user(demo, RAISER)
    assert 'name="key_item_0"' in html(raiser.get(form_url(resource)))
    done = raiser.post(form_url(resource), {"key_item_0": "姓名", "key_value_0": "李四", "key_item_1": "",
                                            "key_value_1": "", "item": "住址", "description": "地址已变更"})
    assert done.status_code == 302
    assert CorrectionTicket.objects.get(resource=resource).record_key == {"姓名": "李四"}
    bad = raiser.post(form_url(resource), {"key_item_0": "姓名", "key_value_0": "", "item": "住址",
                                           "description": "地址已变更"})
    assert field_errors(bad, "key_value_0")


def test_the_form_needs_a_visible_published_resource(demo):
    raiser = as_user(demo, RAISER)
    assert 'name="resource"' in html(raiser.get("/tickets/new/"))
    assert raiser.get("/tickets/new/?resource=101001001-999999").status_code == 404
    draft = catalog.create_resource(demo.actor(OFFICER), resource_data(demo, "civil-affairs"))
    assert raiser.get(form_url(draft)).status_code == 404
    assert as_user(demo, STEWARD).get(form_url(draft)).status_code == 409
    assert Client().get("/tickets/new/").status_code == 302  # sign in first


def test_answering_through_the_pages(demo, resource):
    number = raise_one(demo, resource)["number"]
    steward = as_user(demo, STEWARD)
    page = html(steward.get(f"/tickets/{number}/"))
    assert f'action="/tickets/{number}/accept/"' in page and f'/tickets/{number}/reject/' in page
    assert f'action="/tickets/{number}/resolve/"' not in page  # not accepted yet
    assert steward.post(f"/tickets/{number}/accept/", {"comment": ""}).status_code == 302
    page = html(steward.get(f"/tickets/{number}/"))
    assert f'action="/tickets/{number}/resolve/"' in page
    # An empty resolution comes back at the field; a step the state does not allow is a message.
    bad = steward.post(f"/tickets/{number}/resolve/", {"resolution": ""})
    assert bad.status_code == 200 and field_errors(bad, "resolution")
    assert steward.post(f"/tickets/{number}/resolve/", {"resolution": "已更正"}).status_code == 302
    again = steward.post(f"/tickets/{number}/resolve/", {"resolution": "已更正"}, follow=True)
    assert "Only an accepted ticket can be resolved" in html(again)
    assert steward.post(f"/tickets/{number}/comment/", {"body": "请核对"}).status_code == 302
    raiser = as_user(demo, RAISER)
    assert f'action="/tickets/{number}/reopen/"' in html(raiser.get(f"/tickets/{number}/"))
    assert raiser.post(f"/tickets/{number}/reopen/", {"reason": "仍未更正"}).status_code == 302
    assert CorrectionTicket.objects.get(number=number).state == "open"
    assert raiser.post(f"/tickets/{number}/accept/", {"comment": ""}).status_code == 403
    assert audit_actions(number) == ["quality.ticket_raise", "quality.ticket_accept", "quality.ticket_resolve",
                                     "quality.ticket_comment", "quality.ticket_reopen"]
    # Outsiders: not found.
    assert as_user(demo, OUTSIDER).get(f"/tickets/{number}/").status_code == 404
    assert as_user(demo, "staff").post(f"/tickets/{number}/comment/", {"body": "x"}).status_code == 404


def test_the_lists_are_the_inboxes(demo, resource):
    number = raise_one(demo, resource)["number"]
    raised = html(as_user(demo, RAISER).get("/tickets/?list=raised"))
    assert f"/tickets/{number}/" in raised
    steward = as_user(demo, STEWARD)
    inbox = html(steward.get("/tickets/"))  # a handler starts on the department's list
    assert 'href="?list=assigned" aria-current="page"' in inbox and f"/tickets/{number}/" in inbox
    assert "?list=overdue" not in inbox
    assert f"/tickets/{number}/" not in html(steward.get("/tickets/?list=assigned&state=resolved"))
    reviewer = as_user(demo, "reviewer")
    assert f"/tickets/{number}/" not in html(reviewer.get("/tickets/?list=overdue"))
    assert f"/tickets/{number}/" in html(reviewer.get("/tickets/?list=all"))
    make_overdue(number)
    overdue = html(reviewer.get("/tickets/"))  # the platform office starts on the overdue list
    assert 'href="?list=overdue" aria-current="page"' in overdue and f"/tickets/{number}/" in overdue
    assert f"/tickets/{number}/" not in html(as_user(demo, OUTSIDER).get("/tickets/?list=all"))
    assert 'href="/tickets/"' in html(as_user(demo, "staff").get("/"))  # the navigation links the lists


# ---- numbers under concurrency ----

CONCURRENT_RAISERS = """
import threading
from django.db import connections
from shuzheng.catalog.models import Resource
from shuzheng.org.models import User
from shuzheng.org.services import Actor
from shuzheng.quality import tickets

resource = Resource.objects.filter(status="published").order_by("code").first()
items = list(resource.published.items.order_by("position"))
keys = [i.name for i in items if i.is_key] or [items[0].name]
users = list(User.objects.filter(username__startswith="officer-").order_by("username")[:8])
numbers, errors = [], []

def raiser(k):
    try:
        actor = Actor(user=User.objects.select_related("organization").get(pk=users[k].pk))
        for i in range(6):
            ticket = tickets.raise_ticket(actor, resource.code, {
                "record_key": {name: f"{k}-{i}" for name in keys}, "item": items[0].name,
                "description": "concurrency"})
            numbers.append(ticket.number)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()

threads = [threading.Thread(target=raiser, args=(k,)) for k in range(len(users))]
for t in threads: t.start()
for t in threads: t.join()
sequence = sorted(int(n[-4:]) for n in numbers)
print(len(numbers), len(set(numbers)), sequence == list(range(sequence[0], sequence[0] + len(numbers))), errors[:1])
"""


def test_concurrent_raises_never_share_a_number(platform):
    """Eight writers raise tickets at once against the platform's own database (SQLite, or PostgreSQL when
    DATABASE_URL is set): every number is distinct and the day's sequence has no gap."""
    import subprocess
    import sys

    prelude = "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
    done = subprocess.run([sys.executable, "-c", prelude + CONCURRENT_RAISERS], env=platform.env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.split() == ["48", "48", "True", "[]"], done.stdout + done.stderr
