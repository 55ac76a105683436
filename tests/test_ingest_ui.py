"""The data pages, through Django's test client: real views, real services, real loads into Iceberg (the
Dingzhou demo, conftest.demo). `force_login` skips the password and two-factor steps.

The pages ask for English (Accept-Language) so that the assertions can read the words; they also look at
what does not depend on the language: URLs, form actions, field ids, the data itself."""

from __future__ import annotations

import io
import json
import re

import pytest
from data_helpers import HEADER, person, table_resource, write_csv
from django.utils import timezone

from shuzheng.ingest.models import Load
from shuzheng.quality.models import Rule

OFFICER = "officer-public-security"


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture
def as_user(client, demo):
    from shuzheng.org.models import User

    def login(username: str):
        client.force_login(User.objects.get(username=username))
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
        return client

    return login


def html(response) -> str:
    return response.content.decode()


def field_errors(response, name: str) -> str:
    """The text of the error block the templates put under field `name` ('' when none)."""
    match = re.search(rf'<div id="id_{re.escape(name)}_error">(.*?)</div>', html(response), re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def data_url(resource, tail: str = "") -> str:
    return f"/data/{resource.code.replace('/', '-')}/{tail}"


def good_rows(n: int, start: int = 0) -> list[list[str]]:
    return [person(start + i) for i in range(n)]


def faulty_rows() -> list[list[str]]:
    bad_date = person(900, registered="2019-02-30")
    no_name = person(901)
    no_name[1] = ""
    return [bad_date, no_name]


def post_file(client, resource, path, mode="append", **extra):
    with open(path, "rb") as f:
        return client.post(data_url(resource, "upload/"), {"file": f, "mode": mode, **extra})


def clean(page: str) -> None:
    assert page.count("<h1") == 1
    assert "style=" not in page and "<script>" not in page  # the CSP allows neither


# ---- pages and who sees what ----------------------------------------------------------------------------


def test_pages_need_sign_in_and_render(client, as_user, demo, tmp_path):
    resource = table_resource(demo)
    for url in ("/data/", "/data/overdue/", data_url(resource), data_url(resource, "rows/")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    officer = as_user(OFFICER)
    for url in ("/data/", "/data/?mine=1", "/data/overdue/", data_url(resource)):
        response = officer.get(url)
        assert response.status_code == 200, url
        clean(html(response))
    assert officer.get("/data/999999999-999999/").status_code == 404
    assert officer.get("/data/loads/00000000-0000-0000-0000-000000000000/").status_code == 404
    page = html(officer.get(data_url(resource)))
    assert 'id="id_file"' in page and 'enctype="multipart/form-data"' in page
    assert f'action="{data_url(resource, "upload/")}"' in page
    assert 'id="upload-busy" class="htmx-indicator busy"' in page  # the loading state while a load runs
    assert 'hx-post="' in page and 'hx-encoding="multipart/form-data"' in page
    assert "No loads yet." in page and 'action="%s"' % data_url(resource, "rules/") in page
    # The data page's scripts are our static files (ECharts vendored, never a CDN).
    assert "/static/shuzheng/vendor/echarts/echarts.min.js" in page and "/static/shuzheng/quality-charts.js" in page
    assert "cdn" not in page.lower()
    # The navigation and the catalog page lead here.
    assert 'href="/data/"' in page
    catalog_page = html(officer.get(f"/catalog/{resource.code.replace('/', '-')}/"))
    assert f'href="{data_url(resource)}"' in catalog_page
    # The tables list shows the resource.
    assert resource.published.name in html(officer.get("/data/?mine=1"))


def test_another_department_sees_the_page_but_cannot_load_or_change_rules(as_user, demo, tmp_path):
    resource = table_resource(demo)
    other = as_user("officer-civil-affairs")
    page = html(other.get(data_url(resource)))
    assert 'id="id_file"' not in page and "/rules/" not in page
    response = post_file(other, resource, write_csv(tmp_path / "a.csv", good_rows(2)))
    assert response.status_code == 403
    assert not Load.objects.filter(resource=resource).exists()


# ---- uploading ------------------------------------------------------------------------------------------


def test_an_upload_goes_to_the_load_with_its_findings_and_downloads(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    response = post_file(officer, resource, write_csv(tmp_path / "人口.csv", good_rows(10) + faulty_rows()))
    load = Load.objects.get(resource=resource)
    assert response.status_code == 302 and response["Location"] == f"/data/loads/{load.id}/"
    page = officer.get(response["Location"])
    text = html(page)
    clean(text)
    assert "Loaded 10 rows (2 quarantined, 0 unreadable); the table now holds 10 rows." in text
    assert f"Committed as snapshot {load.snapshot_id}" in text
    assert re.search(r'class="loaded">10<', text) and re.search(r'class="quarantined">2<', text)
    assert "登记日期" in text and "姓名" in text  # findings name the items
    assert f'href="/data/loads/{load.id}/quarantine.csv"' in text
    assert f'href="/data/loads/{load.id}/quarantine.xlsx"' in text
    assert "人口.csv" in text and load.lineage["sha256"] in text  # the source
    csv_file = officer.get(f"/data/loads/{load.id}/quarantine.csv")
    assert csv_file.status_code == 200 and csv_file["Content-Disposition"].startswith("attachment;")
    assert csv_file.content.decode("utf-8-sig").count("\n") == 3
    xlsx = officer.get(f"/data/loads/{load.id}/quarantine.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert officer.get(f"/data/loads/{load.id}/quarantine.pdf").status_code == 404
    # The data page now shows the load, the scores and the trend chart's data.
    data = html(officer.get(data_url(resource)))
    clean(data)
    assert f'href="/data/loads/{load.id}/"' in data and 'class="tag state-committed"' in data
    trend = json.loads(re.search(r'<script id="quality-trend-data" type="application/json">(.*?)</script>', data,
                                 re.S).group(1))
    assert len(trend["points"]) == 1 and trend["points"][0]["overall"] == load.scores["overall"]
    assert trend["labels"]["overall"] == "Overall"
    assert 'data-chart="quality-trend"' in data
    assert str(load.snapshot_id) in data  # lineage
    # Another department sees the load but not the download buttons, and gets 404 on the file.
    other = as_user("officer-civil-affairs")
    text = html(other.get(f"/data/loads/{load.id}/"))
    assert "quarantine.csv" not in text
    assert other.get(f"/data/loads/{load.id}/quarantine.csv").status_code == 404


def test_htmx_uploads_redirect_with_a_header_and_errors_come_back_in_place(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    path = write_csv(tmp_path / "a.csv", good_rows(3))
    with open(path, "rb") as f:
        response = officer.post(data_url(resource, "upload/"), {"file": f, "mode": "append"}, HTTP_HX_REQUEST="true")
    load = Load.objects.get(resource=resource)
    assert response.status_code == 204 and response["HX-Redirect"] == f"/data/loads/{load.id}/"
    with open(path, "rb") as f:
        response = officer.post(data_url(resource, "upload/"), {"file": f, "mode": "merge"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and field_errors(response, "mode")  # htmx swaps 2xx answers only
    assert 'id="upload"' in html(response)


def test_bad_input_comes_back_next_to_the_field(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    response = officer.post(data_url(resource, "upload/"), {"mode": "append"})
    assert response.status_code == 422 and field_errors(response, "file")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    response = post_file(officer, resource, empty)
    assert response.status_code == 422 and "empty" in field_errors(response, "file")
    good = write_csv(tmp_path / "a.csv", good_rows(2))
    response = post_file(officer, resource, good, mode="merge")
    assert response.status_code == 422 and field_errors(response, "mode")
    response = post_file(officer, resource, good, mapping="公民身份号码")
    assert response.status_code == 422 and "Line 1" in field_errors(response, "mapping")
    no_key = write_csv(tmp_path / "b.csv", [r[1:] for r in good_rows(2)], header=HEADER[1:])
    response = post_file(officer, resource, no_key)
    assert response.status_code == 422
    assert field_errors(response, "mapping").startswith("公民身份号码:")
    assert 'value="append" selected' in html(response)  # what was chosen is kept
    renamed = write_csv(tmp_path / "c.csv", good_rows(2), header=["身份证号"] + HEADER[1:])
    response = post_file(officer, resource, renamed, mapping="公民身份号码 = 身份证号\n")
    assert response.status_code == 302
    assert Load.objects.get(resource=resource, state="committed").mapping["公民身份号码"] == "身份证号"


def test_a_rejected_load_says_so(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    post_file(officer, resource, write_csv(tmp_path / "a.csv", good_rows(10)))
    bad = [person(50 + i, registered="不详") for i in range(5)]
    response = post_file(officer, resource, write_csv(tmp_path / "b.csv", good_rows(5, 20) + bad))
    assert response.status_code == 302
    text = html(officer.get(response["Location"]))
    assert "The load was rejected:" in text and "Rejected: nothing was loaded." in text and "50.0%" in text
    assert "quarantine.csv" in text  # the refused rows come back to fix
    assert 'class="tag state-rejected"' in html(officer.get(data_url(resource)))


# ---- rows at a snapshot, rules, overdue -----------------------------------------------------------------


def test_rows_at_an_older_snapshot(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    post_file(officer, resource, write_csv(tmp_path / "a.csv", good_rows(3)))
    post_file(officer, resource, write_csv(tmp_path / "b.csv", good_rows(4, 10)))
    first, second = Load.objects.filter(resource=resource).order_by("created_at")
    page = html(officer.get(data_url(resource)))
    assert "Snapshot %s: 7 rows" % second.snapshot_id in page
    older = officer.get(data_url(resource, "rows/"), {"snapshot": first.snapshot_id})
    assert older.status_code == 200
    text = html(older)
    clean(text)
    assert "Snapshot %s: 3 rows" % first.snapshot_id in text
    # Three rows, each with its ID number and name sealed: shown as such, never as tokens or clear values.
    assert text.count("sealed (SM4)") == 3 * 2 and "sz1:" not in text and good_rows(1)[0][0] not in text
    unknown = officer.get(data_url(resource, "rows/"), {"snapshot": "12345"})
    assert unknown.status_code == 422 and field_errors(unknown, "snapshot")
    assert as_user("officer-civil-affairs").get(data_url(resource, "rows/")).status_code == 404


def test_rules_are_added_and_switched_through_the_page(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    response = officer.post(data_url(resource, "rules/"), {"kind": "pattern", "items": ["姓名"], "params_regex": "(",
                                                           "blocking": "on"})
    assert response.status_code == 422 and field_errors(response, "params_regex")
    response = officer.post(data_url(resource, "rules/"), {"kind": "range", "items": ["月收入"], "params_max": "5000",
                                                           "description": "月收入上限"})
    assert response.status_code == 302 and response["Location"].endswith("#rules")
    rule = Rule.objects.get(resource=resource)
    assert (rule.kind, rule.items, rule.params, rule.blocking) == ("range", ["月收入"], {"max": "5000"}, False)
    page = html(officer.get(data_url(resource)))
    assert "月收入上限" in page and f"/rules/{rule.id}/active/" in page
    response = officer.post(data_url(resource, f"rules/{rule.id}/active/"), {"active": "0"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.active is False and rule.version > 1
    assert as_user("officer-civil-affairs").post(data_url(resource, "rules/"), {
        "kind": "not_null", "items": ["姓名"]}).status_code in (403, 404, 422)


def test_the_load_settings_form(as_user, demo):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    page = html(officer.get(data_url(resource)))
    assert f'action="{data_url(resource, "settings/")}"' in page and 'value="0.2"' in page
    response = officer.post(data_url(resource, "settings/"), {"max_failure_share": "1.5", "max_count_change": "",
                                                              "retain_snapshots": "10"})
    assert response.status_code == 422 and "between" in field_errors(response, "max_failure_share")
    response = officer.post(data_url(resource, "settings/"), {"max_failure_share": "0.1", "max_count_change": "",
                                                              "retain_snapshots": "10"})
    assert response.status_code == 302
    page = html(officer.get(data_url(resource)))
    assert 'class="setting-failure">10%<' in page and "Not checked" in page
    assert "settings/" not in html(as_user("officer-civil-affairs").get(data_url(resource)))


def test_the_overdue_page_lists_late_resources(as_user, demo, tmp_path):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    post_file(officer, resource, write_csv(tmp_path / "a.csv", good_rows(2)))
    assert resource.code not in html(officer.get("/data/overdue/"))
    Load.objects.filter(resource=resource).update(finished_at=timezone.now() - timezone.timedelta(days=3))
    reviewer = as_user("reviewer")
    page = html(reviewer.get("/data/overdue/"))
    assert resource.code in page and f'href="{data_url(resource)}"' in page
    assert "Overdue" in html(reviewer.get(data_url(resource)))


def test_an_upload_streams_to_a_temporary_file_that_is_removed(as_user, demo, tmp_path, settings):
    resource = table_resource(demo)
    officer = as_user(OFFICER)
    folder = settings.HOME / "tmp"
    before = set(folder.glob("upload-*")) if folder.exists() else set()
    post_file(officer, resource, write_csv(tmp_path / "a.csv", good_rows(2)))
    assert set(folder.glob("upload-*")) == before
    settings.INGEST_MAX_UPLOAD_BYTES = 100
    big = io.BytesIO(b"x" * 1000)
    big.name = "big.csv"
    response = officer.post(data_url(resource, "upload/"), {"file": big, "mode": "append"})
    assert response.status_code == 422 and "larger than" in field_errors(response, "file")
    assert set(folder.glob("upload-*")) == before


def test_the_upload_still_needs_the_csrf_token(demo, tmp_path):
    """The upload view streams the file before the CSRF check reads the body; the check still runs."""
    from django.test import Client

    resource = table_resource(demo)
    client = Client(enforce_csrf_checks=True)
    client.force_login(demo.user(OFFICER))
    response = post_file(client, resource, write_csv(tmp_path / "a.csv", good_rows(2)))
    assert response.status_code == 403
    assert not Load.objects.filter(resource=resource).exists()
    page = client.get(data_url(resource))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html(page)).group(1)
    response = post_file(client, resource, write_csv(tmp_path / "b.csv", good_rows(2)), csrfmiddlewaretoken=token)
    assert response.status_code == 302 and Load.objects.filter(resource=resource, state="committed").exists()
