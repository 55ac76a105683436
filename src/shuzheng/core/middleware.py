"""Cross-cutting HTTP behaviour: security headers, problem+json for API errors outside Ninja."""

import json

from django.http import HttpResponse, HttpResponseBadRequest

# No inline script anywhere: htmx and our own JS are static files, so the policy can be strict.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; "
    "object-src 'none'"
)
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = DOCS_CSP if request.path.startswith("/api/v1/docs") else CSP
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def problem_response(status: int, title: str, detail: str, errors=None, headers=None) -> HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    resp = HttpResponse(json.dumps(body, ensure_ascii=False), status=status, content_type="application/problem+json")
    for k, v in (headers or {}).items():
        resp[k] = v
    return resp


class ProblemJsonMiddleware:
    """Django's own 404/403 (CSRF)/500 pages become problem+json under /api/ so clients always get one shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith(("application/problem+json", "application/json"))
        ):
            titles = {403: "Forbidden", 404: "Not found", 405: "Method not allowed", 500: "Internal server error"}
            title = titles.get(response.status_code, "Error")
            detail = "CSRF check failed" if response.status_code == 403 else title
            return problem_response(response.status_code, title, detail)
        return response


class RejectNulMiddleware:
    """PostgreSQL text cannot hold NUL, so a NUL reaching a query would be a 500, and no identifier, name
    or search term has a use for one. Requests carrying one in the path, the query string or a form or
    JSON body (raw, %00 or \\u0000) are answered 400 before any view runs. Multipart bodies (file uploads)
    are left alone: their files may hold any byte."""

    BODY_TYPES = ("application/x-www-form-urlencoded", "application/json")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "").lower()
        suspect = "\x00" in request.path or "%00" in query
        if not suspect and request.content_type in self.BODY_TYPES:
            body = request.body.lower()
            suspect = b"\x00" in body or b"%00" in body or b"\\u0000" in body
        if suspect:
            detail = "The request contains a NUL character, which no field accepts."
            if request.path.startswith("/api/"):
                return problem_response(400, "Bad request", detail)
            return HttpResponseBadRequest(detail)
        return self.get_response(request)
