"""Situational awareness (S4): the anomaly rules over the audit trail, fed by real traffic — gateway calls with
real API keys over Django's test client, failed sign-ins through the login form — and the handling of the
alerts they raise (acknowledge, escalate to the leading group, close), over the services and the JSON API.

History older than the test (a week of a system's use, for the bulk-pull baseline) is written the way the
gateway's journal writes it: audit entries with their own times, through audit.record_many."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from sharing_helpers import granted, records, sample_people, system, verify

from shuzheng.audit import services as audit
from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.security import alerts, services
from shuzheng.security.models import Alert, AlertEvent, AlertState, KnownAddress, ScanCursor, Tally
from shuzheng.sharing.models import Notification

pytestmark = pytest.mark.django_db

SHANGHAI = alerts.zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
def watching(db):
    """The scan starts at the end of the trail as it is now (the demo's records are not this test's)."""
    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    ScanCursor.objects.update_or_create(pk=1, defaults={"seq": head})
    return head


@pytest.fixture
def people_grant(demo):
    code, key = system(demo)
    grant = granted(demo, code, provider_terms={"verify_items": ["公民身份号码", "姓名"]})
    return grant, key


def alerts_of(rule: str, subject: str | None = None):
    qs = Alert.objects.filter(rule=rule)
    return list(qs.filter(subject=subject) if subject is not None else qs)


def only_rules(*names, **settings) -> dict:
    """A rules override with only `names` enabled (other rules' findings would not be this test's), plus
    settings per rule."""
    rules = {name: {"enabled": name in names} for name in alerts.RULES}
    for name, values in settings.items():
        rules[name].update(values)
    return {"rules": rules}


def past(system_code: str, org: str, ts: dt.datetime, rows: int, ip: str = "127.0.0.1", calls: int = 1):
    """Gateway records calls of `system_code` at a time in the past, as the journal ships them."""
    us = int(ts.timestamp() * 1_000_000)
    audit.record_many([audit.Entry(f"system:{system_code}", org, ip, "share.records", "sharing.grant", "",
                                   {"call": "records", "system": system_code, "outcome": "ok", "rows": rows},
                                   us + i) for i in range(calls)])


def sign_in_badly(client, username: str, times: int, ip: str = "127.0.0.1"):
    for _ in range(times):
        response = client.post("/login/", {"username": username, "password": "not-the-password"},
                               REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 200


# ---- the rules file ----


def test_packaged_rules_load_and_an_override_file_is_laid_over_them(settings, tmp_path):
    rules = alerts.load_rules()
    assert rules["bulk_pull"]["factor"] == 10 and rules["off_hours"]["work_start"] == "08:00"
    path = tmp_path / "alert-rules.json"
    path.write_text(json.dumps({"rules": {"failed_logins": {"per_user": 3}}}))
    settings.SECURITY_ALERT_RULES = str(path)
    rules = alerts.load_rules()
    assert rules["failed_logins"]["per_user"] == 3 and rules["failed_logins"]["per_address"] == 20
    path.write_text(json.dumps({"rules": {"failed_logins": {"per_user": 0}}}))
    with pytest.raises(alerts.RulesError, match="rules.failed_logins.per_user"):
        alerts.load_rules()
    path.write_text(json.dumps({"rules": {"nonsense": {}}}))
    with pytest.raises(alerts.RulesError, match="unknown rule"):
        alerts.load_rules()
    path.write_text(json.dumps({"rules": {"off_hours": {"work_start": "21:00"}}}))
    with pytest.raises(alerts.RulesError, match="work_start must be before work_end"):
        alerts.load_rules()


def test_the_working_hours_calendar():
    calendar = alerts.load_rules({"rules": {"off_hours": {"holidays": ["2026-10-01"],
                                                          "extra_workdays": ["2026-09-27"]}}}).calendar

    def at(text):
        return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)

    assert not calendar.off_hours(at("2026-11-24 10:00"))  # a Tuesday morning
    assert calendar.off_hours(at("2026-11-24 07:59")) and calendar.off_hours(at("2026-11-24 20:00"))
    assert calendar.off_hours(at("2026-11-28 14:00"))  # Saturday
    assert calendar.off_hours(at("2026-10-01 10:00"))  # National Day, a Thursday
    assert not calendar.off_hours(at("2026-09-27 10:00"))  # a Sunday worked in exchange (调休)
    friday_evening = int(at("2026-11-27 20:00").timestamp())
    # Friday night, the weekend and Monday before eight are one off-hours period.
    for moment in ("2026-11-27 23:30", "2026-11-28 12:00", "2026-11-30 07:00"):
        assert calendar.period_start(at(moment)) == friday_evening
    assert calendar.period_start(at("2026-11-24 06:00")) == int(at("2026-11-23 20:00").timestamp())


# ---- the rules over real traffic ----


def test_failed_sign_ins_per_username_raise_one_alert_that_accumulates(demo, client, watching, english):
    rules = only_rules("failed_logins")
    sign_in_badly(client, "staff", 4)
    assert services.list_alerts(demo.actor("secadmin")).count() == 0
    assert alerts.scan(rules=rules).opened == 0  # four is below the threshold of five
    sign_in_badly(client, "staff", 1)
    result = alerts.scan(rules=rules)
    assert result.opened == 1 and result.records > 0
    alert = Alert.objects.get(rule="failed_logins", subject="staff")
    assert (alert.subject_kind, alert.severity, alert.state, alert.count) == ("user", "medium", "open", 5)
    assert alert.summary and "staff" in services.alerts.summary_text(alert)
    assert alert.details["in_window"] == 5 and alert.details["threshold"] == 5
    opened = AuditRecord.objects.filter(action="security.alert_open", object_id=str(alert.pk))
    assert opened.count() == 1 and '"rule":"failed_logins"' in opened.get().summary
    assert AlertEvent.objects.filter(alert=alert, action="opened").count() == 1

    # More failures add to the same alert: count and last_seen, no second alert.
    first_seen, last_seen = alert.first_seen, alert.last_seen
    time.sleep(0.01)
    sign_in_badly(client, "staff", 2)
    assert alerts.scan(rules=rules).as_dict()["updated"] == 1
    alert.refresh_from_db()
    assert alert.count == 7 and alert.first_seen == first_seen and alert.last_seen > last_seen
    assert Alert.objects.filter(rule="failed_logins", subject="staff").count() == 1
    # Scanning again takes nothing in twice.
    assert alerts.scan(rules=rules).records == 0
    alert.refresh_from_db()
    assert alert.count == 7


def test_failed_sign_ins_from_one_address_across_usernames(demo, client, watching):
    rules = only_rules("failed_logins", failed_logins={"per_address": 6})
    for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
        sign_in_badly(client, name, 1, ip="203.0.113.7")
    alerts.scan(rules=rules)
    alert = Alert.objects.get(rule="failed_logins", subject_kind="address")
    assert alert.subject == "203.0.113.7" and alert.count == 6
    assert not Alert.objects.filter(rule="failed_logins", subject_kind="user").exists()


def test_bad_api_keys_on_the_gateway_and_the_api_from_one_address(demo, client, watching, people_grant):
    rules = only_rules("bad_api_keys", bad_api_keys={"per_address": 6})
    row = sample_people(demo, 1)[0]
    for n in range(4):
        response = verify(client, f"sz_not-a-real-key-{n}", {"公民身份号码": row["公民身份号码"]},
                          REMOTE_ADDR="198.51.100.9")
        assert response.status_code == 401
    for n in range(2):
        response = client.get("/api/v1/systems", HTTP_AUTHORIZATION=f"Bearer sz_forged{n}", REMOTE_ADDR="198.51.100.9")
        assert response.status_code == 401
    assert AuditRecord.objects.filter(action="auth.apikey_failed", ip="198.51.100.9").count() == 2
    alerts.scan(rules=rules)
    alert = Alert.objects.get(rule="bad_api_keys")
    assert (alert.subject_kind, alert.subject, alert.count) == ("address", "198.51.100.9", 6)
    assert services.totals()["gateway.refused"] >= 4 and services.totals()["apikey.failed"] >= 2


def test_enumeration_counts_lookups_and_never_copies_an_id_number(demo, client, watching):
    code, key = system(demo)
    grant = granted(demo, code, clear_items=["公民身份号码"])
    rules = only_rules("enumeration", enumeration={"threshold_lookups": 8, "window_minutes": 10})
    people = sample_people(demo, 6)
    for person in people[:4]:
        assert verify(client, key, {"公民身份号码": person["公民身份号码"], "姓名": person["姓名"]}).status_code == 200
    alerts.scan(rules=rules)
    assert not alerts_of("enumeration")  # 4 lookups
    # A records call filtering on ID numbers is a lookup per distinct number.
    numbers = ",".join(p["公民身份号码"] for p in people[:4])
    page = records(client, key, {"in.公民身份号码": numbers})
    assert page.status_code == 200, page.content
    alerts.scan(rules=rules)
    [alert] = alerts_of("enumeration", grant.system.code)
    assert alert.details["in_window"] == 8 and alert.severity == "high"
    stored = json.dumps([alert.summary, alert.details], ensure_ascii=False)
    assert not any(p["公民身份号码"] in stored for p in people)
    # An exempt system (a registered batch verifier) is not flagged.
    alert.delete()
    Tally.objects.filter(kind=alerts.LOOKUP_M).delete()
    exempt = only_rules("enumeration", enumeration={"threshold_lookups": 2, "exempt_systems": [grant.system.code]})
    for person in people[:3]:
        verify(client, key, {"公民身份号码": person["公民身份号码"], "姓名": person["姓名"]})
    alerts.scan(rules=exempt)
    assert not alerts_of("enumeration")


def test_bulk_pull_against_the_systems_own_baseline(demo, client, watching, people_grant):
    grant, key = people_grant
    code, org = grant.system.code, grant.consumer.code
    rules = only_rules("bulk_pull", bulk_pull={"floor_rows": 1500, "factor": 10})
    now = dt.datetime.now(dt.timezone.utc)
    # A week of ordinary use: 100 rows an hour, eight hours a day.
    for day in range(1, 8):
        for hour in range(8):
            past(code, org, now - dt.timedelta(days=day, hours=hour), 100)
    alerts.scan(rules=rules)
    assert not alerts_of("bulk_pull")
    # Today it pulls 2,000 rows within the hour: above 10x its median (1,000) and the floor (1,500).
    for _ in range(2):
        page = records(client, key, {"limit": "1000"})
        assert page.status_code == 200 and len(page.json()["rows"]) == 1000
    alerts.scan(rules=rules)
    [alert] = alerts_of("bulk_pull", code)
    assert alert.details["rows_in_window"] == 2000 and alert.details["threshold"] == 1500
    assert alert.details["baseline_median"] == 100 and alert.details["window"] == "hour"
    assert "2000" in alert.summary and alert.severity == "high"


def test_bulk_pull_spares_a_new_system_and_a_system_whose_usual_is_large(demo, client, watching, people_grant):
    grant, key = people_grant
    code, org = grant.system.code, grant.consumer.code
    rules = only_rules("bulk_pull", bulk_pull={"floor_rows": 1500})
    # A new system with no history reading a few rows: below the floor, not flagged.
    assert records(client, key, {"limit": "5"}).status_code == 200
    alerts.scan(rules=rules)
    assert not alerts_of("bulk_pull")
    # A system that usually reads 5,000 rows an hour is not flagged for 2,000.
    now = dt.datetime.now(dt.timezone.utc)
    for hour in range(2, 40, 3):
        past(code, org, now - dt.timedelta(hours=hour), 5000)
    records(client, key, {"limit": "1000"})
    records(client, key, {"limit": "1000"})
    alerts.scan(rules=rules)
    assert not alerts_of("bulk_pull")


def test_off_hours_calls_beyond_a_small_count(demo, client, watching, people_grant):
    grant, key = people_grant
    today = dt.datetime.now(SHANGHAI).isoweekday()
    # Today is not a working day under these rules, so every call now is off-hours.
    rules = only_rules("off_hours", off_hours={"workdays": [d for d in range(1, 8) if d != today],
                                               "threshold_calls": 3})
    row = sample_people(demo, 1)[0]
    for _ in range(3):
        verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]})
    alerts.scan(rules=rules)
    assert not alerts_of("off_hours")  # three is not more than three
    verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]})
    alerts.scan(rules=rules)
    [alert] = alerts_of("off_hours", grant.system.code)
    assert alert.details["calls_in_period"] == 4 and alert.count == 4
    # On working days at this hour the same calls raise nothing.
    alert.delete()
    Tally.objects.filter(kind=alerts.OFF_P).delete()
    working = only_rules("off_hours", off_hours={"workdays": list(range(1, 8)), "work_start": "00:00",
                                                 "work_end": "23:59", "threshold_calls": 1})
    now = dt.datetime.now(SHANGHAI)
    if now.time() < dt.time(23, 58):
        for _ in range(3):
            verify(client, key, {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]})
        alerts.scan(rules=working)
        assert not alerts_of("off_hours")


def test_a_key_used_from_a_new_address(demo, client, watching, people_grant):
    grant, key = people_grant
    code = grant.system.code
    rules = only_rules("new_address", new_address={"history_days": 30})
    row = sample_people(demo, 1)[0]
    candidates = {"公民身份号码": row["公民身份号码"], "姓名": row["姓名"]}
    verify(client, key, candidates, REMOTE_ADDR="10.20.0.5")  # the first address is learnt
    verify(client, key, candidates, REMOTE_ADDR="10.20.0.5")
    alerts.scan(rules=rules)
    assert not alerts_of("new_address")
    assert KnownAddress.objects.filter(system=code, ip="10.20.0.5").exists()
    verify(client, key, candidates, REMOTE_ADDR="172.16.9.9")
    verify(client, key, candidates, REMOTE_ADDR="172.16.9.9")
    alerts.scan(rules=rules)
    [alert] = alerts_of("new_address", code)
    assert alert.details["addresses"] == ["172.16.9.9"] and alert.details["known"] == ["10.20.0.5"]
    assert alert.count == 2 and alert.severity == "low"
    # An address last used longer ago than history_days is new again.
    long_ago = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)).timestamp() * 1_000_000)
    KnownAddress.objects.create(system=code, ip="10.99.0.1", first_seen=long_ago, last_seen=long_ago)
    verify(client, key, candidates, REMOTE_ADDR="10.99.0.1")
    alerts.scan(rules=rules)
    alert.refresh_from_db()
    assert alert.details["addresses"] == ["172.16.9.9", "10.99.0.1"] and alert.count == 3


def test_an_export_control_refusal_raises_an_alert_at_once(demo, watching):
    from django.db import transaction

    officer = demo.actor("officer-civil-affairs", ip="10.3.3.3")
    with transaction.atomic():
        audit.record(officer, "export_control.refused", object_type="sharing.export", object_id="e-1",
                     summary={"destination": "境外云存储", "reason": "core data", "sample": "130682199001011234"})
    alerts.scan()  # the packaged rules
    [alert] = alerts_of("export_refused")
    assert (alert.subject_kind, alert.subject, alert.severity) == ("user", "officer-civil-affairs", "critical")
    assert alert.details["record"]["sample"] == "1306**************"  # never an ID number in clear
    assert alert.details["object_id"] == "e-1"


def test_an_integrity_failure_of_stored_data_raises_an_alert_per_resource(demo, watching, english):
    """The gateway refuses with 503 when a sealed value does not open (security.fieldcrypt); the refusal it
    audits (gateway.refuse's summary, written here as the journal ships it) raises a critical alert at once."""
    summary = {"call": "verify", "resource": "101001000/000001", "outcome": "refused", "status": 503,
               "reason": "Stored data of 101001000/000001 failed its integrity check; the platform's security "
                         "administrator has been told.", "items": ["公民身份号码"]}
    audit.record_many([audit.Entry("system:sys-a", "", "10.0.0.8", "share.refused", "sharing.grant", "g", summary),
                       audit.Entry("system:sys-b", "", "10.0.0.9", "share.refused", "sharing.grant", "g", summary)])
    alerts.scan(rules=only_rules("integrity_failure"))
    [alert] = alerts_of("integrity_failure")
    assert (alert.subject_kind, alert.subject, alert.severity, alert.count) == ("resource", "101001000/000001",
                                                                               "critical", 2)
    # The stored summary is in the platform's language (zh-hans); read it in the reader's, here English.
    assert "101001000/000001" in alert.summary and "integrity" in alerts.summary_text(alert)


def test_the_cursor_moves_with_what_the_scan_stored_or_not_at_all(demo, client, watching, monkeypatch):
    rules = only_rules("failed_logins")
    sign_in_badly(client, "staff", 5)
    cursor = ScanCursor.objects.get().seq

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(alerts, "_store", broken)
    with pytest.raises(RuntimeError):
        alerts.scan(rules=rules)
    assert ScanCursor.objects.get().seq == cursor
    assert not Tally.objects.filter(kind=alerts.LOGIN_USER_M, subject="staff").exists()
    monkeypatch.undo()
    alerts.scan(rules=rules)
    assert ScanCursor.objects.get().seq > cursor
    assert Tally.objects.get(kind=alerts.LOGIN_USER_M, subject="staff").n == 5
    assert Alert.objects.get(rule="failed_logins", subject="staff").count == 5


def test_a_new_cursor_starts_a_day_back_not_at_the_first_record(demo):
    head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    ScanCursor.objects.all().delete()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)  # everything on the trail is older than a day
    assert alerts.scan(now=later, rules=only_rules()).records == 0 and ScanCursor.objects.get().seq == head
    ScanCursor.objects.all().delete()
    now = dt.datetime.now(dt.timezone.utc)
    cut = int((now - dt.timedelta(hours=24)).timestamp() * 1_000_000)
    result = alerts.scan(now=now, rules=only_rules())
    assert result.records == AuditRecord.objects.filter(ts__gte=cut).count() and result.cursor == head


