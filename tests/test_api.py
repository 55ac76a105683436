"""The JSON API: problem+json errors with the field at fault, the API-key lifecycle, scoping and the
separation of the three administrators, all through real HTTP requests to the Django app."""

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from shuzheng.audit.models import AuditRecord
from shuzheng.core.crypto import sm3_hex
from shuzheng.org import services
from shuzheng.org.models import ApiKey, ApplicationSystem, User

# Messages are asserted in English (the source language); the default UI language is zh-hans.
EN = {"Accept-Language": "en"}


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


def as_user(demo, name) -> Client:
    client = Client(headers=EN)
    client.force_login(demo.user(name))
    return client


def post(client, url, body, **kw):
    return client.post(url, json.dumps(body), content_type="application/json", **kw)


def patch(client, url, body):
    return client.patch(url, json.dumps(body), content_type="application/json")


def problem(resp, status):
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields(body):
    return {e["field"] for e in body.get("errors", [])}


@pytest.fixture
def civil_system(demo):
    return services.create_system(demo.actor("developer"), {"code": "grid", "name": "网格化管理系统",
                                                            "organization": demo.org("civil-affairs").code})


@pytest.fixture
def health_system(demo):
    return services.create_system(demo.cli(), {"code": "hospital-hub", "name": "医疗信息平台",
                                               "organization": demo.org("health").code})


# ---- /me and API keys ----


def test_me_without_credentials_is_401_problem(db):
    body = problem(Client(headers=EN).get("/api/v1/me"), 401)
    assert "API key" in body["detail"]


def test_me_for_a_signed_in_user(demo):
    body = as_user(demo, "officer-civil-affairs").get("/api/v1/me").json()
    assert body["kind"] == "user" and body["roles"] == ["data_officer"]
    assert body["organization"]["code"] == demo.org("civil-affairs").code


def test_api_key_lifecycle(demo, civil_system):
    dev = as_user(demo, "developer")
    created = post(dev, "/api/v1/systems/grid/keys", {"label": "prod", "days": 30})
    assert created.status_code == 201, created.content
    raw = created.json()["key"]
    assert raw.startswith("sz_")
    stored = ApiKey.objects.get(prefix=raw[:10])
    assert stored.digest == sm3_hex(raw.encode()) and raw not in (stored.digest, stored.prefix)
    # Shown once: listing never returns it again.
    listed = dev.get("/api/v1/systems/grid/keys").json()
    assert listed[0]["status"] == "active" and "key" not in listed[0]
    me = Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert me == {"kind": "system", "system": "grid", "organization": {"code": demo.org("civil-affairs").code,
                  "name": "定州市民政局"}, "username": None, "full_name": None, "roles": [], "two_factor": None}
    assert Client(headers=EN).get("/api/v1/me", HTTP_X_API_KEY=raw).status_code == 200
    # Revoked: refused on the very next call.
    revoked = post(dev, f"/api/v1/keys/{stored.id}/revoke", {})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert "revoked" in problem(Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}"), 401)["detail"]
    assert problem(post(dev, f"/api/v1/keys/{stored.id}/revoke", {}), 409)
    assert AuditRecord.objects.filter(action="auth.apikey_failed", actor="system:grid").exists()


