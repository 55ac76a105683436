"""Classification and grading (S1): the policy file (its validation, its override, the rules it drives:
default masks, the platform office, encryption at rest), the data category and sensitive-personal flags of
items and their rules (就高从严 included), and those fields carried through the API, the pages, the workbook,
new versions and the demo."""

from __future__ import annotations

import io
import json
import uuid
from types import SimpleNamespace

import pytest
from catalog_helpers import marker, resource_data
from openpyxl import load_workbook
from sharing_helpers import application_data, system

from shuzheng.catalog import excel
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import DataItem, Resource
from shuzheng.core.errors import ValidationFailed
from shuzheng.security import policy
from shuzheng.sharing import masks
from shuzheng.sharing import services as sharing

OFFICER = "officer-public-security"


def fields_of(exc: ValidationFailed) -> dict[str, str]:
    return {e.field: str(e.message) for e in exc.errors}


@pytest.fixture
def override(tmp_path, monkeypatch):
    """Writes SHUZHENG_HOME/security-policy.json's stand-in (the override file is looked up through
    policy.override_path, pointed here so that parallel tests do not see each other's policy)."""
    path = tmp_path / "security-policy.json"
    monkeypatch.setattr(policy, "override_path", lambda: path)

    def write(data):
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    return write


# ---- the policy file --------------------------------------------------------------------------------------


def item(**kw):
    base = {"subject": "other", "level": "general", "sensitive_personal": False, "data_type": "string"}
    return SimpleNamespace(**{**base, **kw})


def test_encrypts_follows_the_packaged_policy():
    assert policy.encrypts(item(subject="personal", level="important"))
    assert policy.encrypts(item(subject="personal", level="core"))
    assert policy.encrypts(item(subject="personal", level="general", sensitive_personal=True))
    assert not policy.encrypts(item(subject="personal", level="general"))
    assert not policy.encrypts(item(subject="legal_entity", level="core"))
    assert not policy.encrypts(item(subject="personal", level="core", data_type="date"))
    parsed = policy.policy()
    assert parsed["encrypt"] == {"data_types": ["string"], "subjects": ["personal"], "levels": ["important", "core"],
                                 "sensitive_personal": True}
    assert policy.policy() is parsed  # cached while the files do not change


def test_the_override_replaces_keys_and_is_reread_when_it_changes(override):
    assert policy.needs_office("important")
    override({"office_approval_levels": ["core"]})
    assert not policy.needs_office("important") and policy.needs_office("core")
    assert policy.policy()["encrypt"]["subjects"] == ["personal"]  # keys not overridden keep the packaged value
    override({"office_approval_levels": ["core"], "encrypt": {"data_types": ["string"], "subjects": ["personal",
              "legal_entity"], "levels": ["core"], "sensitive_personal": False}})
    assert policy.encrypts(item(subject="legal_entity", level="core"))
    assert not policy.encrypts(item(subject="personal", level="important", sensitive_personal=True))


@pytest.mark.parametrize("data, key", [
    ({"office_approval_levels": ["secret"]}, "office_approval_levels"),
    ({"encrypt": {"data_types": ["string"], "subjects": ["people"], "levels": [], "sensitive_personal": True}},
     "encrypt.subjects"),
    ({"encrypt": {"data_types": ["string"], "subjects": [], "levels": []}}, "encrypt.sensitive_personal"),
    ({"default_masks": [{"level": "general", "mask": "clear"}]}, "default_masks"),
    ({"default_masks": [{"mask": "scramble"}]}, "default_masks[0].mask"),
    ({"discovery": {"sample_size": 10000, "min_share": 1.5, "kinds": {}}}, "discovery.min_share"),
    ({"discovery": {"sample_size": 10000, "min_share": 0.6, "kinds": {"iris": {"subject": "personal",
                                                                              "level": "core"}}}},
     "discovery.kinds.iris"),
    ({"domestic_destinations": ["10.0.0.0/8", "not a host!"]}, "domestic_destinations[1]"),
    ({"mystery": 1}, "mystery"),
])
def test_an_invalid_policy_names_the_bad_key(override, data, key):
    path = override(data)
    with pytest.raises(policy.PolicyError) as caught:
        policy.policy()
    assert f'key "{key}"' in str(caught.value) and str(path) in str(caught.value)


