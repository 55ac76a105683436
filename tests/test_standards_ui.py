"""The data-standards forms (data elements and code tables), through Django's test client with the Dingzhou
demo (conftest.demo): who sees the New/Edit buttons and may open the forms, what is saved and audited, and
how the service's errors come back next to the fields — for code values, naming the line they came from.

Assertions look at what does not depend on the language (URLs, field ids, codes and the data itself)."""

from __future__ import annotations

import re

import pytest

from shuzheng.audit.models import AuditRecord
from shuzheng.catalog.forms import parse_code_values
from shuzheng.catalog.models import CodeTable, DataElement

OFFICER = "officer-public-security"

ELEMENT_NEW = "/standards/elements/new/"
TABLE_NEW = "/standards/code-tables/new/"


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


def line_named(errors: str, n: int) -> bool:
    return re.search(rf"(?<!\d){n}(?!\d)", errors) is not None


def audits(action: str) -> int:
    return AuditRecord.objects.filter(action=action).count()


def element_post(**overrides) -> dict:
    data = {"identifier": "DE09001", "name": "测试数据元", "definition": "测试用的数据元。", "data_type": "string",
            "format": "c..30", "value_domain": "任意文字", "code_table": "", "level": "general"}
    data.update(overrides)
    return data


def table_post(values: str, **overrides) -> dict:
    data = {"code": "DZ_TEST", "name": "测试代码表", "standard": "定州市地方代码表", "description": "测试用。",
            "values": values}
    data.update(overrides)
    return data


# ---- who may ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ELEMENT_NEW, "/standards/elements/DE00001/edit/", TABLE_NEW,
                                 "/standards/code-tables/GB_T_2261.1/edit/"])
def test_anonymous_is_sent_to_sign_in(client, demo, url):
    for response in (client.get(url), client.post(url, element_post())):
        assert response.status_code == 302
        assert "/login" in response["Location"]


@pytest.mark.parametrize("url", [ELEMENT_NEW, "/standards/elements/DE00001/edit/", TABLE_NEW,
                                 "/standards/code-tables/GB_T_2261.1/edit/"])
def test_officer_is_refused(as_user, demo, url):
    client = as_user(OFFICER)
    assert client.get(url).status_code == 403
    before = DataElement.objects.get(identifier="DE00001").definition
    assert client.post(url, element_post(definition="改掉")).status_code == 403
    assert client.post(url, table_post("1,甲")).status_code == 403
    assert DataElement.objects.get(identifier="DE00001").definition == before
    assert not DataElement.objects.filter(identifier="DE09001").exists()
    assert not CodeTable.objects.filter(code="DZ_TEST").exists()


@pytest.mark.parametrize("url, button", [
    ("/standards/elements/", ELEMENT_NEW),
    ("/standards/elements/DE00001/", "/standards/elements/DE00001/edit/"),
    ("/standards/code-tables/", TABLE_NEW),
    ("/standards/code-tables/GB_T_2261.1/", "/standards/code-tables/GB_T_2261.1/edit/"),
])
def test_buttons_only_for_those_who_maintain_the_standards(client, as_user, demo, url, button):
    assert f'href="{button}"' not in html(client.get(url))
    assert f'href="{button}"' not in html(as_user(OFFICER).get(url))
    assert f'href="{button}"' in html(as_user("reviewer").get(url))


def test_unknown_element_or_table_is_not_found(as_user, demo):
    client = as_user("reviewer")
    assert client.get("/standards/elements/XX99999/edit/").status_code == 404
    assert client.get("/standards/code-tables/NO_SUCH/edit/").status_code == 404


@pytest.mark.parametrize("url", [ELEMENT_NEW, "/standards/elements/DE00003/edit/", TABLE_NEW,
                                 "/standards/code-tables/GB_T_2261.1/edit/"])
def test_forms_render(as_user, demo, url):
    page = html(as_user("reviewer").get(url))
    assert page.count("<h1") == 1
    assert "style=" not in page and "<script>" not in page  # the CSP allows neither


# ---- data elements ------------------------------------------------------------------------------------


