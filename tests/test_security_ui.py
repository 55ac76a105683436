"""The security dashboard over Django's test client: who sees it (and its navigation entry), the figures and the
chart's data, the alerts table with its acknowledge / escalate form (htmx row swap and plain POST), the alert
page with its history and close form, and the scan button. Browser test: the security administrator (with
two-factor enrolment) acknowledges an alert raised by real failed sign-ins, in chromium against `shuzheng serve`;
the screenshot goes to test-artifacts/security-dashboard.png."""

from __future__ import annotations

import json
import re

import pytest

from conftest import DEMO_PASSWORD, totp_now
from shuzheng.audit.models import AuditRecord
from shuzheng.security import alerts
from shuzheng.security.models import Alert, ScanCursor

RULES = {"rules": {name: {"enabled": name == "failed_logins"} for name in alerts.RULES}}


@pytest.fixture
def alert(db, client):
    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    ScanCursor.objects.update_or_create(pk=1, defaults={"seq": head})
    for _ in range(5):
        client.post("/login/", {"username": "staff", "password": "wrong"}, REMOTE_ADDR="192.0.2.44")
    alerts.scan(rules=RULES)
    return Alert.objects.get(rule="failed_logins", subject="staff")


def signed_in(client, demo, username):
    client.force_login(demo.user(username))
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.mark.django_db
def test_only_the_security_administrator_sees_the_dashboard_and_its_menu_entry(demo, client, alert):
    for name in ("staff", "admin", "auditor", "leader"):
        signed_in(client, demo, name)
        assert client.get("/security/").status_code == 403
        assert client.get(f"/security/alerts/{alert.pk}/").status_code == 404
        assert 'href="/security/"' not in client.get("/").content.decode()
        assert client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "acknowledge"}).status_code == 404
        assert client.post("/security/scan/").status_code == 403
    signed_in(client, demo, "secadmin")
    home = client.get("/").content.decode()
    assert 'href="/security/"' in home and ">Security<" in home
    client.logout()
    assert client.get("/security/").status_code == 302  # to the sign-in page


@pytest.mark.django_db
def test_the_dashboard_figures_chart_and_table(demo, client, alert):
    page = signed_in(client, demo, "secadmin").get("/security/")
    assert page.status_code == 200
    text = page.content.decode()
    assert re.search(r'id="open-medium">1<', text) and re.search(r'id="failed-logins-24h">\d+<', text)
    assert f'id="alert-{alert.pk}"' in text and "5 failed sign-ins for username staff" in text
    chart = json.loads(re.search(r'<script id="security-traffic" type="application/json">(.*?)</script>', text,
                                 re.S).group(1))
    assert len(chart["hours"]) == 24 and sum(chart["failed_logins"]) >= 5
    assert "security/security-charts.js" in text and "<script>" not in text  # no inline script (CSP)
    filtered = client.get("/security/", {"state": "closed"}).content.decode()
    assert f'id="alert-{alert.pk}"' not in filtered and "No alert matches." in filtered
    bad = client.get("/security/", {"severity": "urgent"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()


@pytest.mark.django_db
def test_acknowledge_in_the_table_with_htmx_then_escalate_without(demo, client, alert):
    signed_in(client, demo, "secadmin")
    row = client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "acknowledge", "note": "on it"},
                      HTTP_HX_REQUEST="true")
    text = row.content.decode()
    assert row.status_code == 200 and text.startswith(f'<tr id="alert-{alert.pk}"')
    assert f"Alert #{alert.pk} acknowledged." in text and ">Acknowledged<" in text
    again = client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "acknowledge"}, HTTP_HX_REQUEST="true")
    assert "it cannot be acknowledged" in again.content.decode()
    missing = client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "escalate", "note": ""},
                          HTTP_HX_REQUEST="true").content.decode()
    assert 'aria-invalid="true"' in missing and "the note is required" in missing
    done = client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "escalate", "note": "spraying",
                                                                 "next": "/security/?state=unclosed"})
    assert done.status_code == 302 and done["Location"] == "/security/?state=unclosed"
    alert.refresh_from_db()
    assert (alert.state, alert.note, alert.handled_by) == ("escalated", "spraying", "secadmin")
    outside = client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "close", "note": "x",
                                                                    "next": "https://evil.example/"})
    assert outside["Location"] == "/security/"


