"""Sharing end to end in a real browser against `shuzheng serve`: the civil-affairs data officer applies for the
household register from its catalog entry; the public security officer approves it narrowed (one item less);
the platform office approves (the register is 重要); the applicant sees the grant, and its application system's
first call on the gateway, over real HTTP with its API key, verifies a person. Screenshots go to
test-artifacts/sharing-*.png."""

from __future__ import annotations

import re
import uuid

import pytest
from test_ingest_browser import ARTIFACTS, api, sign_in
from test_ingest_browser import browser, new_page  # noqa: F401 (fixtures used by name)

from shuzheng.demo.loader import demo_credit_code

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

APPLICATION = re.compile(r"/sharing/applications/(GX\d{8}-\d{4})/$")


def sharing_shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"sharing-{name}.png"), full_page=True)


def test_application_approval_and_first_call(new_page):
    applicant = new_page()
    sign_in(applicant, "officer-civil-affairs")
    system = f"gaoling-{uuid.uuid4().hex[:6]}"
    api(applicant, "POST", "/systems", {"code": system, "name": "高龄津贴审核系统",
                                        "organization": demo_credit_code("civil-affairs", "130682")})

    # ---- apply from the catalog entry ------------------------------------------------------------------------
    applicant.goto("/catalog/101001000-000001/")
    applicant.get_by_role("link", name="Apply for this resource").click()
    applicant.wait_for_url(re.compile(r"/sharing/apply/101001000-000001/$"))
    applicant.locator("#id_system").select_option(system)
    applicant.fill("#id_purpose", "高龄津贴资格审核，核验申请人身份与户籍。")
    applicant.fill("#id_legal_basis", "《河北省老年人权益保障条例》")
    for name in ("户号", "与户主关系", "婚姻状况", "学历", "户口类别", "户籍登记日期", "所属派出所", "现住址", "民族"):
        applicant.locator("#id_items").get_by_label(name, exact=True).uncheck()
    sharing_shot(applicant, "01-apply")
    applicant.get_by_role("button", name="Submit the application").click()
    applicant.wait_for_url(APPLICATION)
    number = APPLICATION.search(applicant.url).group(1)
    expect(applicant.locator("#application-state")).to_have_text("Awaiting the provider")
    sharing_shot(applicant, "02-submitted")

    # ---- the provider approves, narrowed -----------------------------------------------------------------------
    provider = new_page()
    sign_in(provider, "officer-public-security")
    provider.goto("/sharing/?box=received")
    expect(provider.locator(".notifications")).to_contain_text(number)
    provider.get_by_role("link", name=number).first.click()
    provider.wait_for_url(APPLICATION)
    provider.get_by_label("Approve").check()
    provider.locator("#id_items").get_by_label("户籍地址", exact=True).uncheck()
    provider.fill("#id_calls_per_day", "10000")
    provider.locator("#id_calls_per_day").press("Tab")  # leave the number field, as a keyboard user would
    sharing_shot(provider, "03-decide")
    provider.get_by_role("button", name="Record the decision").click()
    expect(provider.locator("#application-state")).to_have_text("Awaiting the platform office")

    # ---- the platform office approves --------------------------------------------------------------------------
    office = new_page()
    sign_in(office, "reviewer")
    office.goto("/sharing/?box=office")
    office.get_by_role("link", name=number, exact=True).click()
    office.get_by_label("Approve").check()
    office.get_by_role("button", name="Record the decision").click()
    expect(office.locator("#application-state")).to_have_text("Approved")

    # ---- the applicant sees the grant, makes a key, and its system calls the gateway --------------------------
    applicant.goto(f"/sharing/applications/{number}/")
    expect(applicant.locator("#application-state")).to_have_text("Approved")
    history = applicant.locator("ol.history li")
    expect(history).to_have_count(3)
    applicant.locator("#grant-link").click()
    expect(applicant.locator("#grant-state")).to_have_text("live")
    expect(applicant.locator("main")).not_to_contain_text("户籍地址")
    sharing_shot(applicant, "04-grant")
    key = api(applicant, "POST", f"/systems/{system}/keys", {"label": "上线"})["key"]

    sample = applicant.request.fetch("/api/v1/share/101001000-000001/records?limit=1",
                                     headers={"Authorization": f"Bearer {key}"})
    assert sample.ok, sample.text()
    masked = sample.json()["rows"][0]
    assert "*" in masked["公民身份号码"] and "户籍地址" not in masked
    verified = applicant.request.fetch("/api/v1/share/101001000-000001/verify", method="POST",
                                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                                       data={"candidates": {"公民身份号码": "130682190001010000", "姓名": "无此人"}})
    assert verified.ok, verified.text()
    assert verified.json()["match"] is False and verified.json()["found"] is False

    # The calls reach the meters through the gateway's journal, shipped within a fraction of a second.
    for _attempt in range(50):
        applicant.goto("/sharing/usage/?by=resource")
        if "101001000/000001" in applicant.locator("table").inner_text():
            break
        applicant.wait_for_timeout(200)
    expect(applicant.locator("table")).to_contain_text("101001000/000001")
    expect(applicant.locator("[data-chart=usage] svg")).to_have_count(1)
    sharing_shot(applicant, "05-usage")
