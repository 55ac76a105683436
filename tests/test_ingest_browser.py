"""The data plane end to end in a real browser: Debian's chromium driven by Playwright against `shuzheng serve`
(the `platform` fixture: its own home, database and demo).

A data officer of the public security bureau has a published resource mounted as a warehouse table (set up
through the API with the officer's and the reviewer's sessions). The officer opens the resource's data page
from the catalog, uploads a GBK CSV with a few faulty rows, lands on the load's result with the quarantined
rows and their reasons, downloads the quarantine CSV, loads a second file, reads the quality report with its
ECharts trend chart, and travels back to the first snapshot. The same page is then looked at in Chinese.

The officer's browser asks for English (Accept-Language en-US) so that the selectors do not move with the
translation. Screenshots go to test-artifacts/data-*.png for people to look at."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from pathlib import Path

import pytest
from data_helpers import PEOPLE_ITEMS, person, write_csv

from conftest import DEMO_PASSWORD
from shuzheng.demo.loader import demo_credit_code

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
HOME = re.compile(r"^https?://[^/]+/$")
LOAD = re.compile(r"/data/loads/([0-9a-f-]{36})/$")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

OFFICER = "officer-public-security"
REVIEWER = "reviewer"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, platform):
    """Opens a page in a context of its own (one person each); afterwards no page may have logged a console
    error (a CSP violation, a script error) or received a 4xx/5xx answer."""
    contexts, errors = [], []

    def open_page(locale: str = "en-US"):
        context = browser.new_context(base_url=platform.url, locale=locale, viewport={"width": 1280, "height": 900},
                                      accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"browser console errors: {errors}"


def shot(page, name: str, locator=None) -> None:
    path = str(ARTIFACTS / f"data-{name}.png")
    if locator is not None:
        locator.screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=True)


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button.primary")
    page.wait_for_url(HOME)


def api(page, method: str, path: str, body: dict | None = None) -> dict:
    """A JSON API call with the page's session (and its CSRF token, from the page's htmx headers)."""
    token = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    response = page.request.fetch(f"/api/v1{path}", method=method, data=json.dumps(body or {}),
                                  headers={"Content-Type": "application/json", "X-CSRFToken": token})
    assert response.ok, f"{method} {path}: {response.status} {response.text()}"
    return response.json()


def table_resource(officer, reviewer, name: str) -> str:
    """A published resource of the public security bureau with PEOPLE_ITEMS, mounted as its own table."""
    provider = demo_credit_code("public-security", "130682")
    created = api(officer, "POST", "/catalog/resources", {
        "category": "101001", "provider": provider, "name": name, "summary": "定州市户籍人口登记信息（浏览器测试）。",
        "format": "database", "sharing_type": "unconditional", "sharing_methods": ["interface"],
        "open_type": "closed", "update_cycle": "daily", "items": PEOPLE_ITEMS})
    code = created["code"]
    path = f"/catalog/resources/{code.replace('/', '-')}"
    api(officer, "POST", f"{path}/submit", {})
    api(reviewer, "POST", f"{path}/review", {"decision": "approve", "comment": "符合要求"})
    api(reviewer, "POST", f"{path}/publish", {})
    api(officer, "PUT", f"{path}/mount", {"kind": "table", "target": f"public_security.b{uuid.uuid4().hex[:10]}"})
    return code


def faulty_rows() -> list[list[str]]:
    bad_date = person(900, name="李四", registered="2019-02-30")
    no_name = person(901)
    no_name[1] = ""
    bad_income = person(902, name="王五", income="三千")
    return [bad_date, no_name, bad_income]


def test_officer_uploads_a_gbk_csv_reads_the_quality_report_and_downloads_the_quarantine(new_page, tmp_path):
    officer = new_page()
    sign_in(officer, OFFICER)
    reviewer = new_page()
    sign_in(reviewer, REVIEWER)
    name = f"户籍人口登记 {uuid.uuid4().hex[:6]}"
    code = table_resource(officer, reviewer, name)
    slug = code.replace("/", "-")

    # ---- from the catalog entry to the data page -----------------------------------------------------------
    officer.goto(f"/catalog/{slug}/")
    officer.get_by_role("link", name="Data: loads, quality and lineage").click()
    officer.wait_for_url(re.compile(rf"/data/{slug}/$"))
    expect(officer.locator("h1")).to_contain_text(name)
    expect(officer.locator("#loads")).to_contain_text("No loads yet.")
    shot(officer, "01-empty-data-page")

    # ---- a GBK CSV with three faulty rows ------------------------------------------------------------------
    first_file = write_csv(tmp_path / "户籍人口.csv", [person(i) for i in range(20)] + faulty_rows(), encoding="gbk")
    officer.locator("#id_file").set_input_files(str(first_file))
    officer.locator("#id_mode").select_option("append")
    officer.locator("#id_encoding").select_option("gbk")
    shot(officer, "02-upload-form", officer.locator("#upload"))
    officer.get_by_role("button", name="Load", exact=True).click()
    officer.wait_for_url(LOAD)
    load_id = LOAD.search(officer.url).group(1)
    expect(officer.locator(".messages")).to_contain_text("Loaded 20 rows (3 quarantined, 0 unreadable)")
    expect(officer.locator("dd.loaded")).to_have_text("20")
    expect(officer.locator("dd.quarantined")).to_have_text("3")
    findings = officer.locator("table.findings tbody tr")
    expect(findings).to_have_count(3)
    expect(officer.locator("table.findings")).to_contain_text("登记日期")
    expect(officer.locator("table.findings")).to_contain_text("月收入")
    expect(officer.locator("table.findings")).to_contain_text("姓名")
    expect(officer.locator("dl.source")).to_contain_text("户籍人口.csv")
    shot(officer, "03-load-result")

    # ---- the quarantined rows, downloaded --------------------------------------------------------------------
    with officer.expect_download() as info:
        officer.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("quarantine-") and download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 4 and rows[0][0] == "source row"
    assert {r[rows[0].index("姓名")] for r in rows[1:]} == {"李四", "", "王五"}  # the GBK text came through
    reasons = " ".join(r[rows[0].index("reasons")] for r in rows[1:])
    assert "登记日期" in reasons and "月收入" in reasons and "姓名" in reasons

    # ---- a second, clean load, so the report has a trend -----------------------------------------------------
    officer.goto(f"/data/{slug}/")
    second_file = write_csv(tmp_path / "户籍人口-2.csv", [person(i) for i in range(30, 45)], encoding="gbk")
    officer.locator("#id_file").set_input_files(str(second_file))
    seen_busy = []

    def while_loading(route):
        # The upload is on its way: the page says a load is running and the button is disabled.
        busy = officer.locator("#upload-busy")
        seen_busy.append(busy.is_visible() and officer.get_by_role("button", name="Load", exact=True).is_disabled())
        shot(officer, "02b-loading", officer.locator("#upload"))
        route.continue_()

    officer.route(re.compile(r"/upload/$"), while_loading)
    officer.get_by_role("button", name="Load", exact=True).click()
    officer.wait_for_url(LOAD)
    officer.unroute(re.compile(r"/upload/$"))
    assert seen_busy == [True]
    expect(officer.locator(".result.ok")).to_contain_text("the table now holds 35 rows")

    # ---- the quality report with its chart -------------------------------------------------------------------
    officer.goto(f"/data/{slug}/#quality")
    loads = officer.locator("table.loads tbody tr")
    expect(loads).to_have_count(2)
    expect(loads.nth(1)).to_contain_text("Committed")
    expect(officer.locator(".table-rows")).to_have_text("35")
    chart = officer.locator("#quality-trend")
    expect(chart).to_have_attribute("data-drawn", "true")
    expect(chart.locator("svg")).to_have_count(1)
    expect(chart.locator("svg path").first).to_be_attached()
    expect(chart).to_contain_text("Overall")  # the legend
    expect(officer.locator("#quality .stats.scores")).to_contain_text("Validity")
    shot(officer, "04-quality-report", officer.locator("#quality"))
    shot(officer, "05-data-page")
    shot(officer, "05b-lineage", officer.locator("#lineage"))

    # ---- a rule of the resource's own: the form shows the chosen kind's parameters only ------------------
    officer.locator("details.rule-form > summary").click()
    officer.locator("#id_kind").select_option("range")
    expect(officer.locator("#id_params_max")).to_be_visible()
    expect(officer.locator("#id_params_regex")).to_be_hidden()
    officer.locator("#id_items").select_option("月收入")
    officer.locator("#id_params_max").fill("5000")
    officer.locator("#id_description").fill("月收入不超过5000元")
    officer.locator("#id_blocking").uncheck()
    shot(officer, "05c-rule-form", officer.locator("details.rule-form"))
    with officer.expect_navigation():
        officer.get_by_role("button", name="Add the rule").click()
    expect(officer.locator(".messages")).to_contain_text("The rule is saved")
    expect(officer.locator("table.rules").first).to_contain_text("月收入不超过5000元")

    # ---- back in time: the first snapshot's rows -------------------------------------------------------------
    lineage = officer.locator("table.lineage tbody tr")
    expect(lineage).to_have_count(2)
    expect(lineage.nth(1)).to_contain_text("户籍人口.csv")
    first_snapshot = officer.locator("#id_snapshot option").nth(2).get_attribute("value")
    officer.locator("#id_snapshot").select_option(first_snapshot)
    officer.locator("#rows").get_by_role("button", name="Show").click()
    expect(officer.locator("#rows .count")).to_contain_text(f"Snapshot {first_snapshot}: 20 rows")
    shot(officer, "06-time-travel", officer.locator("#rows"))

    # ---- the same pages in Chinese ---------------------------------------------------------------------------
    chinese = new_page(locale="zh-CN")
    sign_in(chinese, OFFICER)
    chinese.goto(f"/data/{slug}/")
    expect(chinese.locator("#quality-trend")).to_have_attribute("data-drawn", "true")
    expect(chinese.locator("h1")).to_contain_text(name)
    shot(chinese, "07-data-page-zh")
    chinese.goto(f"/data/loads/{load_id}/")
    expect(chinese.locator("table.findings")).to_contain_text("登记日期")
    shot(chinese, "08-load-result-zh")
