"""The JSON API under /api/v1: one NinjaAPI, one router per app, problem+json (RFC 9457) for every error."""

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie

from shuzheng import __version__
from shuzheng.core.errors import ServiceError
from shuzheng.core.middleware import problem_response
from shuzheng.org import services as org_services


class ApiKeyAuth:
    """`Authorization: Bearer sz_…` or `X-API-Key: sz_…` for application systems. A request without a key
    falls through to the session; a request with a bad key gets 401 saying what is wrong with it."""

    openapi_type = "http"

    def __call__(self, request):
        raw = org_services.presented_key(request.headers)
        if not raw:
            return None
        request.system = org_services.authenticate_api_key(raw, org_services.client_ip(request))
        return request.system


class SessionAuth(APIKeyCookie):
    """Signed-in users of the web UI; unsafe methods need the CSRF token (X-CSRFToken header)."""

    def __init__(self):
        from django.conf import settings

        self.param_name = settings.SESSION_COOKIE_NAME
        super().__init__(csrf=True)

    def authenticate(self, request, key):
        return request.user if request.user.is_authenticated else None


class Public:
    """The last resort of read-only public endpoints (the open catalog): a caller without a key or a
    session is let through as the public, and the services decide what the public may see."""

    openapi_type = "http"

    def __call__(self, request):
        return True


PUBLIC = [ApiKeyAuth(), SessionAuth(), Public()]

api = NinjaAPI(
    title="Shuzheng API",
    version=__version__,
    description="The integrated government data platform's API. Errors are RFC 9457 problem+json.",
    auth=[ApiKeyAuth(), SessionAuth()],
    docs_url="/docs",
    urls_namespace="api",
)


def _field_of(loc) -> str:
    """Pydantic's error location as the services name fields: `items[0].length`. The first element says
    where the value came from (body, query, …); a body is nested under the parameter's name, dropped too."""
    parts = list(loc)
    source = parts.pop(0) if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form") else None
    if source == "body" and len(parts) > 1:
        parts.pop(0)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or str(source or "body")


@api.exception_handler(ServiceError)
def _service_error(request, exc: ServiceError):
    return problem_response(exc.status, exc.title, str(exc.detail), [e.as_dict() for e in exc.errors] or None)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    errors = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(422, "Validation failed", detail, errors)


@api.exception_handler(AuthenticationError)
def _authentication_error(request, exc):
    return problem_response(401, "Authentication required",
                            "Sign in, or send an application system's API key as 'Authorization: Bearer …'.",
                            headers={"WWW-Authenticate": 'Bearer realm="shuzheng"'})


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return problem_response(exc.status_code, "Error", str(exc))


@api.exception_handler(Http404)
def _not_found(request, exc):
    return problem_response(404, "Not found", str(exc) or "Not found")


def _register_routers():
    from shuzheng.audit.api import router as audit_router
    from shuzheng.catalog.api import router as catalog_router
    from shuzheng.org.api import router as org_router
    from shuzheng.quality.tickets_api import router as tickets_router

    api.add_router("/", org_router)
    api.add_router("/audit", audit_router)
    api.add_router("/catalog", catalog_router)
    api.add_router("/data", "shuzheng.ingest.api.router")
    api.add_router("/tickets", tickets_router)
    api.add_router("/sharing", "shuzheng.sharing.api.router")
    api.add_router("/security", "shuzheng.security.api.router")
    api.add_router("/harvest", "shuzheng.harvest.api.router")


_register_routers()