def test_a_policy_that_is_not_json_says_where(override):
    path = override('{"office_approval_levels": [')
    with pytest.raises(policy.PolicyError, match="not valid JSON") as caught:
        policy.policy()
    assert str(path) in str(caught.value)


def test_the_packaged_policy_is_valid_and_complete():
    data = json.loads(policy.packaged_path().read_text(encoding="utf-8"))
    assert policy.validate(data) is data
    assert set(data["discovery"]["kinds"]) == set(policy.KINDS)
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "*.gov.cn"} <= set(
        data["domestic_destinations"])


def test_default_masks_come_from_the_policy(override):
    assert masks.default_mask("病种", "string", "important", None, subject="personal", sensitive=True) == {"kind": "hash"}
    assert masks.default_mask("病种", "date", "important", None, subject="personal", sensitive=True) == {"kind": "null"}
    assert masks.default_mask("联系电话", "string", "important", "DE00008") == {"kind": "mobile"}
    assert masks.default_mask("联系电话", "string", "general", "DE00008", subject="personal") == {"kind": "clear"}
    override({"default_masks": [{"subject": "personal", "level": "general", "mask": "suggested"},
                                {"level": "general", "mask": "clear"}, {"mask": "null"}]})
    assert masks.default_mask("联系电话", "string", "general", "DE00008", subject="personal") == {"kind": "mobile"}
    assert masks.default_mask("联系电话", "string", "general", "DE00008", subject="other") == {"kind": "clear"}
    assert masks.default_mask("联系电话", "string", "important", "DE00008", subject="personal") == {"kind": "null"}


def test_the_platform_office_rule_comes_from_the_policy(demo, override):
    code, _key = system(demo)
    application = sharing.apply(demo.actor("officer-civil-affairs"), application_data(code))
    decided = sharing.decide(demo.actor(OFFICER), application.number, {"decision": "approve"})
    assert decided.state == "office"  # the household register is important: the office decides too
    override({"office_approval_levels": ["core"]})
    code, _key = system(demo)
    application = sharing.apply(demo.actor("officer-civil-affairs"), application_data(code))
    decided = sharing.decide(demo.actor(OFFICER), application.number, {"decision": "approve"})
    assert decided.state == "approved" and decided.grant.items


# ---- items: category, sensitive personal information, 就高从严 ------------------------------------------


def test_items_take_their_category_from_the_element(demo):
    data = resource_data(demo, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False},
        {"name": "统一社会信用代码", "element": "DE00010"},
        {"name": "备注", "data_type": "string"},
        {"name": "联系人", "data_type": "string", "subject": "personal"},
    ])
    resource = catalog.create_resource(demo.actor(OFFICER), data)
    got = {i.name: i.subject for i in resource.pending.items.all()}
    assert got == {"公民身份号码": "personal", "统一社会信用代码": "legal_entity", "备注": "other", "联系人": "personal"}


def test_sensitive_personal_information_rules(demo, english):
    actor = demo.actor(OFFICER)
    bad = resource_data(demo, items=[
        {"name": "病种", "data_type": "string", "sensitive_personal": True},  # not personal
        {"name": "既往病史", "data_type": "string", "subject": "personal", "sensitive_personal": True,
         "level": "general"},
        {"name": "血型", "data_type": "string", "subject": "bodily"},
    ])
    with pytest.raises(ValidationFailed) as caught:
        catalog.create_resource(actor, bad)
    errors = fields_of(caught.value)
    assert "personal information" in errors["items[0].sensitive_personal"]
    assert "at least important" in errors["items[1].level"]
    assert "items[2].subject" in errors
    # Without a level, sensitive personal information is important, and so the resource (就高从严).
    good = resource_data(demo, items=[
        {"name": "性别", "element": "DE00003"},
        {"name": "病种", "data_type": "string", "subject": "personal", "sensitive_personal": True},
    ])
    resource = catalog.create_resource(actor, good)
    assert resource.pending.level == "important"
    assert resource.pending.items.get(name="病种").level == "important"
    with pytest.raises(ValidationFailed) as caught:
        catalog.create_resource(actor, {**good, "name": good["name"] + "二", "level": "general"})
    assert "at least" in fields_of(caught.value)["level"]
    with pytest.raises(ValidationFailed) as caught:
        catalog.create_resource(actor, {**good, "name": good["name"] + "三", "open_type": "open"})
    assert "open_type" in fields_of(caught.value)


