"""What the data-plane tests share: a published resource mounted as a warehouse table, and source files."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from catalog_helpers import resource_data

from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import Resource
from shuzheng.core.validators import citizen_id_check_char

PEOPLE_ITEMS = [
    {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "length": 18},
    {"name": "姓名", "element": "DE00002", "length": 50, "nullable": False},
    {"name": "性别", "element": "DE00003", "length": 1},
    {"name": "出生日期", "element": "DE00005"},
    {"name": "月收入", "data_type": "decimal"},
    {"name": "登记日期", "data_type": "date"},
]
HEADER = [i["name"] for i in PEOPLE_ITEMS]


def citizen_id(birth: str, seq: int, male: bool = True) -> str:
    """A valid GB 11643 number under Dingzhou (130682) for a birth date YYYYMMDD."""
    order = seq * 2 + (1 if male else 0)
    first17 = f"130682{birth}{order % 1000:03d}"
    return first17 + citizen_id_check_char(first17)


def person(seq: int, name: str = "", birth: str = "19900101", male: bool = True, income: str = "3500.50",
           registered: str = "2020-05-06") -> list[str]:
    return [citizen_id(birth, seq, male), name or f"张{seq}", "1" if male else "2",
            f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", income, registered]


def table_resource(demo, items=None, officer: str = "officer-public-security", provider: str = "public-security",
                   **overrides) -> Resource:
    """A published resource with `items`, mounted as a warehouse table of its own (unique name)."""
    data = resource_data(demo, provider, items=[dict(i) for i in (items or PEOPLE_ITEMS)], **overrides)
    actor = demo.actor(officer)
    resource = catalog.create_resource(actor, data)
    catalog.submit(actor, resource.code)
    catalog.review(demo.actor("reviewer"), resource.code, "approve", "符合要求")
    catalog.publish(demo.actor("reviewer"), resource.code)
    namespace = provider.replace("-", "_")
    catalog.mount(actor, resource.code, "table", f"{namespace}.t{uuid.uuid4().hex[:10]}")
    return Resource.objects.select_related("published", "provider").get(pk=resource.pk)


def write_csv(path: Path, rows, header=HEADER, encoding: str = "gbk") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path
