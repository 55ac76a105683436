"""HTTP-level security across every route, beyond what test_auth.py checks on /login/ and one API write:

- CSRF: every unsafe route a session can reach (each Ninja operation with POST/PUT/PATCH/DELETE, each page
  the matrix posts to) refuses a signed-in request without the token, naming CSRF, before any view runs;
- cookies: every response that sets a cookie sets it HttpOnly, SameSite=Lax, path /; with SHUZHENG_HTTPS=1 the
  settings make them Secure and __Host- (and turn HSTS on);
- headers: CSP, X-Frame-Options, nosniff, Referrer-Policy on pages, the API and the gateway (through the
  WSGI application, so the gateway's lean middleware stack is the one checked), errors included; the relaxed
  CSP only on /api/v1/docs; no Server or X-Powered-By from the application, no version from the server;
- errors: 404, 405 and 500 answers show no traceback, setting or secret; DEBUG is off unless asked for;
- /metrics answers only loopback and the configured networks (404 to anyone else).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.test import Client
from werkzeug.test import Client as WsgiClient

from authz_rules import RULES, enumerate_routes, fill

ROUTES = enumerate_routes()
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Dummy path values: the CSRF check runs before any view looks at them.
DUMMY = {"load_id": uuid.UUID(int=1), "rule_id": uuid.UUID(int=2), "key_id": uuid.UUID(int=3),
         "grant_id": uuid.UUID(int=4), "source_id": uuid.UUID(int=5), "subscription_id": uuid.UUID(int=6),
         "delivery_id": uuid.UUID(int=7), "alert_id": 1, "number": 1, "fmt": "csv", "role": "staff"}


def dummy(path: str) -> str:
    return fill(path, {**{name: "x" for name in re.findall(r"[{<](?:\w+:)?(\w+)[}>]", path)}, **{
        k: v for k, v in DUMMY.items() if re.search(rf"[{{<](?:\w+:)?{k}[}}>]", path)}})


def _unsafe_routes():
    for key, route in sorted(ROUTES.items()):
        rule = RULES.get(key)
        method = route.method or (rule.method if rule else "GET")
        if method in UNSAFE and route.kind != "gateway":  # the gateway takes keys, never cookies
            yield pytest.param(route, method, id=key)


# --------------------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route, method", list(_unsafe_routes()))
def test_unsafe_session_requests_without_the_csrf_token_are_refused(demo, route, method):
    client = Client(enforce_csrf_checks=True, headers={"Accept-Language": "en"})
    client.force_login(demo.user("admin"))
    url = dummy(route.path)
    if route.kind == "api":
        response = client.generic(method, url, "{}", content_type="application/json")
        assert response.status_code == 403, (method, url, response.status_code)
        assert "CSRF" in response.json()["detail"], response.content
    else:
        response = client.post(url, {})
        assert response.status_code == 403, (url, response.status_code)
        assert b"CSRF" in response.content


def test_every_unsafe_route_is_in_the_csrf_check():
    """The parametrization above comes from the same enumeration as the authorization matrix; this pins
    that it is not empty and reaches both kinds."""
    kinds = {route.kind for param in _unsafe_routes() for route in param.values[:1]}
    assert kinds == {"api", "page"}
    assert len(list(_unsafe_routes())) > 60


def test_the_token_lets_the_same_request_through(demo):
    """The control: with the cookie and header a browser sends, the refused request above is judged on its
    merits (here: done)."""
    client = Client(enforce_csrf_checks=True, headers={"Accept-Language": "en"})
    client.force_login(demo.user("secadmin"))
    client.get("/")  # a page with forms: sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post("/api/v1/users/staff/unlock", "{}", content_type="application/json",
                           headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.content
    assert client.post("/api/v1/users/staff/unlock", "{}", content_type="application/json").status_code == 403


# --------------------------------------------------------------------------------------------------
# Cookies
# --------------------------------------------------------------------------------------------------


def _set_cookies(response) -> list:
    return [morsel for morsel in response.cookies.values() if morsel.value or morsel["max-age"] != 0]


def _responses_that_set_cookies(demo):
    """A signed-in session walks every page that takes GET without parameters (the session is saved, and its
    cookie set, on every request), then signs in and out through the forms, switches language and text size."""
    client = Client(headers={"Accept-Language": "en"})
    responses = [("GET /login/", client.get("/login/"))]
    responses.append(("POST /login/", client.post("/login/", {"username": "staff", "password": demo.password})))
    for key, route in sorted(ROUTES.items()):
        rule = RULES.get(key)
        if route.kind == "page" and "<" not in route.path and (rule is None or rule.method == "GET"):
            responses.append((f"GET {route.path}", client.get(route.path)))
    responses.append(("GET /api/v1/me", client.get("/api/v1/me")))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    responses.append(("POST /preferences/large-text/", client.post("/preferences/large-text/",
                                                                    {"enabled": "1", "csrfmiddlewaretoken": token})))
    responses.append(("POST /i18n/setlang/", client.post("/i18n/setlang/", {"language": "en",
                                                                            "csrfmiddlewaretoken": token})))
    responses.append(("POST /logout/", client.post("/logout/", {"csrfmiddlewaretoken": token})))
    return responses


FLAGGED = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, "messages"}


def test_every_cookie_the_application_sets_is_httponly_and_samesite(demo):
    checked, problems, others = 0, [], set()
    for what, response in _responses_that_set_cookies(demo):
        for morsel in _set_cookies(response):
            if morsel.key not in FLAGGED:
                others.add(morsel.key)
                continue
            checked += 1
            if not morsel["httponly"] or morsel["samesite"] != "Lax" or morsel["path"] != "/" or morsel["domain"]:
                problems.append(f"{what}: {morsel.OutputString()}")
            if bool(morsel["secure"]) != settings.HTTPS:
                problems.append(f"{what}: Secure should be {settings.HTTPS}: {morsel.OutputString()}")
    assert checked > 20 and not problems, "\n".join(problems)
    # The language preference is the only other cookie (Django's; not a credential).
    assert others <= {settings.LANGUAGE_COOKIE_NAME}, others


def test_the_language_cookie_is_flagged_too(demo):
    """Django sets django_language without HttpOnly, SameSite or Secure unless told (LANGUAGE_COOKIE_*
    settings); no script reads it, so it can carry the same flags as the others."""
    client = Client()
    response = client.post("/i18n/setlang/", {"language": "en"})
    morsel = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert morsel["samesite"] == "Lax" and morsel["httponly"], morsel.OutputString()
    assert bool(morsel["secure"]) == settings.HTTPS, morsel.OutputString()


def _settings_under(env: dict) -> dict:
    code = ("import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({k: "
            "getattr(s, k, None) for k in ('DEBUG', 'SESSION_COOKIE_NAME', 'CSRF_COOKIE_NAME', 'SESSION_COOKIE_SECURE',"
            " 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'CSRF_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', "
            "'CSRF_COOKIE_SAMESITE', 'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER', 'LANGUAGE_COOKIE_SECURE')}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHUZHENG_") or k == "SHUZHENG_HOME"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, "DJANGO_SETTINGS_MODULE": "shuzheng.settings",
                                                             **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_behind_tls_the_cookies_are_secure_host_cookies_and_hsts_is_on():
    plain, tls = _settings_under({}), _settings_under({"SHUZHENG_HTTPS": "1"})
    assert plain["DEBUG"] is False and tls["DEBUG"] is False
    assert not plain["SESSION_COOKIE_SECURE"] and not plain["SECURE_HSTS_SECONDS"]
    assert tls["SESSION_COOKIE_NAME"].startswith("__Host-") and tls["CSRF_COOKIE_NAME"].startswith("__Host-")
    assert tls["SESSION_COOKIE_SECURE"] and tls["CSRF_COOKIE_SECURE"]
    assert tls["SECURE_HSTS_SECONDS"] >= 31536000 and tls["SECURE_PROXY_SSL_HEADER"]
    assert tls["SESSION_COOKIE_HTTPONLY"] and tls["CSRF_COOKIE_HTTPONLY"]
    assert tls["SESSION_COOKIE_SAMESITE"] == tls["CSRF_COOKIE_SAMESITE"] == "Lax"


def test_host_cookies_behind_tls_are_valid_host_cookies(demo):
    """With the TLS settings, the cookies a sign-in sets meet the __Host- prefix's rules (Secure, Path=/, no
    Domain: a browser drops them otherwise) and the answer carries HSTS."""
    tls = _settings_under({"SHUZHENG_HTTPS": "1"})
    overrides = {k: tls[k] for k in ("SESSION_COOKIE_NAME", "CSRF_COOKIE_NAME", "SESSION_COOKIE_SECURE",
                                     "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS")}
    overrides["SECURE_PROXY_SSL_HEADER"] = tuple(tls["SECURE_PROXY_SSL_HEADER"])
    from django.test import override_settings

    with override_settings(**overrides):
        client = Client(headers={"X-Forwarded-Proto": "https"})
        login = client.get("/login/", secure=True)
        response = client.post("/login/", {"username": "staff", "password": demo.password,
                                           "csrfmiddlewaretoken": login.cookies[tls["CSRF_COOKIE_NAME"]].value},
                               secure=True)
        assert response.status_code == 302
        cookies = {**dict(login.cookies.items()), **dict(response.cookies.items())}
        for name in (tls["SESSION_COOKIE_NAME"], tls["CSRF_COOKIE_NAME"]):
            morsel = cookies[name]
            assert morsel["secure"] and morsel["path"] == "/" and not morsel["domain"], morsel.OutputString()
        assert "max-age=31536000" in response["Strict-Transport-Security"]


# --------------------------------------------------------------------------------------------------
# Security headers, on pages, the API and the gateway (through the real WSGI application)
# --------------------------------------------------------------------------------------------------


def _wsgi(path: str, method: str = "GET", headers=None, data=None):
    """A request through shuzheng.wsgi.application: the stacks gunicorn runs (the gateway's lean one too)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from shuzheng.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = WsgiClient(application).open(path, method=method, headers=headers or {}, data=data)
        response.get_data()
        response.close()
        return response
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _headers_problems(what: str, headers, docs: bool = False, framing: bool = True) -> list[str]:
    get = headers.get
    csp = get("Content-Security-Policy") or ""
    problems = []
    for part in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'",
                 "form-action 'self'"):
        if part not in csp:
            problems.append(f"{what}: CSP lacks {part!r}: {csp!r}")
    if not docs and ("unsafe-inline" in csp or "unsafe-eval" in csp):
        problems.append(f"{what}: CSP allows inline script or style: {csp!r}")
    expected = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
    if framing:
        expected["X-Frame-Options"] = "DENY"
    for name, value in expected.items():
        if get(name) != value:
            problems.append(f"{what}: {name} is {get(name)!r}, not {value!r}")
    for name in ("Server", "X-Powered-By"):
        if get(name):
            problems.append(f"{what}: sends {name}: {get(name)}")
    return problems