def test_expired_bad_and_deactivated_keys(demo, civil_system):
    key, raw = services.create_api_key(demo.actor("developer"), "grid", "soon", 1)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert "expired" in problem(Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}"), 401)["detail"]
    assert "not valid" in problem(Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION="Bearer sz_nope"), 401)["detail"]
    assert problem(Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION="Bearer " + "x" * 5000), 401)
    _key2, raw2 = services.create_api_key(demo.actor("developer"), "grid", "live", 10)
    services.update_system(demo.actor("developer"), "grid", {"is_active": False})
    assert "deactivated" in problem(Client(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw2}"), 401)["detail"]


def test_key_lifetime_is_bounded(demo, civil_system):
    dev = as_user(demo, "developer")
    assert "days" in fields(problem(post(dev, "/api/v1/systems/grid/keys", {"days": 0}), 422))
    assert "days" in fields(problem(post(dev, "/api/v1/systems/grid/keys", {"days": 10000}), 422))
    assert not ApiKey.objects.exists()


def test_a_system_key_cannot_manage_anything(demo, civil_system):
    _key, raw = services.create_api_key(demo.actor("developer"), "grid", "", 10)
    client = Client(headers=EN)
    resp = client.post("/api/v1/users", json.dumps({"username": "x1", "full_name": "x", "organization":
                       demo.org("civil-affairs").code, "password": "Aa1!aaaaaaaaaa"}), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {raw}")
    problem(resp, 403)
    assert client.get("/api/v1/users", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["count"] == 0


# ---- scoping: department X never sees department Y's objects unless granted ----


def test_scoping_of_users_and_systems(demo, civil_system, health_system):
    officer = as_user(demo, "officer-civil-affairs")
    users = officer.get("/api/v1/users?limit=500").json()
    assert users["count"] > 0
    assert {u["organization"]["code"] for u in users["items"]} == {demo.org("civil-affairs").code}
    problem(officer.get("/api/v1/users/officer-health"), 404)
    assert [s["code"] for s in officer.get("/api/v1/systems").json()["items"]] == ["grid"]
    problem(officer.get("/api/v1/systems/hospital-hub"), 404)
    problem(officer.get("/api/v1/systems/hospital-hub/keys"), 404)
    problem(post(officer, "/api/v1/systems/hospital-hub/keys", {"days": 5}), 404)
    problem(patch(officer, "/api/v1/systems/hospital-hub", {"name": "mine"}), 404)
    health_key, _raw = services.create_api_key(demo.cli(), "hospital-hub", "", 5)
    problem(post(officer, f"/api/v1/keys/{health_key.id}/revoke", {}), 404)
    # Filtering by the other organization does not widen anything.
    assert officer.get(f"/api/v1/users?organization={demo.org('health').code}").json()["count"] == 0

    # The health department's data officer grants civil affairs a view of its users and systems.
    health = as_user(demo, "officer-health")
    for perm in ("user.view", "system.view"):
        resp = post(health, "/api/v1/grants", {"owner": demo.org("health").code, "grantee": demo.org("civil-affairs").code,
                                               "permission": perm, "reason": "联合救助"})
        assert resp.status_code == 201, resp.content
    assert officer.get("/api/v1/users/officer-health").status_code == 200
    assert {s["code"] for s in officer.get("/api/v1/systems").json()["items"]} == {"grid", "hospital-hub"}
    # Seeing is not managing: the grant gives read access only.
    problem(post(officer, "/api/v1/systems/hospital-hub/keys", {"days": 5}), 403)
    # Revoked: gone on the next request.
    grant_id = health.get("/api/v1/grants").json()[0]["id"]
    assert post(health, f"/api/v1/grants/{grant_id}/revoke", {}).status_code == 200
    remaining = {g["permission"] for g in health.get("/api/v1/grants").json()}
    if "user.view" not in remaining:
        problem(officer.get("/api/v1/users/officer-health"), 404)
    else:
        problem(officer.get("/api/v1/systems/hospital-hub"), 404)


def test_a_grant_can_only_be_given_by_the_owner(demo):
    officer = as_user(demo, "officer-civil-affairs")
    body = {"owner": demo.org("health").code, "grantee": demo.org("civil-affairs").code, "permission": "user.view",
            "reason": "想看"}
    problem(post(officer, "/api/v1/grants", body), 403)
    body["owner"] = demo.org("civil-affairs").code
    body["permission"] = "user.manage"
    assert "permission" in fields(problem(post(officer, "/api/v1/grants", body), 422))


def test_leading_group_sees_across_departments_but_changes_nothing(demo, health_system):
    leader = as_user(demo, "leader")
    assert leader.get("/api/v1/systems/hospital-hub").status_code == 200
    problem(patch(leader, "/api/v1/systems/hospital-hub", {"name": "x"}), 403)
    problem(patch(leader, "/api/v1/users/staff", {"full_name": "x"}), 403)


# ---- the three administrators (三员分立) ----


def test_three_administrators_are_separate(demo):
    admin, sec, auditor = (as_user(demo, n) for n in ("admin", "secadmin", "auditor"))
    # Platform administrator: accounts and organizations, but no roles and no audit.
    new = post(admin, "/api/v1/users", {"username": "wang.wu", "full_name": "王五",
                                       "organization": demo.org("health").code, "password": "Kx9#mP2$vLq7"})
    assert new.status_code == 201, new.content
    problem(post(admin, "/api/v1/users/wang.wu/roles", {"role": "data_steward"}), 403)
    problem(admin.get("/api/v1/audit"), 403)
    # Security administrator: roles and unlocking, but no accounts and no audit.
    assert post(sec, "/api/v1/users/wang.wu/roles", {"role": "data_steward"}).status_code == 201
    problem(post(sec, "/api/v1/users", {"username": "zhao.liu", "full_name": "赵六",
                                        "organization": demo.org("health").code, "password": "Kx9#mP2$vLq7"}), 403)
    problem(patch(sec, "/api/v1/users/wang.wu", {"full_name": "x"}), 403)
    problem(sec.get("/api/v1/audit"), 403)
    problem(patch(sec, f"/api/v1/organizations/{demo.org('health').code}", {"short_name": "x"}), 403)
    # Audit administrator: reads the trail, changes nothing.
    trail = auditor.get("/api/v1/audit?action=user.role_assign&limit=5").json()
    assert trail["items"][0]["summary"] == '{"role":"data_steward","username":"wang.wu"}'
    # (accounts are not even visible to the auditor: "not found", like any object out of one's scope)
    problem(post(auditor, "/api/v1/users/wang.wu/roles", {"role": "staff"}), 404)
    problem(patch(auditor, "/api/v1/users/wang.wu", {"full_name": "x"}), 404)
    problem(post(auditor, "/api/v1/organizations", {"code": "x" * 18, "name": "xx", "kind": "court",
                                                    "region": "130682"}), 403)
    # Nobody holds two of the three roles, and nobody changes their own roles.
    body = problem(post(sec, "/api/v1/users/admin/roles", {"role": "audit_admin"}), 422)
    assert fields(body) == {"role"} and "admin" in body["detail"]
    problem(post(sec, "/api/v1/users/secadmin/roles", {"role": "staff"}), 403)
    problem(Client(headers=EN).get("/api/v1/audit"), 401)


def test_the_database_itself_refuses_a_second_administrator_role(demo):
    from django.db import IntegrityError, transaction

    from shuzheng.org.models import UserRole

    with pytest.raises(IntegrityError), transaction.atomic():
        UserRole.objects.create(user=demo.user("admin"), role="audit_admin", organization=demo.user("admin").organization,
                                granted_by="test")


def test_one_data_officer_per_department(demo):
    sec = as_user(demo, "secadmin")
    body = problem(post(sec, "/api/v1/users/steward/roles", {"role": "data_officer"}), 409)
    assert "officer-civil-affairs" in body["detail"] and fields(body) == {"role"}
    assert post(sec, "/api/v1/users/steward/roles", {"role": "data_officer"}).status_code == 409
    assert not demo.user("steward").roles.filter(role="data_officer").exists()


# ---- bad input: clear 4xx naming the field, nothing half-written ----


def test_user_creation_validation(demo):
    admin = as_user(demo, "admin")
    count = User.objects.count()
    base = {"username": "li.si", "full_name": "李四", "organization": demo.org("health").code, "password": "Kx9#mP2$vLq7"}
    cases = [
        ({**base, "password": "short"}, "password"),
        ({**base, "password": "alllowercaseletters"}, "password"),
        ({**base, "username": "staff"}, "username"),
        ({**base, "username": "bad name!"}, "username"),
        ({**base, "organization": "91130682MA00000000"}, "organization"),
        ({**base, "mobile": "12345"}, "mobile"),
        ({**base, "email": "not-an-email"}, "email"),
        ({k: v for k, v in base.items() if k != "full_name"}, "full_name"),
        ({**base, "full_name": "x" * 61}, "full_name"),
    ]
    for body, field in cases:
        resp = problem(post(admin, "/api/v1/users", body), 422)
        assert field in fields(resp), (field, resp)
    assert User.objects.count() == count
    resp = admin.post("/api/v1/users", "{not json", content_type="application/json")
    assert resp.status_code in (400, 422) and resp["Content-Type"].startswith("application/problem+json")
    assert User.objects.count() == count


def test_organization_validation(demo):
    admin = as_user(demo, "admin")
    base = {"code": "11130682MB0000000X", "name": "定州市数据局", "kind": "department", "region": "130682",
            "parent": demo.org("dingzhou-gov").code}
    assert "code" in fields(problem(post(admin, "/api/v1/organizations", base), 422))
    from shuzheng.core.validators import make_credit_code

    good = {**base, "code": make_credit_code("11", "130682", "MB000001")}
    assert "region" in fields(problem(post(admin, "/api/v1/organizations", {**good, "region": "999999"}), 422))
    assert "kind" in fields(problem(post(admin, "/api/v1/organizations", {**good, "kind": "bank"}), 422))
    assert "name" in fields(problem(post(admin, "/api/v1/organizations", {**good, "name": "定州市民政局"}), 422))
    created = post(admin, "/api/v1/organizations", good)
    assert created.status_code == 201, created.content
    assert created.json()["parent"]["code"] == demo.org("dingzhou-gov").code
    # A cycle is refused.
    gov = demo.org("dingzhou-gov").code
    assert "parent" in fields(problem(patch(admin, f"/api/v1/organizations/{gov}", {"parent": good["code"]}), 422))
    problem(admin.get("/api/v1/organizations/NOPE"), 404)


def test_pagination_bounds(demo):
    admin = as_user(demo, "admin")
    assert admin.get("/api/v1/organizations?limit=5").json()["count"] >= 56
    assert len(admin.get("/api/v1/organizations?limit=5").json()["items"]) == 5
    assert problem(admin.get("/api/v1/organizations?limit=abc"), 422)
    assert problem(admin.get("/api/v1/organizations?offset=-1"), 422)


def test_csrf_is_enforced_for_session_writes(demo):
    client = Client(enforce_csrf_checks=True, headers=EN)
    client.force_login(demo.user("admin"))
    resp = post(client, "/api/v1/users/staff/unlock", {})
    assert resp.status_code == 403


def test_openapi_and_docs(db):
    spec = Client(headers=EN).get("/api/v1/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/v1/me" in paths and "/api/v1/audit" in paths
    assert Client(headers=EN).get("/api/v1/docs").status_code == 200


def test_unknown_api_path_is_problem_json(db):
    problem(Client(headers=EN).get("/api/v1/nothing-here"), 404)


def test_system_creation_is_scoped_to_own_department(demo):
    dev = as_user(demo, "developer")
    body = {"code": "other-dept", "name": "x", "organization": demo.org("health").code}
    problem(post(dev, "/api/v1/systems", body), 403)
    assert "code" in fields(problem(post(dev, "/api/v1/systems", {**body, "code": "Bad Code",
                                                                 "organization": demo.org("civil-affairs").code}), 422))
    assert not ApplicationSystem.objects.filter(code="other-dept").exists()


def test_problem_details_follow_the_language(db):
    from django.test import Client as Plain

    assert Plain().get("/api/v1/me", HTTP_AUTHORIZATION="Bearer sz_nope").json()["detail"] == "API 密钥无效。"
    assert Plain(headers=EN).get("/api/v1/me", HTTP_AUTHORIZATION="Bearer sz_nope").json()["detail"] == \
        "The API key is not valid."


def test_nul_characters_are_refused_everywhere(demo):
    """PostgreSQL cannot store or compare NUL: without the guard these would be 500s there."""
    admin = as_user(demo, "admin")
    count = User.objects.count()
    problem(admin.get("/api/v1/organizations?q=%00"), 400)
    problem(admin.get("/api/v1/users/a%00b"), 400)
    problem(post(admin, "/api/v1/users", {"username": "nul.user", "full_name": "x\u0000", "password": "Kx9#mP2$vLq7",
                                          "organization": demo.org("health").code}), 400)
    assert User.objects.count() == count
    form = Client(headers=EN).post("/login/", "username=staff%00&password=x",
                                   content_type="application/x-www-form-urlencoded")
    assert form.status_code == 400
    # A multipart form (as file uploads use) reaches the form, whose fields refuse NUL themselves.
    multipart = Client(headers=EN).post("/login/", {"username": "staff\u0000", "password": "x"})
    assert multipart.status_code == 200 and "Null characters are not allowed" in multipart.content.decode()
    assert admin.get("/users/?q=%00").status_code == 400


def test_pages_are_capped(demo):
    admin = as_user(demo, "admin")
    assert "limit" in fields(problem(admin.get("/api/v1/users?limit=100000"), 422))
    assert len(admin.get("/api/v1/users?limit=500").json()["items"]) == User.objects.count()


def test_grant_expiry_without_offset_is_local_time(demo):
    health = as_user(demo, "officer-health")
    body = {"owner": demo.org("health").code, "grantee": demo.org("civil-affairs").code, "permission": "user.view",
            "reason": "联合救助", "expires_at": "2020-01-01T00:00:00"}
    assert fields(problem(post(health, "/api/v1/grants", body), 422)) == {"expires_at"}
    created = post(health, "/api/v1/grants", {**body, "expires_at": "2099-01-01T08:00:00"})
    assert created.status_code == 201 and created.json()["expires_at"] == "2099-01-01T08:00:00+08:00"