# ---- handling alerts ----


@pytest.fixture
def alert(demo, client, watching):
    sign_in_badly(client, "staff", 5)
    alerts.scan(rules=only_rules("failed_logins"))
    return Alert.objects.get(rule="failed_logins", subject="staff")


def test_acknowledge_escalate_close_with_notes_audit_and_the_leading_group(demo, alert, english):
    secadmin = demo.actor("secadmin")
    done = services.acknowledge(secadmin, alert.pk, "Looking into it.")
    assert (done.state, done.handled_by, done.note) == ("acknowledged", "secadmin", "Looking into it.")
    with pytest.raises(Conflict):
        services.acknowledge(secadmin, alert.pk)
    with pytest.raises(ValidationFailed) as missing:
        services.escalate(secadmin, alert.pk, "  ")
    assert missing.value.errors[0].field == "note"
    escalated = services.escalate(secadmin, alert.pk, "Password spraying against staff accounts.")
    assert escalated.state == "escalated"
    leader_org = demo.user("leader").organization
    note = Notification.objects.filter(organization=leader_org, link=f"/security/alerts/{alert.pk}/").get()
    assert "escalated" in note.text and "Password spraying" in note.text
    closed = services.close(secadmin, alert.pk, "Account owner confirmed a forgotten password.")
    assert closed.state == "closed"
    with pytest.raises(Conflict):
        services.escalate(secadmin, alert.pk, "again")
    actions = list(AuditRecord.objects.filter(object_id=str(alert.pk), action__startswith="security.alert_")
                   .order_by("seq").values_list("action", flat=True))
    assert actions == ["security.alert_open", "security.alert_acknowledge", "security.alert_escalate",
                       "security.alert_close"]
    assert [e.action for e in alert.events.all()] == ["opened", "acknowledged", "escalated", "closed"]