def _api_key(demo) -> str:
    from shuzheng.org import services

    services.create_system(demo.cli(), {"code": "hdr-check", "name": "响应头检查", "organization":
                                        demo.org("civil-affairs").code})
    return services.create_api_key(demo.cli(), "hdr-check", "hdr", 5)[1]


def test_security_headers_on_pages_api_and_gateway(demo):
    client = Client(headers={"Accept-Language": "en"})
    signed_in = Client(headers={"Accept-Language": "en"})
    signed_in.force_login(demo.user("officer-civil-affairs"))
    key = _api_key(demo)
    answers = {
        "page 200": client.get("/login/"),
        "page 200 signed in": signed_in.get("/catalog/"),
        "page 302": client.get("/users/"),
        "page 403": signed_in.get("/audit/"),
        "page 404": client.get("/no-such-page/"),
        "page 405": client.get("/logout/"),
        "static file": client.get("/static/shuzheng/site.css"),
        "api 200": client.get("/api/v1/catalog/resources"),
        "api 401": client.get("/api/v1/me"),
        "api 404": signed_in.get("/api/v1/users/no-such-user"),
        "api 405": signed_in.delete("/api/v1/me"),
        "api 422": signed_in.get("/api/v1/users?limit=100000"),
        "api unknown path": client.get("/api/v1/nothing-here"),
    }
    problems = []
    for what, response in answers.items():
        # Static files leave before the X-Frame-Options middleware (whitenoise answers them); CSP's
        # frame-ancestors 'none' still covers them.
        problems += _headers_problems(what, response, framing=what != "static file")
    gateway = {
        "gateway 401 (no key)": _wsgi("/api/v1/share/sql", "POST", data="{}"),
        "gateway 403 (no grant)": _wsgi("/api/v1/share/101001000-000001/records",
                                        headers={"Authorization": f"Bearer {key}"}),
        "gateway 405": _wsgi("/api/v1/share/sql", "GET", headers={"Authorization": f"Bearer {key}"}),
        "gateway bad link": _wsgi("/api/v1/share/exports/download/not-a-token"),
        "wsgi page": _wsgi("/login/"),
        "wsgi api": _wsgi("/api/v1/me"),
    }
    for what, response in gateway.items():
        problems += _headers_problems(what, response.headers)
    assert {r.status_code for r in gateway.values()} >= {401, 403, 405, 404}
    assert not problems, "\n".join(problems)
    for what in ("api 200", "api 401", "api 404", "api 422"):
        assert answers[what]["Cache-Control"] == "no-store", what
    for what, response in gateway.items():
        if what.startswith("gateway"):
            assert response.headers.get("Cache-Control") == "no-store", what