def test_reviewer_creates_and_edits_an_element(as_user, demo):
    client = as_user("reviewer")
    page = html(client.get(ELEMENT_NEW))
    assert 'name="identifier"' in page and 'value="GB_T_2261.1"' in page  # the code tables to pick from
    created = audits("catalog.element_create")

    response = client.post(ELEMENT_NEW, element_post(code_table="GB_T_2261.1", level="important"))
    assert response.status_code == 302 and response["Location"] == "/standards/elements/DE09001/"
    element = DataElement.objects.get(identifier="DE09001")
    assert (element.name, element.format, element.code_table.code, element.level) == (
        "测试数据元", "c..30", "GB_T_2261.1", "important")
    assert audits("catalog.element_create") == created + 1
    shown = client.get(response["Location"])
    assert 'class="msg success"' in html(shown) and "DE09001" in html(shown)

    edit = "/standards/elements/DE09001/edit/"
    page = html(client.get(edit))
    assert 'name="identifier"' not in page  # fixed once created
    assert "测试用的数据元。</textarea>" in page and 'value="c..30"' in page
    updated = audits("catalog.element_update")
    response = client.post(edit, element_post(identifier="XX1", definition="改过的定义。", code_table="GB_T_2261.1",
                                              level="important"))
    assert response.status_code == 302 and response["Location"] == "/standards/elements/DE09001/"
    element.refresh_from_db()
    assert element.definition == "改过的定义。"
    assert audits("catalog.element_update") == updated + 1
    assert not DataElement.objects.filter(identifier="XX1").exists()


def test_duplicate_element_name_is_refused(as_user, demo):
    client = as_user("reviewer")
    taken = DataElement.objects.get(identifier="DE00002").name
    count = DataElement.objects.count()
    response = client.post(ELEMENT_NEW, element_post(name=taken))
    assert response.status_code == 200
    assert "DE00002" in field_errors(response, "name")
    assert DataElement.objects.count() == count

    # Renaming an existing element to a taken name changes nothing either.
    before = DataElement.objects.get(identifier="DE00001")
    response = client.post("/standards/elements/DE00001/edit/", element_post(
        name=taken, definition="改", data_type=before.data_type, level=before.level))
    assert response.status_code == 200 and "DE00002" in field_errors(response, "name")
    after = DataElement.objects.get(identifier="DE00001")
    assert (after.name, after.definition) == (before.name, before.definition)


def test_new_element_cannot_replace_an_existing_one(as_user, demo):
    before = DataElement.objects.get(identifier="DE00001")
    response = as_user("reviewer").post(ELEMENT_NEW, element_post(identifier="DE00001"))
    assert response.status_code == 200 and "DE00001" in field_errors(response, "identifier")
    assert DataElement.objects.get(identifier="DE00001").name == before.name


def test_element_service_errors_are_at_the_fields(as_user, demo):
    response = as_user("reviewer").post(ELEMENT_NEW, element_post(identifier="de-1", data_type="text",
                                                                  code_table="NO_SUCH"))
    assert response.status_code == 200
    for name in ("identifier", "data_type", "code_table"):
        assert field_errors(response, name), name
    assert "NO_SUCH" in field_errors(response, "code_table")
    assert not DataElement.objects.filter(name="测试数据元").exists()


# ---- code tables --------------------------------------------------------------------------------------


