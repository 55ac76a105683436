"""Discovery (S1): every load samples its columns for ID numbers, credit codes, bank cards, mobile numbers,
e-mail addresses, vehicle plates, names and addresses; a column that shows more than its item declares is
flagged, shown on the load and the resource, and holds back submitting, publishing and opening the resource
(422 naming the item field, audited) until a version declares the item at least as high. The load itself
is never refused. Real CSV files through the real pipeline; real HTTP through Django's test client."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pytest
from data_helpers import citizen_id, table_resource, write_csv

from shuzheng.audit.models import AuditRecord
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import DiscoveryFinding, Resource
from shuzheng.core.errors import ValidationFailed
from shuzheng.core.validators import is_citizen_id, is_credit_code, make_credit_code
from shuzheng.ingest import services as ingest
from shuzheng.security import discovery

OFFICER = "officer-public-security"
REVIEWER = "reviewer"


def luhn_card(rng: random.Random, length: int = 16) -> str:
    digits = [6, 2, 2, 2] + [rng.randint(0, 9) for _ in range(length - 5)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randint(0, 10**9 - 1):09d}"


def plate(rng: random.Random) -> str:
    return f"冀F{rng.choice('ABCDEHJK')}{rng.randint(0, 9999):04d}"


NAMES = ["王伟", "李娜", "张秀英", "刘强", "陈静", "杨洋", "赵敏", "黄磊", "周杰", "吴芳", "徐丽", "孙军", "马超",
         "朱琳", "胡斌", "郭靖", "何平", "高峰", "林红", "欧阳娜娜", "司马光明", "罗刚", "郑爽", "梁晨", "谢霆"]


def items_of(*specs) -> list[dict]:
    """Items without data elements: (name, subject, level[, sensitive]); the first is the key."""
    out = [{"name": "编号", "data_type": "string", "is_key": True, "nullable": False}]
    for spec in specs:
        name, subject, level, *sensitive = spec
        out.append({"name": name, "data_type": "string", "subject": subject, "level": level,
                    "sensitive_personal": bool(sensitive and sensitive[0])})
    return out


def load(demo, resource, tmp_path, header, rows, name="data.csv"):
    return ingest.ingest_file(demo.actor(OFFICER), resource.code, write_csv(tmp_path / name, rows, header=header),
                              mode="append")


def fields_of(exc: ValidationFailed) -> set[str]:
    return {e.field for e in exc.errors}


# ---- the detectors agree with the validators ----------------------------------------------------------


def test_the_sql_detectors_agree_with_the_python_validators():
    rng = random.Random(7)
    values = []
    for n in range(400):
        good = citizen_id(f"{rng.randint(1900, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", n,
                          rng.random() < 0.5)
        values += [good, good[:17] + rng.choice("0123456789X"), good[:10] + "1332" + good[14:],
                   good[:6] + "2999" + good[10:]]
        code = make_credit_code(rng.choice(["11", "91", "52"]), "130682", f"{rng.randint(0, 10**8 - 1):08d}")
        values += [code, code[:17] + rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY"), code.lower()]
    con = duckdb.connect()
    con.register("src", pa.table({"v": values}))
    exprs = discovery.expressions()
    rows = con.execute(f"SELECT v, {exprs['id_number']}, {exprs['credit_code']} FROM "
                       "(SELECT v, upper(v) AS u, v AS c FROM src)").fetchall()
    for v, as_id, as_code in rows:
        assert as_id == is_citizen_id(v), v
        assert as_code == is_credit_code(v), v


def test_every_kind_is_detected_and_a_sprinkling_is_not(demo, tmp_path):
    rng = random.Random(11)
    resource = table_resource(demo, items=items_of(
        ("卡号", "personal", "important"), ("手机", "personal", "general"), ("邮箱", "personal", "general"),
        ("车牌", "other", "general"), ("单位代码", "legal_entity", "general"), ("十分之一", "other", "general"),
        ("住址", "personal", "general"), ("联系人", "personal", "general"), ("状态", "other", "general")))
    header = ["编号", "卡号", "手机", "邮箱", "车牌", "单位代码", "十分之一", "住址", "联系人", "状态"]
    rows = []
    for i in range(60):
        rows.append([f"N{i}", luhn_card(rng, rng.choice([16, 19])), mobile(rng), f"user{i}@mail.dingzhou.gov.cn",
                     plate(rng), make_credit_code("91", "130682", f"{rng.randint(0, 10**8 - 1):08d}"),
                     citizen_id("19800101", i) if i % 10 == 0 else f"备注{i}",
                     f"河北省定州市北城区中山路{rng.randint(1, 300)}号{rng.randint(1, 9)}单元",
                     NAMES[i % len(NAMES)], rng.choice(["正常", "注销", "迁出"])])
    done = load(demo, resource, tmp_path, header, rows)
    assert done.state == "committed" and done.loaded == 60
    found = {f.item: f for f in DiscoveryFinding.objects.filter(load_id=done.id)}
    assert {name: f.kind for name, f in found.items()} == {
        "卡号": "bank_card", "手机": "mobile", "邮箱": "email", "车牌": "plate", "单位代码": "credit_code",
        "住址": "address", "联系人": "name"}
    assert all(f.sampled == 60 and f.share == 1.0 for f in found.values())
    # bank cards are sensitive personal information; plates belong to people; the rest is declared right
    assert {name for name, f in found.items() if f.flagged} == {"卡号", "车牌"}
    assert (found["卡号"].implied_sensitive, found["车牌"].implied_subject) == (True, "personal")


def test_id_numbers_declared_general_hold_back_publication_until_corrected(demo, tmp_path, client, english):
    officer, reviewer = demo.actor(OFFICER), demo.actor(REVIEWER)
    resource = table_resource(demo, items=items_of(("证件号", "other", "general"), ("备注", "other", "general")))
    # A second version is approved before any data arrives.
    catalog.start_revision(officer, resource.code)
    catalog.submit(officer, resource.code)
    catalog.review(reviewer, resource.code, "approve", "符合要求")
    rows = [[f"N{i}", citizen_id("19850315", i, i % 2 == 0), "—"] for i in range(40)]
    done = load(demo, resource, tmp_path, ["编号", "证件号", "备注"], rows)
    assert done.state == "committed" and done.loaded == 40  # the load itself is not refused
    (finding,) = DiscoveryFinding.objects.filter(load_id=done.id)
    assert (finding.item, finding.kind, finding.flagged, finding.resolved_at) == ("证件号", "id_number", True, None)
    assert (finding.implied_subject, finding.implied_level) == ("personal", "important")
    flagged = AuditRecord.objects.filter(action="catalog.discovery_flagged", object_id=str(resource.pk))
    assert flagged.count() == 1 and "证件号" in flagged.get().summary

    # The load's result, over HTTP: the API and the page.
    client.force_login(demo.user(OFFICER))
    body = client.get(f"/api/v1/data/loads/{done.id}").json()
    assert [(d["item"], d["kind"], d["flagged"]) for d in body["discovery"]] == [("证件号", "id_number", True)]
    page = client.get(f"/data/loads/{done.id}/").content.decode()
    assert "discovery-heading" in page and "证件号" in page and 'class="row-error"' in page
    detail = client.get(f"/api/v1/catalog/resources/{resource.code.replace('/', '-')}").json()
    assert [f["item"] for f in detail["findings"] if f["flagged"] and not f["resolved_at"]] == ["证件号"]
    assert "findings-heading" in client.get(f"/catalog/{resource.code.replace('/', '-')}/").content.decode()

    # Publishing the approved version is refused, naming the item's fields, and audited.
    client.force_login(demo.user(REVIEWER))
    url = f"/api/v1/catalog/resources/{resource.code.replace('/', '-')}"
    refused = client.post(f"{url}/publish", {"comment": ""}, content_type="application/json",
                          HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 422, refused.content
    assert {e["field"] for e in refused.json()["errors"]} == {"items.证件号.level", "items.证件号.subject"}
    assert "citizen ID numbers" in refused.json()["detail"] or "citizen ID numbers" in str(refused.json()["errors"])
    audit = AuditRecord.objects.filter(action="catalog.discovery_refused", object_id=str(resource.pk)).get()
    assert '"publish"' in audit.summary and "items.证件号.level" in audit.summary
    assert Resource.objects.get(pk=resource.pk).pending.status == "approved"

    # The reviewer returns it; the department corrects it; publishing now goes through and resolves it.
    catalog.review(reviewer, resource.code, "return", "数据显示证件号为公民身份号码，请按个人重要数据登记。")
    data = _draft_data(resource, {"证件号": {"subject": "personal", "level": "important"}})
    catalog.update_draft(officer, resource.code, data)
    catalog.submit(officer, resource.code)
    catalog.review(reviewer, resource.code, "approve", "已更正")
    published = client.post(f"{url}/publish", {"comment": ""}, content_type="application/json")
    assert published.status_code == 200, published.content
    finding.refresh_from_db()
    assert finding.resolved_at is not None and "2" in finding.resolution


def test_a_revision_declaring_too_little_cannot_be_submitted(demo, tmp_path, english):
    officer = demo.actor(OFFICER)
    resource = table_resource(demo, items=items_of(("证件号", "other", "general")))
    load(demo, resource, tmp_path, ["编号", "证件号"], [[f"N{i}", citizen_id("19700101", i)] for i in range(20)])
    catalog.start_revision(officer, resource.code)
    with pytest.raises(ValidationFailed) as caught:
        catalog.submit(officer, resource.code)
    assert fields_of(caught.value) == {"items.证件号.level", "items.证件号.subject"}
    assert AuditRecord.objects.filter(action="catalog.discovery_refused", object_id=str(resource.pk)).exists()
    # Declared as what it is (or higher): accepted.
    catalog.update_draft(officer, resource.code, _draft_data(resource, {"证件号": {"subject": "personal",
                                                                                 "level": "core"}}))
    catalog.submit(officer, resource.code)


def test_opening_a_resource_whose_data_shows_names_is_refused_until_declared(demo, tmp_path, english):
    officer = demo.actor(OFFICER)
    resource = table_resource(demo, items=items_of(("联系人", "other", "general")))
    load(demo, resource, tmp_path, ["编号", "联系人"], [[f"N{i}", NAMES[i % len(NAMES)]] for i in range(50)])
    catalog.start_revision(officer, resource.code)
    opened = _draft_data(resource, {}, open_type="open")
    with pytest.raises(ValidationFailed) as caught:
        catalog.update_draft(officer, resource.code, opened)
    assert fields_of(caught.value) == {"items.联系人.subject"}
    refusal = AuditRecord.objects.filter(action="catalog.discovery_refused", object_id=str(resource.pk)).get()
    assert '"open"' in refusal.summary
    # Closed, the same draft saves (only opening and publishing are held back).
    catalog.update_draft(officer, resource.code, _draft_data(resource, {}))
    version = catalog.update_draft(officer, resource.code, _draft_data(
        resource, {"联系人": {"subject": "personal"}}, open_type="open"))
    assert version.open_type == "open"


def test_the_demo_loads_nothing_that_discovery_flags(db):
    register = Resource.objects.get(published__name="定州市户籍人口基本信息")
    found = {f.item: f.kind for f in DiscoveryFinding.objects.filter(resource=register)}
    assert found.get("公民身份号码") == "id_number" and found.get("姓名") == "name"
    assert found.get("户籍地址") == "address"
    enterprises = Resource.objects.get(published__name="企业登记基本信息")
    assert {f.item: f.kind for f in DiscoveryFinding.objects.filter(resource=enterprises)}.get(
        "统一社会信用代码") == "credit_code"
    demo_codes = Resource.objects.filter(published__name__in=["定州市户籍人口基本信息", "企业登记基本信息",
                                                              "高龄津贴发放信息"])
    assert not DiscoveryFinding.objects.filter(resource__in=demo_codes, flagged=True).exists()


def _draft_data(resource: Resource, changes: dict, **overrides) -> dict:
    """The pending version as the service's input, with item changes by name."""
    resource = Resource.objects.select_related("pending", "provider").get(pk=resource.pk)
    version = resource.pending
    data = {name: getattr(version, name) for name in (
        "name", "summary", "format", "sharing_type", "sharing_conditions", "sharing_basis", "sharing_methods",
        "open_type", "open_conditions", "update_cycle", "keywords", "spatial_coverage")}
    items = []
    for item in version.items.order_by("position"):
        row = {"name": item.name, "data_type": item.data_type, "length": item.length, "nullable": item.nullable,
               "is_key": item.is_key, "level": item.level, "subject": item.subject,
               "sensitive_personal": item.sensitive_personal}
        row.update(changes.get(item.name, {}))
        items.append(row)
    data.update(items=items, **overrides)
    return data
