"""`shuzheng demo load`: the Dingzhou demo. Deterministic (same codes and accounts every time) and
idempotent (a second run changes nothing). Everything goes through the services, so it is audited."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from shuzheng.catalog.models import DataElement, Resource
from shuzheng.core.crypto import sm3
from shuzheng.core.validators import make_credit_code
from shuzheng.demo import catalog
from shuzheng.demo import data as governed_data
from shuzheng.org import services
from shuzheng.org.models import Organization, Region, User, UserRole
from shuzheng.org.roles import Role

DATA = Path(__file__).resolve().parent.parent / "org" / "data"
DEMO_PASSWORD = "Dingzhou#2026"

# One demo account per role; data officers are added for every department and town below.
ROLE_ACCOUNTS = [
    ("admin", "平台管理员", Role.PLATFORM_ADMIN, "gov-services"),
    ("secadmin", "安全管理员", Role.SECURITY_ADMIN, "gov-services"),
    ("auditor", "审计管理员", Role.AUDIT_ADMIN, "gov-services"),
    ("reviewer", "目录审核员", Role.CATALOG_REVIEWER, "gov-services"),
    ("leader", "领导小组成员", Role.LEADING_GROUP, "dingzhou-gov"),
    ("steward", "数据管理员", Role.DATA_STEWARD, "civil-affairs"),
    ("developer", "应用开发人员", Role.APP_DEVELOPER, "civil-affairs"),
    ("staff", "工作人员", Role.STAFF, "civil-affairs"),
]
OFFICER_KINDS = {Organization.Kind.DEPARTMENT, Organization.Kind.TOWN, Organization.Kind.PLATFORM_OFFICE}


def demo_credit_code(key: str, region_code: str) -> str:
    """A valid GB 32100 code derived from the organization's key: stable across runs and machines.
    Registration authority 1/1 (机构编制, 机关). These are synthetic, not the bodies' real codes."""
    digest = int.from_bytes(sm3(key.encode())[:8], "big")
    return make_credit_code("11", region_code[:6], f"{digest % 10**8:08d}")


def _load(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def load_demo(progress: bool = False, data: bool = True) -> dict:
    """Regions, organizations, accounts, the catalog and (unless `data` is False) the generated warehouse data
    loaded through the pipeline."""
    actor = services.Actor.cli()
    regions = _load("regions.json")
    orgs = _load("organizations.json")
    codes: dict[str, str] = {}

    def say(text):
        if progress:
            print(text, flush=True)

    say(f"regions: {len(regions)}")
    with transaction.atomic():
        for r in regions:
            services.save_region(actor, r["code"], r["name"], r["level"], r["parent"])

    say(f"organizations: {len(orgs)}")
    with transaction.atomic():
        for o in orgs:
            code = codes[o["key"]] = demo_credit_code(o["key"], o["region"])
            data = {
                "code": code,
                "name": o["name"],
                "short_name": o.get("short_name", ""),
                "name_en": o.get("name_en", ""),
                "kind": o["kind"],
                "parent": codes[o["parent"]] if o.get("parent") else None,
                "region": o["region"],
            }
            if Organization.objects.filter(code=code).exists():
                services.update_organization(actor, code, data)
            else:
                services.create_organization(actor, data)

    accounts = [(u, n, role, codes[key]) for u, n, role, key in ROLE_ACCOUNTS if key in codes]
    for o in orgs:
        if o["kind"] in OFFICER_KINDS:
            accounts.append((f"officer-{o['key']}"[:40], f"{o.get('short_name') or o['name']}数据官",
                             Role.DATA_OFFICER, codes[o["key"]]))
    say(f"accounts: {len(accounts)}")
    for username, full_name, role, org_code in accounts:
        with transaction.atomic():
            if not User.objects.filter(username=username).exists():
                services.create_user(actor, {"username": username, "full_name": full_name,
                                             "organization": org_code, "password": DEMO_PASSWORD})
            if not UserRole.objects.filter(user__username=username, role=role).exists():
                services.assign_role(actor, username, role)

    say("catalog: code tables, classification, data elements")
    catalog.load_reference(actor)
    say("catalog: resources")
    catalog.load_resources(codes, say)
    if data:
        say("data: quality rules and generated Dingzhou data through the load pipeline")
        governed_data.load_data(catalog.REVIEWER, say)

    shown = [a for a in accounts if a[2] != Role.DATA_OFFICER][:len(ROLE_ACCOUNTS)]
    shown += [a for a in accounts if a[2] == Role.DATA_OFFICER][:2]
    name_of = dict(Organization.objects.values_list("code", "name"))
    return {
        "regions": Region.objects.count(),
        "organizations": Organization.objects.count(),
        "users": User.objects.count(),
        "resources": Resource.objects.count(),
        "data_elements": DataElement.objects.count(),
        "password": DEMO_PASSWORD,
        "accounts": [{"username": u, "role": str(r), "organization": name_of.get(c, c)} for u, _n, r, c in shown]
        + [{"username": "officer-<key>", "role": "data_officer",
            "organization": f"one per department and town ({sum(1 for a in accounts if a[2] == Role.DATA_OFFICER)})"}],
    }