def test_reviewer_creates_a_code_table_from_pasted_lines(as_user, demo):
    client = as_user("reviewer")
    created = audits("catalog.codetable_create")
    lines = "01,农业\n\n0101,谷物种植,01\n0102\t蔬菜种植\t01\n02\t林业\t\n03，渔业\n04,\"养殖, 捕捞\"\n"
    response = client.post(TABLE_NEW, table_post(lines))
    assert response.status_code == 302 and response["Location"] == "/standards/code-tables/DZ_TEST/"
    table = CodeTable.objects.get(code="DZ_TEST")
    assert (table.name, table.standard, table.description) == ("测试代码表", "定州市地方代码表", "测试用。")
    assert list(table.values.order_by("position").values_list("code", "name", "parent_code")) == [
        ("01", "农业", ""), ("0101", "谷物种植", "01"), ("0102", "蔬菜种植", "01"), ("02", "林业", ""),
        ("03", "渔业", ""), ("04", "养殖, 捕捞", "")]
    assert audits("catalog.codetable_create") == created + 1

    # The edit form shows the values the same way, and saving them unchanged changes nothing.
    edit = "/standards/code-tables/DZ_TEST/edit/"
    page = html(client.get(edit))
    assert 'name="code"' not in page
    assert "01,农业\n0101,谷物种植,01\n0102,蔬菜种植,01\n02,林业\n03,渔业\n04,&quot;养殖, 捕捞&quot;\n" in page
    updated = audits("catalog.codetable_update")
    response = client.post(edit, table_post("01,农业\n0101,谷物种植,01\n0102,蔬菜种植,01\n02,林业\n03,渔业\n"
                                            "04,\"养殖, 捕捞\"\n"))
    assert response.status_code == 302
    assert audits("catalog.codetable_update") == updated

    response = client.post(edit, table_post("01,农业\n02,林业\n", name="改名"))
    assert response.status_code == 302
    table.refresh_from_db()
    assert table.name == "改名" and table.values.count() == 2
    assert audits("catalog.codetable_update") == updated + 1


def test_unreadable_line_is_named_and_nothing_is_saved(as_user, demo):
    response = as_user("reviewer").post(TABLE_NEW, table_post("01,农业\n02 林业\n03,渔业,01,多余\n"))
    assert response.status_code == 200
    errors = field_errors(response, "values")
    assert line_named(errors, 2) and line_named(errors, 3) and not line_named(errors, 1)
    assert "01,农业\n02 林业" in html(response)  # what was typed comes back
    assert not CodeTable.objects.filter(code="DZ_TEST").exists()


def test_duplicate_code_is_named_by_line_and_nothing_is_saved(as_user, demo):
    client = as_user("reviewer")
    # Value 2 (0-based) is on line 4 (a blank line is skipped).
    response = client.post(TABLE_NEW, table_post("01,农业\n\n02,林业\n01\t重复\n03,渔业,99\n"))
    assert response.status_code == 200
    errors = field_errors(response, "values")
    assert re.search(r"(?<!\d)4(?!\d)", errors) and "01" in errors
    assert re.search(r"(?<!\d)5(?!\d)", errors) and "99" in errors  # an unknown parent, on its line
    assert not CodeTable.objects.filter(code="DZ_TEST").exists()

    # Editing a table into duplicates leaves it as it was.
    before = list(CodeTable.objects.get(code="GB_T_2261.1").values.values_list("code", "name"))
    response = client.post("/standards/code-tables/GB_T_2261.1/edit/",
                           table_post("0,未知的性别\n1,男性\n1,女性\n", name="人的性别代码"))
    assert response.status_code == 200 and re.search(r"(?<!\d)3(?!\d)", field_errors(response, "values"))
    assert list(CodeTable.objects.get(code="GB_T_2261.1").values.values_list("code", "name")) == before


def test_code_table_field_errors(as_user, demo):
    client = as_user("reviewer")
    response = client.post(TABLE_NEW, table_post("1,甲", code="bad code!"))
    assert response.status_code == 200 and field_errors(response, "code")
    response = client.post(TABLE_NEW, table_post("1,甲", code="GB_T_2261.1"))
    assert response.status_code == 200 and "GB_T_2261.1" in field_errors(response, "code")
    assert CodeTable.objects.get(code="GB_T_2261.1").values.count() == 4
    assert not CodeTable.objects.filter(code="bad code!").exists()


def test_parse_code_values():
    values, lines, errors = parse_code_values("a,b\r\n\n c , d , e \nx\ty\t\t\n1,2,3,4\nonly\n" + "9" * 21 + ",z")
    assert values == [{"code": "a", "name": "b", "parent": ""}, {"code": "c", "name": "d", "parent": "e"},
                      {"code": "x", "name": "y", "parent": ""}]
    assert lines == [1, 3, 4]
    assert [re.search(r"\d+", e).group() for e in errors] == ["5", "6", "7"]
