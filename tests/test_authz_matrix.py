"""The authorization matrix: every route × every role (plus the anonymous caller and an application system's
API key) × the route's object in the actor's own organization or in another one, against the rule declared
for the route in tests/authz_rules.py.

Routes are enumerated from the running configuration, not listed by hand: Django's URL resolver for the
pages, the gateway's plain views and the API's own pages, and the NinjaAPI object for every operation and
HTTP method under /api/v1/. A route without a rule fails (test_every_route_has_a_rule names it), and so does
a rule whose route is gone.

Outcomes: allowed means the permission check let the caller through — any answer but 401/403/404 or a
redirect to sign in (200, 201, 204, 302 elsewhere, 405, 409, 422 are all fine); denied means 403 or 404
("invisible → 404": an object the actor may not see answers as if it did not exist). The anonymous caller is
sent to /login/ by pages and gets 401 from the API, except where the route is public. A 5xx is always a bug.

Own vs other: "own" is an object of the actor's organization (gov-services for the three administrators and
the reviewer, dingzhou-gov for the leading group, civil affairs for the department roles and the API-key
system), "other" one of the health commission, which no actor belongs to and which has granted nobody
anything. Objects without an organization (data elements, code tables, alerts, a new organization's code)
have one case. For the gateway, own/other is a resource the calling system holds a live grant on, or not.

Unsafe methods: Ninja validates a body before the view (and so before the service's permission check) runs,
so a 422 from a malformed body would prove nothing. Every unsafe API call here sends a body valid for its
schema and aimed at an object in the state the step needs (a draft to submit, a submitted version to review,
an open ticket to accept, ...), so that the service's permission check is what decides: a 422 or 409 that
follows it is the service judging the content after letting the caller in. Pages that only take POST are
posted a valid form for the same reason (GET-and-POST pages are sent GET). Where a permitted call would
write outside the database (a load writes Iceberg files), the object is chosen so the service refuses it
with 409 right after the permission check (a resource mounted as an API, not a warehouse table). Two
documented exceptions to "denied is 403/404": an application system named in a sharing application's body
that is not the caller's answers 422 on "system" (as an unknown one), and the gateway's SQL answers a table
the key holds no grant on as an unknown table (422 on "sql").

Speed: every object any rule aims at is made once, in a transaction the module rolls back at its end; each
request runs in a savepoint rolled back afterwards, so every actor meets the same objects in the same state.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone

from authz_rules import (ALLOW, API_KEY, DENY, LINK_TOKEN, LOGIN, OTHER_ORG, PUBLIC, RAISER, ROLE_ACCOUNTS, RULES,
                         SIGNED_IN, SKIP, SOURCE_ADDRESS, UNAUTHENTICATED, Need, Route, Rule, _resource_body,
                         enumerate_routes, fill)
from shuzheng.org.roles import ALL, OWN, ROLE_PERMISSIONS, Role

# Every test runs in a savepoint of the module's transaction (the marker also makes pytest-django set up the
# test database for a module whose fixtures are module-scoped).
pytestmark = pytest.mark.django_db

THIRD_ORG = "market-regulation"  # the far side of sharing objects and of access grants; no actor belongs to it
ACTORS = [*ROLE_ACCOUNTS, "anonymous", "system"]
# Objects that belong to no organization: one case only.
GLOBAL_TARGETS = {"new_org", "element", "code_table", "alert"}
# Objects whose own/other is the calling system's grant, not an organization.
GATEWAY_TARGETS = {"gateway_resource", "gateway_export_resource", "gateway_export", "gateway_sql", "gateway_link"}


ROUTES = enumerate_routes()


def test_every_route_has_a_rule():
    missing = sorted(set(ROUTES) - set(RULES))
    stale = sorted(set(RULES) - set(ROUTES))
    message = ""
    if missing:
        message += "Routes without a rule in tests/authz_rules.py:\n  " + "\n  ".join(missing) + "\n"
    if stale:
        message += "Rules for routes that no longer exist:\n  " + "\n  ".join(stale) + "\n"
    assert not message, message


def test_every_role_is_in_the_matrix():
    assert set(ROLE_ACCOUNTS) == set(Role.values), "add the new role's demo account to authz_rules.ROLE_ACCOUNTS"


# --------------------------------------------------------------------------------------------------
# What each actor should get
# --------------------------------------------------------------------------------------------------


def cases(rule: Rule, actor: str) -> tuple[str, ...]:
    if rule.target is None or rule.target in GLOBAL_TARGETS:
        return ("-",)
    if actor == "anonymous" and rule.access not in (LINK_TOKEN,):
        return ("other",)  # no organization of its own
    return ("own", "other")


def expected(rule: Rule, route: Route, actor: str, case: str) -> str:
    access = rule.access
    page = route.kind == "page"
    if access == SOURCE_ADDRESS:
        # The test client calls from 127.0.0.1 (loopback: let in, whoever it is); other addresses are
        # refused in test_http_security.
        return ALLOW
    if access == LINK_TOKEN:
        return ALLOW if case == "own" else DENY
    if actor == "system":
        if page:  # pages take no API keys: the key counts for nothing, as if no one were signed in
            return expected(rule, route, "anonymous", case)
        if rule.system == "own" or access in (API_KEY, RAISER):
            return ALLOW if case == "own" else DENY
        if rule.system:
            return rule.system
        return ALLOW if access in (PUBLIC, SIGNED_IN) else DENY
    if access == API_KEY:
        return UNAUTHENTICATED  # a session is not a gateway credential
    if actor == "anonymous":
        if access == PUBLIC:
            return ALLOW
        if rule.public:
            return DENY
        return LOGIN if page else UNAUTHENTICATED
    if access in (PUBLIC, SIGNED_IN):
        return ALLOW
    if access == RAISER:
        return ALLOW if case == "own" else DENY
    assert isinstance(access, Need), access
    for perm in access.perms:
        reach = ROLE_PERMISSIONS[actor].get(perm)
        if reach == ALL or (reach == OWN and (case != "other" or not access.scoped)):
            return ALLOW
    return DENY


def judge(outcome: str, status: int, location: str, rule: Rule) -> bool:
    if status >= 500:
        return False
    if outcome == ALLOW:
        if status in rule.allowed:
            return True
        if rule.access == PUBLIC and status == 302:
            return True  # a public page may send anyone on (back to sign in, home), by design
        return status not in (401, 403, 404) and not (status == 302 and location.startswith("/login/"))
    if outcome == DENY:
        return status in rule.denied
    if outcome == LOGIN:
        return status == 302 and location.startswith("/login/")
    if outcome == UNAUTHENTICATED:
        return status == 401
    raise AssertionError(outcome)


# --------------------------------------------------------------------------------------------------
# The objects: own organization vs another
# --------------------------------------------------------------------------------------------------


def url_code(code: str) -> str:
    return code.replace("/", "-")


class Demo:
    """What conftest's `demo` fixture offers, for a module-scoped world."""

    def __init__(self):
        self.users = {}

    def org(self, key: str, region: str = "130682"):
        from shuzheng.demo.loader import demo_credit_code
        from shuzheng.org.models import Organization

        return Organization.objects.get(code=demo_credit_code(key, region))

    def user(self, username: str):
        from shuzheng.org.models import User

        if username not in self.users:
            self.users[username] = User.objects.select_related("organization").get(username=username)
        return self.users[username]

    def actor(self, username: str):
        from shuzheng.org.services import Actor

        return Actor(user=self.user(username), ip="127.0.0.1")


