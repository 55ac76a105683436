"""The demo catalog: the national code tables, the guide's classification, the data-element registry and
about 300 Dingzhou resources taken through the real lifecycle by the demo accounts (the provider's data
officer registers and submits, the platform office's reviewer approves and publishes, the officer mounts).
Idempotent: reference data is saved only when it differs, and a resource is registered once per provider
and name."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from shuzheng.catalog import services
from shuzheng.catalog.models import Resource, Status
from shuzheng.org.models import Organization, User
from shuzheng.org.services import Actor

DATA = Path(__file__).resolve().parent.parent / "catalog" / "data"
ORG_DATA = Path(__file__).resolve().parent.parent / "org" / "data"
REVIEWER = "reviewer"


def _load(path: Path) -> list:
    return json.loads(path.read_text(encoding="utf-8"))


def load_reference(actor: Actor) -> None:
    towns = [{"code": r["code"], "name": r["name"], "parent": r["parent"]}
             for r in _load(ORG_DATA / "regions.json") if r["level"] == "town"]
    with transaction.atomic():
        for table in _load(DATA / "code_tables.json"):
            if table["code"] == "GB_T_2260":
                table = {**table, "values": table["values"] + towns}
            services.save_code_table(actor, table)
        for category in _load(DATA / "categories.json"):
            services.save_category(actor, category["code"], category["name"])
        for element in _load(DATA / "elements.json"):
            services.save_element(actor, element)


def load_resources(org_codes: dict[str, str], say=lambda text: None) -> int:
    path = DATA / "demo_resources.json"
    if not path.exists():
        return 0
    entries = _load(path)
    reviewer = Actor(user=User.objects.get(username=REVIEWER), ip="127.0.0.1")
    officers = {}
    keys: dict[str, str] = {}  # demo key -> resource code
    existing = {(p, n): c for c, p, n in Resource.objects.values_list("code", "provider__code", "versions__name")}
    # Published sources first, so later entries can relate to them and carry their elements as copies.
    entries.sort(key=lambda e: (e["status"] != "published", not any(i.get("authoritative") for i in e["items"])))
    for n, entry in enumerate(entries):
        provider = org_codes[entry["provider"]]
        code = existing.get((provider, entry["name"]))
        if code is not None:
            keys[entry["key"]] = code
            continue
        if provider not in officers:
            org = Organization.objects.get(code=provider)
            officers[provider] = Actor(user=User.objects.get(organization=org, roles__role="data_officer"),
                                       ip="127.0.0.1")
        officer = officers[provider]
        data = _resource_data(entry, org_codes, keys)
        with transaction.atomic():
            resource = services.create_resource(officer, data)
            keys[entry["key"]] = resource.code
            _advance(resource.code, entry, officer, reviewer)
        if n % 50 == 49:
            say(f"  resources: {n + 1}/{len(entries)}")
    return len(entries)


def _advance(code: str, entry: dict, officer: Actor, reviewer: Actor) -> None:
    status = entry["status"]
    if status == Status.DRAFT:
        return
    services.submit(officer, code)
    if status == Status.SUBMITTED:
        return
    if status == Status.RETURNED:
        services.review(reviewer, code, "return", "请补充信息项的数据元引用和共享条件。")
        return
    services.review(reviewer, code, "approve", "符合目录编制要求。")
    if status == Status.APPROVED:
        return
    services.publish(reviewer, code)
    if entry.get("mount"):
        services.mount(officer, code, entry["mount"]["kind"], entry["mount"]["target"])
    if status == Status.DEPRECATED:
        services.deprecate(officer, code, "业务系统停用，数据已并入新的资源。")


def _resource_data(entry: dict, org_codes: dict[str, str], keys: dict[str, str]) -> dict:
    data = {k: entry.get(k) for k in (
        "name", "summary", "format", "sharing_type", "sharing_conditions", "sharing_basis", "sharing_methods",
        "open_type", "open_conditions", "update_cycle", "level", "keywords", "spatial_coverage",
        "time_coverage_start", "time_coverage_end")}
    data["domestic_only"] = entry.get("domestic_only", False)
    data["category"] = entry["category"]
    data["provider"] = org_codes[entry["provider"]]
    data["owner"] = org_codes.get(entry.get("owner") or entry["provider"])
    data["manager"] = org_codes.get(entry.get("manager") or entry["provider"])
    data["related_codes"] = [keys[k] for k in entry.get("related") or [] if k in keys]
    data["items"] = [{"name": i["name"], "data_type": i.get("type"), "length": i.get("length"),
                      "nullable": i.get("nullable", True), "is_key": i.get("key", False), "element": i.get("element"),
                      "level": i.get("level"), "authoritative": i.get("authoritative", False),
                      "subject": i.get("subject"), "sensitive_personal": i.get("sensitive", False),
                      "domestic_only": i.get("domestic_only", False)}
                     for i in entry["items"]]
    return data