@pytest.mark.django_db
def test_the_alert_page_history_and_close(demo, client, alert):
    signed_in(client, demo, "secadmin")
    client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "acknowledge", "note": "checking"})
    page = client.get(f"/security/alerts/{alert.pk}/").content.decode()
    assert "Opened" in page and "checking" in page and 'value="close"' in page
    client.post(f"/security/alerts/{alert.pk}/handle/", {"action": "close", "note": "owner forgot the password"})
    alert.refresh_from_db()
    assert alert.state == "closed"
    page = client.get(f"/security/alerts/{alert.pk}/").content.decode()
    assert 'value="close"' not in page and "owner forgot the password" in page


@pytest.mark.django_db
def test_the_scan_button(demo, client, alert):
    signed_in(client, demo, "secadmin")
    for _ in range(2):
        client.post("/login/", {"username": "staff", "password": "wrong"}, REMOTE_ADDR="192.0.2.44")
    signed_in(client, demo, "secadmin")
    response = client.post("/security/scan/", follow=True)
    assert response.status_code == 200 and "Scanned" in response.content.decode()
    assert AuditRecord.objects.filter(action="security.scan", actor="secadmin").exists()


# ---- in a real browser ----

browser_only = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from test_ingest_browser import CHROMIUM, CHROMIUM_ARGS
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


_totp_secrets: dict[str, str] = {}


def sign_in_with_two_factor(page, username: str) -> None:
    """Signs in; enrols in two-factor authentication on the first sign-in (the secret is kept for the next)."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button.primary")
    if "/two-factor/enrol/" in page.url:
        _totp_secrets[username] = page.inner_text("#totp-secret").strip()
        page.fill("#id_code", totp_now(_totp_secrets[username]))
        page.click("button.primary")
    elif "/login/two-factor/" in page.url:
        page.fill("#id_code", totp_now(_totp_secrets[username], 1))
        page.click("button.primary")
    page.wait_for_url(re.compile(r"^https?://[^/]+/$"))


@browser_only
def test_the_security_administrator_acknowledges_an_alert_in_the_browser(browser, platform):
    from test_ingest_browser import ARTIFACTS

    expect = pytest.importorskip("playwright.sync_api").expect
    ARTIFACTS.mkdir(exist_ok=True)
    errors = []

    def new_page():
        context = browser.new_context(base_url=platform.url, locale="en-US", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        return context, page

    # Someone tries passwords for an account that does not exist, through the sign-in form.
    context, intruder = new_page()
    for attempt in range(6):
        intruder.goto("/login/")
        intruder.fill("#id_username", "zhang.wei.backup")
        intruder.fill("#id_password", f"Guess#{attempt}2026")
        intruder.click("button.primary")
        expect(intruder.locator("#id_password_error")).to_be_visible()
    context.close()

    context, page = new_page()
    sign_in_with_two_factor(page, "secadmin")
    page.get_by_role("link", name="Security", exact=True).click()
    page.wait_for_url(re.compile(r"/security/$"))
    page.get_by_role("button", name="Scan now").click()
    expect(page.locator(".messages")).to_contain_text("Scanned")
    row = page.locator("tr.alert-row", has_text="zhang.wei.backup")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("6 failed sign-ins for username zhang.wei.backup")
    expect(page.locator(".chart svg")).to_have_count(1)  # ECharts drew the traffic chart
    row.locator("textarea").fill("Checked with the 12345 hotline: nobody by this name works here; watching the address.")
    row.get_by_role("button", name="Acknowledge").click()  # htmx swaps the row in place
    row = page.locator("tr.alert-row", has_text="zhang.wei.backup")
    expect(row.locator(".state")).to_have_text("Acknowledged")
    expect(row).to_contain_text("acknowledged.")
    page.screenshot(path=str(ARTIFACTS / "security-dashboard.png"), full_page=True)
    context.close()
    assert not errors, f"browser console errors: {errors}"
