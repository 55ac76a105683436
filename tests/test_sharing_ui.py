"""The sharing pages over Django's test client: the inbox, the application form with its field errors, the
decision form (narrowing), a grant with its revocation, and the use page."""

from __future__ import annotations

import re

import pytest
from sharing_helpers import PEOPLE, application_data, granted, system

from shuzheng.sharing import services
from shuzheng.sharing.models import Application, AppState

pytestmark = pytest.mark.django_db


def signed_in(client, demo, username):
    client.force_login(demo.user(username))
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_apply_from_the_form_then_decide_narrowed(demo, client):
    code, _key = system(demo)
    signed_in(client, demo, "officer-civil-affairs")
    page = client.get("/sharing/apply/101001000-000001/")
    assert page.status_code == 200 and code in page.content.decode()
    bad = client.post("/sharing/apply/101001000-000001/", {"system": code, "purpose": "审核", "legal_basis": "条例",
                                                          "items": ["公民身份号码"], "method": "file",
                                                          "period_end": "2099-01-01"})
    text = bad.content.decode()
    assert bad.status_code == 200 and "This resource is shared by: interface" in text
    assert "After today and at most three years ahead." in text
    done = client.post("/sharing/apply/101001000-000001/", {
        "system": code, "purpose": "审核", "legal_basis": "条例", "items": ["公民身份号码", "姓名", "户籍地址"],
        "method": "interface", "period_end": "2027-06-30", "scope_item": "户籍地址", "scope_op": "prefix",
        "scope_value": "河北省定州市"})
    assert done.status_code == 302, done.content.decode()[-3000:]
    number = re.search(r"(GX\d{8}-\d{4})", done["Location"]).group(1)
    application = Application.objects.get(number=number)
    assert application.row_filter == [{"item": "户籍地址", "op": "prefix", "value": "河北省定州市"}]

    signed_in(client, demo, "officer-public-security")
    inbox = client.get("/sharing/?box=received").content.decode()
    assert number in inbox
    decided = client.post(f"/sharing/applications/{number}/", {"decision": "approve", "items": ["公民身份号码", "姓名"],
                                                               "calls_per_day": "100"})
    assert decided.status_code == 302, decided.content.decode()[-3000:]
    application.refresh_from_db()
    assert application.state == AppState.OFFICE and application.terms["items"] == ["公民身份号码", "姓名"]
    rejected = client.post(f"/sharing/applications/{number}/", {"decision": "reject"})
    assert rejected.status_code == 403  # no longer the provider's to decide


def test_grant_page_revokes_and_the_inbox_lists_it(demo, client):
    code, _key = system(demo)
    grant = granted(demo, code)
    signed_in(client, demo, "officer-civil-affairs")
    home = client.get("/sharing/?box=made").content.decode()
    assert grant.application.number in home and "Live grants" in home
    page = client.get(f"/sharing/grants/{grant.id}/").content.decode()
    assert "id_number" in page and "Revoke the grant" in page  # the consumer may give a grant up
    signed_in(client, demo, "officer-health")
    assert client.get(f"/sharing/grants/{grant.id}/").status_code == 404
    signed_in(client, demo, "officer-public-security")
    assert client.post(f"/sharing/grants/{grant.id}/", {"reason": ""}).status_code == 200  # reason required
    assert client.post(f"/sharing/grants/{grant.id}/", {"reason": "停止共享"}).status_code == 302
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoke_reason == "停止共享"
    assert "revoked" in client.get(f"/sharing/grants/{grant.id}/").content.decode()


def test_usage_page_and_office_inbox(demo, client):
    code, _key = system(demo)
    application = services.apply(demo.actor("officer-civil-affairs"), application_data(code, resource=PEOPLE))
    services.decide(demo.actor("officer-public-security"), application.number, {"decision": "approve"})
    signed_in(client, demo, "reviewer")
    office = client.get("/sharing/?box=office").content.decode()
    assert application.number in office and "Platform office" in office
    usage = client.get("/sharing/usage/?by=consumer")
    assert usage.status_code == 200 and 'data-chart="usage"' in usage.content.decode()
    signed_in(client, demo, "staff")
    assert "Platform office" not in client.get("/sharing/").content.decode()
