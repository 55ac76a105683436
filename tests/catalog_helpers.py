"""What the catalog tests share: a valid resource description to start from, and search markers."""

from __future__ import annotations

import uuid


def marker() -> str:
    """A token jieba keeps whole and no demo resource contains: it pins a search to one test's resources."""
    return "mk" + uuid.uuid4().hex[:12]


# Items whose elements are all graded general, for resources that may be opened.
GENERAL_ITEMS = [
    {"name": "性别", "element": "DE00003"},
    {"name": "出生日期", "element": "DE00005"},
    {"name": "备注", "data_type": "string", "length": 200},
]


def resource_data(demo, provider: str = "public-security", **overrides) -> dict:
    """A valid description of a closed, unconditionally shared population resource, with overrides."""
    data = {
        "category": "101001",
        "provider": demo.org(provider).code,
        "name": f"测试资源{uuid.uuid4().hex[:6]}",
        "summary": "定州市常住户籍人口的基本登记信息。",
        "format": "database",
        "sharing_type": "unconditional",
        "sharing_methods": ["interface"],
        "open_type": "closed",
        "update_cycle": "daily",
        "items": [
            {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "length": 18},
            {"name": "姓名", "element": "DE00002", "length": 50},
            {"name": "性别", "element": "DE00003", "length": 1},
        ],
    }
    data.update(overrides)
    return data


def published(demo, officer: str = "officer-public-security", provider: str = "public-security", **overrides):
    """A resource registered, submitted, approved and published (open if overrides say so)."""
    from shuzheng.catalog import services
    from shuzheng.catalog.models import Resource

    resource = services.create_resource(demo.actor(officer), resource_data(demo, provider, **overrides))
    services.submit(demo.actor(officer), resource.code)
    services.review(demo.actor("reviewer"), resource.code, "approve", "符合要求")
    services.publish(demo.actor("reviewer"), resource.code)
    return Resource.objects.select_related("published").get(pk=resource.pk)
