"""Template helpers of the data pages: `{{ resource|data_url }}` and `{{ resource|data_url:"upload" }}` give a
resource's data page and its action URLs (codes contain "/", which URLs write as "-"); `{{ value|score }}`
formats a quality score."""

from __future__ import annotations

from django import template
from django.urls import reverse

from shuzheng.catalog.templatetags.catalog import url_code

register = template.Library()


@register.filter
def data_url(resource, action: str = "") -> str:
    code = getattr(resource, "code", resource)
    return reverse(f"web:data_{action}" if action else "web:data", kwargs={"code": url_code(code)})


@register.filter
def score(value) -> str:
    """A 0–100 score with one decimal, or a dash."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def score_class(value) -> str:
    """good (≥ 95), fair (≥ 80) or poor, for colouring a score."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "good" if value >= 95 else ("fair" if value >= 80 else "poor")


@register.filter
def code_in_url(code) -> str:
    """A resource code as URLs write it (101001001/000001 -> 101001001-000001)."""
    return url_code(code)