def published(demo, data) -> Resource:
    actor, reviewer = demo.actor(OFFICER), demo.actor("reviewer")
    resource = catalog.create_resource(actor, data)
    catalog.submit(actor, resource.code)
    catalog.review(reviewer, resource.code, "approve", "符合要求")
    catalog.publish(reviewer, resource.code)
    return Resource.objects.select_related("published").get(pk=resource.pk)


def test_a_new_version_copies_category_sensitivity_and_export_control(demo):
    resource = published(demo, resource_data(demo, domestic_only=True, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "domestic_only": True},
        {"name": "病种", "data_type": "string", "subject": "personal", "sensitive_personal": True},
    ]))
    version = catalog.start_revision(demo.actor(OFFICER), resource.code)
    assert version.number == 2 and version.domestic_only
    copied = {i.name: (i.subject, i.level, i.sensitive_personal, i.domestic_only) for i in version.items.all()}
    assert copied == {"公民身份号码": ("personal", "important", False, True),
                      "病种": ("personal", "important", True, False)}
    # and a change to them shows in the comparison of versions
    data = resource_data(demo, name=resource.published.name, domestic_only=False, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False},
        {"name": "病种", "data_type": "string", "subject": "personal", "sensitive_personal": True},
    ])
    catalog.update_draft(demo.actor(OFFICER), resource.code, data)
    diff = catalog.diff_versions(demo.actor(OFFICER), resource.code, 1, 2)
    assert diff["fields"]["domestic_only"] == [True, False]
    assert diff["items"]["公民身份号码"]["fields"] == {"domestic_only": [True, False]}


def test_the_api_reads_and_writes_the_new_fields(demo, client):
    client.force_login(demo.user(OFFICER))
    body = resource_data(demo, domestic_only=True, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False},
        {"name": "既往病史", "data_type": "string", "subject": "personal", "sensitive_personal": True},
        {"name": "备注", "data_type": "string", "domestic_only": True},
    ])
    created = client.post("/api/v1/catalog/resources", body, content_type="application/json")
    assert created.status_code == 201, created.content
    got = created.json()
    assert got["domestic_only"] is True and got["level"] == "important" and got["findings"] == []
    items = {i["name"]: i for i in got["items"]}
    assert (items["公民身份号码"]["subject"], items["既往病史"]["sensitive_personal"]) == ("personal", True)
    assert items["既往病史"]["level"] == "important" and items["备注"]["domestic_only"] is True
    body["items"][1]["subject"] = "legal_entity"
    refused = client.put(f"/api/v1/catalog/resources/{got['code'].replace('/', '-')}/draft",
                         {k: v for k, v in body.items() if k not in ("category", "provider")},
                         content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["items[1].sensitive_personal"]
    element = client.get("/api/v1/catalog/elements/DE00001").json()
    assert element["subject"] == "personal"


def test_the_pages_show_and_edit_the_new_fields(demo, client):
    resource = published(demo, resource_data(demo, domestic_only=True, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False},
        {"name": "病种", "data_type": "string", "subject": "personal", "sensitive_personal": True},
    ]))
    client.force_login(demo.user(OFFICER))
    url = f"/catalog/{resource.code.replace('/', '-')}/"
    page = client.get(url).content.decode()
    assert "不得出境" in page and "个人" in page and 'class="tag sensitive"' in page
    catalog.start_revision(demo.actor(OFFICER), resource.code)
    form = client.get(url + "edit/").content.decode()
    assert 'name="items-1-sensitive_personal"' in form and 'name="domestic_only"' in form
    assert 'name="items-0-subject"' in form


