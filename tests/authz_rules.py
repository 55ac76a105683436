"""The declared authorization of every route: one row per route, read by tests/test_authz_matrix.py.

A row says what a caller needs to get past the route's permission check, and which object the matrix puts
in the path (or body) for the actor's own organization and for another organization. The expected outcome
of every (route, role, own/other) cell is derived from these rows and from org.roles.ROLE_PERMISSIONS, so
the access policy is asserted exactly as roles.py states it; a route without a row fails the matrix.

Keys: `METHOD /api/v1/...{param}` for the Ninja API's operations (one row per method), and the Django
pattern (`/users/<str:username>/`) for pages and the gateway's plain views, whose row names the method the
matrix sends (GET, or POST for the pages that only take POST).

access:
  PUBLIC        anyone, signed in or not (the service may still narrow what it shows)
  SIGNED_IN     any signed-in user (pages redirect the anonymous to /login/; the API answers 401); the
                application-system actor (an API key) passes on the API
  API_KEY       the gateway: an application system's key with a live grant on the object (own) and
                without one (other); a session is not a credential there (401)
  LINK_TOKEN    a signed download link is the credential: valid (own) or not (other), for anyone
  RAISER        whoever raised the correction ticket (own: raised by the actor; other: by someone else)
  SOURCE_ADDRESS  allowed only from the configured monitoring addresses (not a role at all)
  need(P, ...)  any of the permissions P, in the scope roles.py gives: ALL reaches both cases, OWN only
                the own case; `scoped=False` asks `authz.allowed(actor, P)` without an organization
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from shuzheng.org.roles import Perm

PUBLIC = "public"
SIGNED_IN = "signed-in"
API_KEY = "api-key"
LINK_TOKEN = "link-token"
RAISER = "raiser"
SOURCE_ADDRESS = "source-address"

# Outcomes an actor expects
ALLOW, DENY, LOGIN, UNAUTHENTICATED, SKIP = "allow", "deny", "login", "401", "skip"

# The demo accounts that hold each role (shuzheng.demo.loader.ROLE_ACCOUNTS): every role of org.roles.Role
# must appear here, so a new role cannot ship without its column in the matrix.
ROLE_ACCOUNTS = {
    "platform_admin": "admin",
    "security_admin": "secadmin",
    "audit_admin": "auditor",
    "leading_group": "leader",
    "data_officer": "officer-civil-affairs",
    "data_steward": "steward",
    "catalog_reviewer": "reviewer",
    "app_developer": "developer",
    "staff": "staff",
}
# The organization every actor's "other" case uses: none of the accounts above belongs to it, and it has
# given no organization an access grant in the demo.
OTHER_ORG = "health"


@dataclass(frozen=True)
class Need:
    perms: tuple[str, ...]
    scoped: bool = True

    def __str__(self):
        return "|".join(str(p) for p in self.perms) + ("" if self.scoped else " (anywhere)")


def need(*perms, scoped: bool = True) -> Need:
    return Need(tuple(str(p) for p in perms), scoped)


@dataclass(frozen=True)
class Rule:
    access: object                     # PUBLIC | SIGNED_IN | API_KEY | LINK_TOKEN | RAISER | Need
    target: str | None = None          # builder (test_authz_matrix.World.<target>): own vs other organization
    method: str = "GET"                # pages and gateway only: what the matrix sends
    body: object = None                # dict, or callable(target values) -> dict (JSON for the API, form for pages)
    multipart: bool = False            # the API body is a multipart form (file uploads)
    query: dict = field(default_factory=dict)
    public: bool = False               # the check is reached without signing in (no login_required / Public auth)
    system: str | None = None          # the application-system actor, when not derived: "allow", "deny", "own"
    denied: tuple = (403, 404)         # what a refusal looks like
    allowed: tuple = ()                # statuses that also count as let through (besides any but 401/403/404)
    note: str = ""


def r(access, target=None, **kw) -> Rule:
    return Rule(access, target, **kw)


P = Perm
NEW_PASSWORD = "Kx9#mP2$vLq7-matrix"
CSV = ("matrix.csv", "公民身份号码,姓名\n130682199001010012,张三\n".encode("gbk"), "text/csv")


def _resource_body(t):
    return {"name": f"矩阵测试资源{t.get('tag', 'n')}", "summary": "授权矩阵测试用的资源。", "format": "database",
            "sharing_type": "unconditional", "sharing_methods": ["interface"], "open_type": "closed",
            "update_cycle": "daily", "items": [{"name": "公民身份号码", "element": "DE00001", "is_key": True,
                                                "nullable": False, "length": 18},
                                               {"name": "姓名", "element": "DE00002", "length": 50}]}


RULES: dict[str, Rule] = {
    # ---- the API's own pages ----
    "/api/v1/openapi.json": r(PUBLIC),
    "/api/v1/docs": r(PUBLIC),
    "/api/v1/": r(PUBLIC, allowed=(404,), note="Ninja's root: nothing there for anyone (404 to all alike)"),
    "/metrics": r(SOURCE_ADDRESS, note="Prometheus: loopback and SHUZHENG_METRICS_ALLOW only, whoever is signed "
                                       "in; the matrix calls from 127.0.0.1 (test_http_security checks the rest)"),

    # ---- identity and organizations (org/api.py) ----
    "GET /api/v1/me": r(SIGNED_IN),
    "GET /api/v1/regions": r(SIGNED_IN),
    "GET /api/v1/organizations": r(SIGNED_IN),
    "POST /api/v1/organizations": r(need(P.ORG_MANAGE, scoped=False), "new_org",
                                    body=lambda t: {"code": t["new_code"], "name": "矩阵测试局", "kind": "department",
                                                    "region": "130682"}),
    "GET /api/v1/organizations/{code}": r(SIGNED_IN, "org"),
    "PATCH /api/v1/organizations/{code}": r(need(P.ORG_MANAGE), "org", body={"short_name": "矩阵"}),
    "GET /api/v1/users": r(SIGNED_IN, note="a listing scoped by user.view"),
    "POST /api/v1/users": r(need(P.USER_MANAGE), "org",
                            body=lambda t: {"username": "mx.created", "full_name": "矩阵", "password": NEW_PASSWORD,
                                            "organization": t["code"]}),
    "GET /api/v1/users/{username}": r(need(P.USER_VIEW), "user"),
    "PATCH /api/v1/users/{username}": r(need(P.USER_MANAGE), "user", body={"full_name": "矩阵改名"}),
    "POST /api/v1/users/{username}/password": r(need(P.USER_MANAGE), "user", body={"new_password": NEW_PASSWORD}),
    "POST /api/v1/users/{username}/roles": r(need(P.ROLE_ASSIGN), "user", body={"role": "data_steward"}),
    "DELETE /api/v1/users/{username}/roles/{role}": r(need(P.ROLE_ASSIGN), "user"),
    "POST /api/v1/users/{username}/unlock": r(need(P.USER_UNLOCK), "user"),
    "POST /api/v1/users/{username}/two-factor/reset": r(need(P.USER_UNLOCK), "user"),
    "GET /api/v1/systems": r(SIGNED_IN),
    "POST /api/v1/systems": r(need(P.SYSTEM_MANAGE), "org",
                              body=lambda t: {"code": "mx-created", "name": "矩阵系统", "organization": t["code"]}),
    "GET /api/v1/systems/{code}": r(need(P.SYSTEM_VIEW), "system", system="own",
                                    note="a system always sees itself"),
    "PATCH /api/v1/systems/{code}": r(need(P.SYSTEM_MANAGE), "system", body={"name": "矩阵系统改名"}),
    "GET /api/v1/systems/{code}/keys": r(need(P.SYSTEM_VIEW), "system", system="own"),
    "POST /api/v1/systems/{code}/keys": r(need(P.SYSTEM_MANAGE), "system", body={"label": "mx", "days": 5}),
    "POST /api/v1/keys/{key_id}/revoke": r(need(P.APIKEY_REVOKE, P.SYSTEM_MANAGE), "key"),
    "GET /api/v1/grants": r(SIGNED_IN),
    "POST /api/v1/grants": r(need(P.GRANT_MANAGE), "org",
                             body=lambda t: {"owner": t["code"], "grantee": t["third_org"], "permission": "user.view",
                                             "reason": "授权矩阵"}),
    "POST /api/v1/grants/{grant_id}/revoke": r(need(P.GRANT_MANAGE), "access_grant"),

    # ---- audit ----
    "GET /api/v1/audit": r(need(P.AUDIT_VIEW)),
    "GET /api/v1/audit/export.csv": r(need(P.AUDIT_VIEW)),
    "GET /api/v1/audit/verify": r(need(P.AUDIT_VIEW)),
    "GET /api/v1/audit/signatures": r(need(P.AUDIT_VIEW)),

    # ---- catalog (drafts: the resource's department and the reviewers see them) ----
    "GET /api/v1/catalog/resources": r(PUBLIC),
    "POST /api/v1/catalog/resources": r(need(P.CATALOG_EDIT), "org",
                                        body=lambda t: {**_resource_body(t), "category": "101001",
                                                        "provider": t["code"]}),
    "GET /api/v1/catalog/resources/{code}": r(need(P.CATALOG_DRAFTS), "draft", public=True),
    "PUT /api/v1/catalog/resources/{code}/draft": r(need(P.CATALOG_EDIT), "draft", body=_resource_body),
    "POST /api/v1/catalog/resources/{code}/revisions": r(need(P.CATALOG_EDIT), "published"),
    "POST /api/v1/catalog/resources/{code}/submit": r(need(P.CATALOG_SUBMIT), "draft", body={"comment": ""}),
    "POST /api/v1/catalog/resources/{code}/review": r(need(P.CATALOG_REVIEW), "submitted",
                                                      body={"decision": "approve", "comment": "矩阵"}),
    "POST /api/v1/catalog/resources/{code}/publish": r(need(P.CATALOG_REVIEW), "approved", body={"comment": ""}),
    "POST /api/v1/catalog/resources/{code}/deprecate": r(need(P.CATALOG_REVIEW, P.CATALOG_SUBMIT), "published",
                                                         body={"reason": "授权矩阵"}),
    "PUT /api/v1/catalog/resources/{code}/mount": r(need(P.CATALOG_EDIT), "published",
                                                    body={"kind": "table", "target": "mx.t_matrix"}),
    "DELETE /api/v1/catalog/resources/{code}/mount": r(need(P.CATALOG_EDIT), "published"),
    "GET /api/v1/catalog/resources/{code}/versions": r(need(P.CATALOG_DRAFTS), "draft", public=True),
    "GET /api/v1/catalog/resources/{code}/versions/{number}": r(need(P.CATALOG_DRAFTS), "draft", public=True),
    "GET /api/v1/catalog/resources/{code}/diff": r(need(P.CATALOG_DRAFTS), "draft", public=True,
                                                   query={"from": 1, "to": 1}),
    "POST /api/v1/catalog/import": r(need(P.CATALOG_EDIT, scoped=False), multipart=True,
                                     body={"file": ("matrix.xlsx", b"not a workbook", "application/octet-stream")},
                                     note="the permission is checked before the file is opened"),
    "GET /api/v1/catalog/export": r(PUBLIC, query={"q": "矩阵没有的词"},
                                    note="narrowed by a search: the whole workbook takes seconds per caller"),
    "GET /api/v1/catalog/elements": r(PUBLIC),
    "GET /api/v1/catalog/elements/{identifier}": r(PUBLIC, "element"),
    "PUT /api/v1/catalog/elements/{identifier}": r(need(P.STANDARD_MANAGE, scoped=False), "element",
                                                   body=lambda t: t["element_body"]),
    "GET /api/v1/catalog/code-tables": r(PUBLIC),
    "GET /api/v1/catalog/code-tables/{code}": r(PUBLIC, "code_table"),
    "PUT /api/v1/catalog/code-tables/{code}": r(need(P.STANDARD_MANAGE, scoped=False), "code_table",
                                                body={"name": "矩阵代码表", "values": [{"code": "1", "name": "一"}]}),
    "GET /api/v1/catalog/categories": r(PUBLIC),
    "GET /api/v1/catalog/reports/sources": r(PUBLIC),

    # ---- CKAN's Action API (catalog/ckan_views.py): anyone; the catalog's services decide what each sees ----
    "/api/3": r(PUBLIC),
    "/api/3/action/<str:action>": r(PUBLIC, "ckan_action", note="read-only actions; an API key or a session "
                                                                "widens what the catalog shows, never more"),
    "/api/action/<str:action>": r(PUBLIC, "ckan_action", note="the same, where ckanapi looks by default"),

    # ---- DCAT-AP documents (catalog/dcat_views.py): anyone; a draft only to its department and reviewers ----
    "/catalog": r(PUBLIC, allowed=(302,), note="negotiated: a browser is sent to /catalog/"),
    "/catalog.<str:suffix>": r(PUBLIC, "rdf_suffix", query={"page_size": "1"},
                               note="one dataset a page: the whole catalog per caller would cost ~2 s each"),
    "/dataset/<str:code>": r(need(P.CATALOG_DRAFTS), "draft_document", public=True),

    # ---- harvesting other catalogs (harvest/api.py; catalog.review over the whole catalog) ----
    "GET /api/v1/harvest/sources": r(need(P.CATALOG_REVIEW, scoped=False)),
    "POST /api/v1/harvest/sources": r(need(P.CATALOG_REVIEW, scoped=False), "new_harvest_source",
                                      body=lambda t: t["source_body"]),
    "GET /api/v1/harvest/sources/{name}": r(need(P.CATALOG_REVIEW, scoped=False), "harvest_source"),
    "PATCH /api/v1/harvest/sources/{name}": r(need(P.CATALOG_REVIEW, scoped=False), "harvest_source",
                                              body={"interval_minutes": 720}),
    "POST /api/v1/harvest/sources/{name}/run": r(need(P.CATALOG_REVIEW, scoped=False), "harvest_source",
                                                 note="the source is a closed port: the run fails fast, reported"),
    "GET /api/v1/harvest/sources/{name}/runs": r(need(P.CATALOG_REVIEW, scoped=False), "harvest_source"),

    # ---- the data plane (published resources are visible to every signed-in user; data.load for the rest) ----
    "POST /api/v1/data/resources/{code}/loads": r(need(P.DATA_LOAD), "api_mounted", multipart=True,
                                                  body={"mode": "append", "file": CSV},
                                                  note="not a warehouse table: a permitted caller gets 409"),
    "GET /api/v1/data/resources/{code}/loads": r(SIGNED_IN, "table"),
    "GET /api/v1/data/loads/{load_id}": r(SIGNED_IN, "load"),
    "GET /api/v1/data/loads/{load_id}/quarantine": r(need(P.DATA_LOAD), "load"),
    "GET /api/v1/data/resources/{code}/rows": r(need(P.DATA_LOAD), "table"),
    "GET /api/v1/data/resources/{code}/snapshots": r(SIGNED_IN, "table"),
    "GET /api/v1/data/resources/{code}/lineage": r(SIGNED_IN, "table"),
    "GET /api/v1/data/resources/{code}/quality": r(SIGNED_IN, "table"),
    "GET /api/v1/data/resources/{code}/settings": r(SIGNED_IN, "table"),
    "PUT /api/v1/data/resources/{code}/settings": r(need(P.DATA_LOAD), "table", body={"retain_snapshots": 7},
                                                    note="data.load and quality.manage: the same holders"),
    "GET /api/v1/data/resources/{code}/rules": r(SIGNED_IN, "table"),
    "POST /api/v1/data/resources/{code}/rules": r(need(P.QUALITY_MANAGE), "table",
                                                  body={"kind": "not_null", "items": ["姓名"]}),
    "PUT /api/v1/data/rules/{rule_id}": r(need(P.QUALITY_MANAGE), "rule", body={"kind": "not_null", "items": ["姓名"]}),
    "GET /api/v1/data/overdue": r(SIGNED_IN),
    "GET /api/v1/data/resources/{code}/sources": r(need(P.DATA_LOAD), "table"),
    "POST /api/v1/data/resources/{code}/sources": r(need(P.DATA_LOAD), "table",
                                                    body={"name": "矩阵", "kind": "derived",
                                                          "config": {"query": "SELECT 1 AS x"}}),
    "PUT /api/v1/data/resources/{code}/sources/{source_id}": r(need(P.DATA_LOAD), "source",
                                                               body={"name": "矩阵", "kind": "derived",
                                                                     "config": {"query": "SELECT 1 AS x"}}),
    "POST /api/v1/data/sources/{source_id}/run": r(need(P.DATA_LOAD), "source"),

    # ---- correction tickets ----
    "POST /api/v1/tickets": r(SIGNED_IN, "published",
                              body=lambda t: {"resource": t["code"], "record_key": {"公民身份号码": "130682199001010012"},
                                              "item": "姓名", "description": "授权矩阵"},
                              note="any user or system may raise a ticket on a published resource"),
    "GET /api/v1/tickets": r(SIGNED_IN),
    "GET /api/v1/tickets/{number}": r(need(P.TICKET_OVERSEE, P.TICKET_HANDLE), "ticket_open"),
    "POST /api/v1/tickets/{number}/comments": r(need(P.TICKET_OVERSEE, P.TICKET_HANDLE), "ticket_open",
                                                body={"body": "授权矩阵"}),
    "POST /api/v1/tickets/{number}/accept": r(need(P.TICKET_HANDLE), "ticket_open", body={"comment": ""},
                                              note="overseers only once overdue"),
    "POST /api/v1/tickets/{number}/resolve": r(need(P.TICKET_HANDLE), "ticket_accepted", body={"resolution": "已更正"}),
    "POST /api/v1/tickets/{number}/reject": r(need(P.TICKET_HANDLE), "ticket_open", body={"resolution": "值无误"}),
    "POST /api/v1/tickets/{number}/reopen": r(RAISER, "ticket_closed", body={"reason": "授权矩阵"}),

    # ---- sharing workflow ----
    "POST /api/v1/sharing/applications": r(need(P.SHARE_APPLY), "apply", body=lambda t: t["application_body"],
                                           system="own", denied=(403, 404, 422),
                                           note="the system is named in the body: not yours reads as 422 on "
                                                "'system', like an unknown one"),
    "GET /api/v1/sharing/applications": r(SIGNED_IN),
    "GET /api/v1/sharing/applications/{number}": r(need(P.SHARE_VIEW, P.SHARE_OVERSEE), "application_consumer"),
    "POST /api/v1/sharing/applications/{number}/decision": r(need(P.SHARE_DECIDE), "application_provider",
                                                             body={"decision": "reject", "note": "授权矩阵"}),
    "POST /api/v1/sharing/applications/{number}/withdraw": r(need(P.SHARE_APPLY), "application_consumer"),
    "GET /api/v1/sharing/grants": r(SIGNED_IN),
    "GET /api/v1/sharing/grants/{grant_id}": r(need(P.SHARE_VIEW, P.SHARE_OVERSEE), "grant_consumer"),
    "POST /api/v1/sharing/grants/{grant_id}/revoke": r(need(P.SHARE_APPLY, P.SHARE_OVERSEE), "grant_consumer",
                                                       body={"reason": "授权矩阵"}),
    "GET /api/v1/sharing/usage": r(SIGNED_IN),
    "GET /api/v1/sharing/notifications": r(SIGNED_IN),
    "POST /api/v1/sharing/leaks": r(need(P.SHARE_DECIDE, P.SHARE_OVERSEE), "published", multipart=True,
                                    body=lambda t: {"resource": t["code"],
                                                    "file": ("leak.csv", b"a,b\n1,2\n", "text/csv")}),
    "POST /api/v1/sharing/subscriptions": r(need(P.SYSTEM_MANAGE), "grant_consumer", system="own",
                                            body=lambda t: {"grant": t["grant_id"], "url": "https://example.org/hook"}),
    "GET /api/v1/sharing/subscriptions": r(SIGNED_IN),
    "POST /api/v1/sharing/subscriptions/{subscription_id}/deactivate": r(need(P.SYSTEM_MANAGE), "subscription",
                                                                         system="own"),
    "GET /api/v1/sharing/subscriptions/{subscription_id}/deliveries": r(
        need(P.SYSTEM_MANAGE, P.SHARE_VIEW, P.SHARE_OVERSEE), "subscription", system="own"),
    "POST /api/v1/sharing/deliveries/{delivery_id}/redeliver": r(need(P.SYSTEM_MANAGE), "delivery", system="own"),

    # ---- security alerts (security.monitor; alerts belong to no organization) ----
    "GET /api/v1/security/alerts": r(need(P.SECURITY_MONITOR, scoped=False)),
    "GET /api/v1/security/alerts/{alert_id}": r(need(P.SECURITY_MONITOR, scoped=False), "alert"),
    "POST /api/v1/security/alerts/{alert_id}/acknowledge": r(need(P.SECURITY_MONITOR, scoped=False), "alert",
                                                             body={"note": ""}),
    "POST /api/v1/security/alerts/{alert_id}/escalate": r(need(P.SECURITY_MONITOR, scoped=False), "alert",
                                                          body={"note": "授权矩阵"}),
    "POST /api/v1/security/alerts/{alert_id}/close": r(need(P.SECURITY_MONITOR, scoped=False), "alert",
                                                       body={"note": "授权矩阵"}),
    "GET /api/v1/security/summary": r(need(P.SECURITY_MONITOR, scoped=False)),
    "POST /api/v1/security/scan": r(need(P.SECURITY_MONITOR, scoped=False)),

    # ---- the data gateway (plain Django views; the key is the credential) ----
    "/api/v1/share/sql": r(API_KEY, "gateway_sql", method="POST", body=lambda t: {"sql": t["sql"]},
                           denied=(403, 404, 422), note="a table the key holds no grant on reads as an unknown "
                                                         "table: 422 on 'sql'"),
    "/api/v1/share/exports/download/<str:token>": r(LINK_TOKEN, "gateway_link"),
    "/api/v1/share/exports/<str:export_id>": r(API_KEY, "gateway_export"),
    "/api/v1/share/<str:code>/verify": r(API_KEY, "gateway_resource", method="POST",
                                         body=lambda t: {"candidates": {"公民身份号码": "130682199001010012"}}),
    "/api/v1/share/<str:code>/records": r(API_KEY, "gateway_resource"),
    "/api/v1/share/<str:code>/exports": r(API_KEY, "gateway_export_resource", method="POST",
                                          body={"format": "parquet"}),

    # ---- pages: sign-in and preferences ----
    "/i18n/setlang/": r(PUBLIC, method="POST", body={"language": "en"}),
    "/": r(SIGNED_IN),
    "/login/": r(PUBLIC),
    "/login/two-factor/": r(PUBLIC, note="sends the caller back to sign in without a pending password step"),
    "/two-factor/enrol/": r(PUBLIC, note="likewise"),
    "/logout/": r(PUBLIC, method="POST"),
    "/preferences/large-text/": r(PUBLIC, method="POST", body={"enabled": "1"}),

    # ---- pages: organizations, users, systems ----
    "/organizations/": r(SIGNED_IN),
    "/organizations/new/": r(need(P.ORG_MANAGE, scoped=False)),
    "/organizations/<str:code>/": r(SIGNED_IN, "org"),
    "/organizations/<str:code>/edit/": r(need(P.ORG_MANAGE), "org"),
    "/users/": r(SIGNED_IN),
    "/users/new/": r(need(P.USER_MANAGE, scoped=False)),
    "/users/<str:username>/": r(need(P.USER_VIEW), "user"),
    "/users/<str:username>/edit/": r(need(P.USER_MANAGE), "user"),
    "/users/<str:username>/roles/": r(need(P.ROLE_ASSIGN), "user", method="POST", body={"role": "data_steward"}),
    "/users/<str:username>/roles/remove/": r(need(P.ROLE_ASSIGN), "user", method="POST", body={"role": "staff"}),
    "/users/<str:username>/unlock/": r(need(P.USER_UNLOCK), "user", method="POST"),
    "/users/<str:username>/two-factor/reset/": r(need(P.USER_UNLOCK), "user", method="POST"),
    "/account/password/": r(SIGNED_IN),
    "/systems/": r(SIGNED_IN),
    "/systems/new/": r(need(P.SYSTEM_MANAGE, scoped=False)),
    "/systems/<str:code>/": r(need(P.SYSTEM_VIEW), "system"),
    "/systems/<str:code>/keys/": r(need(P.SYSTEM_MANAGE), "system", method="POST", body={"label": "mx", "days": "5"}),
    "/systems/<str:code>/keys/<uuid:key_id>/revoke/": r(need(P.APIKEY_REVOKE, P.SYSTEM_MANAGE), "key", method="POST"),

    # ---- pages: audit ----
    "/audit/": r(need(P.AUDIT_VIEW)),
    "/audit/export.csv": r(need(P.AUDIT_VIEW)),
    "/audit/verify/": r(need(P.AUDIT_VIEW), method="POST"),

    # ---- pages: catalog and standards ----
    "/catalog/": r(PUBLIC),
    "/catalog/new/": r(need(P.CATALOG_EDIT, scoped=False)),
    "/catalog/import/": r(need(P.CATALOG_EDIT, scoped=False)),
    "/catalog/work/": r(SIGNED_IN),
    "/catalog/<str:code>/": r(need(P.CATALOG_DRAFTS), "draft", public=True),
    "/catalog/<str:code>/edit/": r(need(P.CATALOG_EDIT), "draft"),
    "/catalog/<str:code>/diff/": r(need(P.CATALOG_DRAFTS), "draft", public=True),
    "/catalog/<str:code>/submit/": r(need(P.CATALOG_SUBMIT), "draft", method="POST"),
    "/catalog/<str:code>/review/": r(need(P.CATALOG_REVIEW), "submitted", method="POST",
                                     body={"decision": "approve", "comment": "矩阵"}),
    "/catalog/<str:code>/publish/": r(need(P.CATALOG_REVIEW), "approved", method="POST"),
    "/catalog/<str:code>/revise/": r(need(P.CATALOG_EDIT), "published", method="POST"),
    "/catalog/<str:code>/deprecate/": r(need(P.CATALOG_REVIEW, P.CATALOG_SUBMIT), "published", method="POST",
                                        body={"reason": "授权矩阵"}),
    "/catalog/<str:code>/mount/": r(need(P.CATALOG_EDIT), "published", method="POST",
                                    body={"kind": "table", "target": "mx.t_matrix"}),
    "/catalog/<str:code>/unmount/": r(need(P.CATALOG_EDIT), "published", method="POST"),
    "/harvest/": r(need(P.CATALOG_REVIEW, scoped=False)),
    "/harvest/new/": r(need(P.CATALOG_REVIEW, scoped=False), "new_harvest_source", method="POST",
                       body=lambda t: t["source_form"]),
    "/harvest/<str:name>/run/": r(need(P.CATALOG_REVIEW, scoped=False), "harvest_source", method="POST"),
    "/standards/": r(PUBLIC),
    "/standards/elements/": r(PUBLIC),
    "/standards/elements/new/": r(need(P.STANDARD_MANAGE, scoped=False)),
    "/standards/elements/<str:identifier>/": r(PUBLIC, "element"),
    "/standards/elements/<str:identifier>/edit/": r(need(P.STANDARD_MANAGE, scoped=False), "element"),
    "/standards/code-tables/": r(PUBLIC),
    "/standards/code-tables/new/": r(need(P.STANDARD_MANAGE, scoped=False)),
    "/standards/code-tables/<str:code>/": r(PUBLIC, "code_table"),
    "/standards/code-tables/<str:code>/edit/": r(need(P.STANDARD_MANAGE, scoped=False), "code_table"),
    "/standards/sources/": r(PUBLIC),

    # ---- pages: security dashboard ----
    "/security/": r(need(P.SECURITY_MONITOR, scoped=False)),
    "/security/scan/": r(need(P.SECURITY_MONITOR, scoped=False), method="POST"),
    "/security/alerts/<int:alert_id>/": r(need(P.SECURITY_MONITOR, scoped=False), "alert"),
    "/security/alerts/<int:alert_id>/handle/": r(need(P.SECURITY_MONITOR, scoped=False), "alert", method="POST",
                                                 body={"action": "acknowledge", "note": ""}),

    # ---- pages: the data plane ----
    "/data/": r(SIGNED_IN),
    "/data/overdue/": r(SIGNED_IN),
    "/data/loads/<uuid:load_id>/": r(SIGNED_IN, "load"),
    "/data/loads/<uuid:load_id>/quarantine.<str:fmt>": r(need(P.DATA_LOAD), "load"),
    "/data/<str:code>/": r(SIGNED_IN, "table"),
    "/data/<str:code>/upload/": r(need(P.DATA_LOAD), "api_mounted", method="POST",
                                  body={"mode": "append", "file": CSV}),
    "/data/<str:code>/rows/": r(need(P.DATA_LOAD), "table"),
    "/data/<str:code>/settings/": r(need(P.DATA_LOAD), "table", method="POST",
                                    body={"max_failure_share": "0.5", "retain_snapshots": "7"}),
    "/data/<str:code>/rules/": r(need(P.QUALITY_MANAGE), "table", method="POST",
                                 body={"kind": "not_null", "items": ["姓名"], "blocking": "on"}),
    "/data/<str:code>/rules/<uuid:rule_id>/active/": r(need(P.QUALITY_MANAGE), "rule", method="POST",
                                                       body={"active": "0"}),

    # ---- pages: correction tickets ----
    "/tickets/": r(SIGNED_IN),
    "/tickets/new/": r(SIGNED_IN),
    "/tickets/<str:number>/": r(need(P.TICKET_OVERSEE, P.TICKET_HANDLE), "ticket_open"),
    "/tickets/<str:number>/comment/": r(need(P.TICKET_OVERSEE, P.TICKET_HANDLE), "ticket_open", method="POST",
                                        body={"body": "授权矩阵"}),
    "/tickets/<str:number>/accept/": r(need(P.TICKET_HANDLE), "ticket_open", method="POST", body={"comment": ""}),
    "/tickets/<str:number>/resolve/": r(need(P.TICKET_HANDLE), "ticket_accepted", method="POST",
                                        body={"resolution": "已更正"}),
    "/tickets/<str:number>/reject/": r(need(P.TICKET_HANDLE), "ticket_open", method="POST",
                                       body={"resolution": "值无误"}),
    "/tickets/<str:number>/reopen/": r(RAISER, "ticket_closed", method="POST", body={"reason": "授权矩阵"}),

    # ---- pages: sharing ----
    "/sharing/": r(SIGNED_IN),
    "/sharing/apply/<str:code>/": r(SIGNED_IN, "published"),
    "/sharing/applications/<str:number>/": r(need(P.SHARE_VIEW, P.SHARE_OVERSEE), "application_consumer"),
    "/sharing/grants/<uuid:grant_id>/": r(need(P.SHARE_VIEW, P.SHARE_OVERSEE), "grant_consumer"),
    "/sharing/usage/": r(SIGNED_IN),
}


# --------------------------------------------------------------------------------------------------
# The routes, from the running configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    key: str      # the rule's key
    path: str     # the path template: {param} (Ninja) or <conv:param> (Django)
    kind: str     # "api" (Ninja operation), "page", "gateway" (plain views under /api/)
    method: str = ""  # Ninja operations only


def _django_patterns(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _django_patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def enumerate_routes() -> dict[str, Route]:
    from ninja.utils import normalize_path

    from shuzheng.api import api

    base = reverse("api:api-root")  # where the API is mounted: /api/v1/
    routes: dict[str, Route] = {}
    ninja_paths = set()
    for bound in api._get_bound_routers():
        for path, view in bound.path_operations.items():
            route = normalize_path("/".join(i for i in (bound.prefix, path) if i)).lstrip("/")
            ninja_paths.add(base.lstrip("/") + route.replace("{", "<").replace("}", ">"))
            for operation in view.operations:
                for method in operation.methods:
                    key = f"{method} {base}{route}"
                    routes[key] = Route(key, base + route, "api", method)
    for pattern, p in _django_patterns(get_resolver().url_patterns):
        if pattern in ninja_paths:
            continue
        key = "/" + pattern
        kind = "gateway" if key.startswith(base) and p.name not in ("openapi-json", "openapi-view", "api-root") \
            else "page"
        routes[key] = Route(key, key, kind)
    return routes




def fill(path: str, values: dict) -> str:
    path = re.sub(r"\{(?:\w+:)?(\w+)\}", lambda m: str(values[m.group(1)]), path)
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), path)
