"""Export control (出境, S5): data marked domestic-only (a resource version or a granted item) goes only to
destinations on the policy's allow-list. Subscriptions to other hosts are refused (422 on "url"), webhooks
re-check the host's addresses when they send, and export downloads from other client addresses are refused
(403); every refusal is audited as export_control.refused. Name resolution is the one thing replaced here:
the tests map made-up host names to chosen addresses in front of the real resolver (so the webhook's real
HTTP request to a local receiver also goes through it)."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from data_helpers import person, table_resource, write_csv
from sharing_helpers import application_data, call, system
from test_webhooks import make_grant, receiver  # noqa: F401 (receiver is a fixture)

from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import ValidationFailed
from shuzheng.ingest import services as ingest
from shuzheng.security import policy
from shuzheng.sharing import events, subscriptions
from shuzheng.sharing import services as sharing
from shuzheng.sharing.models import Delivery, Grant

CONSUMER_OFFICER = "officer-civil-affairs"


@pytest.fixture
def dns(monkeypatch):
    """Host name -> addresses the resolver answers for it; any other name goes to the real resolver."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            out = []
            for address in table[name]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def refusals(grant: Grant):
    return AuditRecord.objects.filter(action="export_control.refused", object_id=str(grant.pk)).order_by("seq")


def subscribe(demo, grant: Grant, url: str):
    return subscriptions.create_subscription(demo.actor(CONSUMER_OFFICER), grant.id, url)


# ---- the allow-list ----------------------------------------------------------------------------------------


def test_the_allow_list(dns):
    dns.update({"inside.example": ["10.20.30.40", "192.168.1.2"], "mixed.example": ["10.0.0.1", "203.0.113.9"],
                "abroad.example": ["8.8.8.8"], "v6.example": ["2001:db8::1"]})
    allowed = ["127.0.0.1", "10.1.2.3", "172.31.255.255", "192.168.0.1", "::1", "[::1]", "localhost",
               "gov.cn", "www.hebei.gov.cn", "data.dingzhou.gov.cn", "inside.example"]
    refused = ["8.8.8.8", "172.32.0.1", "11.0.0.1", "2001:db8::5", "gov.cn.evil.example", "abroad.example",
               "mixed.example", "v6.example", "no-such-host.invalid", ""]
    for host in allowed:
        assert policy.destination_check(host)[0], host
    for host in refused:
        assert not policy.destination_check(host)[0], host
    assert "203.0.113.9" in policy.destination_check("mixed.example")[1]
    assert policy.address_allowed("::ffff:10.0.0.7") and not policy.address_allowed("::ffff:8.8.8.8")


def test_an_operator_extends_the_allow_list(dns, tmp_path, monkeypatch):
    dns["partner.example"] = ["203.0.113.10"]
    assert not policy.destination_check("partner.example")[0]
    path = tmp_path / "security-policy.json"
    path.write_text(json.dumps({"domestic_destinations": ["127.0.0.0/8", "203.0.113.0/24"]}), encoding="utf-8")
    monkeypatch.setattr(policy, "override_path", lambda: path)
    assert policy.destination_check("partner.example")[0] and not policy.destination_check("10.0.0.1")[0]


# ---- subscriptions ----------------------------------------------------------------------------------------


def test_a_foreign_webhook_is_refused_for_domestic_data_only(demo, dns, english):
    dns.update({"hooks.partner.example": ["8.8.4.4"], "hooks.inside.example": ["10.9.8.7"]})
    domestic = make_grant(demo, table_resource(demo, domestic_only=True))
    normal = make_grant(demo, table_resource(demo))
    for url in ("https://hooks.partner.example/shuzheng", "http://8.8.8.8:8080/hook"):
        with pytest.raises(ValidationFailed) as caught:
            subscribe(demo, domestic, url)
        assert [e.field for e in caught.value.errors] == ["url"]
        assert "not on the domestic allow-list" in caught.value.errors[0].message
        sub, _secret = subscribe(demo, normal, url)  # the same address for data that may leave
        assert sub.active
    assert subscribe(demo, domestic, "https://hooks.inside.example/x")[0].active
    assert subscribe(demo, domestic, "https://data.dingzhou.gov.cn/hook")[0].active
    records = list(refusals(domestic))
    assert len(records) == 2 and not refusals(normal).exists()
    summary = json.loads(records[0].summary)
    assert summary["resource"] == domestic.resource.code and summary["channel"] == "subscription"
    assert summary["destination"] == "https://hooks.partner.example/shuzheng" and "8.8.4.4" in summary["reason"]


