"""The data resource catalog through its services (issue 3): registration and resource codes, the metadata
rules, the review lifecycle, versions and their comparison, mounting, one datum one source, search with
facets and visibility, data elements and code tables. Every change is checked on the state it leaves and
on the audit trail it writes; every refusal is checked to write nothing.

The tests create their own resources (unique names and markers) and never assume how many resources the
demo catalog holds."""

from __future__ import annotations

import re
import uuid

import pytest
from django.utils import translation

from catalog_helpers import GENERAL_ITEMS, marker, resource_data
from shuzheng.audit.models import AuditRecord
from shuzheng.catalog import services
from shuzheng.catalog.models import (
    Category,
    CodeTable,
    DataElement,
    DataItem,
    Resource,
    ResourceVersion,
    ReviewEvent,
    SearchDocument,
    Status,
)
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.org import services as org_services
from shuzheng.org.models import UserRole
from shuzheng.org.services import Actor

CODE = re.compile(r"^(\d{9})/(\d{6})$")
UNKNOWN_ORG = "91130682MA00000000"


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


# ---- helpers ----


def open_data(demo, provider: str = "public-security", **overrides) -> dict:
    """A resource graded general that may be opened."""
    return resource_data(demo, provider, **{"open_type": "open", "items": [dict(i) for i in GENERAL_ITEMS],
                                            **overrides})


def register(demo, officer: str = "officer-public-security", provider: str = "public-security", **overrides):
    return services.create_resource(demo.actor(officer), resource_data(demo, provider, **overrides))


def advance(demo, resource, officer: str = "officer-public-security", to: str = Status.PUBLISHED) -> Resource:
    """Takes a draft through submit, approve and publish (as far as `to`) as the officer and the reviewer."""
    services.submit(demo.actor(officer), resource.code)
    if to != Status.SUBMITTED:
        services.review(demo.actor("reviewer"), resource.code, "approve", "符合要求")
        if to != Status.APPROVED:
            services.publish(demo.actor("reviewer"), resource.code)
    return Resource.objects.get(pk=resource.pk)


def actions(obj) -> list[str]:
    return list(AuditRecord.objects.filter(object_id=str(obj.pk)).order_by("seq").values_list("action", flat=True))


def counts() -> tuple:
    return (Resource.objects.count(), ResourceVersion.objects.count(), DataItem.objects.count(),
            ReviewEvent.objects.count(), Category.objects.count(), AuditRecord.objects.count(),
            SearchDocument.objects.count())


def error_fields(exc) -> set[str]:
    return {e.field for e in exc.value.errors}


def sequence(code: str) -> int:
    return int(CODE.match(code).group(2))


def new_element(demo, identifier: str | None = None, **overrides) -> DataElement:
    identifier = identifier or "TE" + uuid.uuid4().hex[:8].upper()
    data = {"identifier": identifier, "name": f"测试数据元{identifier}", "definition": "测试用数据元。",
            "data_type": "string", "level": "general", **overrides}
    return services.save_element(demo.cli(), data)


def searched(actor, q: str = "", **kw) -> list[str]:
    return [r.code for r in services.search_catalog(actor, q, limit=200, **kw)["resources"]]


# ---- 1. registration ----


def test_the_code_follows_the_classification_and_the_sequence_only_grows(demo):
    before = Category.objects.get(code="101001").next_sequence
    first = register(demo)
    second = register(demo)
    for resource in (first, second):
        prefix, _seq = CODE.match(resource.code).groups()
        assert prefix == "101001000"
    assert sequence(first.code) == before and sequence(second.code) == before + 1
    assert Category.objects.get(code="101001").next_sequence == before + 2
    # Version 1 is a draft under way; nothing is published yet.
    assert first.status == Status.DRAFT and first.published_id is None
    assert first.pending.number == 1 and first.pending.status == Status.DRAFT
    assert first.pending.created_by == "officer-public-security"
    assert list(first.pending.events.values_list("action", flat=True)) == ["create"]
    record = AuditRecord.objects.get(object_id=str(first.pk), action="catalog.resource_create")
    assert record.actor == "officer-public-security" and first.code in record.summary
    assert record.actor_org == demo.org("public-security").code
    # Other levels of the classification pad their code to nine digits the same way.
    for category, prefix in (("1", "100000000"), ("201", "201000000"), ("102001", "102001000")):
        assert CODE.match(register(demo, category=category).code).group(1) == prefix


def test_two_departments_registering_in_one_category_get_different_codes(demo):
    codes = [register(demo).code, register(demo, "officer-civil-affairs", "civil-affairs").code,
             register(demo).code]
    assert len(set(codes)) == 3
    assert [sequence(c) for c in codes] == sorted(sequence(c) for c in codes)


def test_a_code_is_never_reused(demo):
    old = advance(demo, register(demo))
    services.deprecate(demo.actor("officer-public-security"), old.code, "系统停用")
    old.refresh_from_db()
    assert old.status == Status.DEPRECATED and old.deprecated_at is not None
    newer = register(demo)
    assert sequence(newer.code) > sequence(old.code)
    # The deprecated resource keeps its code and its versions.
    assert Resource.objects.get(code=old.code).versions.get(number=1).status == Status.DEPRECATED


def test_class_3_is_the_providers_own_department_classification(demo):
    provider = demo.org("public-security")
    existed = Category.objects.filter(organization=provider).exists()
    first = register(demo, category="3")
    own = first.category
    assert re.fullmatch(r"3\d\d", own.code) and own.organization == provider and own.kind == "department"
    assert own.name == provider.name and own.parent.code == "3"
    assert first.code.startswith(own.code + "000000/")
    if not existed:
        assert actions(own) == ["catalog.category_create"]
    # The department's 项 is reused, not created again; giving its code directly works too.
    second = register(demo, category="3")
    third = register(demo, category=own.code)
    assert second.category == own == third.category
    assert sequence(third.code) == sequence(second.code) + 1 == sequence(first.code) + 2
    # Another department gets its own.
    civil = register(demo, "officer-civil-affairs", "civil-affairs", category="3")
    assert civil.category != own and civil.category.organization == demo.org("civil-affairs")
    # ... and cannot register under the public security bureau's.
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        register(demo, "officer-civil-affairs", "civil-affairs", category=own.code)
    assert error_fields(exc) == {"category"}
    assert counts() == before


