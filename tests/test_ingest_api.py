"""The data plane's API under /api/v1/data (issue 4), through real HTTP requests to the Django app: multipart
uploads into a published resource mounted as a warehouse table, the load record they answer with, who may
load and download quarantined rows, the field each kind of bad input is named by, a rejected load, time
travel by snapshot id and by time, lineage, the quality report, rules and overdue resources.

Each test runs in the usual rolled-back transaction (`db`, through `demo`): the Iceberg catalog has a
connection of its own (on SQLite a file of its own beside the warehouse), so loads commit to it from inside a
test, and each test's table has a unique name. (`transactional_db` would flush the Dingzhou demo that every
test here relies on.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import pytest
from data_helpers import HEADER, person, table_resource, write_csv
from django.test import Client, override_settings
from django.utils import timezone
from openpyxl import load_workbook

from shuzheng.audit.models import AuditRecord
from shuzheng.ingest.models import Load
from shuzheng.quality.models import Rule
from shuzheng.security import fieldcrypt
from shuzheng.warehouse import lake
from shuzheng.warehouse.models import Table

EN = {"Accept-Language": "en"}
API = "/api/v1/data"
OFFICER = "officer-public-security"


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


# ---- helpers ----


def as_user(demo, name) -> Client:
    client = Client(headers=EN)
    client.force_login(demo.user(name))
    return client


def url(code: str, tail: str = "") -> str:
    return f"{API}/resources/{code.replace('/', '-')}{tail}"


def ok(resp, status=200):
    assert resp.status_code == status, resp.content
    return resp.json()


def problem(resp, status) -> dict:
    assert resp.status_code == status, resp.content
    assert resp["Content-Type"].startswith("application/problem+json"), resp["Content-Type"]
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields(body) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def good_rows(n: int, start: int = 0) -> list[list[str]]:
    return [person(start + i) for i in range(n)]


def faulty_rows() -> list[list[str]]:
    """Two rows a load refuses: an impossible registration date, and an empty mandatory name."""
    bad_date = person(900, registered="2019-02-30")
    no_name = person(901)
    no_name[1] = ""
    return [bad_date, no_name]


def upload(client, code: str, path, mode: str = "append", **extra):
    with open(path, "rb") as f:
        return client.post(url(code, "/loads"), {"file": f, "mode": mode, **extra})


def named(data: bytes, name: str = "a.csv") -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def temp_uploads(settings) -> list:
    folder = settings.HOME / "tmp"
    return sorted(p.name for p in folder.glob("upload-*")) if folder.exists() else []


# ---- uploads ----


def test_a_gbk_csv_with_faulty_rows_loads_the_good_ones_and_quarantines_the_rest(demo, tmp_path, settings):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    path = write_csv(tmp_path / "人口.csv", good_rows(10) + faulty_rows(), encoding="gbk")
    before = temp_uploads(settings)
    load = ok(upload(officer, resource.code, path), 201)
    assert (load["state"], load["rejected"], load["loaded"], load["quarantined"], load["unreadable"]) == \
        ("committed", False, 10, 2, 0)
    assert load["rows_read"] == 12 and load["rows_after"] == 10 and load["snapshot_id"]
    assert load["parent_snapshot_id"] is None and load["error"] == ""
    assert load["resource"] == resource.code and load["mode"] == "append" and load["kind"] == "file"
    assert load["started_by"] == OFFICER and load["organization"] == demo.org("public-security").code
    assert set(load["scores"]) == {"completeness", "validity", "uniqueness", "consistency", "timeliness", "overall"}
    assert load["scores"]["validity"] < 100
    assert load["lineage"]["name"] == "人口.csv" and load["lineage"]["encoding"] in ("gbk", "gb18030")
    assert len(load["lineage"]["sha256"]) == 64
    assert load["mapping"] == {h: h for h in HEADER}
    findings = {(f["item"], f["blocking"]) for f in load["findings"]}
    assert ("登记日期", True) in findings and ("姓名", True) in findings
    assert all(f["rows"] for f in load["findings"])  # sample source rows, for a person to find them
    assert load["quarantine"] == f"{API}/loads/{load['id']}/quarantine"
    # The upload went to a temporary file under SHUZHENG_HOME/tmp, removed after the load.
    assert temp_uploads(settings) == before
    # The same record by id and in the resource's history.
    assert ok(officer.get(f"{API}/loads/{load['id']}")) == load
    listed = ok(officer.get(url(resource.code, "/loads")))
    assert listed["count"] == 1 and listed["items"][0]["id"] == load["id"]
    assert "findings" not in listed["items"][0]
    actions = set(AuditRecord.objects.filter(object_id=load["id"]).values_list("action", flat=True))
    assert {"ingest.load_start", "ingest.load"} <= actions


def test_the_quarantined_rows_download_as_csv_and_xlsx_for_the_providers_loaders_only(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    load = ok(upload(officer, resource.code, write_csv(tmp_path / "p.csv", good_rows(10) + faulty_rows())), 201)
    resp = officer.get(load["quarantine"])
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    assert resp["Content-Disposition"].startswith("attachment; filename=\"quarantine-") and ".csv" in \
        resp["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert len(rows) == 3 and "reasons" in rows[0]
    reasons = {r[rows[0].index("reasons")] for r in rows[1:]}
    assert any("登记日期" in r for r in reasons) and any("姓名" in r for r in reasons)
    resp = officer.get(load["quarantine"] + "?format=xlsx")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("application/vnd.openxmlformats")
    assert load_workbook(io.BytesIO(resp.content)).active.max_row == 3
    assert "format" in fields(problem(officer.get(load["quarantine"] + "?format=pdf"), 422))
    # Another department's staff can see the load (the resource is published) but not the rows it refused.
    for other in ("officer-civil-affairs", "staff"):
        client = as_user(demo, other)
        assert ok(client.get(f"{API}/loads/{load['id']}"))["id"] == load["id"]
        problem(client.get(load["quarantine"]), 404)
    # The steward of the provider may.
    steward_resource = table_resource(demo, officer="officer-civil-affairs", provider="civil-affairs")
    steward = as_user(demo, "steward")
    mine = ok(upload(steward, steward_resource.code, write_csv(tmp_path / "s.csv", good_rows(10) + faulty_rows())),
              201)
    assert mine["started_by"] == "steward" and mine["quarantined"] == 2
    assert steward.get(mine["quarantine"]).status_code == 200
    problem(officer.get(mine["quarantine"]), 404)
    assert ok(officer.get(f"{API}/loads/{mine['id']}"))["loaded"] == 10  # a published resource's history


def test_who_may_load(demo, tmp_path):
    resource = table_resource(demo)
    path = write_csv(tmp_path / "a.csv", good_rows(3))
    # The published resource is visible to them, so the refusal is 403 (as for editing it in the catalog).
    for other in ("officer-civil-affairs", "staff", "reviewer"):
        problem(upload(as_user(demo, other), resource.code, path), 403)
    problem(upload(Client(headers=EN), resource.code, path), 401)
    assert not Load.objects.filter(resource=resource).exists()
    assert ok(upload(as_user(demo, OFFICER), resource.code, path), 201)["loaded"] == 3


def test_bad_input_is_a_422_naming_the_field(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    body = problem(officer.post(url(resource.code, "/loads"), {"mode": "append"}), 422)
    assert fields(body) == {"file"}
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert fields(problem(upload(officer, resource.code, empty), 422)) == {"file"}
    good = write_csv(tmp_path / "a.csv", good_rows(2))
    assert "mode" in fields(problem(upload(officer, resource.code, good, mode="merge"), 422))
    assert "mode" in fields(problem(officer.post(url(resource.code, "/loads"), {"file": named(b"x")}), 422))
    assert "encoding" in fields(problem(upload(officer, resource.code, good, encoding="latin-9"), 422))
    assert "mapping" in fields(problem(upload(officer, resource.code, good, mapping="[1, 2]"), 422))
    assert "mapping" in fields(problem(upload(officer, resource.code, good, mapping="{not json"), 422))
    # A file without the key column: the error names the item, and nothing is loaded.
    no_key = write_csv(tmp_path / "b.csv", [r[1:] for r in good_rows(2)], header=HEADER[1:])
    body = problem(upload(officer, resource.code, no_key), 422)
    assert "mapping.公民身份号码" in fields(body)
    assert lake.open_table(resource.mount_target).current_snapshot() is None
    assert not Load.objects.filter(resource=resource, state="committed").exists()
    # A mapping naming the source column fixes it.
    renamed = write_csv(tmp_path / "c.csv", good_rows(2), header=["身份证号"] + HEADER[1:])
    load = ok(upload(officer, resource.code, renamed, mapping=json.dumps({"公民身份号码": "身份证号"})), 201)
    assert load["mapping"]["公民身份号码"] == "身份证号" and load["loaded"] == 2
    # A mapping to a column the file lacks names that item.
    body = problem(upload(officer, resource.code, renamed, mapping=json.dumps({"姓名": "XM"})), 422)
    assert "mapping.姓名" in fields(body)
    # An unknown resource.
    problem(officer.post(f"{API}/resources/999999999-999999/loads", {"file": named(b"a"), "mode": "append"}), 404)


def test_an_upload_over_the_size_limit_names_the_file_and_leaves_nothing(demo, tmp_path, settings):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    path = write_csv(tmp_path / "a.csv", good_rows(20))
    before = temp_uploads(settings)
    with override_settings(INGEST_MAX_UPLOAD_BYTES=200):
        body = problem(upload(officer, resource.code, path), 422)
    assert fields(body) == {"file"} and "200" in body["detail"]
    assert temp_uploads(settings) == before
    assert not Load.objects.filter(resource=resource).exists()


def test_a_load_with_too_many_failing_rows_is_rejected_whole(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    first = ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(10))), 201)
    bad = [person(50 + i, registered="不详") for i in range(5)]
    # The request succeeded (a load was made and judged): 201, with the refusal in the record.
    load = ok(upload(officer, resource.code, write_csv(tmp_path / "b.csv", good_rows(5, 20) + bad)), 201)
    assert (load["state"], load["rejected"], load["snapshot_id"], load["rows_after"]) == ("rejected", True, None, None)
    assert "50.0%" in load["error"] and load["quarantined"] == 5
    assert lake.open_table(resource.mount_target).current_snapshot().snapshot_id == first["snapshot_id"]
    assert ok(officer.get(url(resource.code, "/rows")))["rows"] == 10
    # The department still gets the refused rows back to fix.
    assert officer.get(load["quarantine"]).status_code == 200


# ---- the table: rows, snapshots, lineage, quality ----


def test_time_travel_by_snapshot_id_and_by_time(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    first = ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(3))), 201)
    time.sleep(0.05)
    between = timezone.now()
    time.sleep(0.05)
    second = ok(upload(officer, resource.code, write_csv(tmp_path / "b.csv", good_rows(4, 10))), 201)
    assert second["parent_snapshot_id"] == first["snapshot_id"]
    now = ok(officer.get(url(resource.code, "/rows")))
    assert (now["snapshot_id"], now["rows"]) == (second["snapshot_id"], 7)
    assert now["columns"] == HEADER and len(now["sample"]) == 7
    # The preview shows the sealed ID numbers as tokens; opened, they are the rows loaded.
    cipher = fieldcrypt.cipher_for(resource, resource.published.items.all())
    assert {cipher.open("公民身份号码", r["公民身份号码"]) for r in now["sample"]} == {
        r[0] for r in good_rows(3) + good_rows(4, 10)}
    then = ok(officer.get(url(resource.code, f"/rows?snapshot={first['snapshot_id']}&limit=2")))
    assert (then["snapshot_id"], then["rows"], len(then["sample"])) == (first["snapshot_id"], 3, 2)
    as_of = ok(officer.get(url(resource.code, "/rows"), {"as_of": between.isoformat()}))
    assert as_of["snapshot_id"] == first["snapshot_id"] and as_of["rows"] == 3
    assert "snapshot" in fields(problem(officer.get(url(resource.code, "/rows?snapshot=12345")), 409))
    assert "limit" in fields(problem(officer.get(url(resource.code, "/rows?limit=0")), 422))
    # The rows are the provider's: another department reads none of them.
    problem(as_user(demo, "officer-civil-affairs").get(url(resource.code, "/rows")), 404)

    snapshots = ok(officer.get(url(resource.code, "/snapshots")))
    assert [s["snapshot_id"] for s in snapshots] == [second["snapshot_id"], first["snapshot_id"]]
    assert snapshots[0]["parent_id"] == first["snapshot_id"] and snapshots[0]["rows"] == 7
    assert snapshots[0]["load"]["id"] == second["id"] and snapshots[1]["load"]["id"] == first["id"]

    lineage = ok(officer.get(url(resource.code, "/lineage")))
    newest = lineage[0]
    assert newest["snapshot_id"] == second["snapshot_id"]
    assert newest["load"]["lineage"]["name"] == "b.csv" and len(newest["load"]["lineage"]["sha256"]) == 64
    assert newest["load"]["mapping"] == {h: h for h in HEADER}
    assert newest["load"]["rows_read"] == 4 and newest["load"]["parent_snapshot_id"] == first["snapshot_id"]
    assert all({"id", "version", "kind"} <= set(r) for r in newest["load"]["rules"])


def test_the_quality_report_has_the_latest_scores_and_the_trend(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    empty = ok(officer.get(url(resource.code, "/quality")))
    assert empty["scores"] == {} and empty["trend"] == [] and empty["overdue"] is False
    ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(10))), 201)
    second = ok(upload(officer, resource.code, write_csv(tmp_path / "b.csv", good_rows(10, 20) + faulty_rows())), 201)
    report = ok(as_user(demo, "staff").get(url(resource.code, "/quality")))  # anyone who sees the resource
    assert report["resource"] == resource.code and report["latest_load"] == second["id"]
    assert report["scores"] == second["scores"] and report["findings"]
    assert [t["scores"]["overall"] for t in report["trend"]] == [100.0, second["scores"]["overall"]]
    assert report["update_cycle"] == "daily" and report["overdue"] is False
    problem(Client(headers=EN).get(url(resource.code, "/quality")), 401)


def test_overdue_lists_the_late_resources_the_caller_may_see(demo, tmp_path):
    resource = table_resource(demo)  # daily
    officer = as_user(demo, OFFICER)
    load = ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(2))), 201)
    assert resource.code not in {r["code"] for r in ok(officer.get(f"{API}/overdue"))}
    Load.objects.filter(pk=load["id"]).update(finished_at=timezone.now() - dt.timedelta(days=3))
    listed = {r["code"]: r for r in ok(as_user(demo, "reviewer").get(f"{API}/overdue"))}
    assert resource.code in listed
    entry = listed[resource.code]
    assert entry["provider"] == demo.org("public-security").code and entry["update_cycle"] == "daily"
    assert entry["last_load_at"] is not None
    assert ok(officer.get(url(resource.code, "/quality")))["overdue"] is True
    problem(Client(headers=EN).get(f"{API}/overdue"), 401)


# ---- settings ----


def test_load_settings_are_read_validated_changed_and_applied(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    settings = url(resource.code, "/settings")
    assert ok(officer.get(settings)) == {"max_failure_share": 0.2, "max_count_change": 0.5, "retain_snapshots": 100}
    body = problem(officer.put(settings, {"max_failure_share": 2, "retain_snapshots": 0},
                               content_type="application/json"), 422)
    assert fields(body) == {"max_failure_share", "retain_snapshots"}
    assert "retain_snapshots" in fields(problem(officer.put(settings, {"retain_snapshots": "many"},
                                                             content_type="application/json"), 422))
    changed = ok(officer.put(settings, {"max_failure_share": 0.05, "max_count_change": None},
                             content_type="application/json"))
    assert changed == {"max_failure_share": 0.05, "max_count_change": None, "retain_snapshots": 100}
    assert ok(officer.get(settings)) == changed
    table = Table.objects.get(resource=resource)
    assert AuditRecord.objects.filter(action="ingest.settings_update", object_id=str(table.id)).exists()
    problem(as_user(demo, "officer-civil-affairs").put(settings, {"retain_snapshots": 5},
                                                       content_type="application/json"), 403)
    # One failing row in ten is now too many.
    load = ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(9) + faulty_rows()[:1])), 201)
    assert load["state"] == "rejected" and "5.0%" in load["error"]


# ---- rules ----


def test_rules_list_own_and_inherited_and_are_created_and_versioned(demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    rules = ok(officer.get(url(resource.code, "/rules")))
    assert all(r["inherited"] and r["element"] for r in rules)  # the data elements' rules (data standards)
    bad = {"kind": "pattern", "items": ["没有这项"], "params": {"regex": "("}}
    body = problem(officer.post(url(resource.code, "/rules"), bad, content_type="application/json"), 422)
    assert {"items", "params.regex"} <= fields(body)
    assert "kind" in fields(problem(officer.post(url(resource.code, "/rules"), {"kind": "nope", "items": ["姓名"]},
                                                 content_type="application/json"), 422))
    rule = ok(officer.post(url(resource.code, "/rules"), {"kind": "range", "items": ["月收入"], "params": {"max": 10000},
                                                          "blocking": False, "description": "月收入上限"},
                           content_type="application/json"), 201)
    assert (rule["version"], rule["resource"], rule["inherited"], rule["blocking"]) == (1, resource.code, False, False)
    changed = ok(officer.put(f"{API}/rules/{rule['id']}", {"kind": "range", "items": ["月收入"], "params": {"max": 5000},
                                                          "blocking": False}, content_type="application/json"))
    assert changed["version"] == 2 and changed["params"] == {"max": 5000}
    listed = {r["id"]: r for r in ok(officer.get(url(resource.code, "/rules")))}
    assert listed[rule["id"]]["version"] == 2 and not listed[rule["id"]]["inherited"]
    # Another department may read the rules of a published resource, not change them.
    other = as_user(demo, "officer-civil-affairs")
    assert rule["id"] in {r["id"] for r in ok(other.get(url(resource.code, "/rules")))}
    assert other.post(url(resource.code, "/rules"), {"kind": "not_null", "items": ["姓名"]},
                      content_type="application/json").status_code in (403, 404)
    assert other.put(f"{API}/rules/{rule['id']}", {"kind": "range", "items": ["月收入"], "params": {"max": 1}},
                     content_type="application/json").status_code in (403, 404)
    assert Rule.objects.get(pk=rule["id"]).version == 2
    problem(officer.put(f"{API}/rules/00000000-0000-0000-0000-000000000000", {"kind": "not_null", "items": ["姓名"]},
                        content_type="application/json"), 404)
    # The next load applies version 2 as a warning and records it in its lineage.
    load = ok(upload(officer, resource.code, write_csv(tmp_path / "a.csv", good_rows(3) + [person(9, income="9000")])),
              201)
    assert load["loaded"] == 4 and load["warned"] == 1
    warning = next(f for f in load["findings"] if f["rule"] == rule["id"])
    assert warning["blocking"] is False and warning["count"] == 1
    assert {"id": rule["id"], "version": 2, "kind": "range", "items": ["月收入"]} in load["rules"]


def test_the_openapi_documents_the_data_endpoints(demo):
    paths = ok(as_user(demo, OFFICER).get("/api/v1/openapi.json"))["paths"]
    upload_op = paths["/api/v1/data/resources/{code}/loads"]["post"]
    schema = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "mode", "mapping"} <= set(schema["properties"])
    assert "201" in upload_op["responses"]
    for path in ("/api/v1/data/loads/{load_id}/quarantine", "/api/v1/data/resources/{code}/rows",
                 "/api/v1/data/resources/{code}/lineage", "/api/v1/data/overdue", "/api/v1/data/rules/{rule_id}"):
        assert path in paths


def test_configured_pulls_mask_credentials_and_can_be_queued(demo, tmp_path):
    import sqlite3

    db = tmp_path / "dept.sqlite3"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE p (a TEXT)")
    resource = table_resource(demo)
    officer = as_user(demo, OFFICER)
    body = {"name": "人口库", "kind": "database", "mode": "replace",
            "config": {"url": "postgresql+psycopg://etl:s3cret@10.0.0.5/hukou", "query": "SELECT * FROM people"}}
    created = ok(officer.post(url(resource.code, "/sources"), body, content_type="application/json"), 201)
    assert "s3cret" not in json.dumps(created) and created["version"] == 1
    listed = ok(officer.get(url(resource.code, "/sources")))
    assert [s["name"] for s in listed] == ["人口库"] and "s3cret" not in json.dumps(listed)
    other = as_user(demo, "officer-civil-affairs")
    problem(other.get(url(resource.code, "/sources")), 403)
    bad = problem(officer.post(url(resource.code, "/sources"), {**body, "kind": "ftp", "config": {}},
                               content_type="application/json"), 422)
    assert "kind" in fields(bad)
    queued = ok(officer.post(f"{API}/sources/{created['id']}/run"), 202)
    assert queued["id"] == created["id"]
    assert AuditRecord.objects.filter(action="ingest.source_run", object_id=created["id"]).exists()
    changed = ok(officer.put(url(resource.code, f"/sources/{created['id']}"),
                             {**body, "config": {"url": f"sqlite:///{db}", "query": "SELECT a FROM p"}},
                             content_type="application/json"))
    assert changed["version"] == 2
    problem(officer.put(url(resource.code, "/sources/00000000-0000-0000-0000-000000000000"), body,
                        content_type="application/json"), 404)