def test_a_domestic_only_item_is_enough(demo, dns):
    resource = table_resource(demo, items=[
        {"name": "公民身份号码", "element": "DE00001", "is_key": True, "nullable": False, "domestic_only": True},
        {"name": "性别", "element": "DE00003"}])
    dns["abroad.example"] = ["8.8.8.8"]
    with pytest.raises(ValidationFailed):
        subscribe(demo, make_grant(demo, resource), "https://abroad.example/")
    assert subscribe(demo, make_grant(demo, resource, items=["性别"]), "https://abroad.example/")[0].active


def test_the_subscription_api_answers_422_on_url(demo, dns, client):
    dns["hooks.partner.example"] = ["8.8.4.4"]
    grant = make_grant(demo, table_resource(demo, domestic_only=True))
    client.force_login(demo.user(CONSUMER_OFFICER))
    answer = client.post("/api/v1/sharing/subscriptions", {"grant": str(grant.id),
                                                           "url": "https://hooks.partner.example/h"},
                         content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert answer.status_code == 422 and answer["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in answer.json()["errors"]] == ["url"]
    assert refusals(grant).count() == 1


# ---- webhooks: checked again when sent -------------------------------------------------------------------


def test_a_webhook_is_not_sent_when_the_host_has_moved_abroad(demo, dns, receiver, jobs_now,
                                                              django_capture_on_commit_callbacks):
    resource = table_resource(demo, domestic_only=True)
    grant = make_grant(demo, resource)
    dns["hooks.inside.example"] = ["127.0.0.1"]
    sub, _secret = subscribe(demo, grant, f"http://hooks.inside.example:{receiver.port}/hook")
    with django_capture_on_commit_callbacks(execute=True):
        events.snapshot_committed(resource.code, 1, 5, uuid.uuid4())
    first = Delivery.objects.get(subscription=sub)
    assert first.state == "delivered" and len(receiver.requests) == 1  # really sent, through the name

    dns["hooks.inside.example"] = ["93.184.216.34"]  # the name now points abroad
    with django_capture_on_commit_callbacks(execute=True):
        events.snapshot_committed(resource.code, 2, 5, uuid.uuid4())
    second = Delivery.objects.filter(subscription=sub).exclude(pk=first.pk).get()
    assert second.state == "failed" and second.attempts == 0 and "export control" in second.last_error
    assert len(receiver.requests) == 1  # nothing went out
    summary = json.loads(refusals(grant).get().summary)
    assert summary["channel"] == "webhook" and "93.184.216.34" in summary["reason"]
    assert AuditRecord.objects.filter(action="sharing.webhook_failed", object_id=str(second.pk)).exists()


# ---- export downloads ------------------------------------------------------------------------------------


def _export_link(demo, client, tmp_path, django_capture_on_commit_callbacks, domestic: bool) -> tuple[str, Grant]:
    resource = table_resource(demo, sharing_methods=["interface", "file"], domestic_only=domestic)
    ingest.ingest_file(demo.actor("officer-public-security"), resource.code,
                       write_csv(tmp_path / f"p{int(domestic)}.csv", [person(i) for i in range(30)]))
    code, key = system(demo)
    application = sharing.apply(demo.actor(CONSUMER_OFFICER), application_data(
        code, resource.code, items=["公民身份号码", "姓名", "性别"], method="file"))
    with django_capture_on_commit_callbacks(execute=True):
        created = call(client, key, f"/api/v1/share/{resource.code.replace('/', '-')}/exports", {"format": "csv"})
    assert created.status_code == 202, created.content
    status = call(client, key, f"/api/v1/share/exports/{created.json()['id']}", method="get").json()
    assert status["state"] == "ready", status
    return status["download"], Grant.objects.get(application=application)


def test_a_download_from_abroad_is_refused_for_domestic_data(demo, client, tmp_path, jobs_now,
                                                              django_capture_on_commit_callbacks):
    link, grant = _export_link(demo, client, tmp_path, django_capture_on_commit_callbacks, domestic=True)
    refused = client.get(link, REMOTE_ADDR="8.8.8.8", HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 403 and refused["Content-Type"].startswith("application/problem+json")
    assert "不得出境" in refused.json()["detail"]
    summary = json.loads(refusals(grant).get().summary)
    assert (summary["channel"], summary["destination"]) == ("download", "8.8.8.8")
    inside = client.get(link, REMOTE_ADDR="10.1.2.3")
    assert inside.status_code == 200 and b"".join(inside.streaming_content)


def test_a_download_from_abroad_is_allowed_for_other_data(demo, client, tmp_path, jobs_now,
                                                           django_capture_on_commit_callbacks):
    link, grant = _export_link(demo, client, tmp_path, django_capture_on_commit_callbacks, domestic=False)
    answer = client.get(link, REMOTE_ADDR="8.8.8.8")
    assert answer.status_code == 200 and b"".join(answer.streaming_content)
    assert not refusals(grant).exists()