def test_a_closed_alert_stays_closed_and_a_new_finding_opens_another(demo, client, alert):
    services.close(demo.actor("secadmin"), alert.pk, "handled")
    sign_in_badly(client, "staff", 1)
    alerts.scan(rules=only_rules("failed_logins"))
    newer = Alert.objects.filter(rule="failed_logins", subject="staff").exclude(pk=alert.pk).get()
    assert newer.state == "open" and newer.count == 6  # six in the window
    alert.refresh_from_db()
    assert alert.state == "closed" and alert.count == 5


def test_only_the_security_monitor_sees_alerts(demo, alert):
    for name in ("staff", "admin", "auditor", "leader", "officer-civil-affairs"):
        with pytest.raises(Forbidden):
            services.list_alerts(demo.actor(name))
        with pytest.raises(NotFound):
            services.get_alert(demo.actor(name), alert.pk)
        with pytest.raises(NotFound):
            services.acknowledge(demo.actor(name), alert.pk, "x")
    assert list(services.list_alerts(demo.actor("secadmin"), state="open")) == [alert]
    with pytest.raises(ValidationFailed) as bad:
        services.list_alerts(demo.actor("secadmin"), severity="urgent")
    assert bad.value.errors[0].field == "severity"


# ---- the JSON API ----


def api_as(client, demo, username: str):
    client.force_login(demo.user(username))
    return client