class World:
    """Builds the objects the matrix aims at: all of them once, in the module's transaction (warm); each in a
    savepoint of its own, so one that cannot be made spoils nothing else."""

    def __init__(self, demo):
        from shuzheng.org import services as org

        self.demo = demo
        self.cli = org.Actor.cli()
        self.reviewer = demo.actor("reviewer")
        self.cache: dict = {}    # made in the module's transaction: they last the module
        self.scratch: dict = {}  # made inside a test: they go with its savepoint
        self.keys = {demo.org(k).code: k for k in
                     ("gov-services", "dingzhou-gov", "civil-affairs", OTHER_ORG, THIRD_ORG)}
        # The application-system actor: a system of civil affairs with a key.
        from shuzheng.org.models import ApplicationSystem

        self.system = ApplicationSystem.objects.create(code="mx-civil-affairs", name="矩阵系统civil",
                                                       organization=demo.org("civil-affairs"))
        _key, self.system_key = org.create_api_key(self.cli, self.system.code, "matrix", 30)

    def once(self, key, build):
        if key in self.cache:
            return self.cache[key]
        if key not in self.scratch:
            with transaction.atomic():
                self.scratch[key] = build()
        return self.scratch[key]

    def warm(self, rules) -> None:
        """Makes every object any rule aims at, for every actor and case, in the module's transaction: the
        tests then only read them (each request's savepoint undoes what it changes)."""
        for key, rule in rules.items():
            if key in ROUTES and rule.target:
                for actor in ACTORS:
                    for case in cases(rule, actor):
                        self.target(rule, actor, case)
        self.cache.update(self.scratch)
        self.scratch.clear()

    def org(self, key: str):
        return self.once(("org", key), lambda: self.demo.org(key))

    def org_of(self, case: str):
        return self.org(OTHER_ORG)

    # ---- organizations, users, systems ----

    def t_org(self, org, actor):
        return {"code": org.code, "third_org": self.org(THIRD_ORG).code}

    def t_new_org(self, org, actor):
        from shuzheng.core.validators import make_credit_code

        return {"new_code": make_credit_code("11", "130682", "77665544")}

    def user_in(self, org) -> str:
        def build():
            from shuzheng.org.models import User, UserRole

            user = User.objects.create(username=f"mx-{self.keys[org.code]}", full_name="矩阵用户", organization=org)
            user.set_unusable_password()
            user.save()
            UserRole.objects.create(user=user, role="staff", organization=org, granted_by="matrix")
            return user.username
        return self.once(("user", org.pk), build)

    def t_user(self, org, actor):
        return {"username": self.user_in(org), "role": "staff"}

    def system_in(self, org) -> str:
        if org.pk == self.system.organization_id:
            return self.system.code
        from shuzheng.org.models import ApplicationSystem

        return self.once(("system", org.pk), lambda: ApplicationSystem.objects.create(
            code=f"mx-{self.keys[org.code]}", name=f"矩阵系统{self.keys[org.code]}", organization=org).code)

    def t_system(self, org, actor):
        return {"code": self.system_in(org)}

    def t_key(self, org, actor):
        from shuzheng.org import services as org_services

        code = self.system_in(org)
        key, _raw = self.once(("key", org.pk), lambda: org_services.create_api_key(self.cli, code, "mx-target", 10))
        return {"code": code, "key_id": key.id}

    def t_access_grant(self, org, actor):
        from shuzheng.org.models import AccessGrant

        grant = self.once(("access_grant", org.pk), lambda: AccessGrant.objects.create(
            owner=org, grantee=self.org(THIRD_ORG), permission="user.view", reason="矩阵", granted_by="matrix"))
        return {"grant_id": grant.id}

    # ---- catalog ----

    def resource(self, org, state: str, mount: tuple[str, str] | None = None):
        def build():
            from shuzheng.catalog import services as catalog
            from shuzheng.catalog.models import Resource

            tag = uuid.uuid4().hex[:8]
            data = {**_resource_body({"tag": tag}), "category": "101001", "provider": org.code}
            resource = catalog.create_resource(self.cli, data)
            if state != "draft":
                catalog.submit(self.cli, resource.code)
            if state in ("approved", "published"):
                catalog.review(self.reviewer, resource.code, "approve", "矩阵")
            if state == "published":
                catalog.publish(self.reviewer, resource.code)
                if mount:
                    kind, target = mount
                    catalog.mount(self.cli, resource.code, kind, target.format(tag=tag))
            return Resource.objects.select_related("provider", "published").get(pk=resource.pk)
        return self.once(("resource", org.pk, state, mount), build)

    def t_draft(self, org, actor):
        return {"code": url_code(self.resource(org, "draft").code), "number": 1, "tag": "d"}

    def t_submitted(self, org, actor):
        return {"code": url_code(self.resource(org, "submitted").code)}

    def t_approved(self, org, actor):
        return {"code": url_code(self.resource(org, "approved").code)}

    def t_published(self, org, actor):
        return {"code": url_code(self.resource(org, "published").code)}

    def table(self, org):
        return self.resource(org, "published", ("table", "mx.t{tag}"))

    def t_table(self, org, actor):
        return {"code": url_code(self.table(org).code)}

    def t_api_mounted(self, org, actor):
        return {"code": url_code(self.resource(org, "published", ("api", "https://example.org/mx/{tag}")).code)}

    def t_element(self, org, actor):
        from shuzheng.catalog.models import DataElement

        e = DataElement.objects.select_related("code_table").get(identifier="DE00002")
        return {"identifier": e.identifier, "element_body": {
            "name": e.name, "definition": e.definition, "data_type": e.data_type, "format": e.format,
            "value_domain": e.value_domain, "code_table": e.code_table.code if e.code_table_id else None,
            "level": e.level, "subject": getattr(e, "subject", "other") or "other"}}

    def t_ckan_action(self, org, actor):
        return {"action": "package_search"}

    def t_rdf_suffix(self, org, actor):
        return {"suffix": "ttl"}

    def t_draft_document(self, org, actor):
        return {"code": url_code(self.resource(org, "draft").code) + ".ttl"}

    # ---- harvest sources (no organization: the platform office's) ----

    def t_harvest_source(self, org, actor):
        def build():
            from shuzheng.harvest.models import HarvestSource
            from shuzheng.org.models import Organization

            # Port 9 (discard) on loopback is closed here: a run fails at once and says so.
            return HarvestSource.objects.create(name="矩阵源", kind="dcat", url="http://127.0.0.1:9/catalog.ttl",
                                                organization=Organization.objects.get(kind="court"), timeout_s=1)
        return {"name": self.once("harvest_source", build).name}

    def t_new_harvest_source(self, org, actor):
        from shuzheng.org.models import Organization

        body = {"name": f"矩阵新源{uuid.uuid4().hex[:6]}", "kind": "dcat", "url": "https://example.org/c.ttl",
                "organization": Organization.objects.get(kind="court").code, "interval_minutes": 60}
        return {"source_body": body, "source_form": body}

    def t_code_table(self, org, actor):
        from shuzheng.catalog.models import CodeTable

        return {"code": CodeTable.objects.order_by("code").values_list("code", flat=True).first()}

    def t_alert(self, org, actor):
        from shuzheng.security.models import Alert

        def build():
            now = timezone.now()
            return Alert.objects.create(rule="failed_logins", severity="high", subject_kind="user", subject="mx",
                                        summary="矩阵", first_seen=now, last_seen=now)
        return {"alert_id": self.once("alert", build).id}

    # ---- the data plane ----

    def t_load(self, org, actor):
        def build():
            from shuzheng.ingest import pipeline
            from shuzheng.ingest.models import Load

            sample = Load.objects.filter(quarantined__gt=0).order_by("created_at").first()
            load = Load.objects.create(resource=self.table(org), organization=org, started_by="matrix",
                                       mode="append", kind="file", state=Load.State.COMMITTED, rows_read=1,
                                       quarantined=1, finished_at=timezone.now())
            path = pipeline.quarantine_path(load.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pipeline.quarantine_path(sample.id), path)
            return load
        return {"load_id": self.once(("load", org.pk), build).id, "fmt": "csv"}

    def t_rule(self, org, actor):
        from shuzheng.quality.models import Rule as QualityRule

        table = self.table(org)
        rule = self.once(("rule", org.pk), lambda: QualityRule.objects.create(
            resource=table, kind="not_null", items=["姓名"], description="矩阵"))
        return {"code": url_code(table.code), "rule_id": rule.id}

    def t_source(self, org, actor):
        from shuzheng.ingest.models import Source

        table = self.table(org)
        source = self.once(("source", org.pk), lambda: Source.objects.create(
            resource=table, name="矩阵", kind="derived", config={"query": "SELECT 1 AS x"}))
        return {"code": url_code(table.code), "source_id": source.id}

    # ---- correction tickets ----

    def ticket(self, org, state: str, raised_by: str, raised_by_org):
        def build():
            from shuzheng.quality.models import CorrectionTicket

            now = timezone.now()
            closed = state in ("resolved", "rejected")
            return CorrectionTicket.objects.create(
                number="JCMX" + uuid.uuid4().hex[:10].upper(), resource=self.resource(org, "published"),
                provider=org, record_key={"公民身份号码": "130682199001010012"}, item="姓名", description="矩阵",
                raised_by=raised_by, raised_by_org=raised_by_org, state=state, due_at=now + dt.timedelta(days=5),
                resolution="已答复" if closed else "", resolved_at=now if closed else None)
        return self.once(("ticket", org.pk, state, raised_by), build)

    def _stranger(self):
        return "officer-market-regulation", self.org(THIRD_ORG)

    def t_ticket_open(self, org, actor):
        return {"number": self.ticket(org, "open", *self._stranger()).number}

    def t_ticket_accepted(self, org, actor):
        return {"number": self.ticket(org, "accepted", *self._stranger()).number}

    def t_ticket_closed(self, org, actor_label):
        """Own: a ticket the actor raised (on its organization's resource); other: someone else's."""
        if org.code != self.org(OTHER_ORG).code and actor_label not in ("anonymous",):
            if actor_label == "system":
                name, raiser_org = f"system:{self.system.code}", self.system.organization
            else:
                user = self.demo.user(ROLE_ACCOUNTS[actor_label])
                name, raiser_org = user.username, user.organization
            return {"number": self.ticket(org, "resolved", name, raiser_org).number}
        return {"number": self.ticket(org, "resolved", *self._stranger()).number}

    # ---- sharing ----

    def application(self, consumer, provider, state: str = "provider"):
        def build():
            from shuzheng.org.models import ApplicationSystem
            from shuzheng.sharing.models import Application

            resource = self.resource(provider, "published", ("api", "https://example.org/mx/{tag}"))
            now = timezone.now()
            return Application.objects.create(
                number="GXMX" + uuid.uuid4().hex[:10].upper(), resource=resource, version=resource.published,
                system=ApplicationSystem.objects.get(code=self.system_in(consumer)), consumer=consumer,
                provider=provider, applicant="matrix", purpose="矩阵", legal_basis="矩阵", items=["姓名"],
                method="interface", period_end=timezone.localdate() + dt.timedelta(days=30), state=state,
                terms={"items": ["姓名"]}, due_at=now + dt.timedelta(days=5),
                decided_at=now if state == "approved" else None)
        return self.once(("application", consumer.pk, provider.pk, state), build)

    def t_application_consumer(self, org, actor):
        return {"number": self.application(org, self.org(THIRD_ORG)).number}

    def t_application_provider(self, org, actor):
        return {"number": self.application(self.org(THIRD_ORG), org).number}

    def grant(self, consumer, provider):
        def build():
            from shuzheng.sharing.models import Grant

            application = self.application(consumer, provider, "approved")
            return Grant.objects.create(application=application, system=application.system,
                                        resource=application.resource, consumer=consumer, provider=provider,
                                        items=["姓名"], masks={"姓名": {"kind": "clear"}}, methods=["interface"],
                                        expires_at=timezone.now() + dt.timedelta(days=30))
        return self.once(("grant", consumer.pk, provider.pk), build)

    def t_grant_consumer(self, org, actor):
        return {"grant_id": str(self.grant(org, self.org(THIRD_ORG)).id)}

    def subscription(self, org):
        from shuzheng.sharing.models import Subscription

        grant = self.grant(org, self.org(THIRD_ORG))
        return self.once(("subscription", org.pk), lambda: Subscription.objects.create(
            grant=grant, url="https://example.org/mx-hook", secret="matrix", created_by="matrix"))

    def t_subscription(self, org, actor):
        return {"subscription_id": str(self.subscription(org).id)}

    def t_delivery(self, org, actor):
        from shuzheng.sharing.models import Delivery

        sub = self.subscription(org)
        delivery = self.once(("delivery", org.pk), lambda: Delivery.objects.create(
            subscription=sub, event_id="mx-event", payload={}, state="failed"))
        return {"delivery_id": str(delivery.id)}

    def t_apply(self, org, actor):
        resource = self.resource(self.org(THIRD_ORG), "published", ("api", "https://example.org/mx/{tag}"))
        return {"application_body": {
            "resource": resource.code, "system": self.system_in(org), "purpose": "授权矩阵", "legal_basis": "授权矩阵",
            "items": ["姓名"], "method": "interface",
            "period_end": (timezone.localdate() + dt.timedelta(days=30)).isoformat()}}

    # ---- the gateway: own = the calling system's live grant, other = a resource it holds none on ----

    # The calling system holds an interface grant on the enterprise register and a table grant (exports) on
    # the elderly allowance roll; it holds none on the household register.
    GATEWAY_RESOURCES = {"interface": "企业登记基本信息", "table": "高龄津贴发放信息"}

    def gateway_grant(self, method: str):
        def build():
            from shuzheng.catalog.models import Resource
            from shuzheng.sharing import services as sharing

            resource = Resource.objects.select_related("published").get(
                published__name=self.GATEWAY_RESOURCES[method])
            items = list(resource.published.items.order_by("position").values_list("name", flat=True))
            application = sharing.apply(self.cli, {
                "resource": resource.code, "system": self.system.code, "purpose": "授权矩阵", "legal_basis": "授权矩阵",
                "items": items, "method": method,
                "period_end": (timezone.localdate() + dt.timedelta(days=30)).isoformat()})
            for _step in range(2):  # the provider, then (important data) the platform office
                if application.state == "approved":
                    break
                application = sharing.decide(self.cli, application.number, {"decision": "approve"})
            assert application.state == "approved", application.state
            return application.grant
        return self.once(("gateway_grant", method), build)

    def _ungranted(self):
        from shuzheng.catalog.models import Resource

        return Resource.objects.get(published__name="定州市户籍人口基本信息")

    def t_gateway_resource(self, org, actor, case):
        if case == "own":
            return {"code": url_code(self.gateway_grant("interface").resource.code)}
        return {"code": url_code(self._ungranted().code)}

    def t_gateway_export_resource(self, org, actor, case):
        if case == "own":
            return {"code": url_code(self.gateway_grant("table").resource.code)}
        return {"code": url_code(self._ungranted().code)}

    def t_gateway_sql(self, org, actor, case):
        if case == "own":
            return {"sql": f"SELECT count(*) AS n FROM {self.gateway_grant('interface').resource.mount_target}"}
        return {"sql": f"SELECT count(*) AS n FROM {self._ungranted().mount_target}"}

    def export(self, grant):
        def build():
            from shuzheng.sharing import gateway
            from shuzheng.sharing.models import Export

            export = Export.objects.create(grant=grant, format="parquet", state="ready", seed="00" * 16,
                                           snapshot_id=1, requested_by="matrix", rows=0, bytes=4,
                                           finished_at=timezone.now(),
                                           expires_at=timezone.now() + dt.timedelta(hours=1))
            path = gateway.export_path(export)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"PAR1")
            return export
        return self.once(("export", grant.pk), build)

    def t_gateway_export(self, org, actor, case):
        if case == "own":
            return {"export_id": str(self.export(self.gateway_grant("table")).id)}
        # another system's export of the same resource
        return {"export_id": str(self.export(self.grant(self.org(OTHER_ORG), self.org(THIRD_ORG))).id)}

    def t_gateway_link(self, org, actor, case):
        from shuzheng.sharing import gateway

        if case == "own":
            return {"token": gateway.download_token(self.export(self.gateway_grant("table")))}
        return {"token": "bm90LWEtdG9rZW4:1tQx:bad-signature"}

    def target(self, rule: Rule, actor: str, case: str) -> dict:
        values = {"fmt": "csv", "number": 1}
        if rule.target is None:
            return values
        build = getattr(self, f"t_{rule.target}")
        if rule.target in GATEWAY_TARGETS:
            return {**values, **build(None, actor, case)}
        if case == "other" or actor == "anonymous":
            org = self.org_of("other")
        elif actor == "system":
            org = self.system.organization
        else:
            org = self.demo.user(ROLE_ACCOUNTS[actor]).organization
        return {**values, **build(org, actor)}