def test_unknown_provider_and_classification(demo):
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.create_resource(demo.cli(), {**resource_data(demo), "provider": UNKNOWN_ORG})
    assert error_fields(exc) == {"provider"} and UNKNOWN_ORG in str(exc.value.detail)
    for category in ("109", "101999", "4", "abc", ""):
        with pytest.raises(ValidationFailed) as exc:
            register(demo, category=category)
        assert error_fields(exc) == {"category"}, category
    with pytest.raises(ValidationFailed) as exc:
        services.create_resource(demo.actor("officer-public-security"),
                                 {k: v for k, v in resource_data(demo).items() if k != "provider"})
    assert error_fields(exc) == {"provider"}
    assert counts() == before


def test_an_officer_registers_only_for_their_own_department(demo):
    before = counts()
    with pytest.raises(Forbidden):
        register(demo, "officer-civil-affairs", "public-security")
    for who in ("staff", "developer", "reviewer", "leader"):
        with pytest.raises(Forbidden):
            register(demo, who, "civil-affairs")
    with pytest.raises(Forbidden):
        services.create_resource(Actor(), resource_data(demo))
    assert counts() == before


def test_a_steward_drafts_but_cannot_submit_or_deprecate(demo):
    resource = register(demo, "steward", "civil-affairs")
    assert resource.pending.created_by == "steward"
    edited = services.update_draft(demo.actor("steward"), resource.code,
                                   resource_data(demo, "civil-affairs", name="民政对象基本信息（管理员草稿）"))
    assert edited.name == "民政对象基本信息（管理员草稿）"
    audit_before = AuditRecord.objects.count()
    with pytest.raises(Forbidden):
        services.submit(demo.actor("steward"), resource.code)
    assert AuditRecord.objects.count() == audit_before
    assert ResourceVersion.objects.get(pk=resource.pending_id).status == Status.DRAFT
    # The department's data officer submits it.
    services.submit(demo.actor("officer-civil-affairs"), resource.code)
    services.review(demo.actor("reviewer"), resource.code, "approve")
    services.publish(demo.actor("reviewer"), resource.code)
    with pytest.raises(Forbidden):
        services.deprecate(demo.actor("steward"), resource.code, "不用了")
    assert actions(resource) == ["catalog.resource_create", "catalog.resource_update", "catalog.resource_submit",
                                 "catalog.resource_approve", "catalog.resource_publish"]


# ---- 2. metadata rules ----

IMPORTANT_ITEMS = [{"name": "公民身份号码", "element": "DE00001"}, {"name": "性别", "element": "DE00003"}]

METADATA_CASES = [
    ("name", {"name": ""}, "name"),
    ("summary", {"summary": "  "}, "summary"),
    ("format", {"format": None}, "format"),
    ("sharing type", {"sharing_type": ""}, "sharing_type"),
    ("open type", {"open_type": ""}, "open_type"),
    ("update cycle", {"update_cycle": ""}, "update_cycle"),
    ("unknown format", {"format": "pdf"}, "format"),
    ("unknown update cycle", {"update_cycle": "hourly"}, "update_cycle"),
    ("unknown level", {"level": "secret"}, "level"),
    ("name too long", {"name": "名" * 201}, "name"),
    ("not shared without basis", {"sharing_type": "none", "sharing_basis": ""}, "sharing_basis"),
    ("conditional without conditions", {"sharing_type": "conditional"}, "sharing_conditions"),
    ("shared without methods", {"sharing_methods": []}, "sharing_methods"),
    ("unknown method", {"sharing_methods": ["email"]}, "sharing_methods"),
    ("conditional opening without conditions", {"open_type": "conditional", "items": GENERAL_ITEMS},
     "open_conditions"),
    ("open above general", {"open_type": "open", "items": IMPORTANT_ITEMS}, "open_type"),
    ("open and explicitly important", {"open_type": "open", "items": GENERAL_ITEMS, "level": "important"},
     "open_type"),
    ("level below its items", {"level": "general"}, "level"),
    ("unknown element", {"items": [{"name": "性别", "element": "DE00003"}, {"name": "x", "element": "DE99999"}]},
     "items[1].element"),
    ("type differs from element", {"items": [{"name": "公民身份号码", "element": "DE00001", "data_type": "integer"}]},
     "items[0].data_type"),
    ("unknown type", {"items": [{"name": "备注", "data_type": "text"}]}, "items[0].data_type"),
    ("item without a type or element", {"items": [{"name": "备注"}]}, "items[0].data_type"),
    ("duplicate item names", {"items": [{"name": "性别", "element": "DE00003"}, {"name": "性别", "data_type": "string"}]},
     "items[1].name"),
    ("item without name", {"items": [{"name": "", "data_type": "string"}]}, "items[0].name"),
    ("negative length", {"items": [{"name": "备注", "data_type": "string", "length": -5}]}, "items[0].length"),
    ("length not a number", {"items": [{"name": "备注", "data_type": "string", "length": "长"}]}, "items[0].length"),
    ("unknown item level", {"items": [{"name": "备注", "data_type": "string", "level": "x"}]}, "items[0].level"),
    ("source claim without element", {"items": [{"name": "备注", "data_type": "string", "authoritative": True}]},
     "items[0].authoritative"),
    ("item not an object", {"items": ["公民身份号码"]}, "items[0]"),
    ("no items", {"items": []}, "items"),
    ("items missing", {"items": None}, "items"),
    ("items a string", {"items": "公民身份号码,姓名"}, "items"),
    ("unknown related code", {"related_codes": ["101001000/999999"]}, "related_codes"),
    ("unknown owner", {"owner": UNKNOWN_ORG}, "owner"),
    ("unknown manager", {"manager": UNKNOWN_ORG}, "manager"),
    ("unknown steward", {"steward": "nobody-at-all"}, "steward"),
    ("bad date", {"time_coverage_start": "2024-13-01"}, "time_coverage_start"),
    ("not a date", {"time_coverage_end": "昨天"}, "time_coverage_end"),
    ("coverage ends before it starts", {"time_coverage_start": "2024-06-01", "time_coverage_end": "2024-01-01"},
     "time_coverage_end"),
]


