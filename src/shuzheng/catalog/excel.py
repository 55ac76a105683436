"""The catalog workbook: the two-sheet layout departments already fill in, imported all or nothing and
exported with cells a spreadsheet program would execute escaped.

Sheets: 资源 (one row per resource), 信息项 (one row per data item, linked to its resource by 资源序号 = the
resource row's 序号) and 说明 (the allowed values of every coded column; written on export, ignored on
import). Column titles are Chinese because the form is; see docs/catalog-workbook.md.

Import: every resource row with its item rows becomes one `services.create_resource` call (a draft registered
by the importing user), all inside one transaction with a savepoint per row, so every row is validated even
after an earlier one failed. Errors are collected from the whole file, each translated from the service's
field name (`name`, `items[2].element`) to the sheet and cell it came from (`资源!C5`); if there is any, the
transaction is rolled back and one ValidationFailed lists them all.

Export: the resources the actor may see, in the version they see, one text cell never starting with = + - @
tab or CR (audit.services.csv_safe prefixes a quote). The importer removes exactly one leading quote before
those characters (and before a run of quotes followed by them), so export followed by import reproduces
every text.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit.services import csv_safe
from shuzheng.catalog import services
from shuzheng.catalog.models import (
    Category,
    DataElement,
    DataItem,
    DataType,
    Format,
    Level,
    MountKind,
    OpenType,
    Resource,
    ResourceVersion,
    SharingMethod,
    SharingType,
    Status,
    Subject,
    UpdateCycle,
)
from shuzheng.core.errors import FieldError, Forbidden, ServiceError, ValidationFailed
from shuzheng.org.models import Organization
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz

RESOURCE_SHEET = "资源"
ITEM_SHEET = "信息项"
HELP_SHEET = "说明"

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_UNZIPPED_BYTES = 150 * 1024 * 1024  # all parts of the package together, as their headers declare
MAX_PARTS = 2000
MAX_RESOURCE_ROWS = 5_000
MAX_ITEM_ROWS = 100_000
MAX_COLUMNS = 60  # columns read per row; anything to the right is ignored
HEADER_SEARCH_ROWS = 5  # a title line or two above the header row is allowed
EXPORT_LIMIT = 100_000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# ---- codes and their labels ----------------------------------------------------------------------------
# The first label is what export writes; every label, the code itself and the model's own label are
# accepted on import (case and surrounding spaces ignored).

FORMAT_LABELS = {
    Format.DATABASE: ("数据库", "库表"),
    Format.SPREADSHEET: ("电子表格", "表格", "Excel"),
    Format.DOCUMENT: ("电子文件", "文档", "电子文档", "文本"),
    Format.IMAGE: ("图形图像", "图像", "图片"),
    Format.MEDIA: ("流媒体", "音视频", "视频", "音频"),
    Format.API: ("接口", "服务接口", "API"),
    Format.OTHER: ("其他", "其它"),
}
SHARING_LABELS = {
    SharingType.UNCONDITIONAL: ("无条件共享",),
    SharingType.CONDITIONAL: ("有条件共享",),
    SharingType.NONE: ("不予共享",),
}
METHOD_LABELS = {
    SharingMethod.INTERFACE: ("接口", "服务接口", "API"),
    SharingMethod.TABLE: ("库表", "数据库", "表"),
    SharingMethod.FILE: ("文件", "文件下载"),
}
OPEN_LABELS = {
    OpenType.OPEN: ("无条件开放",),
    OpenType.CONDITIONAL: ("有条件开放",),
    OpenType.CLOSED: ("不予开放", "不开放"),
}
CYCLE_LABELS = {
    UpdateCycle.REALTIME: ("实时",),
    UpdateCycle.DAILY: ("每日", "每天", "日", "按日"),
    UpdateCycle.WEEKLY: ("每周", "周", "按周"),
    UpdateCycle.MONTHLY: ("每月", "月", "按月"),
    UpdateCycle.QUARTERLY: ("每季度", "季度", "每季", "按季"),
    UpdateCycle.SEMIANNUAL: ("每半年", "半年"),
    UpdateCycle.YEARLY: ("每年", "年", "按年", "每年度"),
    UpdateCycle.IRREGULAR: ("不定期", "不定时"),
}
LEVEL_LABELS = {
    Level.GENERAL: ("一般", "一般数据"),
    Level.IMPORTANT: ("重要", "重要数据"),
    Level.CORE: ("核心", "核心数据"),
}
SUBJECT_LABELS = {
    Subject.PERSONAL: ("个人", "个人信息", "个人数据"),
    Subject.LEGAL_ENTITY: ("法人", "法人信息", "法人数据", "企业"),
    Subject.PUBLIC_AFFAIRS: ("公共事务", "公共事务数据"),
    Subject.OTHER: ("其他", "其它"),
}
TYPE_LABELS = {
    DataType.STRING: ("字符型", "字符串", "文本"),
    DataType.INTEGER: ("整型", "整数"),
    DataType.DECIMAL: ("数值型", "数值", "小数"),
    DataType.DATE: ("日期型", "日期"),
    DataType.DATETIME: ("日期时间型", "日期时间"),
    DataType.BOOLEAN: ("布尔型", "布尔", "逻辑型"),
}
YES, NO = "是", "否"
BOOL_WORDS = {**{w: True for w in ("是", "y", "yes", "true", "1", "√", "✓")},
              **{w: False for w in ("否", "n", "no", "false", "0", "×", "✗")}}
STATUS_LABELS = {
    Status.DRAFT: "草稿", Status.SUBMITTED: "已提交", Status.RETURNED: "已退回", Status.APPROVED: "已审核",
    Status.PUBLISHED: "已发布", Status.SUPERSEDED: "已替代", Status.DEPRECATED: "已废止",
}
MOUNT_LABELS = {MountKind.TABLE: "库表", MountKind.API: "接口", MountKind.FILE: "文件"}

LIST_SEPARATORS = re.compile(r"[,;，；、\s]+")
# What csv_safe escapes, possibly behind quotes it added itself: the importer removes one quote.
ESCAPED = re.compile(r"^'+[=+\-@\t\r]")
DATE_TEXT = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
# openpyxl refuses these in a cell (XML 1.0 has no way to write them).
ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _lookup(labels: dict, choices) -> dict[str, str]:
    table = {}
    for code, label in choices.choices:
        table[code.lower()] = code
        table[str(label).strip().lower()] = code
    for code, words in labels.items():
        for word in words:
            table[word.lower()] = code
    return table


CHOICES = {
    "format": (_lookup(FORMAT_LABELS, Format), FORMAT_LABELS),
    "sharing_type": (_lookup(SHARING_LABELS, SharingType), SHARING_LABELS),
    "open_type": (_lookup(OPEN_LABELS, OpenType), OPEN_LABELS),
    "update_cycle": (_lookup(CYCLE_LABELS, UpdateCycle), CYCLE_LABELS),
    "level": (_lookup(LEVEL_LABELS, Level), LEVEL_LABELS),
    "data_type": (_lookup(TYPE_LABELS, DataType), TYPE_LABELS),
    "subject": (_lookup(SUBJECT_LABELS, Subject), SUBJECT_LABELS),
    "sharing_methods": (_lookup(METHOD_LABELS, SharingMethod), METHOD_LABELS),
}


def _first_labels(labels: dict) -> str:
    return "、".join(words[0] for words in labels.values())


# ---- columns -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    title: str
    key: str  # the service's field name (or an importer-only key)
    width: int
    help: str
    required: bool = False  # the header must be present
    export_only: bool = False  # written on export, ignored on import


RESOURCE_COLUMNS = (
    Column("序号", "seq", 6, "本表内的行号，信息项表的“资源序号”引用它；不可重复", required=True),
    Column("资源分类", "category", 12, "分类代码（1/3/6/9 位，如 101001），或分类名称；填 3 表示提供方本部门分类",
           required=True),
    Column("资源名称", "name", 30, "必填，最多 200 字", required=True),
    Column("资源代码", "code", 20, "导出时填写；导入时忽略（代码由平台生成），若与已登记资源相同则报错"),
    Column("资源提供方", "provider_name", 24, "提供方机构全称；“提供方代码”为空时据此查找"),
    Column("提供方代码", "provider", 20, "提供方统一社会信用代码（优先于名称）；请设为文本格式"),
    Column("资源摘要", "summary", 40, "必填，最多 4000 字", required=True),
    Column("资源格式", "format", 10, _first_labels(FORMAT_LABELS), required=True),
    Column("共享类型", "sharing_type", 12, _first_labels(SHARING_LABELS), required=True),
    Column("共享条件", "sharing_conditions", 24, "有条件共享时必填"),
    Column("不予共享依据", "sharing_basis", 24, "不予共享时必填：法律法规或政策依据"),
    Column("共享方式", "sharing_methods", 14,
           _first_labels(METHOD_LABELS) + "，可多选，以、，；或空格分隔；共享时必填"),
    Column("开放类型", "open_type", 12, _first_labels(OPEN_LABELS), required=True),
    Column("开放条件", "open_conditions", 24, "有条件开放时必填"),
    Column("更新周期", "update_cycle", 10, _first_labels(CYCLE_LABELS), required=True),
    Column("分级", "level", 8, _first_labels(LEVEL_LABELS) + "；空则取信息项最高级（就高从严）；开放资源只能为一般"),
    Column("权属单位", "owner", 24, "机构全称或统一社会信用代码；空则为提供方"),
    Column("管理单位", "manager", 24, "机构全称或统一社会信用代码；空则为提供方"),
    Column("数据管理员", "steward", 14, "平台用户名"),
    Column("关键字", "keywords", 20, "以、，；或空格分隔，最多 30 个"),
    Column("空间范围", "spatial_coverage", 14, "最多 100 字"),
    Column("时间范围起", "time_coverage_start", 12, "日期，或 YYYY-MM-DD 文本"),
    Column("时间范围止", "time_coverage_end", 12, "日期，或 YYYY-MM-DD 文本"),
    Column("关联资源代码", "related_codes", 22, "已登记资源的代码，以、，；或空格分隔"),
    Column("不得出境", "domestic_only", 10, "是、否：数据只能发往境内（白名单内）地址；空为否"),
    Column("发布日期", "published_at", 12, "仅导出", export_only=True),
    Column("状态", "status", 8, "仅导出：" + "、".join(STATUS_LABELS.values()), export_only=True),
    Column("挂接", "mount", 24, "仅导出：挂接方式与位置", export_only=True),
)
ITEM_COLUMNS = (
    Column("资源序号", "seq", 8, "所属资源在“资源”表中的序号", required=True),
    Column("信息项名称", "name", 24, "必填，同一资源内不可重复，最多 100 字", required=True),
    Column("数据类型", "data_type", 12, _first_labels(TYPE_LABELS) + "；引用数据元时可空（取数据元类型）"),
    Column("长度", "length", 8, "正整数，可空"),
    Column("可为空", "nullable", 8, "是、否；空为是"),
    Column("主键", "is_key", 8, "是、否；空为否"),
    Column("数据元", "element", 22, "数据元标识符（如 DE00001）或名称，可空"),
    Column("分级", "level", 8, _first_labels(LEVEL_LABELS) + "；空则取数据元分级，否则为一般"),
    Column("权威来源", "authoritative", 10, "是、否：本资源是该数据元的权威来源（一数一源）；空为否"),
    Column("数据类别", "subject", 10, _first_labels(SUBJECT_LABELS) + "；空则取数据元类别，否则为其他"),
    Column("敏感个人信息", "sensitive_personal", 12, "是、否：仅个人信息可选，分级至少为重要；空为否"),
    Column("不得出境", "domestic_only", 10, "是、否：该信息项只能发往境内（白名单内）地址；空为否"),
)
RESOURCE_BY_KEY = {c.key: c for c in RESOURCE_COLUMNS}
ITEM_BY_KEY = {c.key: c for c in ITEM_COLUMNS}
TEXT_LIMITS = {"summary": 4000, "sharing_conditions": 2000, "sharing_basis": 2000, "open_conditions": 2000}


def _header_title(value) -> str:
    """A header as written, minus the marks templates add: spaces, a trailing * or （必填）."""
    text = re.sub(r"\s+", "", str(value or ""))
    return re.sub(r"(\*|＊|[（(]必填[)）])+$", "", text).lstrip("*＊")


# ---- errors --------------------------------------------------------------------------------------------


@dataclass(order=True)
class Problem:
    sheet_order: int
    row: int
    column: str
    title: str = field(compare=False)
    message: str = field(compare=False)
    sheet: str = field(compare=False)

    def as_field_error(self) -> FieldError:
        where = f"{self.sheet}!{self.column}{self.row}" if self.row else self.sheet
        return FieldError(where, f"{self.title}: {self.message}" if self.title else self.message)


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


@dataclass
class Sheet:
    name: str
    order: int
    columns: dict[str, int]  # key -> 0-based index
    header_row: int
    rows: list[tuple[int, tuple]]  # (row number, values) of the non-empty rows
    spec: dict[str, Column]

    def problem(self, row: int, key: str, message: str) -> Problem:
        """A problem in the cell of `key` in `row`; when the sheet lacks that column, the row's first
        column, still naming the missing column's title."""
        column = self.spec[key]
        index = self.columns.get(key)
        if index is None:
            index = self.columns.get("seq", 0)
        return Problem(self.order, row, _letter(index), column.title, str(message), self.name)

    def value(self, values: tuple, key: str):
        index = self.columns.get(key)
        return values[index] if index is not None and index < len(values) else None


