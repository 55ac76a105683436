"""The demo's governed data: quality rules on the national data elements, and generated Dingzhou data
loaded through the real pipeline (so the quality pages show real findings): the household register
(100,000 people with a few percent of faults), the enterprise register, and the elderly allowance roll,
whose checks against the household register show the 一数一源 consistency findings.

Idempotent: rules that exist are kept, and a table that already has a snapshot is not loaded again."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from shuzheng.catalog.models import Resource
from shuzheng.core.validators import citizen_id_check_char
from shuzheng.demo import population
from shuzheng.ingest import services as ingest
from shuzheng.org.models import User
from shuzheng.org.services import Actor
from shuzheng.quality import services as quality
from shuzheng.quality.models import Rule
from shuzheng.warehouse import lake

RULES = Path(__file__).resolve().parent.parent / "quality" / "data" / "element_rules.json"
PEOPLE = int(os.environ.get("SHUZHENG_DEMO_PEOPLE", "100000"))
ENTERPRISES = max(1000, PEOPLE // 20)


def _actor(username: str) -> Actor:
    return Actor(user=User.objects.select_related("organization").get(username=username), ip="127.0.0.1")


def load_rules(reviewer: str) -> int:
    actor, created = _actor(reviewer), 0
    for rule in json.loads(RULES.read_text(encoding="utf-8")):
        if Rule.objects.filter(element__identifier=rule["element"], kind=rule["kind"]).exists():
            continue
        quality.save_rule(actor, element=rule["element"], kind=rule["kind"], params=rule["params"],
                          blocking=rule["blocking"], description=rule["description"])
        created += 1
    return created


def _resource(name: str) -> Resource:
    return Resource.objects.select_related("provider").get(published__name=name)


def _officer(resource: Resource) -> Actor:
    user = User.objects.filter(organization=resource.provider, roles__role="data_officer").first()
    return Actor(user=user, ip="127.0.0.1")


def _loaded(resource: Resource) -> bool:
    table = lake.open_table(resource.mount_target)
    return table is not None and table.current_snapshot() is not None


def _load(resource: Resource, path: Path, mode: str, say) -> None:
    load = ingest.ingest_file(_officer(resource), resource.code, path, mode=mode)
    say(f"  {resource.published.name}: {load.state}, {load.loaded} rows loaded, {load.quarantined} quarantined")


def _elderly(people: pa.Table) -> pa.Table:
    """The allowance roll for people aged 80 and over, as the civil-affairs system holds it: mostly right,
    with some names that differ from the household register and some ID numbers it does not know."""
    born = pc.utf8_slice_codeunits(people["公民身份号码"], 6, 14)
    old = people.filter(pc.less_equal(born, "19461231"))
    n = old.num_rows
    names = old["姓名"].to_pylist()
    ids = old["公民身份号码"].to_pylist()
    for i in range(0, n, 37):  # a name recorded differently from the register (一数一源 finding)
        names[i] = (names[i] or "") + "某"
    for i in range(5, n, 53):  # a person the register does not know (reference finding)
        first17 = ids[i][:14] + "99" + ids[i][16]
        ids[i] = first17 + citizen_id_check_char(first17)
    return pa.table({
        "公民身份号码": ids, "姓名": names, "出生日期": old["出生日期"], "户籍地址": old["户籍地址"],
        "津贴标准": ["200"] * n, "发放月份": ["202610"] * n, "发放状态": ["1"] * n})


def load_data(reviewer: str, say=lambda text: None) -> None:
    created = load_rules(reviewer)
    say(f"quality rules on data elements: {created} new")
    if os.environ.get("SHUZHENG_DEMO_DATA") == "0":  # the benchmarks bring their own data
        return
    register = _resource("定州市户籍人口基本信息")
    enterprises = _resource("企业登记基本信息")
    elderly = _resource("高龄津贴发放信息")
    with tempfile.TemporaryDirectory(prefix="shuzheng-demo-") as tmp:
        folder = Path(tmp)
        if not _loaded(register):
            people = pa.Table.from_batches(list(population.people_batches(PEOPLE)))
            path = folder / "户籍人口.csv"
            population.write_csv(path, people.to_batches(), encoding="gbk")
            _load(register, path, "replace", say)
            if not _loaded(elderly):
                _ensure_elderly_rules(elderly, register)
                path = folder / "高龄津贴.csv"
                population.write_csv(path, _elderly(people).to_batches(), encoding="utf-8")
                _load(elderly, path, "replace", say)
        if not _loaded(enterprises):
            path = folder / "企业登记.csv"
            population.write_csv(path, population.enterprise_batches(ENTERPRISES), encoding="gbk")
            _load(enterprises, path, "replace", say)


def _ensure_elderly_rules(elderly: Resource, register: Resource) -> None:
    """The allowance roll must name people the register knows, by the register's names (一数一源)."""
    actor = _officer(elderly)
    if not Rule.objects.filter(resource=elderly, kind="reference").exists():
        quality.save_rule(actor, code=elderly.code, kind="reference", items=["公民身份号码"],
                          params={"resource": register.code, "item": "公民身份号码"}, blocking=True,
                          description="享受津贴人员须在户籍人口库中")
    if not Rule.objects.filter(resource=elderly, kind="cross_source").exists():
        quality.save_rule(actor, code=elderly.code, kind="cross_source", items=["姓名"],
                          params={"resource": register.code, "key": ["公民身份号码", "公民身份号码"], "item": "姓名"},
                          blocking=False, description="姓名与权威来源（户籍人口库）一致")