# --------------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------------


def _uploads(data: dict) -> dict:
    return {k: SimpleUploadedFile(*v) if isinstance(v, tuple) else v for k, v in data.items()}


def send(client: Client, route: Route, rule: Rule, values: dict, headers: dict):
    url = fill(route.path, values)
    method = route.method or rule.method
    body = rule.body(values) if callable(rule.body) else rule.body
    if method == "GET":
        return client.get(url, rule.query, headers=headers)
    if route.kind == "page" or rule.multipart:
        assert method == "POST", route
        return client.post(url, _uploads(body or {}), headers=headers)
    url += "?" + urlencode(rule.query) if rule.query else ""
    if body is None and method == "DELETE":
        return client.delete(url, headers=headers)
    return client.generic(method, url, json.dumps(body if body is not None else {}, default=str),
                          content_type="application/json", headers=headers)


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker):
    """One world and one signed-in client per actor for the whole module, in a transaction rolled back at
    its end (the demo is loaded once per test database by conftest)."""
    import shuzheng.ingest.tasks as ingest_tasks

    from django.template import Template
    from django.test.utils import _TestState

    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch:
        # Queued work would outlive the rolled-back savepoints: nothing may leave the transaction.
        patch.setattr(ingest_tasks, "run_source", lambda *a, **k: None)
        # The matrix reads statuses, never response.context: skip the test runner's template instrumentation
        # (a signal and a context copy per template rendered). setup_test_environment() keeps the real
        # Template._render in _TestState.saved_data.
        saved = getattr(_TestState, "saved_data", None)
        if saved is not None and hasattr(saved, "template_render"):
            patch.setattr(Template, "_render", saved.template_render)
        with transaction.atomic():
            world = World(Demo())
            world.warm(RULES)
            by_actor = {}
            for actor in ACTORS:
                client = Client()
                if actor in ROLE_ACCOUNTS:
                    client.force_login(world.demo.user(ROLE_ACCOUNTS[actor]))
                by_actor[actor] = client
            yield world, by_actor
            transaction.set_rollback(True)


