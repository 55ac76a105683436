"""DCAT-AP 3 documents of the catalog at the paths CKAN's DCAT extension uses: /catalog.ttl|.rdf|.jsonld (paged:
?page=, ?page_size=, and ?modified_since= for incremental harvesting) and /dataset/<code>.ttl|.rdf|.jsonld. Without a
suffix the Accept header chooses; a browser is sent to the catalog's web page. Who sees what is the catalog
service's decision: the public gets the open catalog, a signed-in government user or an application system's
key (`Authorization: Bearer …`, as the province platform harvests) the government catalog."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_safe

from shuzheng.catalog import dcat
from shuzheng.catalog.templatetags.catalog import resource_url
from shuzheng.core.errors import NotFound, ServiceError, ValidationFailed
from shuzheng.org.services import presented_key, request_actor
from shuzheng.sharing.gateway_views import problem  # problem+json of a service error, as the gateway answers


def _document(graph, suffix: str, negotiated: bool) -> HttpResponse:
    response = HttpResponse(dcat.serialize(graph, suffix), content_type=f"{dcat.FORMATS[suffix][1]}; charset=utf-8")
    if negotiated:
        response["Vary"] = "Accept"
    # The government catalog differs by caller: no shared cache may keep it.
    response["Cache-Control"] = "private, max-age=60"
    return response


def _int(request, name: str, default: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise ValidationFailed.of(name, "A whole number.")
    return int(raw)


@require_safe
def catalog(request, suffix: str | None = None):
    if suffix is not None and suffix not in dcat.FORMATS:
        return problem(NotFound(f"No catalog format “{suffix[:20]}”; use ttl, rdf or jsonld."))
    chosen = suffix or dcat.negotiate(request.headers.get("Accept", ""))
    if chosen is None:
        return HttpResponseRedirect("/catalog/")
    try:
        actor = request_actor(request, presented_key(request.headers))
        page = dcat.catalog_page(actor, dcat.public_url(request), page=_int(request, "page", 1),
                                 page_size=_int(request, "page_size", dcat.PAGE_SIZE),
                                 since=dcat.parse_since(request.GET.get("modified_since")), suffix=chosen)
    except ServiceError as exc:
        return problem(exc)
    return _document(page.graph, chosen, negotiated=suffix is None)


@require_safe
def dataset(request, code: str):
    code, dot, suffix = code.partition(".")
    if dot and suffix not in dcat.FORMATS:
        return problem(NotFound(f"No dataset format “{suffix[:20]}”; use ttl, rdf or jsonld."))
    chosen = suffix or dcat.negotiate(request.headers.get("Accept", ""))
    try:
        actor = request_actor(request, presented_key(request.headers))
        if chosen is None:
            from shuzheng.catalog import services

            return HttpResponseRedirect(resource_url(services.get_resource(actor, code)))
        graph = dcat.dataset_graph(actor, dcat.public_url(request), code)
    except ServiceError as exc:
        return problem(exc)
    return _document(graph, chosen, negotiated=not dot)
