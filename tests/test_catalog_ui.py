"""The catalog and data-standards pages, through Django's test client: real views, real services, real
database (the Dingzhou demo, conftest.demo). `force_login` skips the password and two-factor steps.

The pages are in Chinese by default and some of their words are not translated yet, so the assertions
look at what does not depend on the language: URLs, form actions, field ids and the data itself."""

from __future__ import annotations

import re

import pytest

from shuzheng.catalog import excel, services
from shuzheng.catalog.models import OpenType, Resource, Status
from shuzheng.core.errors import FieldError, ValidationFailed

OFFICER = "officer-public-security"


@pytest.fixture
def as_user(client, demo):
    from shuzheng.org.models import User

    def login(username: str):
        client.force_login(User.objects.get(username=username))
        return client

    return login


def html(response) -> str:
    return response.content.decode()


def field_errors(response, name: str) -> str:
    """The text of the error block the templates put under field `name` ('' when none)."""
    match = re.search(rf'<div id="id_{re.escape(name)}_error">(.*?)</div>', html(response), re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def url_of(code: str, action: str = "") -> str:
    return f"/catalog/{code.replace('/', '-')}/" + (f"{action}/" if action else "")


def listed_codes(response) -> set[str]:
    return {c.replace("-", "/") for c in re.findall(r'<p class="hit-title"><a href="/catalog/([0-9-]+)/">', html(response))}


def resource_data(demo, name: str, **overrides) -> dict:
    """A valid registration for the public security bureau (what the services take)."""
    data = {"category": "3", "provider": demo.org("public-security").code, "name": name,
            "summary": "测试用的数据资源。", "format": "database", "sharing_type": "unconditional",
            "sharing_methods": ["interface"], "open_type": "open", "update_cycle": "daily",
            "items": [{"name": "记录编号", "data_type": "string", "length": 20}]}
    data.update(overrides)
    return data


def published(demo, name: str, **overrides) -> Resource:
    officer, reviewer = demo.actor(OFFICER), demo.actor("reviewer")
    resource = services.create_resource(officer, resource_data(demo, name, **overrides))
    services.submit(officer, resource.code)
    services.review(reviewer, resource.code, "approve")
    services.publish(reviewer, resource.code)
    return Resource.objects.get(pk=resource.pk)


def form_post(demo, rows: list[dict], **overrides) -> dict:
    """What the resource form posts: the fields, and the item rows of the formset (blank rows included)."""
    data = {"category": "3", "provider": demo.org("public-security").code, "name": "暂住人员登记信息",
            "summary": "暂住人员的登记信息。", "format": "database", "sharing_type": "conditional",
            "sharing_conditions": "用于人口服务管理", "sharing_methods": ["interface", "table"], "sharing_basis": "",
            "open_type": "closed", "open_conditions": "", "update_cycle": "monthly", "level": "", "owner": "",
            "manager": "", "steward": "", "keywords": "暂住, 登记", "spatial_coverage": "定州市",
            "time_coverage_start": "2020-01-01", "time_coverage_end": "", "related_codes": "",
            "items-TOTAL_FORMS": str(len(rows)), "items-INITIAL_FORMS": str(len(rows)),
            "items-MIN_NUM_FORMS": "0", "items-MAX_NUM_FORMS": "1000"}
    for n, row in enumerate(rows):
        for key, value in row.items():
            if value is True:
                data[f"items-{n}-{key}"] = "on"
            elif value not in (False, None):
                data[f"items-{n}-{key}"] = value
    data.update(overrides)
    return data


BLANK = {"nullable": True}


# ---- every page renders, with one <h1>, and refuses whom it must ----------------------------------------


@pytest.mark.parametrize(
    "username, url, status",
    [
        (None, "/catalog/", 200),
        (None, "/catalog/?q=人口&kind=base&sort=name&page=2", 200),
        (None, "/catalog/?page=99999", 200),
        (None, "/catalog/?sort=sideways", 200),  # the service's refusal, shown at the field
        (None, "/standards/", 302),
        (None, "/standards/elements/", 200),
        (None, "/standards/elements/?q=身份", 200),
        (None, "/standards/elements/DE00001/", 200),
        (None, "/standards/elements/XX99999/", 404),
        (None, "/standards/code-tables/", 200),
        (None, "/standards/code-tables/GB_T_2261.1/", 200),
        (None, "/standards/code-tables/GB_T_2260/?q=定州", 200),
        (None, "/standards/code-tables/NO_SUCH/", 404),
        (None, "/standards/sources/", 200),
        (None, "/catalog/999999999-999999/", 404),
        (None, "/catalog/new/", 302),
        (None, "/catalog/work/", 302),
        (None, "/catalog/import/", 302),
        (OFFICER, "/catalog/", 200),
        (OFFICER, "/catalog/new/", 200),
        (OFFICER, "/catalog/work/", 200),
        (OFFICER, "/catalog/import/", 200),
        ("reviewer", "/catalog/work/", 200),
        ("reviewer", "/catalog/new/", 403),
        ("reviewer", "/catalog/import/", 403),
        ("staff", "/catalog/work/", 200),
        ("staff", "/catalog/new/", 403),
        ("staff", "/catalog/import/", 403),
    ],
)
def test_page_status(client, as_user, demo, username, url, status):
    response = (as_user(username) if username else client).get(url)
    assert response.status_code == status
    if status == 200:
        page = html(response)
        assert page.count("<h1") == 1
        assert "style=" not in page and "<script>" not in page  # the CSP allows neither


def test_anonymous_search_sees_only_open_resources_and_no_edit_buttons(client, demo):
    open_one = published(demo, "测试开放资源甲")
    closed = published(demo, "测试不开放资源乙", open_type="closed")
    page = client.get("/catalog/", {"q": "测试"})
    assert page.status_code == 200
    codes = listed_codes(page)
    assert open_one.code in codes and closed.code not in codes
    # Whatever the public finds is published and open.
    everything = listed_codes(client.get("/catalog/"))
    assert everything
    for resource in Resource.objects.filter(code__in=everything).select_related("published"):
        assert resource.status == Status.PUBLISHED
        assert resource.published.open_type in (OpenType.OPEN, OpenType.CONDITIONAL)
    text = html(page)
    for url in ("/catalog/new/", "/catalog/import/", "/catalog/work/"):
        assert url not in text
    assert "/api/v1/catalog/export?q=" in text  # export is public: it exports what the caller may see
    # The base page works without an account: the public navigation and a way to sign in.
    assert 'href="/catalog/"' in text and 'href="/standards/"' in text and 'href="/login/"' in text
    assert client.get(url_of(open_one.code)).status_code == 200
    assert client.get(url_of(closed.code)).status_code == 404
    detail = html(client.get(url_of(open_one.code)))
    assert "测试开放资源甲" in detail and "<form method=\"post\" action=\"/catalog/" not in detail


def test_search_facets_filter_and_count(as_user, demo):
    published(demo, "测试检索资源丙")
    client = as_user(OFFICER)
    page = html(client.get("/catalog/", {"q": "测试检索资源丙"}))
    assert 'name="provider" value="%s"' % demo.org("public-security").code in page
    assert re.search(r'id="facet-open_type-open" checked|name="open_type" value="open"', page)
    ticked = html(client.get("/catalog/", {"q": "测试检索资源丙", "open_type": "open"}))
    assert 'value="open" id="facet-open_type-open" checked' in ticked
    none = client.get("/catalog/", {"q": "测试检索资源丙", "open_type": "closed"})
    assert not listed_codes(none)
    # The facet the user ticked stays on the page, so it can be unticked.
    assert 'value="closed" id="facet-open_type-closed" checked' in html(none)
    # Buttons for a data officer.
    assert "/catalog/new/" in page and "/catalog/import/" in page


# ---- the lifecycle through the pages ----------------------------------------------------------------------


def test_officer_registers_reviewer_returns_officer_fixes_reviewer_publishes(client, as_user, demo):
    officer = as_user(OFFICER)
    ok_item = {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": True}
    bad_item = {"name": "登记日期", "data_type": "date", "element": "XX99999", "nullable": True}
    before = Resource.objects.count()

    # An unknown element: the service's error on that row (row 3: an empty row in between is skipped).
    response = officer.post("/catalog/new/", form_post(demo, [ok_item, BLANK, bad_item, BLANK]))
    assert response.status_code == 200
    assert field_errors(response, "items-2-element")
    assert not field_errors(response, "items-0-element") and not field_errors(response, "name")
    assert 'value="暂住人员登记信息"' in html(response)  # what was typed is kept
    assert Resource.objects.count() == before

    # "Add more rows" keeps what was typed and adds five blank rows.
    response = officer.post("/catalog/new/", form_post(demo, [ok_item, BLANK, bad_item, BLANK], add_rows="1"))
    assert response.status_code == 200
    assert 'name="items-TOTAL_FORMS" value="9"' in html(response) and 'id="id_items-8-name"' in html(response)
    assert not field_errors(response, "items-2-element") and Resource.objects.count() == before

    bad_item["element"] = ""
    response = officer.post("/catalog/new/", form_post(demo, [ok_item, BLANK, bad_item, BLANK]))
    assert response.status_code == 302
    resource = Resource.objects.get(versions__name="暂住人员登记信息")
    assert response["Location"] == url_of(resource.code)
    version = resource.pending
    assert version.status == Status.DRAFT and resource.provider == demo.org("public-security")
    assert list(version.items.values_list("name", flat=True)) == ["公民身份号码", "登记日期"]
    assert version.sharing_methods == ["interface", "table"] and version.keywords == ["暂住", "登记"]
    assert str(version.time_coverage_start) == "2020-01-01"

    page = html(officer.get(url_of(resource.code)))
    assert f'action="{url_of(resource.code, "submit")}"' in page and url_of(resource.code, "edit") in page
    assert officer.post(url_of(resource.code, "submit")).status_code == 302
    assert Resource.objects.get(pk=resource.pk).status == Status.SUBMITTED

    reviewer = as_user("reviewer")
    page = html(reviewer.get(url_of(resource.code)))
    assert f'action="{url_of(resource.code, "review")}"' in page and 'value="return"' in page
    # Returning needs a comment: the service says so at the field, and nothing changes.
    response = reviewer.post(url_of(resource.code, "review"), {"decision": "return", "comment": "  "})
    assert response.status_code == 200 and field_errors(response, "comment")
    assert Resource.objects.get(pk=resource.pk).status == Status.SUBMITTED
    comment = "请补充共享条件的法律依据。"
    assert reviewer.post(url_of(resource.code, "review"), {"decision": "return", "comment": comment}).status_code == 302
    assert Resource.objects.get(pk=resource.pk).status == Status.RETURNED

    officer = as_user(OFFICER)
    page = html(officer.get(url_of(resource.code)))
    returned = re.search(r'<div class="returned".*?</div>', page, re.S)
    assert returned and comment in returned.group(0)
    edit = officer.get(url_of(resource.code, "edit"))
    assert edit.status_code == 200 and 'value="暂住人员登记信息"' in html(edit) and 'value="DE00001" selected' in html(edit)
    response = officer.post(url_of(resource.code, "edit"),
                            form_post(demo, [ok_item, bad_item, BLANK], sharing_conditions="依据《居住证暂行条例》"))
    assert response.status_code == 302
    assert Resource.objects.get(pk=resource.pk).pending.sharing_conditions == "依据《居住证暂行条例》"
    assert officer.post(url_of(resource.code, "submit")).status_code == 302

    reviewer = as_user("reviewer")
    assert reviewer.post(url_of(resource.code, "review"), {"decision": "approve", "comment": ""}).status_code == 302
    assert f'action="{url_of(resource.code, "publish")}"' in html(reviewer.get(url_of(resource.code)))
    assert reviewer.post(url_of(resource.code, "publish")).status_code == 302
    resource = Resource.objects.get(pk=resource.pk)
    assert resource.status == Status.PUBLISHED and resource.published.number == 1
    history = html(reviewer.get(url_of(resource.code)))
    assert comment in history and "reviewer" in history


def test_work_lists(as_user, demo):
    officer = demo.actor(OFFICER)
    draft = services.create_resource(officer, resource_data(demo, "测试工作清单草稿"))
    submitted = services.create_resource(officer, resource_data(demo, "测试工作清单待审"))
    services.submit(officer, submitted.code)
    page = html(as_user(OFFICER).get("/catalog/work/"))
    assert url_of(draft.code) in page and url_of(submitted.code) in page
    page = html(as_user("reviewer").get("/catalog/work/"))
    assert url_of(submitted.code) in page and url_of(draft.code) not in page
    page = html(as_user("officer-civil-affairs").get("/catalog/work/"))
    assert url_of(draft.code) not in page and url_of(submitted.code) not in page


def test_mount_unmount_revision_and_diff(client, as_user, demo):
    resource = published(demo, "测试挂接资源丁")
    client = as_user(OFFICER)
    page = html(client.get(url_of(resource.code)))
    assert f'action="{url_of(resource.code, "mount")}"' in page and 'name="target"' in page
    response = client.post(url_of(resource.code, "mount"), {"kind": "table", "target": "Not A Table"})
    assert response.status_code == 200 and field_errors(response, "target")
    assert not Resource.objects.get(pk=resource.pk).is_mounted
    response = client.post(url_of(resource.code, "mount"), {"kind": "table", "target": "public_security.test_table"})
    assert response.status_code == 302
    resource = Resource.objects.get(pk=resource.pk)
    assert resource.mount_kind == "table" and resource.mount_target == "public_security.test_table"
    assert "public_security.test_table" in html(client.get(url_of(resource.code)))
    assert client.post(url_of(resource.code, "unmount")).status_code == 302
    assert not Resource.objects.get(pk=resource.pk).is_mounted

    # A new version: the published one stays live while version 2 is a draft.
    response = client.post(url_of(resource.code, "revise"))
    assert response.status_code == 302 and response["Location"] == url_of(resource.code, "edit")
    rows = [{"name": "记录编号", "data_type": "string", "length": "40", "nullable": True},
            {"name": "登记机关", "data_type": "string", "length": "100", "nullable": True}]
    response = client.post(url_of(resource.code, "edit"),
                           form_post(demo, rows, name="测试挂接资源丁（修订）", open_type="open", sharing_type="unconditional"))
    assert response.status_code == 302
    resource = Resource.objects.get(pk=resource.pk)
    assert resource.published.name == "测试挂接资源丁" and resource.pending.number == 2
    page = html(client.get(url_of(resource.code)))
    assert "测试挂接资源丁" in page and "?version=2" in page
    assert "测试挂接资源丁（修订）" in html(client.get(url_of(resource.code), {"version": 2}))

    diff = client.get(url_of(resource.code, "diff"), {"from": 1, "to": 2})
    assert diff.status_code == 200
    page = html(diff)
    changed = re.search(r'<td class="old">(.*?)</td><td class="new">(.*?)</td>', page, re.S)
    assert changed and changed.groups() == ("测试挂接资源丁", "测试挂接资源丁（修订）")
    assert 'class="item-added"' in page and "登记机关" in page  # an added item
    assert 'class="changed new"><ins>40</ins>' in page  # a changed attribute, highlighted
    # Version numbers the resource does not have come back at the field.
    response = client.get(url_of(resource.code, "diff"), {"from": 1, "to": 9})
    assert response.status_code == 200 and field_errors(response, "to")
    # The public sees the published version and no draft.
    client.logout()
    assert client.get(url_of(resource.code), {"version": 2}).status_code == 404
    assert client.get(url_of(resource.code)).status_code == 200


def test_deprecate_needs_a_reason(as_user, demo):
    resource = published(demo, "测试停用资源戊")
    client = as_user(OFFICER)
    response = client.post(url_of(resource.code, "deprecate"), {"reason": ""})
    assert response.status_code == 200 and field_errors(response, "reason")
    assert client.post(url_of(resource.code, "deprecate"), {"reason": "业务系统停用"}).status_code == 302
    assert Resource.objects.get(pk=resource.pk).status == Status.DEPRECATED


def test_a_refused_step_is_a_message_not_a_500(as_user, demo):
    resource = published(demo, "测试重复发布资源己")
    client = as_user("reviewer")
    response = client.post(url_of(resource.code, "publish"), follow=True)
    assert response.status_code == 200
    assert 'class="msg error"' in html(response)


def test_other_departments_get_403_or_404(client, as_user, demo):
    live = published(demo, "测试他部门资源庚")
    draft = services.create_resource(demo.actor(OFFICER), resource_data(demo, "测试他部门草稿辛"))
    staff = as_user("staff")  # civil affairs
    page = html(staff.get(url_of(live.code)))
    assert "/edit/" not in page and "/submit/" not in page and "/mount/" not in page and "/revise/" not in page
    assert staff.get(url_of(live.code, "edit")).status_code == 403
    for action, data in (("submit", {}), ("review", {"decision": "approve"}), ("publish", {}), ("revise", {}),
                         ("mount", {"kind": "table", "target": "x.y"}), ("unmount", {}),
                         ("deprecate", {"reason": "不需要了"})):
        assert staff.post(url_of(live.code, action), data).status_code == 403, action
    # Another department's draft does not exist for them.
    assert staff.get(url_of(draft.code)).status_code == 404
    assert staff.get(url_of(draft.code, "edit")).status_code == 404
    for action in ("submit", "review", "publish"):
        assert staff.post(url_of(draft.code, action), {"decision": "approve"}).status_code == 404, action
    # Another department's data officer is no better off; the reviewer does not edit.
    other = as_user("officer-civil-affairs")
    assert other.get(url_of(live.code, "edit")).status_code == 403
    assert other.post(url_of(draft.code, "submit")).status_code == 404
    assert as_user("reviewer").get(url_of(draft.code, "edit")).status_code == 403
    # Nothing changed, and a visitor is sent to sign in first.
    assert Resource.objects.get(pk=draft.pk).status == Status.DRAFT
    client.logout()
    response = client.post(url_of(live.code, "submit"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# ---- Excel import ---------------------------------------------------------------------------------------


def test_import_shows_every_error_and_imports_nothing(as_user, demo, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    def refuse(actor, file):
        assert actor.user.username == OFFICER and file.read() == b"workbook"
        raise ValidationFailed("2 problems", [FieldError("资源!C5", "共享类型不能为空"),
                                              FieldError("信息项!R12C28", "未知的数据元 XX1")])

    monkeypatch.setattr(excel, "import_workbook", refuse)
    client = as_user(OFFICER)
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("catalog.xlsx", b"workbook")})
    assert response.status_code == 422
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", html(response))
    assert rows == [("资源", "5", "C", "共享类型不能为空"), ("信息项", "12", "AB", "未知的数据元 XX1")]

    monkeypatch.setattr(excel, "import_workbook", lambda actor, file: [])
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("catalog.xlsx", b"workbook")})
    assert response.status_code == 302 and response["Location"].startswith("/catalog/work/")
    # No file: Django's own message at the field.
    response = client.post("/catalog/import/", {})
    assert response.status_code == 200 and field_errors(response, "file")


def test_import_with_the_real_importer(as_user, demo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = as_user(OFFICER)
    before = Resource.objects.count()
    # Not a workbook at all: the importer's message at the file field.
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("catalog.xlsx", b"not a workbook")})
    assert response.status_code == 200 and field_errors(response, "file")
    # The empty template: a problem inside the workbook, in the table with its sheet and row.
    response = client.post("/catalog/import/", {"file": SimpleUploadedFile("catalog.xlsx", excel.template_workbook())})
    assert response.status_code == 422
    assert re.search(r"<tr><td>[^<]+</td><td>\d+</td><td>[A-Z]+</td><td>[^<]+</td></tr>", html(response))
    assert Resource.objects.count() == before


