"""Identity (等保 level 3): Argon2id, password policy, lockout, TOTP two-factor, idle timeout, CSRF,
secure headers and cookie flags — through the services and through the sign-in pages."""

import datetime as dt
import re

import pyotp
import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from conftest import totp_now
from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import AuthenticationFailed, Forbidden, ValidationFailed
from shuzheng.org import services
from shuzheng.org.models import User

PASSWORD = "Dingzhou#2026"

# Messages are asserted in English (the source language); the default UI language is zh-hans.
EN = {"Accept-Language": "en"}


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


def test_passwords_are_argon2id(demo):
    assert demo.user("staff").password.startswith("argon2$argon2id$")


@pytest.mark.parametrize("weak", ["Short#1a", "alllowercase-but-long", "123456789012345", "password12345"])
def test_password_policy(demo, weak):
    with pytest.raises(ValidationFailed) as exc:
        services.set_password(demo.actor("staff"), "staff", weak, PASSWORD)
    assert exc.value.errors[0].field == "new_password"
    assert demo.user("staff").check_password(PASSWORD)


def test_changing_own_password_needs_the_old_one(demo):
    with pytest.raises(ValidationFailed) as exc:
        services.set_password(demo.actor("staff"), "staff", "N3w#Passw0rd!", "wrong")
    assert exc.value.errors[0].field == "old_password"
    services.set_password(demo.actor("staff"), "staff", "N3w#Passw0rd!", PASSWORD)
    assert demo.user("staff").check_password("N3w#Passw0rd!")


def test_lockout_after_repeated_failures_and_unlock(demo):
    for _ in range(settings.LOCKOUT_THRESHOLD - 1):
        with pytest.raises(AuthenticationFailed):
            services.sign_in_password("staff", "wrong", "10.0.0.9")
    with pytest.raises(Forbidden) as exc:  # the failure that reaches the threshold locks
        services.sign_in_password("staff", "wrong", "10.0.0.9")
    assert "locked" in exc.value.detail
    user = demo.user("staff")
    assert user.is_locked()
    until = user.locked_until
    # The right password is refused while locked, and attempts do not extend the lock.
    with pytest.raises(Forbidden):
        services.sign_in_password("staff", PASSWORD, "10.0.0.9")
    assert demo.user("staff").locked_until == until
    failures = AuditRecord.objects.filter(action="auth.login_failed", actor="staff")
    assert failures.count() == settings.LOCKOUT_THRESHOLD + 1
    assert failures.first().ip == "10.0.0.9"
    assert AuditRecord.objects.filter(action="user.locked", actor="staff").count() == 1
    # Only the security administrator unlocks.
    with pytest.raises(Forbidden):
        services.unlock_user(demo.actor("admin"), "staff")
    services.unlock_user(demo.actor("secadmin"), "staff")
    assert services.sign_in_password("staff", PASSWORD, "10.0.0.9").next_step == "done"


def test_lock_expires_by_itself(demo):
    User.objects.filter(username="staff").update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    assert services.sign_in_password("staff", PASSWORD, "").next_step == "done"


def test_unknown_user_gets_the_same_answer_and_is_audited(db):
    with pytest.raises(AuthenticationFailed) as exc:
        services.sign_in_password("nobody", "x", "192.0.2.1")
    assert exc.value.detail == "Wrong username or password."
    rec = AuditRecord.objects.filter(action="auth.login_failed").order_by("-seq").first()
    assert rec.actor == "anonymous" and '"username":"nobody"' in rec.summary and rec.ip == "192.0.2.1"


def test_deactivated_user_cannot_sign_in(demo):
    services.update_user(demo.actor("admin"), "staff", {"is_active": False})
    with pytest.raises(AuthenticationFailed):
        services.sign_in_password("staff", PASSWORD, "")


def _enrol(user):
    enrolment = services.start_two_factor(user, "127.0.0.1")
    services.confirm_two_factor(user.pk, totp_now(enrolment.secret), "127.0.0.1")
    return enrolment.secret


def test_two_factor_is_required_for_the_three_administrators(demo):
    for name in ("admin", "secadmin", "auditor"):
        assert services.sign_in_password(name, PASSWORD, "").next_step == "enrol"
    for name in ("staff", "leader", "officer-civil-affairs"):
        assert services.sign_in_password(name, PASSWORD, "").next_step == "done"


