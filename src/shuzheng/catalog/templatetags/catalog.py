"""Template helpers of the catalog pages: `{{ resource|resource_url }}` and `{{ resource|resource_url:"edit" }}`
give a resource's page and its action URLs, so no template writes a resource code into a URL by hand
(codes contain "/", which URLs write as "-")."""

from __future__ import annotations

from django import template
from django.urls import reverse

register = template.Library()


def url_code(code: str) -> str:
    """A resource code as URLs write it: 101001001/000001 -> 101001001-000001."""
    return str(code).replace("/", "-")


@register.filter
def resource_url(resource, action: str = "") -> str:
    """The page of `resource` (a Resource or its code), or of one of its actions (edit, submit, review, ...)."""
    code = getattr(resource, "code", resource)
    return reverse(f"web:resource_{action}" if action else "web:resource", kwargs={"code": url_code(code)})


@register.filter
def apply_url(resource) -> str:
    """The sharing application form for `resource`."""
    return reverse("web:sharing_apply", kwargs={"code": url_code(getattr(resource, "code", resource))})