def run_route(world: World, by_actor: dict, route: Route, rule: Rule) -> tuple[list[str], int]:
    """Every actor × case on one route; returns the failures (one line each) and the number of checks."""
    failures, checked = [], 0
    for actor in ACTORS:
        client = by_actor[actor]
        headers = {"Authorization": f"Bearer {world.system_key}"} if actor == "system" else {}
        for case in cases(rule, actor):
            outcome = expected(rule, route, actor, case)
            if outcome == SKIP:
                continue
            values = world.target(rule, actor, case)
            cookies = SimpleCookie(client.cookies.output(header="", sep=";"))
            status, location, error = 0, "", ""
            with transaction.atomic():
                try:
                    response = send(client, route, rule, values, headers)
                    status, location = response.status_code, response.get("Location", "")
                except Exception as exc:  # noqa: BLE001 - a server error: reported with the request
                    import traceback

                    status, error = 500, "".join(traceback.format_exception(exc))[-3000:]
                transaction.set_rollback(True)
            client.cookies = cookies
            checked += 1
            if not judge(outcome, status, location, rule):
                failures.append(f"{actor:16} {case:5} expected {outcome:5} got {status} {location} "
                                f"[{fill(route.path, values)}]" + (f"\n{error}" if error else ""))
    return failures, checked


@pytest.mark.parametrize("key", sorted(ROUTES))
def test_authorization(key, matrix):
    rule = RULES.get(key)
    if rule is None:
        pytest.fail(f"no rule for {key} in tests/authz_rules.py")
    world, by_actor = matrix
    world.scratch.clear()  # what the last test made went with its savepoint
    failures, checked = run_route(world, by_actor, ROUTES[key], rule)
    assert checked
    assert not failures, f"{key} ({rule.access}):\n" + "\n".join(failures)
