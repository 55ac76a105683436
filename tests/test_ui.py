"""The server-rendered pages, through Django's test client: real views, real services, real database.

Accounts come from the Dingzhou demo (conftest.demo). `force_login` skips the password and two-factor steps,
which tests/test_browser.py drives for real."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.utils import timezone, translation

from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import AuthenticationFailed
from shuzheng.core.validators import make_credit_code
from shuzheng.org import services
from shuzheng.org.models import ApiKey, User, UserRole
from shuzheng.org.roles import Perm, Role

NEW_PASSWORD = "Xin-Mima#2026ab"


@pytest.fixture
def as_user(client, demo):
    def login(username: str):
        client.force_login(demo.user(username))
        return client

    return login


@pytest.fixture
def systems(demo):
    """One application system in civil affairs and one in the health commission."""
    cli = demo.cli()
    civil = services.create_system(cli, {"code": "ca-relief", "name": "社会救助系统",
                                         "organization": demo.org("civil-affairs").code})
    health = services.create_system(cli, {"code": "hc-vaccine", "name": "疫苗接种系统",
                                          "organization": demo.org("health").code})
    return civil, health


def html(response) -> str:
    return response.content.decode()


def listed_users(response) -> set[str]:
    return set(re.findall(r'<td><a href="/users/([^/"]+)/">', html(response)))


def listed_systems(response) -> set[str]:
    return set(re.findall(r'<td><a href="/systems/([^/"]+)/">', html(response)))


def field_errors(response, name: str) -> str:
    """The text of the error block the template puts under field `name` ('' when none)."""
    match = re.search(rf'<div id="id_{name}_error">(.*?)</div>', html(response), re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


# ---- every page renders, with one <h1>, and refuses whom it must ----------------------------------------


@pytest.mark.parametrize(
    "username, url, status",
    [
        ("admin", "/organizations/", 200),
        ("admin", "/organizations/?q=民政&kind=department", 200),
        ("admin", "/organizations/new/", 200),
        ("admin", "/users/", 200),
        ("admin", "/users/?role=data_officer&page=2", 200),
        ("admin", "/users/new/", 200),
        ("admin", "/users/staff/", 200),
        ("admin", "/users/staff/edit/", 200),
        ("admin", "/systems/", 200),
        ("admin", "/systems/new/", 403),  # the platform administrator does not register systems
        ("admin", "/audit/", 403),
        ("admin", "/account/password/", 200),
        ("secadmin", "/users/staff/", 200),
        ("secadmin", "/users/staff/edit/", 403),
        ("secadmin", "/users/new/", 403),
        ("secadmin", "/organizations/new/", 403),
        ("auditor", "/users/new/", 403),
        ("auditor", "/audit/", 200),
        ("auditor", "/audit/?action=user.&page=1", 200),
        ("officer-civil-affairs", "/systems/new/", 200),
        ("officer-civil-affairs", "/organizations/new/", 403),
        ("staff", "/users/nobody-like-this/", 404),
        ("staff", "/organizations/91000000000000000X/", 404),
        ("staff", "/systems/no-such-system/", 404),
    ],
)
def test_page_status(as_user, username, url, status):
    response = as_user(username).get(url)
    assert response.status_code == status
    if status == 200:
        assert html(response).count("<h1") == 1


def test_pages_need_sign_in(client):
    for url in ("/organizations/", "/users/", "/users/new/", "/systems/", "/audit/", "/audit/export.csv",
                "/account/password/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_tables_have_column_headers_and_fields_have_labels(as_user, demo):
    client = as_user("admin")
    for url in ("/organizations/", "/users/"):
        page = html(client.get(url))
        assert '<th scope="col">' in page and "<th>" not in page
    page = html(client.get("/users/new/"))
    for name in ("username", "full_name", "organization", "email", "mobile", "password"):
        assert f'<label for="id_{name}">' in page
    assert "style=" not in page and "<script>" not in page  # the CSP allows neither


def test_organization_list_filters_and_detail(as_user, demo):
    client = as_user("staff")
    civil = demo.org("civil-affairs")
    page = html(client.get("/organizations/", {"q": civil.code}))
    assert civil.name in page and demo.org("health").name not in page
    page = html(client.get("/organizations/", {"kind": "court"}))
    assert "定州市人民法院" in page and civil.name not in page
    page = html(client.get(f"/organizations/{civil.code}/"))
    assert civil.name in page and civil.region.name in page
    assert "/organizations/new/" not in page and "/edit/" not in page  # staff may not manage organizations


def test_platform_admin_creates_and_edits_an_organization(as_user, demo):
    client = as_user("admin")
    code = make_credit_code("11", "130682", "87654321")
    response = client.post("/organizations/new/", {"code": code, "name": "定州市测试局", "short_name": "测试局",
                                                   "kind": "department", "region": "130682",
                                                   "parent": demo.org("dingzhou-gov").code})
    assert response.status_code == 302 and response["Location"] == f"/organizations/{code}/"
    org = services.find_organization(code)
    assert org.parent == demo.org("dingzhou-gov")
    response = client.post(f"/organizations/{code}/edit/", {"name": "定州市测试管理局", "kind": "department",
                                                           "region": "130682", "parent": "", "is_active": "on"})
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.name == "定州市测试管理局" and org.parent is None
    # A bad credit code is refused by the service and shown next to the field.
    response = client.post("/organizations/new/", {"code": "91130682MA0000000X", "name": "另一个", "kind": "department",
                                                   "region": "130682"})
    assert response.status_code == 200 and field_errors(response, "code")


# ---- scoping: a department sees its own people and systems, others only by grant ------------------------


def test_data_officer_sees_only_his_department_until_granted(as_user, demo, systems):
    client = as_user("officer-civil-affairs")

    users = listed_users(client.get("/users/"))
    assert users == {"officer-civil-affairs", "steward", "developer", "staff"}
    assert client.get("/users/officer-health/").status_code == 404
    assert not listed_users(client.get("/users/", {"q": "officer-health"}))
    assert not listed_users(client.get("/users/", {"organization": demo.org("health").code}))

    assert listed_systems(client.get("/systems/")) == {"ca-relief"}
    assert client.get("/systems/ca-relief/").status_code == 200
    assert client.get("/systems/hc-vaccine/").status_code == 404

    health, civil = demo.org("health").code, demo.org("civil-affairs").code
    services.grant_access(demo.cli(), health, civil, Perm.USER_VIEW, "联合救助核对")
    services.grant_access(demo.cli(), health, civil, Perm.SYSTEM_VIEW, "联合救助核对")

    client = as_user("officer-civil-affairs")
    assert listed_users(client.get("/users/")) == users | {"officer-health"}
    assert client.get("/users/officer-health/").status_code == 200
    assert listed_systems(client.get("/systems/")) == {"ca-relief", "hc-vaccine"}
    page = client.get("/systems/hc-vaccine/")
    assert page.status_code == 200
    assert 'id="id_label"' not in html(page) and "/keys/" not in html(page)  # seeing is not managing


def test_organization_detail_counts_only_what_the_actor_sees(as_user, demo, systems):
    health = demo.org("health")
    page = html(as_user("officer-civil-affairs").get(f"/organizations/{health.code}/"))
    assert re.search(r"<dd>\s*0\s*</dd>", page)  # no health users or systems visible
    page = html(as_user("admin").get(f"/organizations/{health.code}/"))
    assert f'?organization={health.code}">1</a>' in page


# ---- users ----------------------------------------------------------------------------------------------


def user_form(**overrides) -> dict:
    data = {"username": "zhang.wei", "full_name": "张伟", "organization": "", "email": "zhangwei@example.cn",
            "mobile": "13812345678", "password": NEW_PASSWORD}
    data.update(overrides)
    return data


def test_platform_admin_creates_a_user(as_user, demo):
    client = as_user("admin")
    civil = demo.org("civil-affairs").code
    response = client.post("/users/new/", user_form(organization=civil))
    assert response.status_code == 302 and response["Location"] == "/users/zhang.wei/"
    user = User.objects.get(username="zhang.wei")
    assert user.organization.code == civil and user.mobile == "13812345678" and user.check_password(NEW_PASSWORD)
    assert AuditRecord.objects.filter(action="user.create", actor="admin", object_id=str(user.pk)).exists()
    page = html(client.get("/users/zhang.wei/"))
    assert "张伟" in page and "zhangwei@example.cn" in page
    assert listed_users(client.get("/users/", {"q": "zhang"})) == {"zhang.wei"}


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"username": "staff"}, "username"),  # taken
        ({"password": "short"}, "password"),
        ({"password": "alllowercaseletters"}, "password"),
        ({"mobile": "12345"}, "mobile"),
        ({"email": "not-an-address"}, "email"),
        ({"username": "bad name!"}, "username"),
        ({"full_name": ""}, "full_name"),
    ],
)
def test_bad_user_form_shows_the_error_at_the_field_and_creates_nothing(as_user, demo, overrides, field):
    client = as_user("admin")
    before = User.objects.count()
    records = AuditRecord.objects.count()
    response = client.post("/users/new/", user_form(organization=demo.org("civil-affairs").code, **overrides))
    assert response.status_code == 200
    assert field_errors(response, field), f"no error shown at {field}"
    others = [n for n in ("username", "full_name", "organization", "email", "mobile", "password") if n != field]
    assert not any(field_errors(response, n) for n in others)
    assert 'aria-invalid="true"' in html(response)
    assert User.objects.count() == before and AuditRecord.objects.count() == records
    # What was typed is kept, except the password.
    if field != "username":
        assert 'value="zhang.wei"' in html(response)
    assert NEW_PASSWORD not in html(response)


def test_error_messages_are_translated(as_user, demo):
    client = as_user("admin")
    response = client.post("/users/new/", user_form(organization=demo.org("civil-affairs").code, mobile="12345"))
    with translation.override("zh-hans"):
        assert field_errors(response, "mobile") == translation.gettext("Not a valid mobile number.")
    assert field_errors(response, "mobile") != "Not a valid mobile number."
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    response = client.post("/users/new/", user_form(organization=demo.org("civil-affairs").code, mobile="12345"))
    assert field_errors(response, "mobile") == "Not a valid mobile number."


def test_platform_admin_edits_a_user(as_user, demo):
    client = as_user("admin")
    response = client.post("/users/staff/edit/", {"full_name": "工作人员甲", "email": "", "mobile": "13900000000",
                                                  "organization": demo.org("civil-affairs").code, "is_active": ""})
    assert response.status_code == 302
    staff = demo.user("staff")
    assert staff.full_name == "工作人员甲" and staff.mobile == "13900000000" and not staff.is_active
    assert "tag warn" in html(client.get("/users/staff/"))


def test_a_user_cannot_deactivate_himself(as_user, demo):
    client = as_user("admin")
    response = client.post("/users/admin/edit/", {"full_name": "平台管理员", "organization": demo.user("admin").organization.code})
    assert response.status_code == 200 and field_errors(response, "is_active")
    assert demo.user("admin").is_active


def test_security_admin_assigns_and_removes_a_role(as_user, demo):
    client = as_user("secadmin")
    page = html(client.get("/users/staff/"))
    assert 'action="/users/staff/roles/"' in page
    response = client.post("/users/staff/roles/", {"role": Role.DATA_STEWARD})
    assert response.status_code == 302
    assert UserRole.objects.filter(user__username="staff", role=Role.DATA_STEWARD, granted_by="secadmin").exists()
    # A second data officer for civil affairs is refused at the field.
    response = client.post("/users/staff/roles/", {"role": Role.DATA_OFFICER})
    assert response.status_code == 200 and field_errors(response, "role")
    assert not UserRole.objects.filter(user__username="staff", role=Role.DATA_OFFICER).exists()
    response = client.post("/users/staff/roles/remove/", {"role": Role.DATA_STEWARD})
    assert response.status_code == 302
    assert not UserRole.objects.filter(user__username="staff", role=Role.DATA_STEWARD).exists()


def test_platform_admin_cannot_assign_roles(as_user, demo):
    client = as_user("admin")
    assert 'action="/users/staff/roles/"' not in html(client.get("/users/staff/"))
    assert client.post("/users/staff/roles/", {"role": Role.DATA_STEWARD}).status_code == 403
    assert client.post("/users/staff/roles/remove/", {"role": Role.STAFF}).status_code == 403
    assert set(demo.user("staff").roles.values_list("role", flat=True)) == {Role.STAFF}


def test_nobody_changes_their_own_roles(as_user):
    client = as_user("secadmin")
    assert 'action="/users/secadmin/roles/"' not in html(client.get("/users/secadmin/"))
    assert client.post("/users/secadmin/roles/", {"role": Role.STAFF}).status_code == 403


def test_security_admin_unlocks_and_resets_two_factor(as_user, demo):
    User.objects.filter(username="staff").update(locked_until=timezone.now() + dt.timedelta(minutes=30),
                                                 totp_secret="JBSWY3DPEHPK3PXP", totp_confirmed_at=timezone.now())
    client = as_user("secadmin")
    page = html(client.get("/users/staff/"))
    assert "/users/staff/unlock/" in page and "/users/staff/two-factor/reset/" in page
    assert client.post("/users/staff/unlock/").status_code == 302
    assert client.post("/users/staff/two-factor/reset/").status_code == 302
    staff = demo.user("staff")
    assert not staff.is_locked() and not staff.two_factor_enrolled and staff.totp_secret == ""
    # The platform administrator sees no such buttons and is refused.
    client = as_user("admin")
    assert "/users/staff/unlock/" not in html(client.get("/users/staff/"))
    assert client.post("/users/staff/unlock/").status_code == 403


def test_change_my_password(as_user, demo):
    client = as_user("staff")
    response = client.post("/account/password/", {"old_password": "wrong", "new_password": NEW_PASSWORD,
                                                   "new_password2": NEW_PASSWORD})
    assert response.status_code == 200 and field_errors(response, "old_password")
    response = client.post("/account/password/", {"old_password": demo.password, "new_password": "weak",
                                                   "new_password2": "weak"})
    assert response.status_code == 200 and field_errors(response, "new_password")
    response = client.post("/account/password/", {"old_password": demo.password, "new_password": NEW_PASSWORD,
                                                   "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert demo.user("staff").check_password(NEW_PASSWORD)
    assert client.get("/users/").status_code == 200  # still signed in on this device


# ---- application systems and keys -------------------------------------------------------------------


def test_data_officer_registers_a_system_and_issues_a_key_shown_once(as_user, demo):
    client = as_user("officer-civil-affairs")
    page = html(client.get("/systems/new/"))
    assert demo.org("civil-affairs").code in page and demo.org("health").code not in page
    response = client.post("/systems/new/", {"code": "ca-marriage", "name": "婚姻登记系统",
                                             "organization": demo.org("civil-affairs").code})
    assert response.status_code == 302 and response["Location"] == "/systems/ca-marriage/"
    response = client.post("/systems/ca-marriage/keys/", {"label": "prod-server", "days": "30"})
    assert response.status_code == 200
    match = re.search(r'<p class="secret" id="new-key"[^>]*>(sz_[A-Za-z0-9_-]+)</p>', html(response))
    assert match, "the new key is shown in a .secret box"
    raw = match.group(1)
    assert "no-store" in response["Cache-Control"]
    assert services.authenticate_api_key(raw, "127.0.0.1").code == "ca-marriage"
    page = html(client.get("/systems/ca-marriage/"))
    assert "prod-server" in page and raw not in page and raw[:10] in page  # only the prefix, later
    # Bad input comes back at the field.
    response = client.post("/systems/ca-marriage/keys/", {"label": "x", "days": "9999"})
    assert response.status_code == 200 and field_errors(response, "days")
    key = ApiKey.objects.get(system__code="ca-marriage")
    response = client.post(f"/systems/ca-marriage/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status() == "revoked" and key.revoked_by == "officer-civil-affairs"


def test_security_admin_revokes_any_key_and_others_cannot(as_user, demo, systems):
    key, _raw = services.create_api_key(demo.cli(), "hc-vaccine", "k1", 30)
    assert as_user("officer-civil-affairs").post(f"/systems/hc-vaccine/keys/{key.pk}/revoke/").status_code == 404
    assert as_user("staff").post("/systems/ca-relief/keys/").status_code == 403
    assert as_user("secadmin").post(f"/systems/hc-vaccine/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_by == "secadmin"


def test_system_form_errors_at_fields(as_user, demo):
    client = as_user("officer-civil-affairs")
    response = client.post("/systems/new/", {"code": "Bad Code", "name": "x",
                                             "organization": demo.org("civil-affairs").code})
    assert response.status_code == 200 and field_errors(response, "code")


# ---- audit trail ----------------------------------------------------------------------------------------


def test_only_the_audit_administrator_reads_and_exports_the_trail(as_user):
    for name in ("admin", "secadmin", "leader", "officer-civil-affairs", "staff"):
        client = as_user(name)
        assert client.get("/audit/").status_code == 403
        assert client.get("/audit/export.csv").status_code == 403
        assert client.post("/audit/verify/").status_code == 403
    page = html(as_user("auditor").get("/audit/"))
    assert '<th scope="col">' in page and "/audit/export.csv" in page


def test_audit_search_filters_and_pages(as_user, demo):
    client = as_user("auditor")
    page = html(client.get("/audit/", {"action": "user.role_assign", "actor": "cli:"}))
    assert "user.role_assign" in page
    page = html(client.get("/audit/", {"action": "user.create"}))
    assert "user.create" in page and "user.role_assign" not in page
    assert 'href="/audit/export.csv?action=user.create"' in page
    total = AuditRecord.objects.count()
    assert total > 50  # the demo alone writes hundreds
    first, second = html(client.get("/audit/")), html(client.get("/audit/", {"page": 2}))
    assert f"<td>{total}</td>" in first and f"<td>{total - 50}</td>" in second
    assert "?page=2" in first and "?page=1" in second
    # since after until: the service's message, next to the field
    response = client.get("/audit/", {"since": "2030-01-02T00:00", "until": "2030-01-01T00:00"})
    assert response.status_code == 200 and field_errors(response, "since")
    response = client.get("/audit/", {"since": "not a date"})
    assert response.status_code == 200 and field_errors(response, "since")


def test_audit_time_filter_uses_local_time(as_user, demo):
    client = as_user("auditor")
    now = timezone.localtime()
    later = (now + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert "共 0 条记录" in html(client.get("/audit/", {"since": later}))
    earlier = (now - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    services.unlock_user(demo.actor("secadmin"), "staff")
    page = html(client.get("/audit/", {"since": earlier, "action": "user.unlock"}))
    assert "user.unlock" in page


def test_audit_csv_export_escapes_formulas(as_user, demo):
    services.create_user(demo.actor("admin"), {"username": "formula", "full_name": "=HYPERLINK(1)",
                                               "organization": demo.org("civil-affairs").code,
                                               "password": NEW_PASSWORD})
    # A sign-in attempt whose recorded address begins with '=' (what a forged X-Forwarded-For could carry).
    with pytest.raises(AuthenticationFailed):
        services.sign_in_password("formula", "wrong", "=HYPERLINK(2)")
    client = as_user("auditor")
    response = client.get("/audit/export.csv", {"action": "auth.login_failed"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][0] == "seq" and len(rows) >= 2
    ips = [row[4] for row in rows[1:]]
    assert "'=HYPERLINK(2)" in ips and "=HYPERLINK(2)" not in ips
    assert all(row[5] == "auth.login_failed" for row in rows[1:])
    # The new user's name is in a JSON summary (which begins with '{', so nothing to escape there).
    body = b"".join(client.get("/audit/export.csv", {"action": "user.create"}).streaming_content).decode()
    assert "=HYPERLINK(1)" in body
    assert AuditRecord.objects.filter(action="audit.export", actor="auditor").count() == 2


def test_audit_verify_button(as_user):
    client = as_user("auditor")
    assert 'action="/audit/verify/"' in html(client.get("/audit/"))
    response = client.post("/audit/verify/")
    assert response.status_code == 200
    assert 'class="result ok"' in html(response)
    assert AuditRecord.objects.filter(action="audit.verify").exists()
    assert client.get("/audit/verify/").status_code == 405


# ---- language and large text ------------------------------------------------------------------------


def test_language_switch(as_user):
    client = as_user("staff")
    page = html(client.get("/users/"))
    assert 'lang="zh-hans"' in page and "<h1>用户</h1>" in page
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/users/"})
    assert response.status_code == 302 and response["Location"] == "/users/"
    page = html(client.get("/users/"))
    assert 'lang="en"' in page and "<h1>Users</h1>" in page and "Full name" in page
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert "<h1>用户</h1>" in html(client.get("/users/"))


def test_every_page_is_translated(as_user):
    """No English left on the main pages in Chinese (a missing translation shows as English)."""
    client = as_user("admin")
    for url in ("/organizations/", "/users/", "/users/new/", "/users/staff/", "/systems/"):
        page = html(client.get(url))
        text = re.sub(r"<[^>]+>|&[a-z]+;", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S))
        data = set(re.findall(r"[A-Za-z]+", " ".join(User.objects.values_list("username", flat=True))))
        words = {w for w in re.findall(r"[A-Za-z]{4,}", text)} - data - {"English", "Shuzheng"}
        assert not words, f"{url}: untranslated {sorted(words)[:10]}"


def test_large_text_toggle(as_user, demo):
    client = as_user("staff")
    assert 'class="large-text"' not in html(client.get("/users/"))
    response = client.post("/preferences/large-text/", {"enabled": "1", "next": "/users/"})
    assert response.status_code == 302
    page = html(client.get("/users/"))
    assert 'class="large-text"' in page and 'aria-pressed="true"' in page
    assert demo.user("staff").large_text
    client.post("/preferences/large-text/", {"enabled": "0", "next": "/users/"})
    assert 'class="large-text"' not in html(client.get("/users/"))