# ---- data standards -------------------------------------------------------------------------------------


def test_element_and_code_table_pages(client, demo):
    page = html(client.get("/standards/elements/", {"q": "公民身份号码"}))
    assert 'href="/standards/elements/DE00001/"' in page and "DE00002" not in page
    element = services.find_element("DE00003")  # sex, with its GB/T 2261.1 code table
    page = html(client.get("/standards/elements/DE00003/"))
    assert element.definition in page and f'href="/standards/code-tables/{element.code_table.code}/"' in page
    page = html(client.get(f"/standards/code-tables/{element.code_table.code}/"))
    for value in element.code_table.values.all():
        assert f"<code>{value.code}</code>" in page
    page = html(client.get("/standards/code-tables/GB_T_2260/", {"q": "130682"}))
    assert "<code>130682</code> 定州市" in page  # a town's parent, with its name
    page = html(client.get("/standards/code-tables/"))
    assert 'href="/standards/code-tables/GB_T_4754/"' in page


def test_element_page_lists_the_published_resources_carrying_it(client, demo):
    carrier = published(demo, "测试携带数据元资源壬", items=[
        {"name": "证件号码", "element": "DE00010"}, {"name": "记录编号", "data_type": "string"}])
    page = html(client.get("/standards/elements/DE00010/"))
    assert url_of(carrier.code) in page and "证件号码" in page


def test_source_report(client, demo):
    from shuzheng.org.services import Actor

    response = client.get("/standards/sources/")
    assert response.status_code == 200
    page = html(response)
    report = services.source_report(Actor())  # what the public may see
    for entry in report["multiple_collection"] + report["no_authoritative_source"]:
        assert f'href="/standards/elements/{entry["identifier"]}/"' in page
    assert report["no_authoritative_source"], "the demo registry has elements without a source"