def test_only_the_api_docs_relax_the_policy(db):
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200 and not _headers_problems("docs", docs, docs=True)
    assert "'unsafe-inline'" in docs["Content-Security-Policy"]
    assert "unsafe-inline" not in Client().get("/api/v1/openapi.json")["Content-Security-Policy"]


def test_the_real_server_sends_no_version(platform):
    """gunicorn names itself in Server, without its version; the application adds nothing."""
    import urllib.error
    import urllib.request

    for path in ("/login/", "/api/v1/me", "/api/v1/share/sql", "/no-such-page/"):
        try:
            with urllib.request.urlopen(platform.url + path, timeout=10) as resp:
                headers = resp.headers
        except urllib.error.HTTPError as err:
            headers = err.headers
        assert not re.search(r"\d", headers.get("Server", "")), (path, headers.get("Server"))
        assert "X-Powered-By" not in headers, path


# --------------------------------------------------------------------------------------------------
# Error pages
# --------------------------------------------------------------------------------------------------

LEAKS = ("Traceback", "File \"/", "SECRET_KEY", "settings.py", "DEBUG", "urlpatterns", "Using the URLconf",
         "Request Method:", "Django Version", "site-packages")


def _leaks(body: bytes, *extra: str) -> list[str]:
    text = body.decode(errors="replace")
    return [marker for marker in (*LEAKS, *extra) if marker in text]