def test_the_workbook_carries_the_new_columns_both_ways(demo):
    actor = demo.actor(OFFICER)
    mark = marker()
    data = resource_data(demo, domestic_only=True, keywords=[mark], items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False},
        {"name": "病种", "data_type": "string", "subject": "personal", "sensitive_personal": True,
         "domestic_only": True},
        {"name": "备注", "data_type": "string", "subject": "public_affairs"},
    ])
    resource = catalog.create_resource(actor, data)
    workbook = load_workbook(io.BytesIO(excel.export_workbook(actor, q=mark)))
    resources, items = workbook[excel.RESOURCE_SHEET], workbook[excel.ITEM_SHEET]
    header = [c.value for c in resources[1]]
    row = {h: c.value for h, c in zip(header, resources[2])}
    assert row["资源代码"] == resource.code and row["不得出境"] == "是"
    item_header = [c.value for c in items[1]]
    item_rows = [{h: c.value for h, c in zip(item_header, r)} for r in items.iter_rows(min_row=2)]
    assert [(r["信息项名称"], r["数据类别"], r["敏感个人信息"], r["不得出境"]) for r in item_rows] == [
        ("公民身份号码", "个人", "否", "否"), ("病种", "个人", "是", "是"), ("备注", "公共事务", "否", "否")]
    # Imported again (as a new resource of another name): the same classification.
    resources.cell(row=2, column=header.index("资源名称") + 1, value=f"再导入{uuid.uuid4().hex[:6]}")
    resources.cell(row=2, column=header.index("资源代码") + 1).value = None
    out = io.BytesIO()
    workbook.save(out)
    (created,) = excel.import_workbook(actor, out.getvalue())
    again = {i.name: (i.subject, i.sensitive_personal, i.domestic_only, i.level)
             for i in created.pending.items.all()}
    assert again == {"公民身份号码": ("personal", False, False, "important"),
                     "病种": ("personal", True, True, "important"), "备注": ("public_affairs", False, False, "general")}
    assert created.pending.domestic_only


def test_a_bad_category_in_the_workbook_names_its_cell(demo, english):
    actor = demo.actor(OFFICER)
    mark = marker()
    catalog.create_resource(actor, resource_data(demo, keywords=[mark]))
    workbook = load_workbook(io.BytesIO(excel.export_workbook(actor, q=mark)))
    items = workbook[excel.ITEM_SHEET]
    item_header = [c.value for c in items[1]]
    column = item_header.index("数据类别") + 1
    items.cell(row=2, column=column, value="外星人")
    resources = workbook[excel.RESOURCE_SHEET]
    header = [c.value for c in resources[1]]
    resources.cell(row=2, column=header.index("资源代码") + 1).value = None
    resources.cell(row=2, column=header.index("资源名称") + 1, value=f"坏类别{uuid.uuid4().hex[:6]}")
    out = io.BytesIO()
    workbook.save(out)
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(actor, out.getvalue())
    letter = excel._letter(column - 1)
    assert f"信息项!{letter}2" in fields_of(caught.value)


def test_the_demo_marks_personal_data(db):
    items = DataItem.objects.filter(version__resource__published__name="定州市户籍人口基本信息",
                                    version__status="published")
    got = {i.name: (i.subject, i.level) for i in items}
    assert got["公民身份号码"] == ("personal", "important") and got["姓名"] == ("personal", "important")
    assert got["户籍地址"][0] == got["现住址"][0] == "personal"
    assert Resource.objects.get(published__name="定州市户籍人口基本信息").published.domestic_only
    phones = DataItem.objects.filter(element__identifier="DE00008", version__status="published")
    assert phones.exists() and set(phones.values_list("subject", flat=True)) == {"personal"}
    sick = DataItem.objects.filter(name="既往病史", version__status="published").get()
    assert (sick.subject, sick.sensitive_personal, sick.level) == ("personal", True, "core")
