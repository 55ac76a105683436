"""Prometheus metrics at /metrics (text exposition format), for the operators' monitoring.

Two sources, chosen by what each figure is:

* Per-request figures — `shuzheng_http_requests_total{route,method,status}` and the latency histogram
  `shuzheng_http_request_duration_seconds{route,status}` — are counted in the process that served the request.
  gunicorn runs several worker processes, so `shuzheng serve` gives them prometheus_client's multiprocess mode:
  PROMETHEUS_MULTIPROC_DIR is SHUZHENG_HOME/tmp/metrics/<server pid>, emptied when the server starts (stale
  folders of servers that are gone are removed), and a scrape adds up every worker's file. Without it (the
  development server, tests) they are the process's own.
  The web UI and API are counted by RequestMetricsMiddleware (first in settings.MIDDLEWARE). The data gateway
  (/api/v1/share/…) never reaches that middleware — wsgi.GatewayHandler answers it with a lean stack — and is
  benchmarked at thousands of calls a second, so GatewayMeter counts it without a lock or any I/O per call:
  each serving thread adds to a dict of its own, and a background thread per process moves the increments
  into the metrics once a second (up to a second late; nothing is lost).

* Platform figures are computed from the database at scrape time (DatabaseCollector), so they are the same
  whichever worker answers and survive restarts: gateway calls answered and refused, failed sign-ins and bad
  API keys (running totals the anomaly scan keeps as it takes in the audit trail: exact, once each, as of the
  last scan — at most a minute behind), the audit trail's length and last signed position, the scan's
  position, alerts not closed by state and severity, and load jobs by state.

Access: only loopback and the networks in SHUZHENG_METRICS_ALLOW (comma-separated CIDRs) get an answer;
anyone else gets 404, as if there were nothing here. Behind a reverse proxy the client address is the proxy's
unless SHUZHENG_TRUST_X_FORWARDED_FOR is set; a request that carries X-Forwarded-For or Forwarded without that
setting is refused, so a proxy on the same host cannot expose /metrics by accident.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpResponse

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
GATEWAY_CALLS = {"verify": "gateway:verify", "records": "gateway:records", "sql": "gateway:sql",
                 "exports": "gateway:exports"}

_lock = threading.Lock()
_metrics: tuple | None = None
_registry = None


def _create():
    """The request metrics, created on first use in each process (after gunicorn's fork), in multiprocess mode
    when the server set PROMETHEUS_MULTIPROC_DIR — even if prometheus_client was imported before it was set."""
    global _metrics, _registry
    with _lock:
        if _metrics is not None:
            return _metrics
        from prometheus_client import CollectorRegistry, Counter, Histogram, values

        if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
            values.ValueClass = values.MultiProcessValue()
        _registry = CollectorRegistry(auto_describe=True)
        requests = Counter("shuzheng_http_requests", "HTTP requests answered, by route (Django view name, or "
                           "gateway:<call>), method and status.", ["route", "method", "status"], registry=_registry)
        latency = Histogram("shuzheng_http_request_duration_seconds", "Time to answer an HTTP request, by route and "
                            "status.", ["route", "status"], buckets=BUCKETS, registry=_registry)
        _metrics = (requests, latency)
        return _metrics


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name or match.route or "unnamed"
    if request.path.startswith(settings.STATIC_URL):
        return "static"
    return "unmatched"


class RequestMetricsMiddleware:
    """Counts and times every request of the full stack by route, method and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        try:
            requests, latency = _metrics or _create()
            route, status = _route(request), str(response.status_code)
            requests.labels(route, request.method if request.method in METHODS else "other", status).inc()
            latency.labels(route, status).observe(elapsed)
        except Exception:  # a metric must never cost an answer
            log.exception("request metrics failed")
        return response


class GatewayMeter:
    """Counts and times data-gateway calls with no lock and no I/O on the call's path: each serving thread adds
    to a dict only it writes; a background thread per process (started with the first call after a fork)
    reads each dict once a second and moves what changed into the request metrics."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._local = threading.local()
        self._threads: list[tuple[dict, dict]] = []  # (a serving thread's counts, what was moved of them)
        self._register = threading.Lock()  # taken once per serving thread, never per call
        self._pid = 0

    def __call__(self, app, environ, start_response):
        started = time.perf_counter()
        status = ["500"]

        def recording_start_response(line, headers, exc_info=None):
            status[0] = line[:3]
            return start_response(line, headers, exc_info)

        try:
            return app(environ, recording_start_response)
        finally:
            elapsed = time.perf_counter() - started
            acc = getattr(self._local, "acc", None)
            if acc is None:  # a serving thread's first call (threads of a forked worker are new threads)
                acc = self._start_thread()
            path = environ.get("PATH_INFO", "")
            call = GATEWAY_CALLS.get(path.rsplit("/", 1)[-1], "gateway:exports" if "/exports/" in path else "gateway:other")
            method = environ.get("REQUEST_METHOD", "")
            key = (call, method if method in METHODS else "other", status[0])
            cell = acc.get(key)
            if cell is None:
                acc[key] = cell = [0, 0.0, [0] * (len(BUCKETS) + 1)]
            cell[0] += 1
            cell[1] += elapsed
            cell[2][bisect.bisect_left(BUCKETS, elapsed)] += 1

    def _start_thread(self) -> dict:
        acc: dict = {}
        self._local.acc = acc
        with self._register:
            if self._pid != os.getpid():  # a new process (gunicorn forked): a flusher of its own
                self._pid = os.getpid()
                self._threads = []
                threading.Thread(target=self._flush_forever, name="gateway-metrics", daemon=True).start()
            self._threads.append((acc, {}))
        return acc

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:
                log.exception("gateway metrics flush failed")

    def flush(self) -> None:
        """Moves every serving thread's new counts into the metrics."""
        with self._register:
            threads = list(self._threads)
        if not threads:
            return
        requests, latency = _metrics or _create()
        for acc, moved in threads:
            for key, (n, seconds, buckets) in list(acc.items()):  # a copy: the serving thread goes on adding
                buckets = list(buckets)
                before = moved.get(key)
                if before is not None and before[0] == n:
                    continue
                old_n, old_s, old_b = before or (0, 0.0, [0] * len(buckets))
                call, method, status = key
                requests.labels(call, method, status).inc(n - old_n)
                child = latency.labels(call, status)
                child._sum.inc(seconds - old_s)  # prometheus_client has no observe-many; its own parts
                for i, (now, then) in enumerate(zip(buckets, old_b)):
                    if now != then:
                        child._buckets[i].inc(now - then)
                moved[key] = (n, seconds, buckets)


gateway_meter = GatewayMeter()


# --------------------------------------------------------------------------------------------------
# Scrape-time figures from the database
# --------------------------------------------------------------------------------------------------


class DatabaseCollector:
    """Platform figures read from the database at each scrape."""

    def collect(self):
        from django.db.models import Count
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from shuzheng.audit.models import AuditHead
        from shuzheng.ingest.models import Load
        from shuzheng.security import services
        from shuzheng.security.models import Alert, ScanCursor

        totals = services.totals()
        calls = CounterMetricFamily("shuzheng_gateway_calls", "Data-gateway calls, answered (ok) or refused, as "
                                    "taken in from the audit trail by the anomaly scan.", labels=["outcome"])
        calls.add_metric(["ok"], totals.get("gateway.ok", 0))
        calls.add_metric(["refused"], totals.get("gateway.refused", 0))
        yield calls
        yield CounterMetricFamily("shuzheng_failed_logins", "Failed sign-ins (audit trail, as of the last scan).",
                                  value=totals.get("login.failed", 0))
        yield CounterMetricFamily("shuzheng_bad_api_keys", "Calls of the JSON API with a bad API key (audit "
                                  "trail, as of the last scan).", value=totals.get("apikey.failed", 0))

        head = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        yield GaugeMetricFamily("shuzheng_audit_records", "Records in the audit trail (its head's seq).", value=head)
        signed = _last_signed()
        if signed is not None:
            yield GaugeMetricFamily("shuzheng_audit_signed_seq", "The last audit record covered by an SM2 "
                                    "signature of the chain head.", value=signed)
        cursor = ScanCursor.objects.filter(pk=1).first()
        yield GaugeMetricFamily("shuzheng_security_scan_seq", "The last audit record the anomaly scan has taken "
                                "in.", value=cursor.seq if cursor else 0)
        if cursor is not None and cursor.scanned_at is not None:
            yield GaugeMetricFamily("shuzheng_security_scan_timestamp_seconds", "When the anomaly scan last "
                                    "ran.", value=cursor.scanned_at.timestamp())

        alerts = GaugeMetricFamily("shuzheng_security_alerts", "Security alerts not closed, by state and "
                                   "severity.", labels=["state", "severity"])
        found = {(s, v): n for s, v, n in Alert.objects.filter(state__in=services.UNCLOSED)
                 .values_list("state", "severity").annotate(n=Count("id")).values_list("state", "severity", "n")}
        for state in services.UNCLOSED:
            for severity in ("critical", "high", "medium", "low"):
                alerts.add_metric([state, severity], found.get((state, severity), 0))
        yield alerts

        loads = GaugeMetricFamily("shuzheng_load_jobs", "Load jobs by state.", labels=["state"])
        counts = dict(Load.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        for state in Load.State.values:
            loads.add_metric([state], counts.get(state, 0))
        yield loads


def _last_signed() -> int | None:
    """The last signed audit position, where the platform signs its audit head (audit.HeadSignature)."""
    from django.apps import apps
    from django.db import DatabaseError

    try:
        model = apps.get_model("audit", "HeadSignature")
    except LookupError:
        return None
    try:
        return model.objects.order_by("-seq").values_list("seq", flat=True).first()
    except DatabaseError:
        return None


class _Own:
    """This process's request metrics, when not in multiprocess mode."""

    def collect(self):
        _create()
        return _registry.collect()


def exposition() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Own())
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------------------------------
# Who may read /metrics
# --------------------------------------------------------------------------------------------------

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def allowed(request) -> bool:
    from shuzheng.org.services import client_ip

    if not settings.TRUST_X_FORWARDED_FOR and ("HTTP_X_FORWARDED_FOR" in request.META
                                               or "HTTP_FORWARDED" in request.META):
        return False
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    networks = (*LOOPBACK, *settings.METRICS_ALLOW)
    return any(address.version == n.version and address in n for n in networks)


def metrics_view(request):
    if not allowed(request):
        raise Http404("Not found")
    body, content_type = exposition()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------------------------------
# The server's multiprocess folder
# --------------------------------------------------------------------------------------------------


def prepare_multiprocess_dir(home: Path, pid: int | None = None) -> Path:
    """SHUZHENG_HOME/tmp/metrics/<pid>, emptied, for the server whose master process is `pid`; folders of
    servers that are gone are removed. Sets PROMETHEUS_MULTIPROC_DIR, which the workers inherit."""
    pid = pid or os.getpid()
    root = Path(home) / "tmp" / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if not old.name.isdigit() or int(old.name) == pid or not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / str(pid)
    folder.mkdir()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: the dead worker's live gauges stop counting (its counters stay summed)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