def test_404_and_405_answers_leak_nothing(db):
    client = Client(headers={"Accept-Language": "en"})
    answers = [client.get("/no-such-page/"), client.get("/catalog/no-such-code/edit/extra/"),
               client.get("/api/v1/nothing-here"), client.get("/logout/"), client.delete("/api/v1/catalog/resources"),
               client.put("/api/v1/me"), _wsgi("/api/v1/share/sql", "GET")]
    for response in answers:
        status = response.status_code
        body = response.content if hasattr(response, "content") else response.get_data()
        assert status in (404, 405), status
        assert not _leaks(body), (status, _leaks(body))


def test_a_server_error_shows_no_traceback(demo, monkeypatch):
    """An unexpected exception in a page and in an API operation: a bare 500, nothing of the exception."""
    from shuzheng.org import services

    marker = "kaboom-" + uuid.uuid4().hex

    def explode(*args, **kwargs):
        raise RuntimeError(marker + " " + settings.SECRET_KEY[:12])

    monkeypatch.setattr(services, "data_officer_coverage", explode)
    monkeypatch.setattr(services, "list_regions", explode)
    client = Client(raise_request_exception=False, headers={"Accept-Language": "en"})
    client.force_login(demo.user("staff"))
    for response in (client.get("/"), client.get("/api/v1/regions")):
        assert response.status_code == 500
        assert not _leaks(response.content, marker, settings.SECRET_KEY[:12], "RuntimeError")
    assert client.get("/api/v1/regions")["Content-Type"].startswith("application/problem+json")


# --------------------------------------------------------------------------------------------------
# /metrics: by source address, not by role
# --------------------------------------------------------------------------------------------------


def test_metrics_answer_loopback_only(db):
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    for address in ("10.1.2.3", "192.0.2.7", "2001:db8::1"):
        refused = client.get("/metrics", REMOTE_ADDR=address)
        assert refused.status_code == 404 and b"# HELP" not in refused.content, address
    # A proxy in front (X-Forwarded-For) without SHUZHENG_TRUST_X_FORWARDED_FOR: refused, even from loopback.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    # Signing in changes nothing.
    admin = Client(REMOTE_ADDR="10.1.2.3")
    from shuzheng.org.models import User

    admin.force_login(User.objects.get(username="secadmin"))
    assert admin.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
