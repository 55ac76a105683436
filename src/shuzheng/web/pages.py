"""What every list and form page does with the services' answers: paging, and service errors turned
into HTTP answers (not found, forbidden) or messages next to the form's fields."""

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404

from shuzheng.core.errors import Forbidden, NotFound, ServiceError
from shuzheng.web.forms import show_service_error

PAGE_SIZE = 50


def raise_http_error(exc: ServiceError) -> None:
    """Not-found and forbidden answers become the HTTP ones; other service errors belong next to fields."""
    if isinstance(exc, NotFound):
        raise Http404(str(exc.detail))
    if isinstance(exc, Forbidden):
        raise PermissionDenied(str(exc.detail))


def or_http_error(fetch, *args, **kwargs):
    """What a service call returns; its NotFound and Forbidden become the HTTP 404 and 403 (any other
    service error goes on as it was)."""
    try:
        return fetch(*args, **kwargs)
    except ServiceError as exc:
        raise_http_error(exc)
        raise


def show_form_error(form, exc: ServiceError) -> None:
    raise_http_error(exc)
    show_service_error(form, exc)


def page_of(request, qs):
    return Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))


def query_without_page(request) -> str:
    """The list's filters, to carry into the pager's links."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()