def test_two_factor_codes(demo):
    admin = demo.user("admin")
    enrolment = services.start_two_factor(admin, "")
    assert enrolment.uri.startswith("otpauth://totp/") and "<svg" in enrolment.qr_svg
    with pytest.raises(ValidationFailed):
        services.confirm_two_factor(admin.pk, "000000" if totp_now(enrolment.secret) != "000000" else "111111", "")
    services.confirm_two_factor(admin.pk, totp_now(enrolment.secret), "")
    assert services.sign_in_password("admin", PASSWORD, "").next_step == "totp"
    # Wrong code, then a code from the next step (clock drift is tolerated), then its replay.
    with pytest.raises(ValidationFailed) as exc:
        services.sign_in_totp(admin.pk, "12345", "")
    assert exc.value.errors[0].field == "code"
    code = totp_now(enrolment.secret, +1)
    services.sign_in_totp(admin.pk, code, "")
    with pytest.raises(ValidationFailed):
        services.sign_in_totp(admin.pk, code, "")
    with pytest.raises(ValidationFailed):  # an older code after a newer one: also a replay
        services.sign_in_totp(admin.pk, totp_now(enrolment.secret), "")
    assert AuditRecord.objects.filter(action="auth.login_failed", summary__contains="bad_totp").count() == 3


def test_totp_failures_count_towards_lockout(demo):
    secret = _enrol(demo.user("staff"))
    wrong = "000000" if totp_now(secret) != "000000" else "111111"
    for _ in range(settings.LOCKOUT_THRESHOLD - 1):
        with pytest.raises(ValidationFailed):
            services.sign_in_totp(demo.user("staff").pk, wrong, "")
    with pytest.raises(Forbidden):
        services.sign_in_totp(demo.user("staff").pk, wrong, "")
    with pytest.raises(Forbidden):
        services.sign_in_totp(demo.user("staff").pk, totp_now(secret), "")


def test_security_admin_resets_two_factor(demo):
    _enrol(demo.user("staff"))
    with pytest.raises(Forbidden):
        services.reset_two_factor(demo.actor("admin"), "staff")
    services.reset_two_factor(demo.actor("secadmin"), "staff")
    assert not demo.user("staff").two_factor_enrolled


# ---- through the pages ----


def _csrf(client, url):
    page = client.get(url)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)


def test_administrator_sign_in_goes_through_enrolment(demo):
    client = Client(enforce_csrf_checks=True, headers=EN)
    token = _csrf(client, "/login/")
    resp = client.post("/login/", {"username": "auditor", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert resp.status_code == 302 and resp["Location"].startswith("/two-factor/enrol/")
    # Half signed in is not signed in.
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/me").status_code == 401
    page = client.get("/two-factor/enrol/").content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    resp = client.post("/two-factor/enrol/", {"code": pyotp.TOTP(secret).now(), "csrfmiddlewaretoken": _csrf(client, "/two-factor/enrol/")})
    assert resp.status_code == 302 and resp["Location"] == "/"
    assert client.get("/api/v1/me").json()["username"] == "auditor"
    assert AuditRecord.objects.filter(action="auth.login", actor="auditor").exists()
    # Signing out is audited, and the session is gone.
    client.post("/logout/", {"csrfmiddlewaretoken": _csrf(client, "/")})
    assert client.get("/api/v1/me").status_code == 401
    assert AuditRecord.objects.filter(action="auth.logout", actor="auditor").exists()


def test_wrong_password_shows_the_error_at_the_field(db):
    resp = Client(headers=EN).post("/login/", {"username": "staff", "password": "nope"})
    assert resp.status_code == 200
    html = resp.content.decode()
    assert 'class="field has-error"' in html and 'role="alert"' in html


def test_login_without_csrf_token_is_refused(db):
    resp = Client(enforce_csrf_checks=True, headers=EN).post("/login/", {"username": "staff", "password": PASSWORD})
    assert resp.status_code == 403


def test_open_redirect_after_login_is_refused(db):
    resp = Client(headers=EN).post("/login/?next=https://evil.example/", {"username": "staff", "password": PASSWORD,
                                                                "next": "https://evil.example/"})
    assert resp["Location"] == "/"


def test_idle_session_expires(demo):
    client = Client(headers=EN)
    client.post("/login/", {"username": "staff", "password": PASSWORD})
    assert client.get("/").status_code == 200
    assert settings.SESSION_COOKIE_AGE == 15 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    # Each request pushes the expiry forward; an idle session past it is dead.
    session = Session.objects.get(session_key=client.session.session_key)
    assert session.expire_date > timezone.now() + dt.timedelta(minutes=14)
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    resp = client.get("/")
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_security_headers_and_cookie_flags(db):
    client = Client(headers=EN)
    resp = client.get("/login/")
    assert "default-src 'self'" in resp["Content-Security-Policy"] and "script-src 'self';" in resp["Content-Security-Policy"]
    assert resp["X-Frame-Options"] == "DENY"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Referrer-Policy"] == "same-origin"
    resp = client.post("/login/", {"username": "staff", "password": PASSWORD})
    cookie = resp.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert client.get("/api/v1/me")["Cache-Control"] == "no-store"
