"""HTTP for the data gateway (/api/v1/share/…). Plain Django views, not Ninja: a verification call must cost
tens of microseconds of framework time, and these views are also served through a leaner middleware stack
(see wsgi.py). Errors are RFC 9457 problem+json like the rest of the API; the views only translate HTTP to
gateway calls, which do every check and every audit record."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from shuzheng.catalog.services import normalize_code
from shuzheng.core.errors import Forbidden, ServiceError, ValidationFailed
from shuzheng.org.services import client_ip, presented_key
from shuzheng.sharing import gateway


def _json(data, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    body = orjson.dumps(data, default=str)
    response = HttpResponse(body, status=status, content_type=content_type)
    # Said here because the lean stack has no CommonMiddleware: without it gunicorn would chunk the answer.
    response["Content-Length"] = str(len(body))
    return response


def problem(exc: ServiceError) -> HttpResponse:
    response = _json(exc.problem(), exc.status, "application/problem+json")
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="shuzheng"'
    return response


def _body(request):
    """The JSON body, or None when there is none or it is not JSON (the gateway refuses it, audited)."""
    try:
        return orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError:
        return None


def endpoint(method: str):
    def wrap(view):
        @csrf_exempt
        def handle(request, *args, **kwargs):
            if request.method != method:
                response = problem(ServiceError(f"Use {method}."))
                response.status_code = 405
                response["Allow"] = method
                return response
            try:
                return view(request, presented_key(request.headers), client_ip(request), *args, **kwargs)
            except ServiceError as exc:
                return problem(exc)
        return handle
    return wrap


@endpoint("POST")
def verify(request, key, ip, code):
    return _json(gateway.verify(key, ip, normalize_code(code), _body(request)))


@endpoint("GET")
def records(request, key, ip, code):
    params = {}
    for name, values in request.GET.lists():
        if len(values) > 1:
            return problem(ValidationFailed.of(name, "Give each parameter once."))
        params[name] = values[0]
    return _json(gateway.records(key, ip, normalize_code(code), params))


@endpoint("POST")
def sql(request, key, ip):
    return _json(gateway.sql(key, ip, _body(request)))


@endpoint("POST")
def export_create(request, key, ip, code):
    return _json(gateway.export_dict(gateway.request_export(key, ip, normalize_code(code), _body(request))), 202)


@endpoint("GET")
def export_status(request, key, ip, export_id):
    return _json(gateway.export_dict(gateway.export_status(key, ip, export_id)))


def _export_control(token: str, ip: str) -> ServiceError | None:
    """Downloads of domestic-only data (出境 control) only to clients on the allow-list: 403 otherwise,
    audited as export_control.refused. A link that does not open is left to open_download to refuse."""
    from django.core import signing

    from shuzheng.org.services import Actor
    from shuzheng.sharing.models import Export, ExportState
    from shuzheng.sharing.services import export_refusal_for_client

    try:
        data = signing.loads(token, salt="shuzheng.export", max_age=gateway.EXPORT_LINK_HOURS * 3600)
        export = Export.objects.select_related("grant__system__organization", "grant__resource__published").get(
            pk=data["e"], state=ExportState.READY)
    except (signing.BadSignature, Export.DoesNotExist, KeyError, ValueError, TypeError):
        return None
    grant = export.grant
    reason = export_refusal_for_client(Actor(system=grant.system, ip=ip), grant, ip, "download")
    if reason:
        return Forbidden(_("The data of %(code)s may not leave the country (不得出境): %(reason)s")
                         % {"code": grant.resource.code, "reason": reason})
    return None


@csrf_exempt
def export_download(request, token):
    ip = client_ip(request)
    refusal = _export_control(token, ip)
    if refusal is not None:
        return problem(refusal)
    try:
        export, handle = gateway.open_download(token, ip)
    except ServiceError as exc:
        return problem(exc)
    name = f"{export.grant.resource.code.replace('/', '-')}-{export.id}.{export.format}"
    return FileResponse(handle, as_attachment=True, filename=name)


@csrf_exempt
def bare_verify(request, code):
    """Benchmark only (SHUZHENG_BENCH_BARE=1): the same store lookup with no key, grant, mask or audit, so
    bench/gateway.py can measure what the policy path costs. Never routed otherwise."""
    if not settings.BENCH_BARE:
        return HttpResponse(status=404)
    return _json(gateway.bare_lookup(normalize_code(code), _body(request) or {}))
