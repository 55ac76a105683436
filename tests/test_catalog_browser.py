"""The catalog's review lifecycle end to end in a real browser: Debian's chromium driven by Playwright against
`shuzheng serve` (the `platform` fixture: its own home, database and demo).

A data officer registers a resource and submits it; the platform office's reviewer returns it with a
comment; the officer reads the comment, fixes the draft and submits it again; the reviewer approves and
publishes it; the public search then finds it because it is open. A second resource, not open, is taken
through the same lifecycle: the public search does not show it, the officer's does.

The browser asks for English (Accept-Language en-US) so that the selectors do not move while the Chinese
translation of the catalog pages is being written; choices are picked by value. Screenshots go to
test-artifacts/catalog-*.png for people to look at."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from conftest import DEMO_PASSWORD

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
HOME = re.compile(r"^https?://[^/]+/$")  # the home page, and nothing else ending in '/'
RESOURCE = re.compile(r"/catalog/(\d{9}-\d{6})/$")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

OFFICER = "officer-public-security"  # 定州市公安局's data officer: registers and submits (no two-factor)
REVIEWER = "reviewer"  # the platform office's catalog reviewer (only the three administrators need two-factor)


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
    """Opens a page in a context of its own (its own cookies: one person each); after the test, no page
    may have logged a console error or received a 4xx/5xx answer."""
    contexts, errors = [], []

    def open_page():
        context = browser.new_context(base_url=platform.url, locale="en-US", viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # e.g. CSP violations
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"browser console errors: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"catalog-{name}.png"), full_page=True)


def sign_in(page, username: str, password: str = DEMO_PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button.primary")
    page.wait_for_url(HOME)  # neither account is asked for a second factor


def message(page):
    return page.locator(".messages")


def status_tag(page):
    """The resource's lifecycle tag under its title."""
    return page.locator("p.hit-tags .tag[class*=status-]")


def fact(page, label: str):
    """The value next to `label` in the resource's description lists."""
    return page.locator("dl.facts > div").filter(has=page.locator("dt").get_by_text(label, exact=True)).locator("dd")


def click_and_wait(page, button, url=RESOURCE) -> None:
    with page.expect_navigation(url=url):
        button.click()


def fill_item(page, row: int, name: str, data_type: str = "", length: str = "", element: str = "",
              key: bool = False) -> None:
    """One row of the data-item table; each cell is labelled "<column> (row n)" for screen readers."""
    page.get_by_label(f"Item name (row {row})").fill(name)
    if data_type:
        page.get_by_label(f"Type (row {row})").select_option(data_type)
    if length:
        page.get_by_label(f"Length (row {row})").fill(length)
    if element:
        page.get_by_label(f"Data element (row {row})").select_option(element)
    if key:
        page.get_by_label(f"Key (row {row})").check()


def register_closed(page, name: str) -> str:
    """A resource that is neither shared nor open, registered by the signed-in officer: returns its code."""
    page.goto("/catalog/new/")
    page.get_by_label("Classification (类/项/目/细目)").select_option("101001")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Summary").fill("重点管理人员的户籍核查记录，仅供公安机关内部使用。")
    page.get_by_label("Format").select_option("database")
    page.get_by_label("Update cycle").select_option("daily")
    page.get_by_label("Sharing type").select_option("none")
    page.get_by_label("Legal basis for not sharing").fill("《中华人民共和国人民警察法》第二十二条")
    page.get_by_label("Open type").select_option("closed")
    fill_item(page, 1, "公民身份号码", element="DE00001", key=True)  # graded important (重要) by its element
    fill_item(page, 2, "核查结论", data_type="string", length="200")
    click_and_wait(page, page.get_by_role("button", name="Save as draft"))
    expect(status_tag(page)).to_have_text("Draft")
    # The resource takes its item's level (就高从严): important, so it could not have been opened anyway.
    expect(page.locator("p.hit-tags .tag.level-important")).to_be_visible()
    return RESOURCE.search(page.url).group(1)


