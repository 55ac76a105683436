"""End to end in a real browser: Debian's chromium driven by Playwright against `shuzheng serve` (the
`platform` fixture: its own home, database and demo). Screenshots go to test-artifacts/ for people to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import DEMO_PASSWORD, totp_now

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
HOME = re.compile(r"^https?://[^/]+/$")  # the home page, and nothing else ending in '/'

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


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
def page(browser, platform):
    context = browser.new_context(base_url=platform.url, locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # e.g. CSP violations
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield page
    context.close()
    assert not errors, f"browser console errors: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, username: str, password: str = DEMO_PASSWORD) -> None:
    """Signs in; enrols in two-factor authentication first when the account's role requires it."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button.primary")
    if "/two-factor/enrol/" in page.url:
        secret = page.inner_text("#totp-secret").strip()
        page.fill("#id_code", totp_now(secret))
        page.click("button.primary")
    page.wait_for_url(HOME)


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_platform_admin_enrols_two_factor_and_creates_a_user(page):
    page.goto("/")
    page.wait_for_url(re.compile(r"/login/"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button.primary")

    # The platform administrator must set up two-factor authentication before the sign-in completes.
    page.wait_for_url(re.compile(r"/two-factor/enrol/"))
    assert page.locator("h1").inner_text() == "设置双因素认证"
    assert page.locator(".qr svg").count() == 1
    shot(page, "01-two-factor-enrol")
    secret = page.inner_text("#totp-secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.fill("#id_code", totp_now(secret))
    page.click("button.primary")

    page.wait_for_url(HOME)
    assert page.locator("h1").inner_text() == "定州市一体化政务数据平台"
    assert "双因素认证已设置" in page.locator(".messages").inner_text()
    shot(page, "02-home")

    page.click("nav.nav >> text=用户")
    page.wait_for_url(re.compile(r"/users/$"))
    page.click("text=新建用户")
    page.wait_for_url(re.compile(r"/users/new/$"))
    page.fill("#id_username", "li.na")
    page.fill("#id_full_name", "李娜")
    civil = page.locator("#id_organization option", has_text="定州市民政局").get_attribute("value")
    page.select_option("#id_organization", civil)
    page.fill("#id_email", "lina@example.cn")
    page.fill("#id_mobile", "1381234567")  # one digit short
    page.fill("#id_password", "Chushi#Mima2026")
    page.click("button.primary")
    assert page.locator("#id_mobile_error").inner_text().strip() == "不是有效的手机号码。"
    assert page.locator("#id_mobile").get_attribute("aria-invalid") == "true"
    shot(page, "03-user-form-error")
    page.fill("#id_mobile", "13812345678")
    page.fill("#id_password", "Chushi#Mima2026")  # password fields are never sent back
    page.click("button.primary")

    page.wait_for_url(re.compile(r"/users/li\.na/$"))
    assert page.locator("h1").inner_text().startswith("李娜")
    assert "已创建用户 li.na" in page.locator(".messages").inner_text()
    shot(page, "04-user-detail")

    page.goto("/users/")
    page.fill("#id_q", "li.na")  # htmx filters as one types
    row = page.locator("#results tbody tr")
    expect(row).to_have_count(1)
    expect(page.locator("#results-count")).to_have_text("共 1 条结果")
    assert "李娜" in row.inner_text() and "民政局" in row.inner_text()
    assert "q=li.na" in page.url
    shot(page, "05-user-list")


def test_login_error_and_keyboard(page):
    page.goto("/login/")
    # The username field has focus on arrival; Tab moves to the password; Enter submits.
    assert page.evaluate("document.activeElement.id") == "id_username"
    page.keyboard.type("staff")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_password"
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    error = page.locator("#id_password_error")
    assert error.inner_text().strip() == "用户名或密码错误。"
    assert page.locator("#id_password").get_attribute("aria-describedby").endswith("id_password_error")
    shot(page, "06-login-error")

    # The form came back with the username kept; the password is typed again and Enter signs in.
    assert page.input_value("#id_username") == "staff"
    page.focus("#id_password")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(HOME)
    assert page.locator("h1").inner_text() == "定州市一体化政务数据平台"

    # On a page without autofocus the skip link is the first Tab stop; the header and the navigation follow.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    stops = []
    for _ in range(20):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement.getAttribute('href') || document.activeElement.tagName"))
        if stops[-1] == "/users/":
            break
    assert stops[-1] == "/users/", stops
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/users/$"))
    # The skip link moves focus to the main content.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_pages_in_english_and_large_text(page):
    """The main pages in both languages and in large-text mode: screenshots, and no sideways scrolling."""
    sign_in(page, "officer-civil-affairs")
    page.goto("/systems/new/")
    page.fill("#id_code", "ca-relief")
    page.fill("#id_name", "社会救助系统")
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/systems/ca-relief/$"))
    page.fill("#id_label", "prod-server")
    page.click("text=创建密钥")
    secret = page.locator(".secret")
    assert secret.inner_text().startswith("sz_")
    assert "只显示这一次" in page.locator(".secret-box").inner_text()
    shot(page, "07-api-key-once")
    page.goto("/users/")
    assert no_horizontal_overflow(page)

    page.select_option("#lang-select", "en")
    page.click("text=切换")
    expect(page.locator("h1")).to_have_text("Users")
    page.click("button[aria-pressed=false]")  # large text
    expect(page.locator("html")).to_have_class("large-text")
    assert no_horizontal_overflow(page)
    shot(page, "08-users-en-large")
    page.goto("/systems/ca-relief/")
    assert no_horizontal_overflow(page)
    shot(page, "09-system-en-large")

    page.context.clear_cookies()
    sign_in(page, "auditor")
    page.goto("/audit/?action=auth.")
    assert page.locator("h1").inner_text() == "审计日志"
    shot(page, "10-audit")
    page.click("text=校验日志链")
    assert "日志链完整" in page.locator(".result").inner_text()
    shot(page, "11-audit-verify")
