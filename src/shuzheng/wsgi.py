"""The WSGI application. Gateway calls (/api/v1/share/, API key only, no session, no forms, no pages) go
through a second Django handler with only the middleware they need, because at thousands of calls a second
the session, CSRF, locale, message and auth middleware cost more than the call itself. Same URLs, same views;
the lean stack keeps the security headers, the NUL check, the caller's language and problem+json errors."""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shuzheng.settings")

GATEWAY_PREFIX = "/api/v1/share/"
GATEWAY_MIDDLEWARE = [
    "shuzheng.core.middleware.SecurityHeadersMiddleware",
    "shuzheng.core.middleware.RejectNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # messages in the caller's Accept-Language, as on the full stack
    "shuzheng.core.middleware.ProblemJsonMiddleware",
]

django_application = get_wsgi_application()


class GatewayHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = GATEWAY_MIDDLEWARE  # read once, here, at start-up
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


gateway_application = GatewayHandler()

from shuzheng.security.metrics import gateway_meter  # noqa: E402  (after Django is set up)


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(GATEWAY_PREFIX):
        # Counted for /metrics without a lock or I/O per call (security.metrics.GatewayMeter).
        return gateway_meter(gateway_application, environ, start_response)
    return django_application(environ, start_response)