def test_the_alerts_api(demo, client, alert):
    client = api_as(client, demo, "secadmin")
    listed = client.get("/api/v1/security/alerts", {"state": "open", "rule": "failed_logins"})
    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert body["count"] == 1 and body["items"][0]["id"] == alert.pk
    assert body["items"][0]["subject"] == "staff" and body["items"][0]["count"] == 5
    assert client.get("/api/v1/security/alerts", {"severity": "urgent"}).json()["errors"][0]["field"] == "severity"
    assert client.get("/api/v1/security/alerts", {"state": "x"}).status_code == 422
    assert client.get("/api/v1/security/alerts", {"limit": 1, "offset": 0}).json()["count"] >= 1

    ack = client.post(f"/api/v1/security/alerts/{alert.pk}/acknowledge", {"note": "mine"},
                      content_type="application/json")
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    again = client.post(f"/api/v1/security/alerts/{alert.pk}/acknowledge", {}, content_type="application/json")
    assert again.status_code == 409 and again["Content-Type"] == "application/problem+json"
    no_note = client.post(f"/api/v1/security/alerts/{alert.pk}/escalate", {"note": ""},
                          content_type="application/json")
    assert no_note.status_code == 422 and no_note.json()["errors"][0]["field"] == "note"
    long_note = client.post(f"/api/v1/security/alerts/{alert.pk}/escalate", {"note": "x" * 5000},
                            content_type="application/json")
    assert long_note.status_code == 422 and long_note.json()["errors"][0]["field"] == "note"
    up = client.post(f"/api/v1/security/alerts/{alert.pk}/escalate", {"note": "to the leading group"},
                     content_type="application/json")
    assert up.status_code == 200 and up.json()["state"] == "escalated"
    assert client.post("/api/v1/security/alerts/999999999/acknowledge", {},
                       content_type="application/json").status_code == 404
    assert client.get("/api/v1/security/alerts/abc").status_code == 422
    assert client.get(f"/api/v1/security/alerts/{10**30}").status_code == 404  # beyond any database integer
    assert client.get("/api/v1/security/alerts/-1").status_code == 404
    one = client.get(f"/api/v1/security/alerts/{alert.pk}").json()
    assert [e["action"] for e in one["events"]] == ["opened", "acknowledged", "escalated"]

    summary = client.get("/api/v1/security/summary").json()
    assert summary["last_24h"]["failed_logins"] >= 5 and len(summary["hourly"]["hours"]) == 24
    assert set(summary["open_by_severity"]) == {"critical", "high", "medium", "low"}

    other = api_as(client, demo, "staff")
    assert other.get("/api/v1/security/alerts").status_code == 403
    assert other.get(f"/api/v1/security/alerts/{alert.pk}").status_code == 404
    assert other.post(f"/api/v1/security/alerts/{alert.pk}/acknowledge", {},
                      content_type="application/json").status_code == 404
    assert other.get("/api/v1/security/summary").status_code == 403


def test_the_api_needs_a_signed_in_user_and_csrf(demo, client, alert):
    assert client.get("/api/v1/security/alerts").status_code == 401
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(demo.user("secadmin"))
    refused = strict.post(f"/api/v1/security/alerts/{alert.pk}/acknowledge", {}, content_type="application/json")
    assert refused.status_code in (401, 403)
    alert.refresh_from_db()
    assert alert.state == "open"


def test_the_periodic_task_scans(demo, client, watching, jobs_now, settings, tmp_path):
    from shuzheng.security import tasks

    path = tmp_path / "rules.json"
    path.write_text(json.dumps(only_rules("failed_logins")))
    settings.SECURITY_ALERT_RULES = str(path)
    sign_in_badly(client, "staff", 5)
    result = tasks.scan_for_anomalies.call_local()
    assert result["opened"] == 1 and Alert.objects.filter(rule="failed_logins", state=AlertState.OPEN).count() == 1
    path.write_text("{not json")
    assert "error" in tasks.scan_for_anomalies.call_local()