@pytest.mark.parametrize("overrides,field", [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_metadata_rules_name_the_field_and_write_nothing(demo, overrides, field):
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        register(demo, category="3", **overrides)
    assert field in error_fields(exc), exc.value.errors
    assert counts() == before


def test_every_problem_is_reported_at_once(demo):
    with pytest.raises(ValidationFailed) as exc:
        register(demo, name="", summary="", sharing_type="none", owner=UNKNOWN_ORG,
                 items=[{"name": "x", "element": "DE99999"}])
    assert {"name", "summary", "sharing_basis", "owner", "items[0].element"} <= error_fields(exc)
    assert str(exc.value.detail).startswith(f"{len(exc.value.errors)} problems")


def test_the_level_names_the_item_that_raises_it(demo):
    with pytest.raises(ValidationFailed) as exc:
        register(demo, level="general")
    [error] = exc.value.errors
    assert error.field == "level" and "公民身份号码" in str(error.message) and "Important" in str(error.message)


def test_the_level_defaults_to_the_highest_item(demo):
    assert register(demo).pending.level == "important"  # 公民身份号码 is important
    assert register(demo, items=GENERAL_ITEMS).pending.level == "general"
    core = register(demo, items=[*GENERAL_ITEMS, {"name": "指纹", "data_type": "string", "level": "core"}])
    assert core.pending.level == "core"
    # A higher grade than the items is allowed (就高从严 is a floor, not a ceiling).
    assert register(demo, items=GENERAL_ITEMS, level="core").pending.level == "core"
    # Items inherit their element's level unless they say otherwise.
    items = {i.name: i.level for i in register(demo).pending.items.all()}
    assert items == {"公民身份号码": "important", "姓名": "important", "性别": "general"}


def test_valid_terms_are_stored(demo):
    closed = register(demo, sharing_type="none", sharing_basis="《中华人民共和国居民身份证法》第十九条",
                      sharing_methods=["table"], keywords="户籍，人口；户籍", time_coverage_start="2020-01-01",
                      time_coverage_end="2024-12-31", steward="steward", owner=demo.org("civil-affairs").code)
    version = closed.pending
    assert version.sharing_methods == []  # not shared: no way to share it
    assert version.keywords == ["户籍", "人口"]
    assert str(version.time_coverage_start) == "2020-01-01" and str(version.time_coverage_end) == "2024-12-31"
    assert version.steward.username == "steward" and version.owner == demo.org("civil-affairs")
    assert version.manager == demo.org("public-security")  # defaults to the provider
    related = register(demo, related_codes=[closed.code], sharing_type="conditional",
                       sharing_conditions="仅用于社会救助核查", sharing_methods=["table", "interface"])
    assert related.pending.related_codes == [closed.code]
    assert related.pending.sharing_methods == ["interface", "table"]
    opened = register(demo, **{"open_type": "conditional", "open_conditions": "实名申请", "items": GENERAL_ITEMS})
    assert opened.pending.open_type == "conditional" and opened.pending.level == "general"
    items = list(register(demo).pending.items.order_by("position").values_list("name", "data_type", "is_key"))
    assert items == [("公民身份号码", "string", True), ("姓名", "string", False), ("性别", "string", False)]


def test_a_resource_cannot_relate_to_itself(demo):
    resource = register(demo)
    with pytest.raises(ValidationFailed) as exc:
        services.update_draft(demo.actor("officer-public-security"), resource.code,
                              resource_data(demo, related_codes=[resource.code]))
    assert error_fields(exc) == {"related_codes"}


def test_an_invalid_edit_changes_nothing(demo):
    resource = register(demo, name="原名称")
    before = counts()
    with pytest.raises(ValidationFailed):
        services.update_draft(demo.actor("officer-public-security"), resource.code,
                              resource_data(demo, name="新名称", items=[]))
    assert counts() == before
    version = ResourceVersion.objects.get(pk=resource.pending_id)
    assert version.name == "原名称" and version.items.count() == 3


# ---- 3. lifecycle ----


def test_the_whole_lifecycle_with_its_trail(demo):
    officer, reviewer = demo.actor("officer-public-security"), demo.actor("reviewer")
    resource = register(demo, name="定州市暂住人口登记信息")
    code = resource.code

    services.submit(officer, code, "请审核")
    resource.refresh_from_db()
    assert resource.status == Status.SUBMITTED and resource.pending.submitted_at is not None

    # Returning needs a comment, and a refused return changes nothing.
    audit_before = AuditRecord.objects.count()
    with pytest.raises(ValidationFailed) as exc:
        services.review(reviewer, code, "return", "   ")
    assert error_fields(exc) == {"comment"}
    with pytest.raises(ValidationFailed) as exc:
        services.review(reviewer, code, "maybe")
    assert error_fields(exc) == {"decision"}
    assert AuditRecord.objects.count() == audit_before
    services.review(reviewer, code, "return", "请补充信息项的数据元引用。")
    resource.refresh_from_db()
    assert resource.status == Status.RETURNED
    event = ReviewEvent.objects.get(version=resource.pending, action="return")
    assert event.comment == "请补充信息项的数据元引用。" and event.actor == "reviewer"

    # The officer fixes it and resubmits.
    services.update_draft(officer, code, resource_data(demo, name="定州市暂住人口登记信息（修订）"))
    services.submit(officer, code)
    services.review(reviewer, code, "approve", "符合目录编制要求")
    resource.refresh_from_db()
    assert resource.status == Status.APPROVED and resource.published_id is None
    services.publish(reviewer, code)
    resource.refresh_from_db()
    version = resource.published
    assert resource.status == Status.PUBLISHED and resource.pending_id is None
    assert version.status == Status.PUBLISHED and version.published_at is not None
    assert version.name == "定州市暂住人口登记信息（修订）"

    # Deprecation needs a reason.
    with pytest.raises(ValidationFailed) as exc:
        services.deprecate(officer, code, "")
    assert error_fields(exc) == {"reason"}
    services.deprecate(officer, code, "并入人口综合库")
    resource.refresh_from_db()
    assert resource.status == Status.DEPRECATED and resource.published.status == Status.DEPRECATED

    events = list(resource.versions.get(number=1).events.values_list("action", "actor", "comment"))
    assert events == [
        ("create", "officer-public-security", ""),
        ("submit", "officer-public-security", "请审核"),
        ("return", "reviewer", "请补充信息项的数据元引用。"),
        ("submit", "officer-public-security", ""),
        ("approve", "reviewer", "符合目录编制要求"),
        ("publish", "reviewer", ""),
        ("deprecate", "officer-public-security", "并入人口综合库"),
    ]
    assert actions(resource) == [
        "catalog.resource_create", "catalog.resource_submit", "catalog.resource_return", "catalog.resource_update",
        "catalog.resource_submit", "catalog.resource_approve", "catalog.resource_publish",
        "catalog.resource_deprecate",
    ]
    returned = AuditRecord.objects.get(object_id=str(resource.pk), action="catalog.resource_return")
    assert "请补充信息项的数据元引用。" in returned.summary and returned.actor == "reviewer"


def test_a_reviewer_may_deprecate_too(demo):
    resource = advance(demo, register(demo))
    services.deprecate(demo.actor("reviewer"), resource.code, "重复登记")
    assert Resource.objects.get(pk=resource.pk).status == Status.DEPRECATED


def test_invalid_transitions_are_conflicts_on_the_status(demo):
    officer, reviewer = demo.actor("officer-public-security"), demo.actor("reviewer")
    draft = register(demo)

    def refused(call, *args):
        before = counts()
        with pytest.raises(Conflict) as exc:
            call(*args)
        assert error_fields(exc) == {"status"}, exc.value.errors
        assert counts() == before

    refused(services.publish, reviewer, draft.code)
    refused(services.review, reviewer, draft.code, "approve")
    refused(services.review, reviewer, draft.code, "return", "x")
    refused(services.deprecate, officer, draft.code, "原因")
    refused(services.mount, officer, draft.code, "table", "public_security.household")
    refused(services.start_revision, officer, draft.code)
    services.submit(officer, draft.code)
    refused(services.submit, officer, draft.code)
    refused(services.update_draft, officer, draft.code, resource_data(demo))
    refused(services.publish, reviewer, draft.code)
    services.review(reviewer, draft.code, "approve")
    refused(services.update_draft, officer, draft.code, resource_data(demo))
    refused(services.submit, officer, draft.code)
    refused(services.review, reviewer, draft.code, "approve")
    services.publish(reviewer, draft.code)
    refused(services.publish, reviewer, draft.code)
    refused(services.submit, officer, draft.code)
    refused(services.update_draft, officer, draft.code, resource_data(demo))
    services.deprecate(officer, draft.code, "停用")
    refused(services.deprecate, officer, draft.code, "again")
    refused(services.start_revision, officer, draft.code)
    refused(services.mount, officer, draft.code, "table", "public_security.household")


def test_nobody_approves_what_they_submitted(demo):
    """The platform office's data officer, given the reviewer role too, submits its own resource: another
    reviewer must approve it."""
    org_services.assign_role(demo.cli(), "officer-gov-services", "catalog_reviewer")
    both = demo.actor("officer-gov-services")
    resource = register(demo, "officer-gov-services", "gov-services", category="201001")
    services.submit(both, resource.code)
    audit_before = AuditRecord.objects.count()
    with pytest.raises(Forbidden) as exc:
        services.review(both, resource.code, "approve", "自己批准")
    assert "submitter" in str(exc.value.detail)
    assert AuditRecord.objects.count() == audit_before
    assert Resource.objects.get(pk=resource.pk).status == Status.SUBMITTED
    # Returning it with a comment is fine; after resubmission the rule still holds.
    services.review(both, resource.code, "return", "自查发现问题")
    services.submit(both, resource.code)
    with pytest.raises(Forbidden):
        services.review(both, resource.code, "approve")
    services.review(demo.actor("reviewer"), resource.code, "approve")
    services.publish(both, resource.code)  # publishing is a separate step the same reviewer may take
    assert Resource.objects.get(pk=resource.pk).status == Status.PUBLISHED


def test_only_reviewers_review_and_publish(demo):
    resource = register(demo, "officer-civil-affairs", "civil-affairs")
    services.submit(demo.actor("officer-civil-affairs"), resource.code)
    before = counts()
    for who in ("officer-civil-affairs", "staff", "steward"):
        with pytest.raises(Forbidden):
            services.review(demo.actor(who), resource.code, "approve")
        with pytest.raises(Forbidden):
            services.publish(demo.actor(who), resource.code)
    # Other departments do not even see it.
    with pytest.raises(NotFound):
        services.review(demo.actor("officer-public-security"), resource.code, "approve")
    with pytest.raises(NotFound):
        services.review(Actor(), resource.code, "approve")
    assert counts() == before
    assert Resource.objects.get(pk=resource.pk).status == Status.SUBMITTED


def test_the_reviewer_role_belongs_to_the_platform_office(demo):
    with pytest.raises(ValidationFailed) as exc:
        org_services.assign_role(demo.cli(), "steward", "catalog_reviewer")
    assert error_fields(exc) == {"role"}
    assert not UserRole.objects.filter(user__username="steward", role="catalog_reviewer").exists()
    assert not AuditRecord.objects.filter(action="user.role_assign", summary__contains="catalog_reviewer").filter(
        summary__contains='"steward"').exists()


# ---- 4. versions ----


def test_revising_keeps_the_published_version_live(demo):
    officer = demo.actor("officer-public-security")
    resource = advance(demo, register(demo, name="户籍人口版本一", **{"open_type": "open", "items": GENERAL_ITEMS}))
    v2 = services.start_revision(officer, resource.code)
    assert v2.number == 2 and v2.status == Status.DRAFT and v2.name == "户籍人口版本一"
    assert list(v2.items.values_list("name", flat=True)) == [i["name"] for i in GENERAL_ITEMS]
    assert actions(resource)[-1] == "catalog.resource_revise"
    with pytest.raises(Conflict) as exc:
        services.start_revision(officer, resource.code)
    assert error_fields(exc) == {"status"}
    services.update_draft(officer, resource.code, open_data(demo, name="户籍人口版本二"))

    resource.refresh_from_db()
    assert resource.status == Status.PUBLISHED and resource.published.number == 1 and resource.pending.number == 2
    # Another department and the public still see version 1, and nothing of version 2.
    for outsider in (demo.actor("officer-civil-affairs"), Actor()):
        assert services.get_version(outsider, resource.code).name == "户籍人口版本一"
        assert [v.number for v in services.list_versions(outsider, resource.code)] == [1]
        with pytest.raises(NotFound):
            services.get_version(outsider, resource.code, 2)
        with pytest.raises(NotFound):
            services.diff_versions(outsider, resource.code, 1, 2)
    # The department and the reviewers see both.
    for insider in (officer, demo.actor("reviewer")):
        assert [v.number for v in services.list_versions(insider, resource.code)] == [2, 1]
        assert services.get_version(insider, resource.code, 2).name == "户籍人口版本二"

    advance(demo, resource)
    resource.refresh_from_db()
    assert resource.published.number == 2 and resource.pending_id is None
    assert dict(resource.versions.values_list("number", "status")) == {1: "superseded", 2: "published"}
    outsider = demo.actor("officer-civil-affairs")
    assert services.get_version(outsider, resource.code).name == "户籍人口版本二"
    assert [(v.number, v.status) for v in services.list_versions(outsider, resource.code)] == \
        [(2, "published"), (1, "superseded")]
    assert services.get_version(outsider, resource.code, 1).name == "户籍人口版本一"
    # A second revision starts from version 2.
    v3 = services.start_revision(officer, resource.code)
    assert v3.number == 3 and v3.name == "户籍人口版本二"


def test_two_versions_compare_field_by_field(demo):
    officer = demo.actor("officer-public-security")
    resource = advance(demo, register(demo, name="比较一", keywords=["户籍"]))
    services.start_revision(officer, resource.code)
    items = [
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "length": 18},  # same
        {"name": "姓名", "element": "DE00002", "length": 100},  # length changed
        {"name": "出生日期", "element": "DE00005"},  # added; 性别 removed
    ]
    services.update_draft(officer, resource.code, resource_data(demo, name="比较二", keywords=["户籍", "人口"],
                                                                update_cycle="monthly", items=items))
    diff = services.diff_versions(officer, resource.code, 1, 2)
    assert diff["from"] == 1 and diff["to"] == 2 and diff["code"] == resource.code
    assert diff["fields"]["name"] == ["比较一", "比较二"]
    assert diff["fields"]["update_cycle"] == ["daily", "monthly"]
    assert diff["fields"]["keywords"] == [["户籍"], ["户籍", "人口"]]
    assert "summary" not in diff["fields"] and "format" not in diff["fields"]
    assert set(diff["items"]) == {"姓名", "出生日期", "性别"}
    assert diff["items"]["姓名"] == {"change": "changed", "fields": {"length": [50, 100]}}
    assert diff["items"]["出生日期"]["change"] == "added"
    assert diff["items"]["出生日期"]["fields"]["element"] == [None, "DE00005"]
    assert diff["items"]["性别"]["change"] == "removed"
    assert diff["items"]["性别"]["fields"]["element"] == ["DE00003", None]
    # Reversed, the changes swap; a version with itself shows nothing.
    back = services.diff_versions(officer, resource.code, 2, 1)
    assert back["items"]["出生日期"]["change"] == "removed" and back["fields"]["name"] == ["比较二", "比较一"]
    assert services.diff_versions(officer, resource.code, 1, 1) == {
        "code": resource.code, "from": 1, "to": 1, "fields": {}, "items": {}}
    with pytest.raises(NotFound):
        services.diff_versions(officer, resource.code, 1, 9)
    # The edit's audit record carries the same comparison.
    update = AuditRecord.objects.filter(object_id=str(resource.pk), action="catalog.resource_update").latest("seq")
    assert "比较二" in update.summary and "出生日期" in update.summary


def test_a_pending_draft_stays_hidden_when_the_resource_is_deprecated(demo):
    """Deprecating a resource with a revision under way must not publish that unreviewed draft to
    everyone who can see deprecated resources."""
    officer = demo.actor("officer-public-security")
    resource = advance(demo, register(demo, name="公开名称"))
    services.start_revision(officer, resource.code)
    services.update_draft(officer, resource.code, resource_data(demo, name="尚未审核的内部名称"))
    services.deprecate(officer, resource.code, "停用")
    outsider = demo.actor("officer-civil-affairs")
    visible = {v.number: v.name for v in services.list_versions(outsider, resource.code)}
    assert visible == {1: "公开名称"}, visible
    with pytest.raises(NotFound):
        services.get_version(outsider, resource.code, 2)


def test_an_unchanged_edit_writes_no_audit_record(demo):
    resource = register(demo)
    data = resource_data(demo, name=resource.pending.name)
    before = AuditRecord.objects.count()
    services.update_draft(demo.actor("officer-public-security"), resource.code, data)
    assert AuditRecord.objects.count() == before


# ---- 5. mounting ----


@pytest.mark.parametrize("kind,target", [
    ("table", "household"),
    ("table", "Public_Security.Household"),
    ("table", "public_security.household.extra"),
    ("table", "public-security.household"),
    ("table", "public_security.household; drop table x"),
    ("api", "ftp://data.dingzhou.gov.cn/x"),
    ("api", "javascript:alert(1)"),
    ("api", "https://"),
    ("api", "data.dingzhou.gov.cn/api"),
    ("file", "../etc/passwd"),
    ("file", "share/../../etc/passwd"),
    ("file", "share/.."),
    ("file", ""),
    ("file", "x" * 501),
])
def test_a_mount_target_must_fit_its_kind(demo, kind, target):
    resource = advance(demo, register(demo))
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.mount(demo.actor("officer-public-security"), resource.code, kind, target)
    assert error_fields(exc) == {"target"}
    assert counts() == before and not Resource.objects.get(pk=resource.pk).is_mounted


def test_mount_and_unmount(demo):
    officer = demo.actor("officer-public-security")
    resource = advance(demo, register(demo))
    with pytest.raises(ValidationFailed) as exc:
        services.mount(officer, resource.code, "ftp", "x")
    assert error_fields(exc) == {"kind"}
    for kind, target in (("table", "public_security.household"), ("api", "https://api.dingzhou.gov.cn/v1/hukou"),
                         ("file", "share/public_security/hukou-2024.csv")):
        mounted = services.mount(officer, resource.code, kind, target)
        assert (mounted.mount_kind, mounted.mount_target) == (kind, target) and mounted.is_mounted
        assert mounted.mounted_at is not None
    # The same mount again is a no-op.
    before = AuditRecord.objects.count()
    services.mount(officer, resource.code, "file", "share/public_security/hukou-2024.csv")
    assert AuditRecord.objects.count() == before
    # Another department cannot mount or unmount it.
    with pytest.raises(Forbidden):
        services.mount(demo.actor("officer-civil-affairs"), resource.code, "table", "civil_affairs.x")
    with pytest.raises(Forbidden):
        services.unmount(demo.actor("officer-civil-affairs"), resource.code)
    services.unmount(officer, resource.code)
    resource.refresh_from_db()
    assert not resource.is_mounted and resource.mount_target == "" and resource.mounted_at is None
    assert actions(resource)[-4:] == ["catalog.resource_mount"] * 3 + ["catalog.resource_unmount"]
    events = list(resource.published.events.filter(action__in=["mount", "unmount"]).values_list("action", "comment"))
    assert events[0] == ("mount", "table: public_security.household")
    assert events[-1] == ("unmount", "file: share/public_security/hukou-2024.csv")
    # Facet and search know the mount status.
    services.mount(officer, resource.code, "table", "public_security.household")
    assert resource.code in searched(officer, resource.code, filters={"mounted": ["yes"]})
    assert resource.code not in searched(officer, resource.code, filters={"mounted": ["no"]})


def test_only_a_mounted_shared_published_resource_can_be_granted(demo):
    officer = demo.actor("officer-public-security")
    draft = register(demo)
    with pytest.raises(Conflict):
        services.require_grantable(draft)
    shared = advance(demo, register(demo))
    with pytest.raises(Conflict) as exc:
        services.require_grantable(shared)
    assert "mounted" in str(exc.value.detail)
    services.mount(officer, shared.code, "table", "public_security.household")
    assert services.require_grantable(Resource.objects.get(pk=shared.pk)) is None
    basis = "《中华人民共和国居民身份证法》"
    closed = advance(demo, register(demo, sharing_type="none", sharing_basis=basis))
    services.mount(officer, closed.code, "table", "public_security.secret")
    with pytest.raises(Forbidden) as exc:
        services.require_grantable(Resource.objects.get(pk=closed.pk))
    assert basis in str(exc.value.detail)
    # Deprecating unmounts and makes it ungrantable.
    services.deprecate(officer, shared.code, "停用")
    shared = Resource.objects.get(pk=shared.pk)
    assert not shared.is_mounted
    with pytest.raises(Conflict):
        services.require_grantable(shared)


# ---- 6. one datum, one source ----


def claim(element, name="来源项"):
    return [{"name": name, "element": element.identifier, "authoritative": True}]


def copy(element, name="副本项"):
    return [{"name": name, "element": element.identifier}]


def test_publishing_a_claim_makes_the_resource_the_source(demo):
    element = new_element(demo)
    source = register(demo, items=claim(element))
    assert DataElement.objects.get(pk=element.pk).authoritative_id is None  # a draft claims nothing yet
    source = advance(demo, source)
    assert DataElement.objects.get(pk=element.pk).authoritative == source
    # A second claim is refused at registration, naming the source; nothing is written.
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        register(demo, "officer-civil-affairs", "civil-affairs", items=[*copy(element, "其他"), *claim(element)])
    assert error_fields(exc) == {"items[1].authoritative"}
    assert source.code in str(exc.value.detail) and element.identifier in str(exc.value.detail)
    assert counts() == before
    # Carrying it as a copy is fine.
    copied = advance(demo, register(demo, "officer-civil-affairs", "civil-affairs", items=copy(element)),
                     "officer-civil-affairs")
    assert DataElement.objects.get(pk=element.pk).authoritative == source
    assert copied.published.items.get().authoritative is False
    # The source itself may keep claiming in a new version.
    services.start_revision(demo.actor("officer-public-security"), source.code)
    services.update_draft(demo.actor("officer-public-security"), source.code,
                          resource_data(demo, name="来源新版", items=claim(element)))
    advance(demo, source)
    assert DataElement.objects.get(pk=element.pk).authoritative == source


def test_a_second_claim_made_while_the_first_was_a_draft_is_refused_at_publication(demo):
    element = new_element(demo)
    first = register(demo, items=claim(element))
    second = register(demo, "officer-civil-affairs", "civil-affairs", items=claim(element))
    advance(demo, first, to=Status.APPROVED)
    advance(demo, second, "officer-civil-affairs", to=Status.APPROVED)
    services.publish(demo.actor("reviewer"), first.code)
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.publish(demo.actor("reviewer"), second.code)
    assert first.code in str(exc.value.detail)
    assert counts() == before
    assert Resource.objects.get(pk=second.pk).status == Status.APPROVED
    assert DataElement.objects.get(pk=element.pk).authoritative == Resource.objects.get(pk=first.pk)
    # A draft claim is refused at submission too once the source exists.
    third = register(demo, "officer-civil-affairs", "civil-affairs", items=copy(element))
    # A claim saved before the source existed (here written directly, as an old import could have left it).
    DataItem.objects.filter(version_id=third.pending_id).update(authoritative=True)
    with pytest.raises(ValidationFailed) as exc:
        services.submit(demo.actor("officer-civil-affairs"), third.code)
    assert first.code in str(exc.value.detail)


def test_a_version_without_the_claim_or_deprecation_releases_the_element(demo):
    officer = demo.actor("officer-public-security")
    element, other = new_element(demo), new_element(demo)
    source = advance(demo, register(demo, items=[*claim(element), *claim(other, "另一项")]))
    assert set(DataElement.objects.filter(authoritative=source).values_list("identifier", flat=True)) == \
        {element.identifier, other.identifier}
    services.start_revision(officer, source.code)
    services.update_draft(officer, source.code, resource_data(demo, items=[*copy(element), *claim(other, "另一项")]))
    assert DataElement.objects.get(pk=element.pk).authoritative == source  # still the live version's claim
    advance(demo, source)
    assert DataElement.objects.get(pk=element.pk).authoritative is None
    assert DataElement.objects.get(pk=other.pk).authoritative == source
    # Now another department can become the source of the released element.
    taker = advance(demo, register(demo, "officer-civil-affairs", "civil-affairs", items=claim(element)),
                    "officer-civil-affairs")
    assert DataElement.objects.get(pk=element.pk).authoritative == taker
    services.deprecate(officer, source.code, "停用")
    assert DataElement.objects.get(pk=other.pk).authoritative is None
    assert DataElement.objects.get(pk=element.pk).authoritative == taker


def test_the_source_report(demo):
    element, unused = new_element(demo), new_element(demo)
    source = advance(demo, register(demo, items=claim(element)))
    advance(demo, register(demo, "officer-civil-affairs", "civil-affairs", items=copy(element)),
            "officer-civil-affairs")
    report = services.source_report(demo.actor("reviewer"))
    multiple = {e["identifier"]: e for e in report["multiple_collection"]}
    assert multiple[element.identifier] == {
        "identifier": element.identifier, "name": element.name, "authoritative": source.code, "has_source": True,
        "providers": sorted([demo.org("public-security").name, demo.org("civil-affairs").name])}
    # The public may not see the (closed) source, so the report says there is one without naming it.
    public = {e["identifier"]: e for e in services.source_report(Actor())["multiple_collection"]}
    assert element.identifier not in public or public[element.identifier]["authoritative"] is None
    missing = {e["identifier"]: e for e in report["no_authoritative_source"]}
    assert missing[unused.identifier] == {"identifier": unused.identifier, "name": unused.name, "used_by": 0}
    assert element.identifier not in missing
    # Drafts do not count as collection.
    drafted = new_element(demo)
    register(demo, items=copy(drafted))
    register(demo, "officer-civil-affairs", "civil-affairs", items=copy(drafted))
    report = services.source_report(demo.actor("reviewer"))
    assert drafted.identifier not in {e["identifier"] for e in report["multiple_collection"]}


# ---- 7. search and visibility ----


def test_chinese_full_text_search(demo):
    reviewer = demo.actor("reviewer")
    # (the demo's public security bureau has a resource of this name already: the statistics bureau registers it)
    resource = advance(demo, register(demo, "officer-stats", "stats", name="定州市户籍人口基本信息",
                                      keywords=["户口迁移", "常住人口"], items=[
                                          {"name": "公民身份号码", "element": "DE00001"},
                                          {"name": "迁入原因", "data_type": "string"}]), "officer-stats")
    for q in ("户籍人口", "户籍", "定州市户籍人口基本信息", "迁入原因", "户口迁移", "籍", resource.code,
              resource.code.replace("/", "-"), "统计局"):
        for actor in (reviewer, demo.actor("officer-civil-affairs")):
            assert resource.code in searched(actor, q), q
    assert resource.code not in searched(reviewer, "营业执照")
    assert resource.code not in searched(reviewer, "户籍 " + marker())  # every word must match


def test_a_single_character_finds_longer_words_even_when_some_text_has_it_alone(demo):
    """Substring fallback must not depend on whether another resource happens to hold the character as a
    word of its own: a keyword "籍" elsewhere must not hide every 户籍 resource from a search for 籍."""
    reviewer = demo.actor("reviewer")
    hukou = register(demo, "officer-stats", "stats", name="定州市户籍人口基本信息")
    assert hukou.code in searched(reviewer, "籍")
    alone = register(demo, name="籍贯登记", keywords=["籍"])
    found = searched(reviewer, "籍")
    assert alone.code in found
    assert hukou.code in found


def test_facets_narrow_and_count_disjunctively(demo):
    reviewer = demo.actor("reviewer")
    mark = marker()
    register(demo, keywords=[mark], items=GENERAL_ITEMS)  # general, unconditional
    register(demo, keywords=[mark], sharing_type="conditional", sharing_conditions="凭函")  # important, conditional
    register(demo, keywords=[mark], items=GENERAL_ITEMS, sharing_type="conditional", sharing_conditions="凭函")
    register(demo, "officer-civil-affairs", "civil-affairs", keywords=[mark], sharing_type="none",
             sharing_basis="法律规定")  # important, none
    everything = services.search_catalog(reviewer, mark)
    assert everything["total"] == 4
    facet = {name: {v: n for v, _label, n in values} for name, values in everything["facets"].items()}
    assert facet["level"] == {"general": 2, "important": 2}
    assert facet["sharing_type"] == {"unconditional": 1, "conditional": 2, "none": 1}
    assert facet["provider"] == {demo.org("public-security").code: 3, demo.org("civil-affairs").code: 1}
    assert facet["status"] == {"draft": 4} and facet["kind"] == {"base": 4} and facet["mounted"] == {"no": 4}

    general = services.search_catalog(reviewer, mark, {"level": ["general"]})
    assert general["total"] == 2
    facet = {name: {v: n for v, _label, n in values} for name, values in general["facets"].items()}
    assert facet["level"] == {"general": 2, "important": 2}  # its own facet ignores its own filter
    assert facet["sharing_type"] == {"unconditional": 1, "conditional": 1}

    both = services.search_catalog(reviewer, mark, {"level": ["general"], "sharing_type": ["conditional"]})
    assert both["total"] == 1
    facet = {name: {v: n for v, _label, n in values} for name, values in both["facets"].items()}
    assert facet["level"] == {"general": 1, "important": 1}  # conditional ones, by level
    assert facet["sharing_type"] == {"unconditional": 1, "conditional": 1}  # general ones, by sharing type
    # Values of one facet are ORed.
    assert services.search_catalog(reviewer, mark, {"sharing_type": ["none", "unconditional"]})["total"] == 2
    # Labels are the translated choice labels and organization names.
    labels = {v: label for v, label, _n in both["facets"]["provider"]}
    assert labels[demo.org("public-security").code] == demo.org("public-security").name
    assert services.search_catalog(reviewer, mark, {"level": ["nonexistent"]})["total"] == 0


def test_sorting_and_paging(demo):
    reviewer = demo.actor("reviewer")
    mark = marker()
    for name in ("丙资源", "甲资源", "乙资源"):
        register(demo, name=f"{name}{mark}", keywords=[mark])
    names = [r.current.name for r in services.search_catalog(reviewer, mark, sort="name")["resources"]]
    assert names == sorted(names) and len(names) == 3
    codes = [r.code for r in services.search_catalog(reviewer, mark, sort="code")["resources"]]
    assert codes == sorted(codes)
    newest = [r.current.name for r in services.search_catalog(reviewer, mark, sort="newest")["resources"]]
    assert len(newest) == 3
    page = services.search_catalog(reviewer, mark, sort="code", offset=1, limit=1)
    assert page["total"] == 3 and [r.code for r in page["resources"]] == codes[1:2]
    with pytest.raises(ValidationFailed) as exc:
        services.search_catalog(reviewer, mark, sort="popularity")
    assert error_fields(exc) == {"sort"}
    with pytest.raises(ValidationFailed) as exc:
        services.search_catalog(reviewer, "户" * 201)
    assert error_fields(exc) == {"q"}
    with pytest.raises(ValidationFailed) as exc:
        services.search_catalog(reviewer, mark, {"colour": ["red"]})
    assert error_fields(exc) == {"colour"}


def test_who_sees_what(demo):
    mark = marker()
    open_published = advance(demo, services.create_resource(demo.actor("officer-public-security"),
                                                            open_data(demo, keywords=[mark])))
    closed_published = advance(demo, register(demo, keywords=[mark]))
    open_draft = services.create_resource(demo.actor("officer-public-security"), open_data(demo, keywords=[mark]))
    deprecated = advance(demo, services.create_resource(demo.actor("officer-public-security"),
                                                        open_data(demo, keywords=[mark])))
    services.deprecate(demo.actor("officer-public-security"), deprecated.code, "停用")
    civil_draft = register(demo, "officer-civil-affairs", "civil-affairs", keywords=[mark])
    every = {open_published.code, closed_published.code, open_draft.code, deprecated.code, civil_draft.code}

    def sees(actor) -> set[str]:
        found = set(searched(actor, mark))
        listed = set(services.list_resources(actor).filter(code__in=every).values_list("code", flat=True))
        assert found == listed  # the index and the database agree
        return found

    assert sees(Actor()) == {open_published.code}
    assert sees(demo.actor("reviewer")) == every
    assert sees(demo.cli()) == every
    assert sees(demo.actor("officer-public-security")) == every - {civil_draft.code}
    assert sees(demo.actor("staff")) == {open_published.code, closed_published.code, deprecated.code,
                                         civil_draft.code}
    assert sees(demo.actor("officer-health")) == {open_published.code, closed_published.code, deprecated.code}
    for actor, code in ((Actor(), closed_published.code), (Actor(), open_draft.code),
                        (demo.actor("staff"), open_draft.code)):
        with pytest.raises(NotFound):
            services.get_resource(actor, code)
    assert services.get_resource(Actor(), open_published.code).code == open_published.code


def test_search_sees_an_update_immediately(demo):
    officer = demo.actor("officer-public-security")
    old, new = marker(), marker()
    resource = register(demo, name=f"旧名称{old}")
    assert searched(officer, old) == [resource.code]
    services.update_draft(officer, resource.code, resource_data(demo, name=f"新名称{new}"))
    assert searched(officer, new) == [resource.code]
    assert searched(officer, old) == []
    # Publication changes the status facet at once.
    advance(demo, resource)
    assert services.search_catalog(officer, new, {"status": ["published"]})["total"] == 1
    assert searched(Actor(), new) == []  # closed: not for the public


def test_search_shows_the_live_version_while_a_revision_is_under_way(demo):
    officer = demo.actor("officer-public-security")
    live, pending = marker(), marker()
    resource = advance(demo, register(demo, name=f"现行{live}"))
    services.start_revision(officer, resource.code)
    services.update_draft(officer, resource.code, resource_data(demo, name=f"修订{pending}"))
    outsider = demo.actor("officer-civil-affairs")
    assert searched(outsider, live) == [resource.code]
    assert searched(outsider, pending) == []  # the draft's words do not leak through search


# ---- 8. data elements and code tables ----


def test_reference_data(demo):
    assert DataElement.objects.filter(identifier__startswith="DE").count() >= 50
    first = DataElement.objects.get(identifier="DE00001")
    assert (first.name, first.data_type, first.level) == ("公民身份号码", "string", "important")
    assert DataElement.objects.get(identifier="DE00003").code_table.code == "GB_T_2261.1"
    assert DataElement.objects.get(identifier="DE00005").data_type == "date"
    assert CodeTable.objects.get(code="GB_T_3304").values.count() == 58
    regions = CodeTable.objects.get(code="GB_T_2260")
    assert regions.values.filter(parent_code="130682").count() == 25  # Dingzhou's towns
    industries = CodeTable.objects.get(code="GB_T_4754")
    assert industries.values.filter(parent_code="").count() >= 20  # sections A..T
    assert services.get_category("101001").full_name() == "基础信息资源 / 人口基础信息资源 / 户籍人口"


def test_saving_data_elements(demo):
    reviewer = demo.actor("reviewer")
    data = {"identifier": "TE10001", "name": "测试婚姻状况代码", "definition": "婚姻状况。", "data_type": "string",
            "code_table": "GB_T_2261.2", "level": "general"}
    element = services.save_element(reviewer, data)
    assert element.code_table.code == "GB_T_2261.2"
    assert actions(element) == ["catalog.element_create"]
    services.save_element(reviewer, {**data, "definition": "婚姻状况的代码。"})
    assert actions(element) == ["catalog.element_create", "catalog.element_update"]
    record = AuditRecord.objects.filter(object_id=str(element.pk)).latest("seq")
    assert record.actor == "reviewer" and "婚姻状况的代码。" in record.summary
    services.save_element(reviewer, {**data, "definition": "婚姻状况的代码。"})  # unchanged: no record
    assert len(actions(element)) == 2
    before = AuditRecord.objects.count()
    for who in ("officer-public-security", "staff"):
        with pytest.raises(Forbidden):
            services.save_element(demo.actor(who), {**data, "identifier": "TE10002", "name": "其他"})
    for bad, field in (({"code_table": "NOPE"}, "code_table"), ({"identifier": "de1"}, "identifier"),
                       ({"data_type": "blob"}, "data_type"), ({"level": "top"}, "level"), ({"name": ""}, "name"),
                       ({"definition": ""}, "definition")):
        with pytest.raises(ValidationFailed) as exc:
            services.save_element(reviewer, {**data, "identifier": "TE10003", **bad})
        assert field in error_fields(exc), bad
    with pytest.raises(Conflict) as exc:
        services.save_element(reviewer, {**data, "identifier": "TE10004", "name": "公民身份号码"})
    assert error_fields(exc) == {"name"} and "DE00001" in str(exc.value.detail)
    assert AuditRecord.objects.count() == before
    assert not DataElement.objects.filter(identifier__in=["TE10002", "TE10003", "TE10004"]).exists()


def test_saving_code_tables(demo):
    reviewer = demo.actor("reviewer")
    values = [{"code": "1", "name": "一级"}, {"code": "11", "name": "一级甲", "parent": "1"}]
    table = services.save_code_table(reviewer, {"code": "TEST_LEVELS", "name": "测试分级", "values": values})
    assert list(table.values.values_list("code", "parent_code")) == [("1", ""), ("11", "1")]
    assert actions(table) == ["catalog.codetable_create"]
    services.save_code_table(reviewer, {"code": "TEST_LEVELS", "name": "测试分级", "values": values[:1]})
    assert table.values.count() == 1 and actions(table)[-1] == "catalog.codetable_update"
    before = (AuditRecord.objects.count(), table.values.count())
    for bad, field in (
        ([*values, {"code": "1", "name": "重复"}], "values[2].code"),
        ([{"code": "", "name": "无码"}], "values[0]"),
        ([{"code": "2", "name": "二", "parent": "9"}], "values[0].parent"),
    ):
        with pytest.raises(ValidationFailed) as exc:
            services.save_code_table(reviewer, {"code": "TEST_LEVELS", "name": "测试分级", "values": bad})
        assert field in error_fields(exc), bad
    with pytest.raises(Forbidden):
        services.save_code_table(demo.actor("officer-public-security"), {"code": "X", "name": "x", "values": []})
    assert (AuditRecord.objects.count(), table.values.count()) == before
