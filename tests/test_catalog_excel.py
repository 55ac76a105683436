"""The catalog workbook (issue 3 item 7): a valid file imports atomically and is audited; a file with any
error imports nothing and reports every error by sheet and cell; files that are not workbooks, too large or
zip bombs are refused; the export escapes cells spreadsheet programs would execute and round-trips through
the importer; the CLI and the API endpoints. Real .xlsx files are written with openpyxl into tmp_path.

The tests create their own resources and never assume what the demo catalog holds."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
import zipfile

import openpyxl
import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import translation

from catalog_helpers import marker
from shuzheng import cli
from shuzheng.audit.models import AuditRecord
from shuzheng.catalog import excel, services
from shuzheng.catalog.models import Category, Resource, Status
from shuzheng.core.errors import Forbidden, ValidationFailed
from shuzheng.org import services as org_services

CODE = re.compile(r"^\d{9}/\d{6}$")
EN = {"Accept-Language": "en"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RESOURCE_TITLES = [c.title for c in excel.RESOURCE_COLUMNS if not c.export_only]
ITEM_TITLES = [c.title for c in excel.ITEM_COLUMNS]


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


# ---- helpers ----


def resource_row(demo, seq, **cells) -> dict:
    """A valid 资源 row (public security's population resource), overridden by column title."""
    row = {
        "序号": seq, "资源分类": "101001", "资源名称": f"户籍人口信息{uuid.uuid4().hex[:6]}",
        "资源提供方": "定州市公安局", "提供方代码": demo.org("public-security").code,
        "资源摘要": "定州市户籍人口的基本登记信息。", "资源格式": "数据库", "共享类型": "有条件共享",
        "共享条件": "用于政务服务身份核验", "共享方式": "接口、库表", "开放类型": "不予开放", "更新周期": "每日",
    }
    row.update(cells)
    return row


def item_row(seq, name, **cells) -> dict:
    return {"资源序号": seq, "信息项名称": name, **cells}


def person_items(seq) -> list[dict]:
    return [
        item_row(seq, "公民身份号码", 数据元="DE00001", 长度=18, 可为空="否", 主键="是"),
        item_row(seq, "姓名", 数据元="DE00002 姓名", 长度=50),
        item_row(seq, "登记日期", 数据类型="日期型"),
    ]


def write_workbook(path, resources: list[dict], items: list[dict], *, resource_titles=None, item_titles=None,
                   sheets=(excel.RESOURCE_SHEET, excel.ITEM_SHEET)):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, titles, rows in ((excel.RESOURCE_SHEET, resource_titles or RESOURCE_TITLES, resources),
                               (excel.ITEM_SHEET, item_titles or ITEM_TITLES, items)):
        if name not in sheets:
            continue
        ws = wb.create_sheet(name)
        ws.append(titles)
        for row in rows:
            ws.append([row.get(t) for t in titles])
    wb.save(path)
    return path


def errors_of(exc: ValidationFailed) -> dict[str, str]:
    return {e.field: str(e.message) for e in exc.errors}


def cells(path, sheet) -> list[list]:
    ws = openpyxl.load_workbook(path)[sheet]
    return [[c.value for c in row] for row in ws.iter_rows()]


def as_user(demo, name, csrf=True) -> Client:
    client = Client(enforce_csrf_checks=True, headers=EN)
    client.force_login(demo.user(name))
    if csrf:
        token = uuid.uuid4().hex
        client.cookies[settings.CSRF_COOKIE_NAME] = token
        client.defaults["HTTP_X_CSRFTOKEN"] = token
    return client


def publish(demo, code, officer="officer-public-security"):
    services.submit(demo.actor(officer), code)
    services.review(demo.actor("reviewer"), code, "approve")
    services.publish(demo.actor("reviewer"), code)


# ---- import ----


def test_a_valid_workbook_imports_atomically_as_drafts(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    audited = AuditRecord.objects.filter(action="catalog.resource_create").count()
    first = resource_row(demo, 1, 关键字="户籍、人口 身份", 时间范围起=dt.datetime(2020, 1, 1), 时间范围止="2025-12-31",
                         分级="重要", 数据管理员="officer-public-security", 权属单位="定州市公安局")
    # The second row names its provider by name only, and uses codes instead of labels.
    second = resource_row(demo, 2, 提供方代码=None, 资源格式="spreadsheet", 共享类型="unconditional", 共享条件=None,
                          共享方式="file", 开放类型="closed", 更新周期="monthly")
    items = person_items(1) + [item_row(2, "门牌号", 数据类型="string", 长度=20.0, 可为空="是"),
                               item_row(2, "户数", 数据类型="整型", 分级="一般")]
    path = write_workbook(tmp_path / "ok.xlsx", [first, second], items)

    created = excel.import_workbook(officer, path)

    assert len(created) == 2 and all(CODE.match(r.code) for r in created)
    one, two = (Resource.objects.get(pk=r.pk) for r in created)
    assert (one.status, one.pending.status, one.pending.number) == (Status.DRAFT, Status.DRAFT, 1)
    assert one.pending.name == first["资源名称"] and one.pending.sharing_methods == ["interface", "table"]
    assert one.pending.keywords == ["户籍", "人口", "身份"] and one.pending.level == "important"
    assert (one.pending.time_coverage_start, one.pending.time_coverage_end) == (dt.date(2020, 1, 1),
                                                                                dt.date(2025, 12, 31))
    assert one.pending.steward.username == "officer-public-security"
    snap = services.snapshot(one.pending)
    assert list(snap["items"]) == ["公民身份号码", "姓名", "登记日期"]
    assert snap["items"]["公民身份号码"] == {"data_type": "string", "length": 18, "nullable": False, "is_key": True,
                                        "element": "DE00001", "level": "important", "authoritative": False,
                                        "subject": "personal", "sensitive_personal": False, "domestic_only": False}
    assert snap["items"]["姓名"]["element"] == "DE00002" and snap["items"]["登记日期"]["data_type"] == "date"
    assert two.provider == demo.org("public-security") and two.pending.format == "spreadsheet"
    assert services.snapshot(two.pending)["items"]["门牌号"]["length"] == 20
    records = AuditRecord.objects.filter(action="catalog.resource_create").order_by("-seq")[:2]
    assert AuditRecord.objects.filter(action="catalog.resource_create").count() == audited + 2
    assert {r.object_id for r in records} == {str(r.pk) for r in created}
    assert {r.actor for r in records} == {"officer-public-security"}


def test_a_workbook_with_errors_imports_nothing_and_lists_every_error(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    before = (Resource.objects.count(), AuditRecord.objects.count(),
              Category.objects.get(code="101001").next_sequence)
    rows = [
        resource_row(demo, 1, 资源名称=None),                                     # row 2: missing name
        resource_row(demo, 2, 提供方代码="91130682MA00000000", 更新周期="每世纪"),  # row 3: unknown provider
        resource_row(demo, 3),                                                   # row 4: its item's element
        resource_row(demo, 4, 共享类型="不予共享", 共享条件=None, 共享方式=None),   # row 5: no legal basis
        resource_row(demo, 5, 开放类型="无条件开放", 分级="重要"),                  # row 6: opened but 重要
        resource_row(demo, 6),                                                   # row 7: valid on its own
    ]
    items = [item_row(s, "备注", 数据类型="字符型") for s in (1, 2, 4, 5, 6)]
    items += [item_row(3, "公民身份号码", 数据元="DE99999", 数据类型="字符型"),                      # 信息项 row 7
              item_row(99, "孤儿项", 数据类型="字符型"),                            # 信息项 row 8
              item_row(6, "是否有效", 数据类型="布尔型", 主键="也许")]               # 信息项 row 9
    path = write_workbook(tmp_path / "bad.xlsx", rows, items)

    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, path)

    errors = errors_of(caught.value)
    assert errors["资源!C2"].startswith("资源名称: ") and "required" in errors["资源!C2"]
    assert errors["资源!F3"].startswith("提供方代码: ") and "91130682MA00000000" in errors["资源!F3"]
    assert errors["资源!O3"].startswith("更新周期: ") and "每世纪" in errors["资源!O3"]  # same row, still checked
    assert errors["信息项!G7"].startswith("数据元: ") and "DE99999" in errors["信息项!G7"]
    assert errors["资源!K5"].startswith("不予共享依据: ") and "legal basis" in errors["资源!K5"]
    assert errors["资源!M6"].startswith("开放类型: ") and "general" in errors["资源!M6"]
    assert errors["信息项!A8"].startswith("资源序号: ") and "99" in errors["信息项!A8"]
    assert errors["信息项!F9"].startswith("主键: ")
    assert len(caught.value.errors) == 8, errors
    assert "8 problems" in caught.value.detail and "nothing was imported" in caught.value.detail
    # Nothing was written, not even the row that was valid on its own, nor its audit record or code.
    assert (Resource.objects.count(), AuditRecord.objects.count(),
            Category.objects.get(code="101001").next_sequence) == before


def test_workbook_structure_errors(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    no_items = write_workbook(tmp_path / "a.xlsx", [resource_row(demo, 1)], [], sheets=(excel.RESOURCE_SHEET,))
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, no_items)
    assert "信息项" in errors_of(caught.value)["信息项"]

    titles = [t for t in RESOURCE_TITLES if t != "资源名称"]
    no_name = write_workbook(tmp_path / "b.xlsx", [resource_row(demo, 1)], person_items(1), resource_titles=titles)
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, no_name)
    assert errors_of(caught.value) == {"资源!A1": "资源名称: The header row lacks this column."}

    empty = write_workbook(tmp_path / "c.xlsx", [], [])
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, empty)
    assert "no resources" in caught.value.detail


