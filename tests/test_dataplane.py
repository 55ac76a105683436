"""The data plane end to end through the services: a file becomes one Iceberg snapshot or nothing, bad rows
go to quarantine with every reason, modes, time travel, retention, lineage, derived tables, schedules, and
atomicity under an injected failure and under kill -9."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from data_helpers import HEADER, person, table_resource, write_csv
from django.utils import timezone
from openpyxl import load_workbook
from pyiceberg.catalog.sql import SqlCatalog

from shuzheng.audit.models import AuditRecord
from shuzheng.catalog.models import Resource
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.ingest import schedule
from shuzheng.ingest import services as ingest
from shuzheng.ingest.models import Load
from shuzheng.ingest.pipeline import quarantine_path
from shuzheng.quality import reports
from shuzheng.quality import services as quality
from shuzheng.warehouse import lake

OFFICER = "officer-public-security"


def good_rows(n: int, start: int = 0) -> list[list[str]]:
    return [person(start + i) for i in range(n)]


def load(demo, resource, path, mode="append", user=OFFICER, **kw) -> Load:
    return ingest.ingest_file(demo.actor(user), resource.code, path, mode=mode, **kw)


def plain_client_rows(resource) -> list[dict]:
    """Reads the table with pyiceberg alone, as an outside Iceberg client would: no Shuzheng code."""
    uri = lake.catalog_uri()
    client = SqlCatalog("shuzheng", uri=uri, warehouse=lake.root().as_uri())
    return client.load_table(resource.mount_target).scan().to_arrow().to_pylist()


def clear_rows(resource) -> list[dict]:
    """The plain client's rows with the sealed items (重要 personal: ID number, name) opened by the table's
    data keys, as the loader and the gateway open them; blind-index columns dropped."""
    from shuzheng.security import fieldcrypt

    cipher = fieldcrypt.cipher_for(resource, resource.published.items.all())
    opened = []
    for row in plain_client_rows(resource):
        row = {k: v for k, v in row.items() if not k.endswith(fieldcrypt.INDEX_SUFFIX)}
        if cipher is not None:
            row.update({k: cipher.open(k, row[k]) for k in cipher.encrypted if k in row})
        opened.append(row)
    return opened


def test_a_load_is_one_snapshot_that_a_plain_iceberg_client_reads(demo, tmp_path):
    resource = table_resource(demo)
    rows = good_rows(20)
    done = load(demo, resource, write_csv(tmp_path / "人口.csv", rows))
    assert (done.state, done.loaded, done.quarantined, done.unreadable) == ("committed", 20, 0, 0)
    table = lake.open_table(resource.mount_target)
    assert [s.snapshot_id for s in table.snapshots()] == [done.snapshot_id]
    # An outside client sees the sealed items as SM4 tokens beside their blind index, the others in clear.
    raw = plain_client_rows(resource)
    assert all(r["公民身份号码"].startswith("sz1:") and len(r["公民身份号码__bi"]) == 32 for r in raw)
    assert sorted(r["性别"] for r in raw) == sorted(r[2] for r in rows)
    read = clear_rows(resource)
    assert sorted(r["公民身份号码"] for r in read) == sorted(r[0] for r in rows)
    first = next(r for r in read if r["公民身份号码"] == rows[0][0])
    assert first["出生日期"] == dt.date(1990, 1, 1) and str(first["月收入"]) == "3500.5000"
    assert first["登记日期"] == dt.date(2020, 5, 6)
    assert done.lineage["kind"] == "file" and len(done.lineage["sha256"]) == 64
    assert done.mapping == {h: h for h in HEADER}
    assert done.scores["overall"] == 100.0
    actions = set(AuditRecord.objects.filter(object_id=str(done.id)).values_list("action", flat=True))
    assert actions == {"ingest.load_start", "ingest.load"}


def test_bad_rows_are_quarantined_with_every_reason_and_the_rest_loads(demo, tmp_path):
    resource = table_resource(demo)
    rows = good_rows(40)
    bad_check = person(100)
    bad_check[0] = bad_check[0][:17] + ("0" if bad_check[0][17] != "0" else "1")
    no_name_and_bad_date = person(101, registered="2019-02-30")
    no_name_and_bad_date[1] = ""
    birth_mismatch = person(102)
    birth_mismatch[3] = "1991-01-01"
    female_coded_male = person(103, male=False)
    female_coded_male[2] = "1"
    duplicate = list(rows[0])
    damaged = person(104, name="张\ufffd")
    future_birth = person(105)
    future_birth[3] = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    too_long = person(106, name="王" * 51)
    not_a_number = person(107, income="三千")
    rows += [bad_check, no_name_and_bad_date, birth_mismatch, female_coded_male, duplicate, damaged, future_birth,
             too_long, not_a_number]
    done = load(demo, resource, write_csv(tmp_path / "人口.csv", rows, encoding="utf-8"))
    assert done.state == "committed"
    assert (done.loaded, done.quarantined) == (40, 9)
    codes = {f["code"]: f for f in done.findings}
    for code in ("id_number.check_digit", "not_null.missing", "type.date", "id_consistency.birth",
                 "id_consistency.sex", "unique.duplicate", "encoding", "date_past.future", "length", "type.decimal"):
        assert code in codes, code
    assert codes["unique.duplicate"]["rows"] == [46]  # the physical line: the header is line 1
    # Every reason of a row, not just the first: the nameless row also has an impossible date.
    by_row = {r[0]: r for r in _quarantine(done)}
    row_number = 43
    reasons = {(r["item"], r["code"]) for r in by_row[row_number][-1]}
    assert {("姓名", "not_null.missing"), ("登记日期", "type.date")} <= reasons
    stored = {r["公民身份号码"] for r in clear_rows(resource)}
    assert bad_check[0] not in stored and len(stored) == 40
    assert done.scores["validity"] < 100 and done.scores["uniqueness"] < 100 and done.scores["consistency"] < 100


def _quarantine(done) -> list[tuple]:
    con = duckdb.connect()
    path = str(quarantine_path(done.id))
    rows = con.execute(f"SELECT _row, __reasons FROM read_parquet('{path}') ORDER BY _row").fetchall()
    return [(r[0], r[1]) for r in rows]


def test_quarantine_downloads_escape_formulas_and_mark_each_cell(demo, tmp_path):
    resource = table_resource(demo)
    evil = person(1, name="=HYPERLINK(\"http://x\")")
    evil[0] = evil[0][:17] + ("0" if evil[0][17] != "0" else "1")
    done = load(demo, resource, write_csv(tmp_path / "p.csv", good_rows(10, 5) + [evil]))
    name, body = reports.quarantine_export(demo.actor(OFFICER), done.id, "csv")
    text = body.decode("utf-8-sig")
    assert name.endswith(".csv") and "'=HYPERLINK" in text and "公民身份号码: " in text
    name, body = reports.quarantine_export(demo.actor(OFFICER), done.id, "xlsx")
    sheet = load_workbook(io.BytesIO(body)).active
    header = [c.value for c in sheet[1]]
    id_cell = sheet.cell(row=2, column=header.index("公民身份号码") + 1)
    assert id_cell.comment is not None and "check" in id_cell.comment.text.lower() or "校验" in id_cell.comment.text
    assert sheet.cell(row=2, column=header.index("姓名") + 1).value.startswith("'=")
    # The quarantined rows are the providing department's data: nobody else reads them.
    with pytest.raises(NotFound):
        reports.quarantine_export(demo.actor("officer-civil-affairs"), done.id, "csv")


def test_a_load_over_the_failure_threshold_is_rejected_whole(demo, tmp_path):
    resource = table_resource(demo)
    first = load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(10)))
    bad = [person(50 + i, registered="不详") for i in range(5)]
    done = load(demo, resource, write_csv(tmp_path / "b.csv", good_rows(5, 20) + bad))
    assert done.state == "rejected" and done.snapshot_id is None and "50.0%" in done.error
    assert lake.open_table(resource.mount_target).current_snapshot().snapshot_id == first.snapshot_id
    assert len(plain_client_rows(resource)) == 10
    # The department still gets the refused rows back to fix.
    assert len(_quarantine(done)) == 5


def test_modes_append_upsert_replace_and_the_row_count_guard(demo, tmp_path):
    resource = table_resource(demo)
    ingest.update_settings(demo.actor(OFFICER), resource.code, {"max_failure_share": 0.5})
    load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(10)))
    again = load(demo, resource, write_csv(tmp_path / "b.csv", good_rows(2) + good_rows(3, 10)))
    assert (again.state, again.loaded, again.quarantined) == ("committed", 3, 2)
    assert {f["code"] for f in again.findings} == {"unique.exists"}
    changed = good_rows(2)
    changed[0][1] = "张改名"
    upsert = load(demo, resource, write_csv(tmp_path / "c.csv", changed + good_rows(1, 20)), mode="upsert")
    assert upsert.state == "committed" and upsert.rows_after == 14
    names = {r["公民身份号码"]: r["姓名"] for r in clear_rows(resource)}
    assert len(names) == 14 and names[changed[0][0]] == "张改名"
    shrink = load(demo, resource, write_csv(tmp_path / "d.csv", good_rows(3)), mode="replace")
    assert shrink.state == "rejected" and len(clear_rows(resource)) == 14
    replaced = load(demo, resource, write_csv(tmp_path / "e.csv", good_rows(12, 40)), mode="replace")
    assert replaced.state == "committed" and replaced.rows_after == 12
    assert {r["公民身份号码"] for r in clear_rows(resource)} == {r[0] for r in good_rows(12, 40)}


def test_reads_name_a_snapshot_or_a_point_in_time_and_retention_keeps_the_newest(demo, tmp_path):
    resource = table_resource(demo)
    officer = demo.actor(OFFICER)
    first = load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(3)))
    time.sleep(0.01)
    between = timezone.now()
    time.sleep(0.01)
    load(demo, resource, write_csv(tmp_path / "b.csv", good_rows(4, 10)))
    assert ingest.read_rows(officer, resource.code)["rows"] == 7
    assert ingest.read_rows(officer, resource.code, snapshot_id=first.snapshot_id)["rows"] == 3
    assert ingest.read_rows(officer, resource.code, as_of=between)["rows"] == 3
    with pytest.raises(Conflict) as exc:
        ingest.read_rows(officer, resource.code, snapshot_id=12345)
    assert exc.value.errors[0].field == "snapshot"
    ingest.update_settings(officer, resource.code, {"retain_snapshots": 2})
    load(demo, resource, write_csv(tmp_path / "c.csv", good_rows(1, 30)))
    load(demo, resource, write_csv(tmp_path / "d.csv", good_rows(1, 31)))
    snapshots = ingest.snapshots(officer, resource.code)
    assert len(snapshots) == 2 and snapshots[0]["rows"] == 9 and snapshots[0]["load"] is not None


def test_settings_are_validated_and_audited(demo):
    resource = table_resource(demo)
    officer = demo.actor(OFFICER)
    with pytest.raises(ValidationFailed) as exc:
        ingest.update_settings(officer, resource.code, {"max_failure_share": 2, "retain_snapshots": "x", "nope": 1})
    assert {e.field for e in exc.value.errors} == {"max_failure_share", "retain_snapshots", "nope"}
    table = ingest.update_settings(officer, resource.code, {"max_failure_share": 0.05, "max_count_change": None})
    assert (table.max_failure_share, table.max_count_change) == (0.05, None)
    assert AuditRecord.objects.filter(action="ingest.settings_update", object_id=str(table.id)).exists()


def test_who_may_load(demo, tmp_path):
    resource = table_resource(demo)
    path = write_csv(tmp_path / "a.csv", good_rows(2))
    with pytest.raises(Forbidden):  # the published resource is visible to them; loading it is not theirs
        load(demo, resource, path, user="officer-civil-affairs")
    unmounted = table_resource(demo)
    from shuzheng.catalog import services as catalog
    catalog.unmount(demo.actor(OFFICER), unmounted.code)
    with pytest.raises(Conflict) as exc:
        load(demo, unmounted, path)
    assert exc.value.errors[0].field == "resource"
    with pytest.raises(ValidationFailed) as exc:
        load(demo, resource, path, mode="merge")
    assert exc.value.errors[0].field == "mode"


def test_a_missing_required_column_names_the_item_and_writes_nothing(demo, tmp_path):
    resource = table_resource(demo)
    path = write_csv(tmp_path / "a.csv", [r[1:] for r in good_rows(2)], header=HEADER[1:])
    with pytest.raises(ValidationFailed) as exc:
        load(demo, resource, path)
    assert "mapping.公民身份号码" in {e.field for e in exc.value.errors}
    assert lake.open_table(resource.mount_target).current_snapshot() is None
    failed = Load.objects.get(resource=resource)
    assert failed.state == "failed" and "公民身份号码" in failed.error
    # An explicit mapping fixes it.
    renamed = write_csv(tmp_path / "b.csv", good_rows(2), header=["身份证号"] + HEADER[1:])
    done = load(demo, resource, renamed, mapping={"公民身份号码": "身份证号"})
    assert done.state == "committed" and done.mapping["公民身份号码"] == "身份证号"


def test_an_injected_failure_mid_load_leaves_the_previous_snapshot(demo, tmp_path, monkeypatch):
    resource = table_resource(demo)
    first = load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(5)))
    monkeypatch.setenv("SHUZHENG_FAULT_PAUSE_BEFORE_COMMIT", "fail")
    with pytest.raises(RuntimeError):
        load(demo, resource, write_csv(tmp_path / "b.csv", good_rows(5, 10)))
    table = lake.open_table(resource.mount_target)
    assert [s.snapshot_id for s in table.snapshots()] == [first.snapshot_id]
    assert len(plain_client_rows(resource)) == 5
    failed = Load.objects.filter(resource=resource).order_by("-created_at").first()
    assert failed.state == "failed" and "injected" in failed.error
    data = lake.local_path(table.location()) / "data"
    assert not (data / f"load-{failed.id}").exists()


def test_a_derived_table_records_the_snapshots_it_was_built_from(demo, tmp_path):
    source_resource = table_resource(demo)
    base = load(demo, source_resource, write_csv(tmp_path / "a.csv", good_rows(6)))
    derived = table_resource(demo, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "length": 18},
        {"name": "姓名", "element": "DE00002", "length": 50}])
    officer = demo.actor(OFFICER)
    src = ingest.save_source(officer, derived.code, {
        "name": "从人口库派生", "kind": "derived", "mode": "replace",
        "config": {"query": f'SELECT 公民身份号码, 姓名 FROM "{source_resource.code}" WHERE 月收入 > 1000'}})
    done = ingest.run_source(officer, src.id)
    assert done.state == "committed" and done.loaded == 6
    assert done.lineage["inputs"] == [{"resource": source_resource.code, "snapshot_id": base.snapshot_id}]
    assert done.lineage["source"]["version"] == 1
    with pytest.raises(ValidationFailed) as exc:
        ingest.save_source(officer, derived.code, {"name": "x", "kind": "derived", "config": {"query": "SELECT 1"}})
    assert exc.value.errors[0].field == "config.query" or exc.value.errors[0].field.startswith("config")


def test_a_database_pull_through_a_configured_source(demo, tmp_path):
    import sqlite3

    db = tmp_path / "dept.sqlite3"
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE people ({', '.join(f'c{i} TEXT' for i in range(len(HEADER)))})")
        con.executemany(f"INSERT INTO people VALUES ({', '.join('?' * len(HEADER))})", good_rows(8))
    resource = table_resource(demo)
    officer = demo.actor(OFFICER)
    mapping = {item: f"c{i}" for i, item in enumerate(HEADER)}
    src = ingest.save_source(officer, resource.code, {
        "name": "公安人口库", "kind": "database", "mode": "replace", "mapping": mapping,
        "config": {"url": f"sqlite:///{db}", "query": "SELECT * FROM people"}})
    done = ingest.run_source(officer, src.id)
    assert done.state == "committed" and done.loaded == 8
    assert done.lineage["kind"] == "database" and "SELECT" in done.lineage["query"]


def test_schedules_follow_the_update_cycle_and_flag_overdue_loads(demo, tmp_path):
    resource = table_resource(demo)  # daily
    officer = demo.actor(OFFICER)
    db = tmp_path / "dept.sqlite3"
    import sqlite3
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE p (公民身份号码 TEXT, 姓名 TEXT)")
        con.executemany("INSERT INTO p VALUES (?, ?)", [r[:2] for r in good_rows(3)])
    src = ingest.save_source(officer, resource.code, {
        "name": "每日同步", "kind": "database", "mode": "replace",
        "config": {"url": f"sqlite:///{db}", "query": "SELECT * FROM p"}})
    assert src in schedule.due_sources()
    from huey.contrib.djhuey import HUEY

    from shuzheng.ingest import tasks
    HUEY.immediate = True
    try:
        assert tasks.schedule_pulls.call_local() >= 1
    finally:
        HUEY.immediate = False
    done = Load.objects.filter(resource=resource, source=src).get()
    assert done.state == "committed" and done.started_by == "worker"
    assert src not in schedule.due_sources() and not schedule.overdue(resource)
    later = timezone.now() + dt.timedelta(days=3)
    assert src in schedule.due_sources(later) and schedule.overdue(resource, later)
    Load.objects.filter(pk=done.pk).update(finished_at=timezone.now() - dt.timedelta(days=3))
    assert resource in schedule.overdue_resources()
    assert reports.resource_report(officer, resource.code)["overdue"] is True


def test_rules_on_a_resource_are_validated_versioned_and_applied(demo, tmp_path):
    resource = table_resource(demo)
    officer = demo.actor(OFFICER)
    with pytest.raises(ValidationFailed) as exc:
        quality.save_rule(officer, code=resource.code, kind="pattern", items=["没有这项"], params={"regex": "("})
    assert {e.field for e in exc.value.errors} >= {"items", "params.regex"}
    rule = quality.save_rule(officer, code=resource.code, kind="range", items=["月收入"], params={"max": 10000},
                             blocking=False)
    rule = quality.save_rule(officer, rule_id=rule.id, kind="range", items=["月收入"], params={"max": 5000},
                             blocking=False)
    assert rule.version == 2
    with pytest.raises(Forbidden):
        quality.save_rule(demo.actor("officer-civil-affairs"), code=resource.code, kind="not_null", items=["姓名"])
    done = load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(3) + [person(9, income="9000")]))
    assert done.loaded == 4 and done.warned == 1
    warning = next(f for f in done.findings if f["rule"] == str(rule.id))
    assert warning["blocking"] is False and warning["count"] == 1
    assert {"id": str(rule.id), "version": 2, "kind": "range", "items": ["月收入"]} in done.rules


def test_element_rules_need_a_standards_manager(demo):
    with pytest.raises(Exception) as exc:
        quality.save_rule(demo.actor(OFFICER), element="DE00002", kind="not_null")
    assert getattr(exc.value, "status", None) == 403


def test_the_demo_register_shows_real_findings(demo):
    register = Resource.objects.get(published__name="定州市户籍人口基本信息")
    report = reports.resource_report(demo.cli(), register.code)
    assert report["scores"] and 80 < report["scores"]["overall"] < 100
    codes = {f["code"] for f in report["findings"]}
    assert {"id_number.check_digit", "unique.duplicate", "id_consistency.birth", "not_null.missing"} <= codes
    elderly = Resource.objects.get(published__name="高龄津贴发放信息")
    codes = {f["code"] for f in reports.resource_report(demo.cli(), elderly.code)["findings"]}
    assert {"reference.missing", "cross_source.differs"} & codes


@pytest.mark.skipif(sys.platform != "linux", reason="kill -9 semantics")
def test_kill_9_mid_load_leaves_the_table_as_it_was(platform, tmp_path):
    """A real `shuzheng ingest` process killed with SIGKILL after writing its files, before the commit."""
    env = dict(platform.env)
    code = _demo_code(platform, "企业登记基本信息")
    before = _snapshots(platform, code)
    path = tmp_path / "企业.csv"
    _enterprise_csv(platform, path)
    env["SHUZHENG_FAULT_PAUSE_BEFORE_COMMIT"] = "120"
    proc = subprocess.Popen([sys.executable, "-m", "shuzheng", "ingest", str(path), "--resource", code,
                             "--mode", "upsert", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    marker = None
    while time.time() < deadline and marker is None:
        marker = next(iter(platform.home.glob("warehouse/**/load-*/.about-to-commit")), None)
        time.sleep(0.2)
    assert marker is not None, proc.stderr.read1(4000) if proc.poll() is not None else "no marker"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert _snapshots(platform, code) == before
    # The next load finds the interrupted one, records it as failed and removes its files.
    env.pop("SHUZHENG_FAULT_PAUSE_BEFORE_COMMIT")
    result = subprocess.run([sys.executable, "-m", "shuzheng", "ingest", str(path), "--resource", code, "--mode",
                             "upsert", "--json"], env=env, capture_output=True, text=True, timeout=120)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"loaded", "quarantined", "rejected", "snapshot_id"} <= set(line)
    assert not marker.parent.exists()
    states = _django(platform, "from shuzheng.ingest.models import Load; "
                     "print(json.dumps([l.state for l in Load.objects.order_by('created_at')][-2:]))")
    assert states == ["failed", "committed" if not line["rejected"] else "rejected"]


def _django(platform, code: str):
    script = f"import json, django, os; os.environ['DJANGO_SETTINGS_MODULE']='shuzheng.settings'; django.setup(); {code}"
    out = subprocess.run([sys.executable, "-c", script], env=platform.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _demo_code(platform, name: str) -> str:
    return _django(platform, "from shuzheng.catalog.models import Resource; "
                   f"print(json.dumps(Resource.objects.get(published__name='{name}').code))")


def _snapshots(platform, code: str) -> list:
    return _django(platform, "from shuzheng.catalog.models import Resource; from shuzheng.warehouse import lake; "
                   f"t = lake.open_table(Resource.objects.get(code='{code}').mount_target); "
                   "print(json.dumps([s.snapshot_id for s in t.snapshots()]))")


def _enterprise_csv(platform, path: Path) -> None:
    from shuzheng.demo import population
    population.write_csv(path, population.enterprise_batches(20000, seed=7), encoding="gbk")



def test_a_load_computed_on_a_snapshot_that_moved_on_is_refused(demo, tmp_path):
    """Two loads of one table at once: the one that commits second was checked (duplicates, upsert merge)
    against a snapshot that is no longer current, so it is refused, not merged blindly."""
    resource = table_resource(demo)
    load(demo, resource, write_csv(tmp_path / "a.csv", good_rows(3)))
    stale = lake.open_table(resource.mount_target)
    load(demo, resource, write_csv(tmp_path / "b.csv", good_rows(2, 10)))  # commits meanwhile
    current = lake.open_table(resource.mount_target).current_snapshot().snapshot_id
    folder = lake.load_dir(stale, "concurrent")
    con = duckdb.connect()
    ids = lake.field_ids(stale)
    con.execute(f"COPY (SELECT '{good_rows(1, 20)[0][0]}' AS 公民身份号码) TO '{folder}/p.parquet' "
                f"(FORMAT parquet, FIELD_IDS {{'公民身份号码': {ids['公民身份号码']}}})")
    with pytest.raises(Conflict) as exc:
        lake.commit(stale, [folder / "p.parquet"], replace=False, properties={})
    assert exc.value.errors[0].field == "resource"
    assert lake.open_table(resource.mount_target).current_snapshot().snapshot_id == current


def test_a_plain_iceberg_client_reads_every_table(demo):
    """Every table in the catalog, read by pyiceberg alone, holds the rows the platform says it holds."""
    from shuzheng.warehouse.models import Table

    client = SqlCatalog("shuzheng", uri=lake.catalog_uri(), warehouse=lake.root().as_uri())
    expected = dict(Table.objects.filter(current_snapshot_id__isnull=False).values_list("identifier", "rows"))
    read = {}
    for namespace in client.list_namespaces():
        for identifier in client.list_tables(namespace):
            table = client.load_table(identifier)
            if table.current_snapshot() is not None:
                read[".".join(identifier)] = table.scan().to_arrow().num_rows
    assert {"public_security.household_register", "market_regulation.enterprise_register",
            "civil_affairs.elderly_allowance"} <= set(read)
    assert {k: read[k] for k in expected} == expected