def test_officer_registers_reviewer_returns_then_publishes_and_public_finds_only_open(new_page):
    marker = "mk" + secrets.token_hex(4)  # one search token (jieba keeps a run of letters and digits whole)
    name = f"户籍人口登记信息 {marker}"
    closed_name = f"重点人员户籍核查记录 {marker}"

    # ---- the data officer registers a resource ----------------------------------------------------------
    officer = new_page()
    sign_in(officer, OFFICER)
    officer.goto("/catalog/")
    officer.get_by_role("link", name="New resource").click()
    officer.wait_for_url(re.compile(r"/catalog/new/$"))
    expect(officer.locator("h1")).to_have_text("New resource")

    officer.get_by_label("Classification (类/项/目/细目)").select_option("101001")  # 1 人口 / 01 / 001 户籍人口
    provider = officer.get_by_label("Provider")
    assert provider.locator("option:checked").inner_text().startswith("定州市公安局 (")  # own and only: name (code)
    officer.get_by_role("textbox", name="Name", exact=True).fill(name)
    officer.get_by_label("Summary").fill("全市户籍人口的登记信息，含户籍所在地行政区划。")
    officer.get_by_label("Format").select_option("database")
    officer.get_by_label("Update cycle").select_option("monthly")
    officer.get_by_label("Classification level (GB/T 43697)").select_option("general")
    officer.get_by_label("Keywords").fill(f"户籍, 人口, {marker}")
    officer.get_by_label("Sharing type").select_option("conditional")
    officer.get_by_role("checkbox", name="Interface").check()
    officer.get_by_role("checkbox", name="Table").check()
    officer.get_by_label("Sharing conditions").fill("仅用于政务服务中的身份核验，使用部门须签署数据安全承诺书。")
    officer.get_by_label("Open type").select_option("open")  # open: only a resource graded general (一般)
    fill_item(officer, 1, "登记编号", data_type="string", length="32", key=True)
    fill_item(officer, 2, "户籍所在地行政区划", element="DE00009")  # type and level come from the element
    shot(officer, "01-new-resource-form")

    click_and_wait(officer, officer.get_by_role("button", name="Save as draft"))
    code = RESOURCE.search(officer.url).group(1).replace("-", "/")
    assert code.startswith("101001000/")  # classification 101001 padded to nine digits, then the sequence
    expect(message(officer)).to_contain_text(f"Resource {code} is registered as a draft.")
    expect(officer.locator("h1")).to_contain_text(name)
    expect(officer.locator("h1")).to_contain_text(code)
    expect(status_tag(officer)).to_have_text("Draft")
    tags = officer.locator("p.hit-tags")
    expect(tags).to_contain_text("General (一般)")
    expect(tags).to_contain_text("Conditional sharing (有条件共享)")
    expect(tags).to_contain_text("Open (无条件开放)")
    expect(tags).to_contain_text("Not mounted")
    items = officer.locator("table.items tbody tr")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("登记编号")
    expect(items.nth(1)).to_contain_text("DE00009")
    expect(items.nth(1)).to_contain_text("行政区划代码")
    expect(items.nth(1)).to_contain_text("Copy of")  # another resource is the element's source (一数一源)
    shot(officer, "02-draft")

    click_and_wait(officer, officer.get_by_role("button", name="Submit for review"))
    expect(message(officer)).to_contain_text("Version 1 is submitted for review.")
    expect(status_tag(officer)).to_have_text("Submitted")
    expect(officer.get_by_role("link", name="Edit draft")).to_have_count(0)  # nothing to edit while it is reviewed
    shot(officer, "03-submitted")

    # Not published yet: the public search does not show it.
    public = new_page()
    public.goto(f"/catalog/?q={marker}")
    expect(public.locator("#results-count")).to_have_text("0 resources")

    # ---- the reviewer returns it with a comment ---------------------------------------------------------
    reviewer = new_page()
    sign_in(reviewer, REVIEWER)
    reviewer.goto("/catalog/work/")
    expect(reviewer.locator("#list-heading")).to_have_text("Awaiting review")
    row = reviewer.locator("table tbody tr", has_text=code)
    expect(row).to_contain_text(name)
    expect(row).to_contain_text("Submitted")
    shot(reviewer, "04-review-queue")
    row.get_by_role("link", name=name).click()
    reviewer.wait_for_url(RESOURCE)
    comment = "摘要请写明数据覆盖的时间范围和更新方式。"
    reviewer.get_by_label("Review comment").fill(comment)
    shot(reviewer, "05-review-form")
    click_and_wait(reviewer, reviewer.get_by_role("button", name="Return with comment"))
    expect(message(reviewer)).to_contain_text("Version 1 is returned to the department.")
    expect(status_tag(reviewer)).to_have_text("Returned")

    # ---- the officer sees the comment, fixes the draft and submits again --------------------------------
    officer.reload()
    returned = officer.get_by_role("note")
    expect(returned).to_contain_text("Returned by the reviewer: what must change")
    expect(returned).to_contain_text(comment)
    expect(status_tag(officer)).to_have_text("Returned")
    expect(officer.locator("table[aria-labelledby=history-heading] tbody tr").first).to_contain_text(comment)
    shot(officer, "06-returned")

    officer.get_by_role("link", name="Fix the returned version").click()
    officer.wait_for_url(re.compile(r"/edit/$"))
    expect(officer.locator("h1")).to_have_text(f"Edit version 1 of {name}")
    summary = officer.get_by_label("Summary")
    expect(summary).to_have_value("全市户籍人口的登记信息，含户籍所在地行政区划。")
    fixed = "全市户籍人口的登记信息，覆盖2000年以来的户籍登记，每月从户籍管理系统同步更新。"
    summary.fill(fixed)
    expect(officer.get_by_label("Item name (row 2)")).to_have_value("户籍所在地行政区划")  # the items came back
    shot(officer, "07-fix-returned")
    click_and_wait(officer, officer.get_by_role("button", name="Save", exact=True))
    expect(message(officer)).to_contain_text("Version 1 is saved.")
    expect(fact(officer, "Summary")).to_have_text(fixed)
    click_and_wait(officer, officer.get_by_role("button", name="Submit for review"))
    expect(message(officer)).to_contain_text("Version 1 is submitted for review.")
    expect(status_tag(officer)).to_have_text("Submitted")

    # ---- the reviewer approves and publishes -----------------------------------------------------------
    reviewer.reload()
    expect(fact(reviewer, "Summary")).to_have_text(fixed)
    click_and_wait(reviewer, reviewer.get_by_role("button", name="Approve"))
    expect(message(reviewer)).to_contain_text("Version 1 is approved; it can now be published.")
    expect(status_tag(reviewer)).to_have_text("Approved")
    click_and_wait(reviewer, reviewer.get_by_role("button", name="Publish version 1"))
    expect(message(reviewer)).to_contain_text("Version 1 is published.")
    expect(status_tag(reviewer)).to_have_text("Published")
    history = reviewer.locator("table[aria-labelledby=history-heading] tbody tr")
    expect(history).to_have_count(6)  # created, submitted, returned, submitted, approved, published
    expect(history.first).to_contain_text("Published")
    shot(reviewer, "08-published")

    # ---- a second resource, not open, through the same lifecycle ---------------------------------------
    closed = register_closed(officer, closed_name)
    click_and_wait(officer, officer.get_by_role("button", name="Submit for review"))
    expect(status_tag(officer)).to_have_text("Submitted")
    reviewer.goto(f"/catalog/{closed}/")
    click_and_wait(reviewer, reviewer.get_by_role("button", name="Approve"))
    click_and_wait(reviewer, reviewer.get_by_role("button", name="Publish version 1"))
    expect(status_tag(reviewer)).to_have_text("Published")
    expect(reviewer.locator("p.hit-tags")).to_contain_text("Not open (不予开放)")

    # ---- the public finds the open one only -------------------------------------------------------------
    public.goto(f"/catalog/?q={marker}")
    expect(public.locator("main")).to_contain_text("You see the resources open to the public.")
    expect(public.locator("#results-count")).to_have_text("1 resource")
    hits = public.locator("ol.hits > li")
    expect(hits).to_have_count(1)
    expect(hits.first.locator(".hit-title")).to_contain_text(name)
    expect(hits.first.locator(".hit-title")).to_contain_text(code)
    expect(hits.first).to_contain_text("Published")
    expect(hits.first).to_contain_text("Open (无条件开放)")
    expect(public.locator("ol.hits")).not_to_contain_text(closed_name)
    shot(public, "09-public-search")
    hits.first.get_by_role("link", name=name).click()
    public.wait_for_url(RESOURCE)
    expect(fact(public, "Summary")).to_have_text(fixed)
    expect(public.get_by_role("button", name="Approve")).to_have_count(0)
    shot(public, "10-public-resource")

    # ---- the officer, inside government, finds both ----------------------------------------------------
    officer.goto(f"/catalog/?q={marker}")
    expect(officer.locator("#results-count")).to_have_text("2 resources")
    titles = officer.locator("ol.hits .hit-title")
    expect(titles).to_have_count(2)
    expect(officer.locator("ol.hits")).to_contain_text(name)
    expect(officer.locator("ol.hits")).to_contain_text(closed_name)
    expect(officer.locator("ol.hits > li", has_text=closed_name)).to_contain_text("Not open (不予开放)")
    shot(officer, "11-officer-search")