def _fail(problems: list[Problem]) -> None:
    problems = sorted(problems)
    errors = [p.as_field_error() for p in problems]
    first = errors[0]
    detail = (_("%(n)s problems in the workbook; nothing was imported. First: %(where)s %(message)s")
              % {"n": len(errors), "where": first.field, "message": first.message}
              if len(errors) > 1 else
              _("The workbook was not imported: %(where)s %(message)s") % {"where": first.field,
                                                                              "message": first.message})
    raise ValidationFailed(detail, errors)


def _file_error(message: str) -> ValidationFailed:
    return ValidationFailed.of("file", message)


# ---- reading the file ----------------------------------------------------------------------------------


def _read_bytes(file) -> bytes:
    """The upload's bytes, refusing anything over the size limit before reading more than it."""
    limit = MAX_FILE_BYTES
    too_big = _("The file is larger than %(mb)s MB.") % {"mb": limit // (1024 * 1024)}
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
    elif isinstance(file, (str, os.PathLike)):
        try:
            if os.path.getsize(file) > limit:
                raise _file_error(too_big)
            with open(file, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise _file_error(_("Cannot read the file: %(error)s") % {"error": exc.strerror or exc}) from None
    else:
        size = getattr(file, "size", None)
        if isinstance(size, int) and size > limit:
            raise _file_error(too_big)
        if hasattr(file, "seek"):
            try:
                file.seek(0)
            except (OSError, ValueError):
                pass
        data = file.read(limit + 1)
        if isinstance(data, str):
            raise _file_error(_("Open the workbook in binary mode."))
    if len(data) > limit:
        raise _file_error(too_big)
    return data


def _open(data: bytes):
    """The workbook, opened read-only, after checking it is an .xlsx package of bounded size."""
    import openpyxl

    not_xlsx = _("The file is not an Excel workbook (.xlsx).")
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise _file_error(_("The file is an old-format (.xls) or password-protected workbook; save it as an "
                            "unprotected .xlsx workbook."))
    if not data.startswith(b"PK"):
        raise _file_error(not_xlsx)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            parts = package.infolist()
            names = {p.filename for p in parts}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        raise _file_error(not_xlsx) from None
    if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
        raise _file_error(not_xlsx)
    if len(parts) > MAX_PARTS or sum(p.file_size for p in parts) > MAX_UNZIPPED_BYTES:
        raise _file_error(_("The workbook expands to more than %(mb)s MB; split it into smaller files.")
                          % {"mb": MAX_UNZIPPED_BYTES // (1024 * 1024)})
    if any(p.flag_bits & 0x1 for p in parts):
        raise _file_error(_("The workbook is encrypted; save it without a password."))
    try:
        # data_only: a formula counts as the value Excel last computed for it.
        return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - openpyxl raises anything from KeyError to lxml errors on a bad package
        raise _file_error(not_xlsx) from None


def _sheet(workbook, name: str, order: int, spec: tuple[Column, ...], max_rows: int,
           problems: list[Problem]) -> Sheet | None:
    by_title = {c.title: c for c in spec}
    found = next((ws for ws in workbook.worksheets if ws.title.strip() == name), None)
    if found is None:
        problems.append(Problem(order, 0, "", "", _("The workbook has no sheet named %(sheet)s.") % {"sheet": name},
                                name))
        return None
    if getattr(found, "iter_rows", None) is None:  # a chart sheet
        problems.append(Problem(order, 0, "", "", _("%(sheet)s is not a worksheet.") % {"sheet": name}, name))
        return None
    rows = found.iter_rows(values_only=True, max_col=MAX_COLUMNS)
    header_row, columns = 0, {}
    for number, values in enumerate(rows, 1):
        titles = [_header_title(v) for v in values]
        if spec[0].title in titles:
            header_row = number
            for index, title in enumerate(titles):
                column = by_title.get(title)
                if column is None or column.export_only:
                    continue
                if column.key in columns:
                    problems.append(Problem(order, number, _letter(index), title,
                                            _("This column appears twice."), name))
                columns.setdefault(column.key, index)
            break
        if number >= HEADER_SEARCH_ROWS:
            break
    if not header_row:
        problems.append(Problem(order, 1, "A", spec[0].title,
                                _("No header row: the first rows of %(sheet)s must hold the column titles, "
                                  "starting with %(title)s.") % {"sheet": name, "title": spec[0].title}, name))
        return None
    missing = [c.title for c in spec if c.required and c.key not in columns]
    if spec is RESOURCE_COLUMNS and "provider" not in columns and "provider_name" not in columns:
        missing.append(f"{RESOURCE_BY_KEY['provider'].title}/{RESOURCE_BY_KEY['provider_name'].title}")
    for title in missing:
        problems.append(Problem(order, header_row, "A", title, _("The header row lacks this column."), name))
    body = []
    for number, values in enumerate(rows, header_row + 1):
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        body.append((number, values))
        if len(body) > max_rows:
            raise _file_error(_("Sheet %(sheet)s has more than %(n)s rows; split the workbook.")
                              % {"sheet": name, "n": max_rows})
    return Sheet(name, order, columns, header_row, body, {c.key: c for c in spec})


# ---- cell values ---------------------------------------------------------------------------------------


def _text(value) -> str:
    """A cell as text: numbers without a spurious .0, dates as YYYY-MM-DD, one escape quote removed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if ESCAPED.match(text):
        text = text[1:]
    return text.strip()


def _date(value) -> tuple[dt.date | None, str]:
    if value is None or value == "":
        return None, ""
    if isinstance(value, dt.datetime):
        return value.date(), ""
    if isinstance(value, dt.date):
        return value, ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < 2958466:
        from openpyxl.utils.datetime import from_excel

        return from_excel(value).date(), ""  # an Excel serial number in a cell without a date format
    match = DATE_TEXT.match(_text(value))
    if match:
        try:
            return dt.date(*(int(g) for g in match.groups())), ""
        except ValueError:
            pass
    return None, _("Write the date as YYYY-MM-DD.")


def _choice(key: str, value) -> tuple[str, str]:
    """(code, error) of a coded cell; an empty cell is ('', '')."""
    text = _text(value)
    if not text:
        return "", ""
    table, labels = CHOICES[key]
    code = table.get(text.lower())
    if code is None:
        return text, _("Unknown value %(value)s; choose one of: %(choices)s.") % {
            "value": text, "choices": _first_labels(labels)}
    return code, ""


def _yes_no(value) -> tuple[bool | None, str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, ""
    if isinstance(value, bool):
        return value, ""
    answer = BOOL_WORDS.get(_text(value).lower())
    if answer is None:
        return None, _("Write 是 or 否.")
    return answer, ""


def _seq(value) -> str:
    return _text(value)


# ---- import --------------------------------------------------------------------------------------------


@dataclass
class ResourceRow:
    number: int
    seq: str
    data: dict
    provider: Organization | None
    item_rows: list[tuple[int, set]] = field(default_factory=list)  # (row number, keys with errors)
    flagged: set = field(default_factory=set)  # keys whose cell already has an importer error
    skip_items_error: bool = False


class _Lookups:
    """Organizations, classifications and data elements, read once for the whole file."""

    def __init__(self, resources: Sheet):
        orgs = set()
        for _n, values in resources.rows:
            for key in ("provider", "provider_name", "owner", "manager"):
                text = _text(resources.value(values, key))
                if text:
                    orgs.add(text)
        found = list(Organization.objects.filter(code__in=orgs)) + list(Organization.objects.filter(name__in=orgs))
        self.org_by_code = {o.code: o for o in found}
        self.org_by_name = {o.name: o for o in found}
        self.categories = {c.name: c.code for c in Category.objects.only("code", "name")}
        self.elements_by_id = {}
        self.elements_by_name = {}
        for identifier, name in DataElement.objects.values_list("identifier", "name"):
            self.elements_by_id[identifier] = identifier
            self.elements_by_name[name] = identifier

    def org(self, text: str) -> Organization | None:
        return self.org_by_code.get(text) or self.org_by_name.get(text)

    def category(self, text: str) -> str:
        match = re.match(r"^(\d+)", text)
        if match:
            return match.group(1)
        return self.categories.get(text, text)

    def element(self, text: str) -> str:
        if text in self.elements_by_id or text in self.elements_by_name:
            return self.elements_by_id.get(text) or self.elements_by_name[text]
        first = text.split()[0] if text.split() else text
        return self.elements_by_id.get(first, first)


def import_workbook(actor: Actor, file, progress: Callable[[int, int], None] | None = None) -> list[Resource]:
    """Registers every resource of the workbook as a draft, or nothing: raises ValidationFailed listing
    every problem of the file by sheet and cell. `file` is a path, bytes or a binary file-like object
    (an upload). `progress(done, total)` is called as rows are registered."""
    # Someone who may register nothing anywhere (the public, an application system) is refused outright;
    # rows for departments the importer does not serve are refused row by row below.
    authz.require(actor, Perm.CATALOG_EDIT)
    workbook = _open(_read_bytes(file))
    problems: list[Problem] = []
    try:
        resources = _sheet(workbook, RESOURCE_SHEET, 0, RESOURCE_COLUMNS, MAX_RESOURCE_ROWS, problems)
        items = _sheet(workbook, ITEM_SHEET, 1, ITEM_COLUMNS, MAX_ITEM_ROWS, problems)
    finally:
        workbook.close()
    if problems or resources is None or items is None:
        _fail(problems)
    if not resources.rows:
        _fail([Problem(0, resources.header_row + 1, "A", RESOURCE_COLUMNS[0].title,
                       _("The sheet lists no resources."), RESOURCE_SHEET)])
    lookups = _Lookups(resources)
    rows = _resource_rows(actor, resources, lookups, problems)
    _attach_items(items, rows, lookups, problems)
    created: list[Resource] = []
    with transaction.atomic():
        for done, row in enumerate(rows, 1):
            resource = _register(actor, row, resources, items, problems)
            if resource is not None:
                created.append(resource)
            if progress is not None:
                progress(done, len(rows))
        if problems:
            _fail(problems)  # raising inside the block rolls every row back
    return created


def _resource_rows(actor: Actor, sheet: Sheet, lookups: _Lookups, problems: list[Problem]) -> list[ResourceRow]:
    rows: list[ResourceRow] = []
    seen_seq: dict[str, int] = {}
    seen_codes: dict[str, int] = {}
    seen_names: dict[tuple, int] = {}
    codes = {_text(sheet.value(v, "code")) for _n, v in sheet.rows} - {""}
    # Only codes the importer may see: an invisible resource's code is ignored like any unknown one.
    existing = set(services.list_resources(actor).filter(code__in=[services.normalize_code(c) for c in codes])
                   .values_list("code", flat=True))

    for number, values in sheet.rows:
        flagged: set[str] = set()

        def problem(key, message):
            flagged.add(key)
            problems.append(sheet.problem(number, key, message))

        for key in sheet.columns:
            raw = sheet.value(values, key)
            if isinstance(raw, str) and "\x00" in raw:
                problem(key, _("Null characters are not allowed."))
        seq = _seq(sheet.value(values, "seq"))
        if not seq:
            problem("seq", _("Number every resource row; item rows refer to it."))
        elif seq in seen_seq:
            problem("seq", _("%(seq)s is already used in row %(row)s.") % {"seq": seq, "row": seen_seq[seq]})
            seq = ""
        else:
            seen_seq[seq] = number

        data: dict = {}
        for key in ("name", "summary", "sharing_conditions", "sharing_basis", "open_conditions", "spatial_coverage",
                    "steward"):
            data[key] = _text(sheet.value(values, key))
            limit = TEXT_LIMITS.get(key)
            if limit and len(data[key]) > limit:
                problem(key, _("At most %(n)s characters.") % {"n": limit})
        for key in ("format", "sharing_type", "open_type", "update_cycle", "level"):
            data[key], error = _choice(key, sheet.value(values, key))
            if error:
                problem(key, error)
        methods = []
        for word in LIST_SEPARATORS.split(_text(sheet.value(values, "sharing_methods"))):
            if not word:
                continue
            code, error = _choice("sharing_methods", word)
            if error:
                problem("sharing_methods", error)
                break
            methods.append(code)
        data["sharing_methods"] = methods
        data["keywords"] = [k for k in LIST_SEPARATORS.split(_text(sheet.value(values, "keywords"))) if k]
        data["related_codes"] = [services.normalize_code(c) for c in
                                 LIST_SEPARATORS.split(_text(sheet.value(values, "related_codes"))) if c]
        for key in ("time_coverage_start", "time_coverage_end"):
            data[key], error = _date(sheet.value(values, key))
            if error:
                problem(key, error)
        answer, error = _yes_no(sheet.value(values, "domestic_only"))
        if error:
            problem("domestic_only", error)
        data["domestic_only"] = bool(answer)
        for key in ("owner", "manager"):
            text = _text(sheet.value(values, key))
            org = lookups.org(text) if text else None
            if text and org is None:
                problem(key, _("Unknown organization %(org)s; write its full name or credit code.") % {"org": text})
            data[key] = org.code if org else ""
        category = _text(sheet.value(values, "category"))
        data["category"] = lookups.category(category) if category else ""

        provider = None
        code_text = _text(sheet.value(values, "provider"))
        name_text = _text(sheet.value(values, "provider_name"))
        if code_text:
            provider = lookups.org_by_code.get(code_text)
            if provider is None:
                problem("provider", _("Unknown organization %(code)s.") % {"code": code_text})
        elif name_text:
            provider = lookups.org_by_name.get(name_text)
            if provider is None:
                problem("provider_name", _("Unknown organization %(name)s; write its full name exactly, or fill in "
                                           "提供方代码.") % {"name": name_text})
        else:
            problem("provider", _("Name the provider: its credit code, or its full name under 资源提供方."))
        data["provider"] = provider.code if provider else ""

        code = services.normalize_code(_text(sheet.value(values, "code")))
        if code:
            if code in existing:
                problem("code", _("Resource %(code)s is already registered; the workbook registers new "
                                  "resources only.") % {"code": code})
            elif code in seen_codes:
                problem("code", _("%(code)s is already used in row %(row)s.") % {"code": code, "row": seen_codes[code]})
            seen_codes.setdefault(code, number)
        if data["name"] and provider is not None:
            key = (provider.pk, data["name"])
            if key in seen_names:
                problem("name", _("Row %(row)s already registers a resource of this name for this provider.")
                        % {"row": seen_names[key]})
            seen_names.setdefault(key, number)
        rows.append(ResourceRow(number, seq, data, provider, flagged=flagged))
    return rows


def _attach_items(sheet: Sheet, rows: list[ResourceRow], lookups: _Lookups, problems: list[Problem]) -> None:
    by_seq = {row.seq: row for row in rows if row.seq}
    for row in rows:
        row.data["items"] = []
        row.skip_items_error = not row.seq  # its items could not be linked; the 序号 error says why
    for number, values in sheet.rows:
        def problem(key, message):
            problems.append(sheet.problem(number, key, message))

        seq = _seq(sheet.value(values, "seq"))
        owner = by_seq.get(seq)
        if owner is None:
            problem("seq", _("No resource row has 序号 %(seq)s.") % {"seq": seq} if seq else
                    _("Say which resource row (序号) this item belongs to."))
        item: dict = {"name": _text(sheet.value(values, "name"))}
        for key in sheet.columns:
            raw = sheet.value(values, key)
            if isinstance(raw, str) and "\x00" in raw:
                problem(key, _("Null characters are not allowed."))
        bad: set[str] = set()
        for key in ("data_type", "level", "subject"):
            item[key], error = _choice(key, sheet.value(values, key))
            if error:
                problem(key, error)
                bad.add(key)
        length = sheet.value(values, "length")
        item["length"] = _text(length) if length is not None else None
        for key in ("nullable", "is_key", "authoritative", "sensitive_personal", "domestic_only"):
            answer, error = _yes_no(sheet.value(values, key))
            if error:
                problem(key, error)
                bad.add(key)
            elif answer is not None:
                item[key] = answer
        element = _text(sheet.value(values, "element"))
        item["element"] = lookups.element(element) if element else None
        if owner is not None:
            owner.data["items"].append(item)
            owner.item_rows.append((number, bad))


ITEM_FIELD = re.compile(r"^items\[(\d+)\](?:\.(\w+))?$")


def _register(actor: Actor, row: ResourceRow, resources: Sheet, items: Sheet,
              problems: list[Problem]) -> Resource | None:
    """Validates and creates one resource in its own savepoint; its problems are added to `problems`.
    The service reports every problem of the row at once."""
    resource = None
    errors: list[FieldError] = []
    try:
        with transaction.atomic():
            resource = services.create_resource(actor, row.data)
    except Forbidden:
        errors = [FieldError("provider", _("You may not register resources for %(provider)s.")
                             % {"provider": row.provider.name if row.provider else row.data.get("provider")})]
    except ServiceError as exc:
        errors = list(exc.errors) or [FieldError("", str(exc.detail))]
    seen = set()
    for error in errors:
        problem = _place(error, row, resources, items)
        if problem is None:
            continue
        where = (problem.sheet, problem.row, problem.column, problem.message)
        if where not in seen:
            seen.add(where)
            problems.append(problem)
    return resource


def _place(error: FieldError, row: ResourceRow, resources: Sheet, items: Sheet) -> Problem | None:
    """The sheet and cell a service error is about, or None when the importer already reported that cell."""
    name = error.field
    match = ITEM_FIELD.match(name)
    if match:
        position, key = int(match.group(1)), match.group(2) or "name"
        if position < len(row.item_rows):
            number, bad = row.item_rows[position]
            if key in bad:
                return None
            return items.problem(number, key if key in ITEM_BY_KEY else "name", error.message)
        name = "items"
    if name == "items":
        if row.skip_items_error:
            return None
        message = error.message
        if not row.item_rows:
            message = _("No rows of sheet %(sheet)s have 资源序号 %(seq)s: %(message)s") % {
                "sheet": ITEM_SHEET, "seq": row.seq, "message": error.message}
        return resources.problem(row.number, "seq", message)
    if name == "provider":
        name = "provider" if "provider" in resources.columns or "provider_name" not in resources.columns \
            else "provider_name"
    if name in row.flagged:
        return None
    if name not in RESOURCE_BY_KEY:
        return resources.problem(row.number, "seq", error.message)
    return resources.problem(row.number, name, error.message)


# ---- export --------------------------------------------------------------------------------------------


def _safe(value) -> str:
    """Text a spreadsheet program shows as text: control characters dropped, formulas escaped. A text that
    already starts with quotes before = + - @ gets one more, which the importer removes again."""
    text = ILLEGAL.sub("", "" if value is None else str(value))
    return "'" + text if ESCAPED.match(text) else csv_safe(text)


def _label(labels: dict, code: str) -> str:
    words = labels.get(code)
    return words[0] if words else code


def export_workbook(actor: Actor, q: str = "", filters: dict | None = None) -> bytes:
    """The resources `actor` may see (those a search for `q` and `filters` finds, when given), each in the
    version they see first, with their items, as the catalog workbook."""
    if q or filters:
        resources = services.search_catalog(actor, q, filters, sort="code", limit=EXPORT_LIMIT)["resources"]
    else:
        resources = list(services.list_resources(actor).order_by("code")[:EXPORT_LIMIT])
    versions = {version.pk: version for version in _versions(resources)}
    rows = []
    for resource in resources:
        version_id = resource.published_id or resource.pending_id
        if version_id in versions:
            rows.append((resource, versions[version_id]))
    items: dict[int, list[DataItem]] = {}
    ids = [v.pk for _r, v in rows]
    for start in range(0, len(ids), 1000):
        for item in (DataItem.objects.filter(version_id__in=ids[start:start + 1000]).select_related("element")
                     .order_by("version_id", "position")):
            items.setdefault(item.version_id, []).append(item)
    return _write(rows, items)


def template_workbook() -> bytes:
    """The empty workbook: headers and the 说明 sheet."""
    return _write([], {})


def _versions(resources: list[Resource]) -> Iterable[ResourceVersion]:
    ids = [r.published_id or r.pending_id for r in resources if r.published_id or r.pending_id]
    for start in range(0, len(ids), 1000):
        yield from ResourceVersion.objects.filter(id__in=ids[start:start + 1000]).select_related(
            "owner", "manager", "steward")


def _write(rows: list[tuple[Resource, ResourceVersion]], items: dict[int, list[DataItem]]) -> bytes:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill

    workbook = openpyxl.Workbook(write_only=True)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")

    def sheet(name: str, columns: tuple[Column, ...]):
        ws = workbook.create_sheet(name)
        for index, column in enumerate(columns):
            ws.column_dimensions[_letter(index)].width = column.width
        ws.freeze_panes = "B2" if name == RESOURCE_SHEET else "A2"
        header = []
        for column in columns:
            cell = WriteOnlyCell(ws, value=column.title)
            cell.font, cell.fill = bold, fill
            cell.alignment = Alignment(vertical="center")
            header.append(cell)
        ws.append(header)
        return ws

    def date_cell(ws, value):
        if value is None:
            return None
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = "yyyy-mm-dd"
        return cell

    resources_ws = sheet(RESOURCE_SHEET, RESOURCE_COLUMNS)
    item_rows = []
    for seq, (resource, version) in enumerate(rows, 1):
        published = timezone.localtime(version.published_at).date() if version.published_at else None
        mount = (f"{MOUNT_LABELS.get(resource.mount_kind, resource.mount_kind)} {resource.mount_target}"
                 if resource.is_mounted else "")
        values = {
            "seq": seq, "category": resource.category.code, "name": version.name, "code": resource.code,
            "provider_name": resource.provider.name, "provider": resource.provider.code,
            "summary": version.summary, "format": _label(FORMAT_LABELS, version.format),
            "sharing_type": _label(SHARING_LABELS, version.sharing_type),
            "sharing_conditions": version.sharing_conditions, "sharing_basis": version.sharing_basis,
            "sharing_methods": "、".join(_label(METHOD_LABELS, m) for m in version.sharing_methods),
            "open_type": _label(OPEN_LABELS, version.open_type), "open_conditions": version.open_conditions,
            "update_cycle": _label(CYCLE_LABELS, version.update_cycle), "level": _label(LEVEL_LABELS, version.level),
            "owner": version.owner.name, "manager": version.manager.name,
            "steward": version.steward.username if version.steward_id else "",
            "keywords": "、".join(version.keywords), "spatial_coverage": version.spatial_coverage,
            "time_coverage_start": date_cell(resources_ws, version.time_coverage_start),
            "time_coverage_end": date_cell(resources_ws, version.time_coverage_end),
            "related_codes": "、".join(version.related_codes),
            "domestic_only": YES if version.domestic_only else NO,
            "published_at": date_cell(resources_ws, published),
            "status": STATUS_LABELS.get(version.status, version.status), "mount": mount,
        }
        resources_ws.append([v if not isinstance(v, str) else _safe(v) for v in
                             (values[c.key] for c in RESOURCE_COLUMNS)])
        for item in items.get(version.pk, []):
            item_rows.append([
                seq, _safe(item.name), _label(TYPE_LABELS, item.data_type), item.length,
                YES if item.nullable else NO, YES if item.is_key else NO,
                _safe(item.element.identifier) if item.element_id else None, _label(LEVEL_LABELS, item.level),
                YES if item.authoritative else NO, _label(SUBJECT_LABELS, item.subject),
                YES if item.sensitive_personal else NO, YES if item.domestic_only else NO,
            ])
    items_ws = sheet(ITEM_SHEET, ITEM_COLUMNS)
    for values in item_rows:
        items_ws.append(values)
    _write_help(workbook, bold, fill)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _write_help(workbook, bold, fill) -> None:
    from openpyxl.cell import WriteOnlyCell

    ws = workbook.create_sheet(HELP_SHEET)
    for letter, width in zip("ABCDE", (16, 16, 60, 60, 12)):
        ws.column_dimensions[letter].width = width

    def heading(*titles):
        cells = []
        for title in titles:
            cell = WriteOnlyCell(ws, value=title)
            cell.font, cell.fill = bold, fill
            cells.append(cell)
        ws.append(cells)

    ws.append([_safe("一个资源占“资源”表一行；它的信息项占“信息项”表若干行，以“资源序号”对应资源行的“序号”。"
                     "文件中任何一处有错则整个文件都不导入，并逐一列出错误所在的表和单元格。")])
    ws.append([])
    for sheet_name, columns in ((RESOURCE_SHEET, RESOURCE_COLUMNS), (ITEM_SHEET, ITEM_COLUMNS)):
        heading("工作表", "列", "必需的列", "填写说明与可选值")
        for column in columns:
            ws.append([sheet_name, column.title, "是" if column.required else "", _safe(column.help)])
        ws.append([])
    heading("资源分类代码", "名称")
    for code, name in Category.objects.values_list("code", "name").order_by("code"):
        ws.append([code, _safe(name)])
    ws.append([])
    heading("数据元标识符", "名称", "数据类型", "分级", "数据类别")
    for identifier, name, data_type, level, subject in DataElement.objects.values_list(
            "identifier", "name", "data_type", "level", "subject").order_by("identifier"):
        ws.append([identifier, _safe(name), _label(TYPE_LABELS, data_type), _label(LEVEL_LABELS, level),
                   _label(SUBJECT_LABELS, subject)])
