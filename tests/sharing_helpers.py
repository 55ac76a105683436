"""What the sharing tests share: an application system with a key, a grant obtained through the real workflow,
and calls on the gateway over Django's test client (the same views the server runs)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from django.utils import timezone

from shuzheng.org import services as org
from shuzheng.sharing import services

PEOPLE = "101001000/000001"  # the demo's household register: conditional, important, 100,000 rows
PEOPLE_URL = PEOPLE.replace("/", "-")


def system(demo, org_key: str = "civil-affairs", officer: str = "officer-civil-affairs") -> tuple[str, str]:
    """(system code, API key) of a new application system of `org_key`."""
    actor = demo.actor(officer)
    code = f"sys-{uuid.uuid4().hex[:8]}"
    org.create_system(actor, {"code": code, "name": f"测试系统{code[-4:]}", "organization": demo.org(org_key).code})
    _key, raw = org.create_api_key(actor, code)
    return code, raw


def application_data(system_code: str, resource: str = PEOPLE, **overrides) -> dict:
    data = {"resource": resource, "system": system_code, "purpose": "高龄津贴资格审核，核验申请人身份。",
            "legal_basis": "《河北省老年人权益保障条例》第二十条", "items": ["公民身份号码", "姓名", "性别", "出生日期", "户籍地址"],
            "clear_items": [], "row_filter": [], "method": "interface",
            "period_end": (timezone.localdate() + dt.timedelta(days=365)).isoformat()}
    data.update(overrides)
    return data


def granted(demo, system_code: str, provider_terms: dict | None = None, office_terms: dict | None = None,
            applicant: str = "officer-civil-affairs", **overrides):
    """A grant on the people resource through the whole conditional workflow: provider, then office."""
    application = services.apply(demo.actor(applicant), application_data(system_code, **overrides))
    services.decide(demo.actor("officer-public-security"), application.number,
                    {"decision": "approve", **(provider_terms or {})})
    application = services.decide(demo.actor("reviewer"), application.number,
                                  {"decision": "approve", **(office_terms or {})})
    return application.grant


def sample_people(demo, n: int = 5) -> list[dict]:
    """Real rows of the people resource in clear: its warehouse snapshot opened with the table's data keys
    (the provider's own preview shows the encrypted items as tokens)."""
    from shuzheng.catalog.models import Resource
    from shuzheng.security import fieldcrypt
    from shuzheng.warehouse import lake

    resource = Resource.objects.select_related("published").get(code=PEOPLE)
    items = list(resource.published.items.order_by("position"))
    table = lake.open_table(resource.mount_target)
    con = lake.duck()
    try:
        lake.view(con, "t", table, items, table.current_snapshot(), cipher=fieldcrypt.cipher_for(resource, items))
        result = con.execute(f"SELECT * FROM t LIMIT {int(n)}")
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]
    finally:
        con.close()


def call(client, key: str, path: str, body=None, method: str = "post", **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    headers["HTTP_ACCEPT_LANGUAGE"] = "en"  # the messages the tests read
    headers.update(extra)
    if method == "get":
        return client.get(path, body or {}, **headers)
    return client.post(path, json.dumps(body) if body is not None else "", content_type="application/json",
                       **headers)


def verify(client, key: str, candidates: dict, code: str = PEOPLE_URL, **extra):
    return call(client, key, f"/api/v1/share/{code}/verify", {"candidates": candidates}, **extra)


def records(client, key: str, params: dict | None = None, code: str = PEOPLE_URL, **extra):
    return call(client, key, f"/api/v1/share/{code}/records", params or {}, method="get", **extra)
