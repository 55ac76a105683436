"""HTTP for CKAN's Action API (/api/3/action/<action>): plain Django views that read the parameters (GET query
or POST JSON body, as ckanapi sends them), say who is calling, call catalog.ckan and wrap the answer in CKAN's
envelope. Every action is read-only, so the views are CSRF-exempt: a session's cookie can read through them
only what the same session reads in the catalog.

Callers: the public (no credentials), a signed-in user (the session), or an application system's API key sent
the ways CKAN clients send it: `Authorization: <key>`, `Authorization: Bearer <key>` or `X-CKAN-API-Key: <key>`.
A key that does not authenticate is refused (CKAN's Authorization Error), never downgraded to the public."""

from __future__ import annotations

import json
from urllib.parse import quote

import orjson
from django.http import HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from shuzheng.catalog import ckan, dcat
from shuzheng.core.errors import AuthenticationFailed, Conflict, Forbidden, NotFound, ServiceError, ValidationFailed
from shuzheng.org.services import presented_key, request_actor

CONTENT_TYPE = "application/json;charset=utf-8"


def _json(data, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data, default=str), status=status, content_type=CONTENT_TYPE)


def api_version(request):
    return _json({"version": 3})


def _mixed(query) -> dict:
    """Query or form parameters: one value as text, a repeated one as a list (as CKAN reads them)."""
    return {k: v[0] if len(v) == 1 else v for k, v in query.lists()}


def _data(request) -> dict:
    if request.method != "POST" or not request.body:
        return _mixed(request.GET)
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):
        # `curl -d key=value` posts a form; anything else must be JSON.
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return _mixed(request.POST)
        raise ValidationFailed.of("body", _("The request body is not valid JSON."))
    if not isinstance(data, dict):
        raise ValidationFailed.of("body", _("The request body must be a JSON object of the action's parameters."))
    return data


def _error(exc: ServiceError) -> tuple[int, dict]:
    """CKAN's error for a service's refusal: its __type, status and message."""
    detail = str(exc.detail)
    if isinstance(exc, (ValidationFailed, Conflict)):
        error = {"__type": "Validation Error", "message": detail}
        for e in exc.errors:
            error.setdefault(e.field, []).append(str(e.message))
        return 409, error
    if isinstance(exc, NotFound):
        return 404, {"__type": "Not Found Error", "message": f"Not found: {detail}"}
    if isinstance(exc, (Forbidden, AuthenticationFailed)):
        return 403, {"__type": "Authorization Error", "message": f"Access denied: {detail}"}
    return exc.status, {"__type": exc.title, "message": detail}


@csrf_exempt
def action(request, action):
    # The configured public address when there is one, so ids and links never follow a caller's Host header.
    base_url = dcat.public_url(request)
    if action not in ckan.ACTIONS:
        # CKAN answers an unknown action with a bare JSON string, not the envelope.
        return _json(f"Bad request - Action name not known: {action[:100]}", 400)
    if request.method not in ("GET", "POST"):
        response = _json(f"Bad request - Use GET or POST, not {request.method}.", 405)
        response["Allow"] = "GET, POST"
        return response
    envelope = {"help": f"{base_url}/api/3/action/help_show?name={quote(action)}"}
    try:
        data = _data(request)
        actor = request_actor(request, presented_key(request.headers, ckan=True))
        result = ckan.call(actor, action, data, base_url)
    except ServiceError as exc:
        status, envelope["error"] = _error(exc)
        envelope["success"] = False
        return _json(envelope, status)
    envelope.update(success=True, result=result)
    return _json(envelope)