def test_duplicates_in_the_file_and_codes_already_registered(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    existing = services.create_resource(officer, {
        "category": "101001", "provider": demo.org("public-security").code, "name": f"已有资源{marker()}",
        "summary": "s", "format": "database", "sharing_type": "unconditional", "sharing_methods": ["interface"],
        "open_type": "closed", "update_cycle": "daily", "items": [{"name": "姓名", "element": "DE00002"}]})
    count = Resource.objects.count()
    rows = [resource_row(demo, 1, 资源名称="重名资源"), resource_row(demo, 1, 资源名称="重名资源"),
            resource_row(demo, 3, 资源代码=existing.code), resource_row(demo, 4, 资源名称=existing.pending.name),
            resource_row(demo, 5, 资源代码="101001000/999990"), resource_row(demo, 6, 资源代码="101001000-999990")]
    items = [item_row(s, "姓名", 数据元="DE00002") for s in (1, 3, 4, 5, 6)]
    path = write_workbook(tmp_path / "dup.xlsx", rows, items)
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, path)
    errors = errors_of(caught.value)
    assert "already used in row 2" in errors["资源!A3"]
    assert "Row 2" in errors["资源!C3"]  # the same name twice for one provider
    assert "already registered" in errors["资源!D4"] and existing.code in errors["资源!D4"]
    assert "already has resource" in errors["资源!C5"] and existing.code in errors["资源!C5"]
    assert "already used in row 6" in errors["资源!D7"]  # codes compare in either spelling
    assert Resource.objects.count() == count


