"""/metrics: the Prometheus text format with the request counts and latencies by route and status (the web
stack's middleware and the gateway's lock-free meter), the platform figures read from the database at scrape
time (gateway calls and refusals, failed sign-ins, audit records, alerts by severity, load jobs by state), who
may read it (loopback and SHUZHENG_METRICS_ALLOW only), and multiprocess mode under `shuzheng serve`, where
several gunicorn workers' counts add up."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sharing_helpers import granted, sample_people, system, verify

from conftest import _wait_http, free_port
from shuzheng.audit.models import AuditRecord
from shuzheng.security import alerts, metrics
from shuzheng.security.models import ScanCursor


def scrape(client, **extra) -> dict:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_metrics_are_for_loopback_and_the_allowed_networks_only(client, settings):
    import ipaddress

    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 404
    # A proxy on the same host forwarding a request from outside: refused unless the proxy is trusted.
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    settings.METRICS_ALLOW = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="11.1.2.3").status_code == 404
    settings.TRUST_X_FORWARDED_FOR = True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 200


def test_the_allow_list_setting_parses_cidrs():
    env = {**os.environ, "SHUZHENG_METRICS_ALLOW": "10.0.0.0/8, 2001:db8::/32"}
    code = "from django.conf import settings; print([str(n) for n in settings.METRICS_ALLOW])"
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], env={
        **env, "DJANGO_SETTINGS_MODULE": "shuzheng.settings"}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['10.0.0.0/8', '2001:db8::/32']"
    bad = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env={
        **env, "SHUZHENG_METRICS_ALLOW": "10.0.0.0/33", "DJANGO_SETTINGS_MODULE": "shuzheng.settings"},
        capture_output=True, text=True)
    assert bad.returncode != 0 and "10.0.0.0/33" in bad.stderr


@pytest.mark.django_db
def test_requests_are_counted_by_route_and_status(demo, client):
    before = scrape(client)
    client.get("/login/")
    client.get("/login/")
    client.get("/no-such-page/")
    client.get("/api/v1/catalog/resources")
    after = scrape(client)
    login = {"route": "web:login", "method": "GET", "status": "200"}
    assert value(after, "shuzheng_http_requests_total", **login) - value(before, "shuzheng_http_requests_total",
                                                                         **login) == 2
    missing = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, "shuzheng_http_requests_total", **missing) >= 1
    count = value(after, "shuzheng_http_request_duration_seconds_count", route="web:login", status="200")
    inf = value(after, "shuzheng_http_request_duration_seconds_bucket", route="web:login", status="200", le="+Inf")
    assert count == inf >= 2
    api_routes = [labels for (name, labels) in after if name == "shuzheng_http_requests_total"
                  and ("status", "200") in labels and any(v.startswith("api") for _k, v in labels if _k == "route")]
    assert api_routes, "the API's requests carry their route's name"


def test_the_gateway_meter_counts_without_a_lock_per_call():
    meter = metrics.GatewayMeter(interval=3600)  # flushed by hand here

    def app(environ, start_response):
        start_response("403 Forbidden" if "records" in environ["PATH_INFO"] else "200 OK", [])
        return [b"{}"]

    requests, latency = metrics._create()
    verify_ok = requests.labels("gateway:verify", "POST", "200")
    before_ok = verify_ok._value.get()
    before_refused = requests.labels("gateway:records", "GET", "403")._value.get()
    for _ in range(5):
        meter(app, {"PATH_INFO": "/api/v1/share/101001000-000001/verify", "REQUEST_METHOD": "POST"}, lambda *a: None)
    meter(app, {"PATH_INFO": "/api/v1/share/101001000-000001/records", "REQUEST_METHOD": "GET"}, lambda *a: None)
    assert verify_ok._value.get() == before_ok  # nothing moved yet: the call only touched its thread's dict
    meter.flush()
    assert verify_ok._value.get() - before_ok == 5
    assert requests.labels("gateway:records", "GET", "403")._value.get() - before_refused == 1
    child = latency.labels("gateway:verify", "200")
    assert sum(b.get() for b in child._buckets) >= 5 and child._sum.get() > 0
    meter.flush()  # idempotent: only what changed moves
    assert verify_ok._value.get() - before_ok == 5


@pytest.mark.django_db
def test_gateway_calls_through_wsgi_and_platform_figures(demo, client):
    """A real gateway call through wsgi.application (the server's entry point), and the database figures."""
    from django.core import signals
    from django.db import close_old_connections

    from shuzheng import wsgi

    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    ScanCursor.objects.update_or_create(pk=1, defaults={"seq": head})
    code, key = system(demo)
    granted(demo, code)
    row = sample_people(demo, 1)[0]
    assert verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}).status_code == 200
    assert verify(client, "sz_bad", {"公民身份号码": row["公民身份号码"]}).status_code == 401

    # The same call over the WSGI entry point gunicorn uses (connection signals off: the test's transaction
    # must survive the request, as the test client arranges for its own requests).
    body = ('{"candidates": {"公民身份号码": "%s", "姓名": "x"}}' % row["公民身份号码"]).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/share/101001000-000001/verify", "SERVER_NAME": "t",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_AUTHORIZATION": f"Bearer {key}", "wsgi.errors": sys.stderr}
    got = []
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        b"".join(wsgi.application(environ, lambda status, headers, exc=None: got.append(status)))
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    assert got == ["200 OK"]
    wsgi.gateway_meter.flush()
    alerts.scan(rules={"rules": {name: {"enabled": False} for name in alerts.RULES}})
    found = scrape(client)
    assert value(found, "shuzheng_http_requests_total", route="gateway:verify", method="POST", status="200") >= 1
    assert value(found, "shuzheng_gateway_calls_total", outcome="ok") >= 2
    assert value(found, "shuzheng_gateway_calls_total", outcome="refused") >= 1
    assert value(found, "shuzheng_audit_records") >= head
    assert value(found, "shuzheng_security_scan_seq") > head
    assert ("shuzheng_security_alerts", frozenset({"state": "open", "severity": "critical"}.items())) in found
    assert ("shuzheng_load_jobs", frozenset({"state": "committed"}.items())) in found
    assert value(found, "shuzheng_load_jobs", state="committed") >= 1


