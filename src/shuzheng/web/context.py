"""Navigation shown in the base template: only the entries the signed-in user's roles can use."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz

NAV = [
    ("web:home", _("Home"), None),
    ("web:catalog", _("Catalog"), None),
    ("web:standards", _("Data standards"), None),
    ("web:data_tables", _("Data"), None),
    ("web:sharing", _("Sharing"), None),
    ("web:tickets", _("Correction tickets"), None),
    ("web:organizations", _("Organizations"), None),
    ("web:users", _("Users"), Perm.USER_VIEW),
    ("web:systems", _("Application systems"), Perm.SYSTEM_VIEW),
    ("web:audit", _("Audit trail"), Perm.AUDIT_VIEW),
    ("web:security", _("Security"), Perm.SECURITY_MONITOR),
    ("web:harvest", _("Harvesting"), Perm.CATALOG_REVIEW),
]


# What the public may open without signing in: the open catalog and the data standards.
PUBLIC_NAV = [
    ("web:catalog", _("Catalog")),
    ("web:standards", _("Data standards")),
    ("web:login", _("Sign in")),
]


def _entry(request, name, label) -> dict:
    url = reverse(name)
    return {"url": url, "label": label, "active": request.path == url or (url != "/" and request.path.startswith(url))}


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [_entry(request, name, label) for name, label in PUBLIC_NAV],
                "large_text": request.session.get("large_text", False) if hasattr(request, "session") else False}
    actor = Actor(user=user)
    items = []
    for name, label, perm in NAV:
        if perm is None or authz.allowed(actor, perm):
            items.append(_entry(request, name, label))
    return {"nav": items, "large_text": user.large_text}