def test_rows_of_another_department_are_refused_and_the_public_cannot_import(demo, tmp_path):
    path = write_workbook(tmp_path / "x.xlsx", [resource_row(demo, 1, 提供方代码=demo.org("health").code,
                                                             资源提供方=None)], person_items(1))
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(demo.actor("officer-public-security"), path)
    assert "may not register" in errors_of(caught.value)["资源!F2"]
    with pytest.raises(Forbidden):
        excel.import_workbook(org_services.Actor(), path)
    with pytest.raises(Forbidden):
        excel.import_workbook(demo.actor("staff"), path)


def test_files_that_are_not_workbooks_are_refused(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    cases = {
        b"name,summary\nx,y\n": "not an Excel workbook",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600: ".xls",
        b"": "not an Excel workbook",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "a zip, but not a workbook")
    cases[buf.getvalue()] = "not an Excel workbook"
    for data, message in cases.items():
        with pytest.raises(ValidationFailed) as caught:
            excel.import_workbook(officer, data)
        assert list(errors_of(caught.value)) == ["file"] and message in caught.value.detail


def test_oversized_files_and_zip_bombs_are_refused(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    big = tmp_path / "big.xlsx"
    big.write_bytes(b"PK" + b"\0" * excel.MAX_FILE_BYTES)
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, big)
    assert errors_of(caught.value) == {"file": "The file is larger than 20 MB."}
    with pytest.raises(ValidationFailed):
        excel.import_workbook(officer, io.BytesIO(big.read_bytes()))
    # A small file that expands to far more than any catalog: refused before anything is decompressed.
    bomb = write_workbook(tmp_path / "bomb.xlsx", [resource_row(demo, 1)], person_items(1))
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as z, z.open("xl/media/pad.bin", "w") as out:
        chunk = b"\0" * (1024 * 1024)
        for _ in range(excel.MAX_UNZIPPED_BYTES // len(chunk) + 1):
            out.write(chunk)
    assert bomb.stat().st_size < 1024 * 1024
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(officer, bomb)
    assert "expands to more than" in errors_of(caught.value)["file"]


def test_row_limit(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(excel, "MAX_RESOURCE_ROWS", 2)
    path = write_workbook(tmp_path / "many.xlsx", [resource_row(demo, n) for n in (1, 2, 3)], person_items(1))
    with pytest.raises(ValidationFailed) as caught:
        excel.import_workbook(demo.actor("officer-public-security"), path)
    assert "more than 2 rows" in errors_of(caught.value)["file"]


# ---- export ----


def test_export_escapes_cells_a_spreadsheet_would_execute(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    mk = marker()
    resource = services.create_resource(officer, {
        "category": "101001", "provider": demo.org("public-security").code, "name": "=HYPERLINK(\"http://x\")",
        "summary": "@SUM(1+1)", "format": "database", "sharing_type": "conditional", "sharing_conditions": "-2+3",
        "sharing_methods": ["interface", "file"], "open_type": "closed", "update_cycle": "daily",
        "keywords": [mk], "items": [{"name": "+1", "data_type": "string"}, {"name": "姓名", "element": "DE00002"}]})
    path = tmp_path / "export.xlsx"
    path.write_bytes(excel.export_workbook(officer, q=mk))

    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [excel.RESOURCE_SHEET, excel.ITEM_SHEET, excel.HELP_SHEET]
    ws = wb[excel.RESOURCE_SHEET]
    header = [c.value for c in ws[1]]
    assert header == [c.title for c in excel.RESOURCE_COLUMNS] and ws["A1"].font.b and ws.freeze_panes == "B2"
    assert ws.column_dimensions["C"].width == 30
    row = dict(zip(header, (c for c in ws[2])))
    assert row["资源名称"].value == "'=HYPERLINK(\"http://x\")" and row["资源名称"].data_type == "s"
    assert row["资源摘要"].value == "'@SUM(1+1)" and row["共享条件"].value == "'-2+3"
    assert row["资源代码"].value == resource.code and row["共享方式"].value == "接口、文件"
    assert row["状态"].value == "草稿" and row["共享类型"].value == "有条件共享"
    assert ws.max_row == 2
    items = cells(path, excel.ITEM_SHEET)
    assert items[1][:2] == [1, "'+1"] and items[2][:2] == [1, "姓名"] and items[2][6] == "DE00002"
    help_text = " ".join(str(v) for r in cells(path, excel.HELP_SHEET) for v in r if v)
    assert "有条件共享" in help_text and "日期时间型" in help_text and "DE00001" in help_text


def test_export_then_import_round_trips(demo, tmp_path):
    officer = demo.actor("officer-public-security")
    mk = marker()
    # Both outlive the rolled-back block below: the resource the exported one relates to, and the
    # department's own classification (类 3) that the second resource is registered under.
    services.department_category(officer, demo.org("public-security"))
    anchor = services.create_resource(officer, {
        "category": "101001", "provider": demo.org("public-security").code, "name": f"关联目标{uuid.uuid4().hex[:6]}",
        "summary": "s", "format": "database", "sharing_type": "unconditional", "sharing_methods": ["table"],
        "open_type": "closed", "update_cycle": "daily", "items": [{"name": "姓名", "element": "DE00002"}]})
    originals = [
        {"category": "101001", "provider": demo.org("public-security").code, "name": f"=1+1 户籍{mk}",
         "summary": "'=已转义的文本\n第二行", "format": "api", "sharing_type": "conditional",
         "sharing_conditions": "+仅限身份核验", "sharing_methods": ["interface", "table"], "open_type": "closed",
         "update_cycle": "realtime", "level": "core", "owner": demo.org("public-security").code,
         "manager": demo.org("gov-services").code, "steward": "officer-public-security",
         "keywords": ["户籍", mk], "spatial_coverage": "定州市", "time_coverage_start": "2019-01-01",
         "time_coverage_end": "2026-06-30", "related_codes": [anchor.code],
         "items": [{"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "length": 18},
                   {"name": "-备注", "data_type": "string", "length": 500, "level": "core"}]},
        {"category": "3", "provider": demo.org("public-security").code, "name": f"不共享的资源{mk}",
         "summary": "内部", "format": "other", "sharing_type": "none", "sharing_basis": "《某条例》第九条",
         "open_type": "closed", "update_cycle": "irregular", "keywords": [mk],
         "items": [{"name": "标志", "data_type": "boolean", "nullable": True}]},
    ]
    with transaction.atomic():
        made = [services.create_resource(officer, data) for data in originals]
        expected = [(r.category.code, services.snapshot(Resource.objects.get(pk=r.pk).pending)) for r in made]
        exported = excel.export_workbook(officer, q=mk)
        # Importing the file as it is registers nothing twice.
        with pytest.raises(ValidationFailed) as caught:
            excel.import_workbook(officer, exported)
        assert sum("already registered" in e.message for e in caught.value.errors) >= 2
        transaction.set_rollback(True)
    assert not Resource.objects.filter(versions__name__in=[d["name"] for d in originals]).exists()

    created = excel.import_workbook(officer, io.BytesIO(exported))

    by_name = {r.pending.name: r for r in (Resource.objects.get(pk=c.pk) for c in created)}
    assert len(created) == 2
    for category, snap in expected:
        again = by_name[snap["fields"]["name"]]
        assert again.category.code == category
        assert services.snapshot(again.pending)["fields"] == snap["fields"]
        assert services.snapshot(again.pending)["items"] == snap["items"]


def test_anonymous_export_holds_only_open_published_resources(demo):
    officer = demo.actor("officer-public-security")
    mk = marker()
    base = {"category": "101001", "provider": demo.org("public-security").code, "summary": "s",
            "format": "database", "sharing_type": "unconditional", "sharing_methods": ["interface"],
            "update_cycle": "daily", "keywords": [mk], "items": [{"name": "性别", "element": "DE00003"}]}
    open_published = services.create_resource(officer, {**base, "name": f"开放{mk}", "open_type": "open"})
    closed_published = services.create_resource(officer, {**base, "name": f"不开放{mk}", "open_type": "closed"})
    open_draft = services.create_resource(officer, {**base, "name": f"草稿{mk}", "open_type": "open"})
    publish(demo, open_published.code)
    publish(demo, closed_published.code)

    response = Client(headers=EN).get("/api/v1/catalog/export")
    assert response.status_code == 200 and response["Content-Type"] == XLSX
    assert "attachment" in response["Content-Disposition"]
    rows = list(openpyxl.load_workbook(io.BytesIO(response.content))[excel.RESOURCE_SHEET].iter_rows(values_only=True))
    header, body = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
    assert "资源名称" in header and body
    assert all(r["状态"] == "已发布" and r["开放类型"] in ("无条件开放", "有条件开放") for r in body)
    codes = {r["资源代码"] for r in body}
    assert open_published.code in codes
    assert closed_published.code not in codes and open_draft.code not in codes
    # The officer sees the department's draft too.
    mine = as_user(demo, "officer-public-security").get(f"/api/v1/catalog/export?q={mk}")
    rows = list(openpyxl.load_workbook(io.BytesIO(mine.content))[excel.RESOURCE_SHEET].iter_rows(values_only=True))
    assert {r[3] for r in rows[1:]} == {open_published.code, closed_published.code, open_draft.code}


# ---- CLI ----


@pytest.fixture
def cli_english(monkeypatch):
    monkeypatch.setenv("SHUZHENG_LANGUAGE", "en")


def test_cli_import_lists_every_error_and_exits_2(demo, tmp_path, capsys, cli_english):
    count = Resource.objects.count()
    path = write_workbook(tmp_path / "bad.xlsx", [resource_row(demo, 1, 资源名称=None), resource_row(demo, 2)],
                          person_items(1) + [item_row(2, "x", 数据元="DE99999", 数据类型="字符型")])
    with pytest.raises(SystemExit) as exited:
        cli.main(["catalog", "import", str(path), "--as", "officer-public-security"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: 2 problems")
    assert "资源!C2 资源名称: This field is required." in err
    assert any(line.startswith("信息项!G5 数据元: ") and "DE99999" in line for line in err)
    assert Resource.objects.count() == count


def test_cli_import_and_export(demo, tmp_path, capsys, cli_english):
    mk = marker()
    path = write_workbook(tmp_path / "ok.xlsx", [resource_row(demo, 1, 关键字=mk)], person_items(1))
    cli.main(["catalog", "import", str(path)])  # the operator: no --as
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and CODE.match(out[0].split("\t")[0])
    code = out[0].split("\t")[0]
    assert Resource.objects.get(code=code).pending.created_by.startswith("cli:")

    exported = tmp_path / "out.xlsx"
    cli.main(["catalog", "export", str(exported), "--query", mk])
    rows = cells(exported, excel.RESOURCE_SHEET)
    assert [r[3] for r in rows[1:]] == [code]
    template = tmp_path / "template.xlsx"
    cli.main(["catalog", "export", str(template), "--template"])
    wb = openpyxl.load_workbook(template)
    assert wb.sheetnames == [excel.RESOURCE_SHEET, excel.ITEM_SHEET, excel.HELP_SHEET]
    assert wb[excel.RESOURCE_SHEET].max_row == 1 and wb[excel.ITEM_SHEET].max_row == 1

    with pytest.raises(SystemExit) as exited:
        cli.main(["catalog", "import", str(path), "--as", "nobody-here"])
    assert exited.value.code == 2


# ---- API ----


def test_api_import_needs_a_signed_in_officer_with_csrf(demo, tmp_path):
    mk = marker()
    path = write_workbook(tmp_path / "ok.xlsx", [resource_row(demo, 1, 关键字=mk)], person_items(1))
    count = Resource.objects.count()

    def upload(client, **kw):
        with open(path, "rb") as fh:
            return client.post("/api/v1/catalog/import", {"file": fh}, **kw)

    assert upload(Client(headers=EN)).status_code == 401
    assert upload(as_user(demo, "officer-public-security", csrf=False)).status_code == 403
    system = org_services.create_system(demo.actor("developer"), {
        "code": "grid", "name": "网格化管理系统", "organization": demo.org("civil-affairs").code})
    _key, raw = org_services.create_api_key(demo.actor("developer"), system.code, "import", 10)
    by_key = upload(Client(headers=EN), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert by_key.status_code == 403 and by_key["Content-Type"].startswith("application/problem+json")
    assert Resource.objects.count() == count

    created = upload(as_user(demo, "officer-public-security"))
    assert created.status_code == 201, created.content
    codes = created.json()["resources"]
    assert len(codes) == 1 and CODE.match(codes[0])
    assert Resource.objects.get(code=codes[0]).status == Status.DRAFT


def test_api_import_reports_cells_as_problem_json(demo, tmp_path):
    path = write_workbook(tmp_path / "bad.xlsx", [resource_row(demo, 1, 共享类型="不予共享", 共享条件=None)],
                          person_items(1) + [item_row(7, "x")])
    with open(path, "rb") as fh:
        response = as_user(demo, "officer-public-security").post("/api/v1/catalog/import", {"file": fh})
    assert response.status_code == 422 and response["Content-Type"].startswith("application/problem+json")
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {"资源!K2", "信息项!A5"}
    assert errors["资源!K2"].startswith("不予共享依据: ")
    hello = io.BytesIO(b"hello")
    hello.name = "hello.xlsx"
    not_xlsx = as_user(demo, "officer-public-security").post("/api/v1/catalog/import", {"file": hello})
    assert not_xlsx.status_code == 422 and [e["field"] for e in not_xlsx.json()["errors"]] == ["file"]