@pytest.mark.django_db
def test_alerts_and_failed_logins_are_exposed(demo, client):
    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    ScanCursor.objects.update_or_create(pk=1, defaults={"seq": head})
    before = value(scrape(client), "shuzheng_failed_logins_total")
    for _ in range(5):
        client.post("/login/", {"username": "staff", "password": "wrong"})
    alerts.scan(rules={"rules": {n: {"enabled": n == "failed_logins"} for n in alerts.RULES}})
    found = scrape(client)
    assert value(found, "shuzheng_failed_logins_total") - before == 5
    assert value(found, "shuzheng_security_alerts", state="open", severity="medium") == 1


def test_the_multiprocess_folder_is_per_server_and_cleaned(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    root = tmp_path / "tmp" / "metrics"
    (root / "999999999").mkdir(parents=True)  # a server that is gone
    (root / "999999999" / "counter_1.db").write_bytes(b"x")
    (root / str(os.getppid())).mkdir()  # a server still running (our parent process stands in for it)
    folder = metrics.prepare_multiprocess_dir(tmp_path, pid=os.getpid())
    assert folder == root / str(os.getpid()) and os.environ[metrics.MULTIPROC_ENV] == str(folder)
    assert not (root / "999999999").exists() and (root / str(os.getppid())).exists()
    monkeypatch.delenv(metrics.MULTIPROC_ENV)


def test_several_gunicorn_workers_add_up(platform):
    """A second server on the platform's home with two workers: its /metrics counts every request whichever
    worker served it, from the per-server multiprocess folder."""
    port = free_port()
    env = {**platform.env, "SHUZHENG_METRICS_ALLOW": ""}
    log = open(platform.home / f"serve-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "shuzheng", "serve", "--port", str(port), "--workers", "2",
                             "--threads", "2", "--no-worker", "--host", "127.0.0.1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/login/")
        folder = platform.home / "tmp" / "metrics" / str(proc.pid)
        # /security/ (a redirect to sign in, for the anonymous): a route nothing else here asks for — a
        # start-up probe that timed out may still be answered late.
        before = _count(base, "web:security", "302")
        for _ in range(30):  # fresh connections: the kernel spreads them over both workers
            request = urllib.request.Request(f"{base}/security/", method="GET")
            opener = urllib.request.build_opener(_NoRedirect)
            try:
                opener.open(request, timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 302
        assert _count(base, "web:security", "302") - before == 30
        files = list(folder.glob("counter_*.db"))
        assert files, f"no metrics files in {folder}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _count(base: str, route: str, status: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    return value(samples(text), "shuzheng_http_requests_total", route=route, method="GET", status=status)


def test_metrics_text_names(client, db):
    text = client.get("/metrics").content.decode()
    for name in ("shuzheng_http_requests_total", "shuzheng_http_request_duration_seconds_bucket",
                 "shuzheng_gateway_calls_total", "shuzheng_failed_logins_total", "shuzheng_audit_records",
                 "shuzheng_security_alerts", "shuzheng_load_jobs", "shuzheng_security_scan_seq"):
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
