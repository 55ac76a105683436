"""Snapshot events and webhooks end to end: a committed load reaches a real HTTP receiver with a valid
HMAC-SM3 signature; failures are retried on the backoff schedule and finally failed and audited; revoked
grants and stopped subscriptions hear nothing; the Redis Streams and NATS JetStream transports carry events
to the same fan-out; who may subscribe; and the signature helpers consumers use."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from data_helpers import person, table_resource, write_csv
from django.db import transaction
from django.utils import timezone

from shuzheng.audit.models import AuditRecord
from shuzheng.catalog.models import Resource
from shuzheng.core.crypto import hmac_sm3
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.ingest import services as ingest
from shuzheng.org import services as org
from shuzheng.org.services import Actor
from shuzheng.sharing import events, subscriptions, webhooks
from shuzheng.sharing.models import Application, Delivery, Grant

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
DEMO_RESOURCE = "101001000/000001"
CONSUMER_OFFICER = "officer-civil-affairs"


# --------------------------------------------------------------------------------------------------
# Helpers: a receiver, a grant, Huey in immediate mode
# --------------------------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers from a script of statuses
    (200 once the script runs out). With `secret` set it checks the signature as a consumer would."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.secret: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                signed = (receiver.secret is not None
                          and webhooks.verify(receiver.secret, body, self.headers.get(webhooks.SIGNATURE_HEADER, "")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "signed": signed})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.secret is not None and not signed:
                    status = 401
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/shuzheng"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_grant(demo, resource: Resource, consumer: str = "civil-affairs", officer: str = CONSUMER_OFFICER,
               **overrides) -> Grant:
    """An application system of `consumer` and an approved application's grant for `resource`, made with the
    ORM (the application workflow is not what these tests are about)."""
    org_ = demo.org(consumer)
    system = org.create_system(demo.actor(officer), {"code": f"wh-{uuid.uuid4().hex[:10]}", "name": "低保审核系统",
                                                     "organization": org_.code})
    resource = Resource.objects.select_related("published", "provider").get(pk=resource.pk)
    items = list(resource.published.items.order_by("position").values_list("name", flat=True))
    now = timezone.now()
    application = Application.objects.create(
        number=f"T{uuid.uuid4().hex[:14]}", resource=resource, version=resource.published, system=system,
        consumer=org_, provider=resource.provider, applicant=officer, purpose="低保资格核验", legal_basis="社会救助暂行办法",
        items=items, method="interface", period_end=(now + dt.timedelta(days=365)).date(), state="approved",
        decided_at=now)
    fields = {"items": items, "methods": ["interface"], "expires_at": now + dt.timedelta(days=30)}
    fields.update(overrides)
    return Grant.objects.create(application=application, system=system, resource=resource, consumer=org_,
                                provider=resource.provider, **fields)


def demo_resource() -> Resource:
    return Resource.objects.select_related("published", "provider").get(code=DEMO_RESOURCE)


def subscribe(demo, grant: Grant, receiver: Receiver):
    sub, secret = subscriptions.create_subscription(demo.actor(CONSUMER_OFFICER), grant.id, receiver.url)
    receiver.secret = secret
    return sub, secret


def announce(django_capture_on_commit_callbacks, code: str = DEMO_RESOURCE) -> dict:
    """What ingest does after a commit, with its on_commit work run (tests run inside a transaction)."""
    with django_capture_on_commit_callbacks(execute=True):
        event = events.snapshot_committed(code, 42, 7, uuid.uuid4())
    assert event is not None
    return event


# --------------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------------


def test_sign_and_verify_for_consumers():
    secret, body, t = "s3cret-Key", b'{"id":"e1","rows":3}', 1_800_000_000
    header = webhooks.sign(secret, body, t)
    mac = hmac_sm3(secret.encode(), b"1800000000." + body).hex()
    assert header == f"t=1800000000,v1={mac}"
    assert webhooks.sign(secret.encode(), body, t) == header  # str and bytes secrets are the same key
    assert webhooks.verify(secret, body, header, now=t)
    assert webhooks.verify(secret.encode(), body, header, now=t + 299)
    assert webhooks.verify(secret, body, header, tolerance_s=600, now=t + 599)
    # tampered body, wrong secret
    assert not webhooks.verify(secret, body.replace(b"3", b"4"), header, now=t)
    assert not webhooks.verify(secret, body + b" ", header, now=t)
    assert not webhooks.verify("other-secret", body, header, now=t)
    # stale, and too far in the future
    assert not webhooks.verify(secret, body, header, now=t + 301)
    assert not webhooks.verify(secret, body, header, now=t - 301)
    # the timestamp is signed: moving it breaks the signature
    assert not webhooks.verify(secret, body, header.replace("t=1800000000", "t=1800000100"), now=t + 100)
    # malformed headers
    for bad in ["", "garbage", "t=,v1=" + mac, "t=abc,v1=" + mac, "v1=" + mac, "t=1800000000",
                "t=1800000000,v1=" + mac[:-1], "t=1800000000,v1=" + mac.upper(), "t=1800000000;v1=" + mac,
                "t=1800000000,t=1800000000,v1=" + mac, "t=-5,v1=" + mac, None, "t=1800000000,v1=" + "zz" * 32]:
        assert not webhooks.verify(secret, body, bad, now=t), bad
    # several signatures (secret rotation): any valid one is enough; unknown schemes are ignored
    rotated = f"t={t},v1={'0' * 64},v1={mac},v2=whatever"
    assert webhooks.verify(secret, body, rotated, now=t)
    assert not webhooks.verify(secret, body, f"t={t},v1={'0' * 64}", now=t)
    # a body that is not bytes is never valid (consumers must check the raw bytes)
    assert not webhooks.verify(secret, body.decode(), header, now=t)


def test_retry_schedule():
    retry = webhooks.RETRY
    assert retry.max_attempts == 6
    assert [retry.delay_after(n) for n in range(1, 7)] == [
        dt.timedelta(seconds=10), dt.timedelta(seconds=30), dt.timedelta(minutes=2), dt.timedelta(minutes=10),
        dt.timedelta(hours=1), None]


# --------------------------------------------------------------------------------------------------
# In process, from a real load
# --------------------------------------------------------------------------------------------------


def test_a_committed_load_sends_one_signed_webhook(demo, tmp_path, receiver, jobs_now,
                                                   django_capture_on_commit_callbacks):
    resource = table_resource(demo)
    grant = make_grant(demo, resource)
    sub, secret = subscribe(demo, grant, receiver)
    assert len(secret) >= 43 and sub.active and sub.created_by == CONSUMER_OFFICER
    assert AuditRecord.objects.filter(action="sharing.subscription_create", object_id=str(sub.id)).exists()

    path = write_csv(tmp_path / "人口.csv", [person(i) for i in range(3)])
    with django_capture_on_commit_callbacks(execute=True):
        load = ingest.ingest_file(demo.actor("officer-public-security"), resource.code, path)
    assert load.state == "committed" and load.snapshot_id is not None

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    headers, body = request["headers"], request["body"]
    assert request["signed"] and webhooks.verify(secret, body, headers[webhooks.SIGNATURE_HEADER])
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert headers[webhooks.EVENT_HEADER] == event["id"] and len(event["id"]) == 32
    assert {k: event[k] for k in ("type", "resource", "snapshot_id", "rows", "load")} == {
        "type": "resource.snapshot", "resource": resource.code, "snapshot_id": load.snapshot_id, "rows": 3,
        "load": str(load.id)}
    at = dt.datetime.fromisoformat(event["at"])
    assert at.utcoffset() == dt.timedelta(0) and abs((timezone.now() - at).total_seconds()) < 120
    assert body == webhooks.body_of(event)  # exactly the bytes signed

    delivery = Delivery.objects.get(subscription=sub)
    assert headers[webhooks.DELIVERY_HEADER] == str(delivery.id)
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.event_id) == (
        "delivered", 1, 200, event["id"])
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert list(subscriptions.list_deliveries(demo.actor(CONSUMER_OFFICER), sub.id)) == [delivery]


def test_nothing_is_published_for_a_rolled_back_or_rejected_load(demo, tmp_path, receiver, jobs_now,
                                                                 django_capture_on_commit_callbacks):
    resource = table_resource(demo)
    subscribe(demo, make_grant(demo, resource), receiver)
    officer = demo.actor("officer-public-security")
    path = write_csv(tmp_path / "人口.csv", [person(i) for i in range(3)])

    class Undo(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(Undo):
            with transaction.atomic():
                assert ingest.ingest_file(officer, resource.code, path).state == "committed"
                raise Undo
    assert callbacks == [] and receiver.requests == []

    bad = person(1)
    bad[0] = "not an id number"
    with django_capture_on_commit_callbacks(execute=True):
        rejected = ingest.ingest_file(officer, resource.code, write_csv(tmp_path / "bad.csv", [bad]))
    assert (rejected.state, rejected.snapshot_id) == ("rejected", None)
    assert receiver.requests == [] and not Delivery.objects.filter(subscription__grant__resource=resource).exists()


# --------------------------------------------------------------------------------------------------
# Retries and the delivery log
# --------------------------------------------------------------------------------------------------


def test_failures_are_retried_with_backoff_until_delivered(demo, receiver, jobs_now,
                                                           django_capture_on_commit_callbacks):
    sub, secret = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    receiver.statuses = [500, 500]  # then 200

    event = announce(django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(subscription=sub)
    first_due = delivery.next_attempt_at
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert "HTTP 500" in delivery.last_error
    assert dt.timedelta(seconds=9) < first_due - timezone.now() <= dt.timedelta(seconds=10)

    # Not yet due: the sweep leaves it alone.
    assert webhooks.deliver_due(now=first_due - dt.timedelta(seconds=1)) == 0
    assert len(receiver.requests) == 1

    second = first_due + dt.timedelta(seconds=1)
    assert webhooks.deliver_due(now=second) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 2, 500)
    assert delivery.next_attempt_at == second + dt.timedelta(seconds=30)

    assert webhooks.deliver_due(now=delivery.next_attempt_at) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    assert delivery.next_attempt_at is None and delivery.delivered_at is not None
    assert webhooks.deliver_due(now=second + dt.timedelta(days=1)) == 0

    assert len(receiver.requests) == 3
    assert all(r["signed"] for r in receiver.requests)
    assert {r["headers"][webhooks.DELIVERY_HEADER] for r in receiver.requests} == {str(delivery.id)}
    assert {r["headers"][webhooks.EVENT_HEADER] for r in receiver.requests} == {event["id"]}
    assert len({r["body"] for r in receiver.requests}) == 1
    assert not AuditRecord.objects.filter(action="sharing.webhook_failed", object_id=str(delivery.id)).exists()


def test_a_delivery_fails_after_six_tries_and_is_audited(demo, receiver, jobs_now,
                                                         django_capture_on_commit_callbacks):
    sub, _secret = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    receiver.statuses = [503] * 10
    announce(django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(subscription=sub)
    waits = []
    while delivery.state == "pending":
        now = delivery.next_attempt_at
        assert webhooks.deliver_due(now=now) == 1
        delivery.refresh_from_db()
        if delivery.next_attempt_at:
            waits.append(delivery.next_attempt_at - now)
    assert waits == [dt.timedelta(seconds=30), dt.timedelta(minutes=2), dt.timedelta(minutes=10),
                     dt.timedelta(hours=1)]
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", 6, 503)
    assert delivery.next_attempt_at is None and len(receiver.requests) == 6
    record = AuditRecord.objects.get(action="sharing.webhook_failed", object_id=str(delivery.id))
    summary = json.loads(record.summary)
    assert record.actor == "worker" and summary["attempts"] == 6 and summary["status"] == 503
    assert webhooks.deliver_due(now=timezone.now() + dt.timedelta(days=2)) == 0


def test_the_schedule_is_injectable_and_network_errors_and_redirects_are_failures(
        demo, receiver, jobs_now, django_capture_on_commit_callbacks):
    quick = webhooks.Retry(delays=(dt.timedelta(seconds=1),))
    grant = make_grant(demo, demo_resource())
    closed = Receiver()
    closed_url = closed.url
    closed.close()  # nothing listens there any more
    sub, _ = subscriptions.create_subscription(demo.actor(CONSUMER_OFFICER), grant.id, closed_url)
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.fan_out(events.snapshot_event(DEMO_RESOURCE, 1, 1, "load"))
    delivery = Delivery.objects.get(subscription=sub)
    assert delivery.attempts == 1 and delivery.last_status is None and "ConnectionError" in delivery.last_error
    webhooks.deliver_due(now=delivery.next_attempt_at, retry=quick)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 2)  # 1 delay = 2 tries

    receiver.statuses = [302]
    redirected, _ = subscribe(demo, grant, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.fan_out(events.snapshot_event(DEMO_RESOURCE, 2, 1, "load"))
    delivery = Delivery.objects.get(subscription=redirected)
    assert (delivery.state, delivery.last_status) == ("pending", 302)
    assert len(receiver.requests) == 1  # the redirect was not followed


def test_a_delivery_is_claimed_by_one_worker_only(demo, receiver, jobs_now):
    sub, _ = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    webhooks.fan_out(events.snapshot_event(DEMO_RESOURCE, 3, 1, "load"))  # its first try is not run
    delivery = Delivery.objects.get(subscription=sub)
    now = timezone.now()
    assert [d.id for d in webhooks.claim_due(now)] == [delivery.id]
    assert webhooks.claim_due(now) == [] and webhooks.claim(delivery.id, now) is None
    assert webhooks.deliver(delivery.id, now) is None and receiver.requests == []
    later = now + webhooks.LEASE  # the lease has run out (the worker died): it is due again
    assert webhooks.deliver(delivery.id, later).state == "delivered"
    assert len(receiver.requests) == 1


def test_redeliver_sends_again_and_is_audited(demo, receiver, jobs_now, django_capture_on_commit_callbacks):
    sub, _ = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    announce(django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(subscription=sub)
    assert delivery.state == "delivered"
    with pytest.raises(NotFound):
        subscriptions.redeliver(demo.actor("officer-health"), delivery.id)
    with pytest.raises(Forbidden):
        subscriptions.redeliver(demo.actor("steward"), delivery.id)
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.redeliver(demo.actor(CONSUMER_OFFICER), delivery.id)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 1)
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    record = AuditRecord.objects.get(action="sharing.webhook_redeliver", object_id=str(delivery.id))
    assert record.actor == CONSUMER_OFFICER and json.loads(record.summary)["before"]["state"] == "delivered"


# --------------------------------------------------------------------------------------------------
# Who hears nothing
# --------------------------------------------------------------------------------------------------


def test_revoked_or_expired_grants_and_stopped_subscriptions_get_no_delivery(
        demo, receiver, jobs_now, django_capture_on_commit_callbacks):
    resource = demo_resource()
    revoked = make_grant(demo, resource)
    subscribe(demo, revoked, receiver)
    Grant.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now(), revoked_by="reviewer")
    expired = make_grant(demo, resource)
    subscribe(demo, expired, receiver)
    Grant.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    stopped = make_grant(demo, resource)
    sub, _ = subscribe(demo, stopped, receiver)
    subscriptions.deactivate_subscription(demo.actor(CONSUMER_OFFICER), sub.id)

    event = announce(django_capture_on_commit_callbacks)
    assert receiver.requests == [] and not Delivery.objects.filter(event_id=event["id"]).exists()


def test_a_grant_revoked_while_a_retry_waits_ends_the_delivery(demo, receiver, jobs_now,
                                                               django_capture_on_commit_callbacks):
    grant = make_grant(demo, demo_resource())
    sub, _ = subscribe(demo, grant, receiver)
    receiver.statuses = [500]
    announce(django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(subscription=sub)
    Grant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now(), revoked_by="reviewer")
    assert webhooks.deliver_due(now=delivery.next_attempt_at) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("failed", 1, "grant revoked")
    assert len(receiver.requests) == 1  # nothing more was sent
    assert AuditRecord.objects.filter(action="sharing.webhook_failed", object_id=str(delivery.id)).exists()


# --------------------------------------------------------------------------------------------------
# Subscriptions: who may, and what is checked
# --------------------------------------------------------------------------------------------------


def test_who_may_subscribe_and_what_is_checked(demo, receiver, jobs_now, django_capture_on_commit_callbacks):
    grant = make_grant(demo, demo_resource())
    other = make_grant(demo, demo_resource(), consumer="public-security", officer="officer-public-security")
    officer = demo.actor(CONSUMER_OFFICER)

    # The grant's own system (an API-key call) may; another system is told there is no such grant.
    own_system = Actor(system=grant.system, ip="10.0.0.8")
    sub, secret = subscriptions.create_subscription(own_system, grant.id, receiver.url)
    assert sub.created_by == f"system:{grant.system.code}" and secret != subscriptions.create_subscription(
        officer, grant.id, receiver.url + "?b")[1]
    with pytest.raises(NotFound):
        subscriptions.create_subscription(Actor(system=other.system), grant.id, receiver.url)
    # Who may see the grant but not manage the consumer's systems (a steward of the consumer, the provider's
    # officer): 403; another department or nobody: 404; nonsense ids: 404.
    for viewer in ("steward", "officer-public-security"):
        with pytest.raises(Forbidden):
            subscriptions.create_subscription(demo.actor(viewer), grant.id, receiver.url + "?c")
    for stranger in (demo.actor("officer-health"), Actor(ip="127.0.0.1")):
        with pytest.raises(NotFound):
            subscriptions.create_subscription(stranger, grant.id, receiver.url)
    with pytest.raises(NotFound):
        subscriptions.create_subscription(officer, "not-a-uuid", receiver.url)
    with pytest.raises(NotFound):
        subscriptions.create_subscription(officer, uuid.uuid4(), receiver.url)

    for bad in ["", "ftp://example.org/hook", "http://", "example.org/hook", "http:///path", "javascript:alert(1)",
                "http://user:pw@example.org/hook", "http://example.org:99999/", "http://exa mple.org/",
                "https://example.org/" + "x" * 500]:
        with pytest.raises(ValidationFailed) as exc:
            subscriptions.create_subscription(officer, grant.id, bad)
        assert [e.field for e in exc.value.errors] == ["url"], bad
    assert subscriptions.check_url(" https://receiver:8443/hook?x=1 ") == "https://receiver:8443/hook?x=1"

    with pytest.raises(Conflict):  # the same URL twice
        subscriptions.create_subscription(officer, grant.id, receiver.url)
    for i in range(subscriptions.MAX_ACTIVE_PER_GRANT - 2):
        subscriptions.create_subscription(officer, grant.id, f"{receiver.url}?n={i}")
    with pytest.raises(Conflict):  # too many
        subscriptions.create_subscription(officer, grant.id, receiver.url + "?one-more")
    Grant.objects.filter(pk=other.pk).update(revoked_at=timezone.now())
    with pytest.raises(Conflict):  # only for a live grant
        subscriptions.create_subscription(demo.actor("officer-public-security"), other.id, receiver.url)

    # Lists: a system sees its own, a user those of the organizations whose systems they see.
    assert set(subscriptions.list_subscriptions(own_system)) == set(grant.subscriptions.all())
    for viewer in (CONSUMER_OFFICER, "developer", "steward", "officer-public-security"):
        assert sub in set(subscriptions.list_subscriptions(demo.actor(viewer))), viewer
    assert sub not in set(subscriptions.list_subscriptions(demo.actor("officer-health")))
    assert sub not in set(subscriptions.list_subscriptions(Actor(system=other.system)))
    assert list(subscriptions.list_subscriptions(Actor())) == []
    assert list(subscriptions.list_deliveries(demo.actor("steward"), sub.id)) == []
    with pytest.raises(NotFound):
        subscriptions.list_deliveries(demo.actor("officer-health"), sub.id)

    # Deactivating: not by a viewer, once, audited; pending deliveries are dropped with the reason.
    with pytest.raises(Forbidden):
        subscriptions.deactivate_subscription(demo.actor("steward"), sub.id)
    receiver.statuses = [500] * 10
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.fan_out(events.snapshot_event(DEMO_RESOURCE, 5, 1, "load"))
    pending = Delivery.objects.get(subscription=sub)
    assert pending.state == "pending"
    done = subscriptions.deactivate_subscription(own_system, sub.id)
    assert not done.active
    pending.refresh_from_db()
    assert (pending.state, pending.last_error) == ("failed", "subscription deactivated")
    with pytest.raises(Conflict):
        subscriptions.deactivate_subscription(officer, sub.id)
    record = AuditRecord.objects.get(action="sharing.subscription_deactivate", object_id=str(sub.id))
    assert json.loads(record.summary)["pending_dropped"] == 1 and secret not in record.summary
    with pytest.raises(Conflict):
        subscriptions.redeliver(officer, pending.id)


# --------------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------------


def test_snapshot_committed_never_raises_and_falls_back_to_in_process(demo, receiver, jobs_now, settings,
                                                                      django_capture_on_commit_callbacks):
    settings.EVENTS = "bogus://nowhere"
    assert events.snapshot_committed(DEMO_RESOURCE, 1, 1, "load") is None  # logged, not raised

    sub, _ = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    settings.EVENTS = "redis://127.0.0.1:1/0"  # nothing listens: the event goes through the job queue
    event = announce(django_capture_on_commit_callbacks)
    assert Delivery.objects.get(subscription=sub).event_id == event["id"]
    assert len(receiver.requests) == 1 and receiver.requests[0]["signed"]


def test_transport_urls():
    assert isinstance(events.transport_from_url("inprocess"), events.InProcessTransport)
    redis_t = events.transport_from_url("redis://127.0.0.1:6379/3?stream=a:b&group=g")
    assert (redis_t.stream, redis_t.group) == ("a:b", "g")
    assert redis_t.client.connection_pool.connection_kwargs["db"] == 3
    redis_t.close()
    plain = events.transport_from_url("redis://127.0.0.1:6379/0")
    assert (plain.stream, plain.group) == ("shuzheng:events", "webhooks")
    plain.close()
    nats_t = events.transport_from_url("nats://127.0.0.1:4222?stream=S&subject=a.b.c&durable=d")
    assert (nats_t.url, nats_t.stream, nats_t.subject, nats_t.durable) == ("nats://127.0.0.1:4222", "S", "a.b.c", "d")
    assert nats_t.stream_subjects == ["a.b.>"]
    default = events.transport_from_url("nats://127.0.0.1:4222")
    assert (default.stream, default.subject, default.durable) == ("SHUZHENG", "shuzheng.events.snapshot", "webhooks")
    assert default.stream_subjects == ["shuzheng.events.>"]
    with pytest.raises(Exception):
        events.transport_from_url("kafka://x")
    with pytest.raises(ValueError):
        events.check_event({"type": "resource.snapshot", "id": "", "resource": "x"})


def test_redis_streams_round_trip(demo, receiver, jobs_now, settings, django_capture_on_commit_callbacks,
                                  monkeypatch):
    import redis

    stream = f"shuzheng:test:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    settings.EVENTS = f"{REDIS_URL}?stream={stream}&group=webhooks"
    sub, secret = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    transport = events.get_transport()
    assert isinstance(transport, events.RedisTransport) and transport.stream == stream
    try:
        event = announce(django_capture_on_commit_callbacks)
        assert client.xlen(stream) == 1
        assert not Delivery.objects.filter(event_id=event["id"]).exists()  # looked up when consumed
        with django_capture_on_commit_callbacks(execute=True):
            assert events.consume(10, 1.0) == 1
        delivery = Delivery.objects.get(subscription=sub, event_id=event["id"])
        assert delivery.state == "delivered" and len(receiver.requests) == 1 and receiver.requests[0]["signed"]
        assert json.loads(receiver.requests[0]["body"])["id"] == event["id"]
        assert client.xpending(stream, "webhooks")["pending"] == 0  # acknowledged
        assert transport.consume(10, 0.2) == 0

        # A fan-out that fails leaves the entry unacknowledged; it is claimed again and handled once.
        second = announce(django_capture_on_commit_callbacks)
        real = webhooks.fan_out
        monkeypatch.setattr(webhooks, "fan_out", lambda event, now=None: (_ for _ in ()).throw(RuntimeError("db")))
        with pytest.raises(RuntimeError):
            transport.consume(10, 1.0)
        assert client.xpending(stream, "webhooks")["pending"] == 1
        monkeypatch.setattr(webhooks, "fan_out", real)
        other = events.RedisTransport(REDIS_URL, stream=stream, consumer="another-worker", claim_idle_s=0)
        with django_capture_on_commit_callbacks(execute=True):
            assert other.consume(10, 0.2) == 1
        other.close()
        assert Delivery.objects.get(subscription=sub, event_id=second["id"]).state == "delivered"
        assert client.xpending(stream, "webhooks")["pending"] == 0

        # A malformed entry is dropped (acknowledged), not retried forever.
        client.xadd(stream, {"event": b"{not json"})
        assert transport.consume(10, 0.2) == 0
        assert client.xpending(stream, "webhooks")["pending"] == 0

        # The long-running loop drives the same consume(); here for one round.
        third = announce(django_capture_on_commit_callbacks)
        stop = threading.Event()

        class OneRound(events.Transport):
            name = "redis"

            def consume(self, max_events=100, timeout_s=1.0):
                try:
                    return transport.consume(max_events, timeout_s)
                finally:
                    stop.set()

        with django_capture_on_commit_callbacks(execute=True):
            assert events.run_consumer(stop, OneRound(), timeout_s=1.0) == 1
        assert Delivery.objects.get(subscription=sub, event_id=third["id"]).state == "delivered"
        assert len(receiver.requests) == 3 and all(r["signed"] for r in receiver.requests)

        # The stream deleted under a running consumer (a flushed Redis): one failed round, then it recovers.
        client.delete(stream)
        with pytest.raises(redis.ResponseError):
            transport.consume(10, 0.2)
        assert transport.consume(10, 0.2) == 0
        assert client.xinfo_groups(stream)[0]["name"] == b"webhooks"
    finally:
        client.delete(stream)
        client.close()


def test_nats_jetstream_round_trip(demo, receiver, jobs_now, settings, django_capture_on_commit_callbacks,
                                   monkeypatch):
    import nats

    tag = uuid.uuid4().hex[:12]
    stream, subject = f"SZTEST_{tag}", f"sztest.{tag}.snapshot"
    settings.EVENTS = f"{NATS_URL}?stream={stream}&subject={subject}&durable=webhooks"
    sub, secret = subscribe(demo, make_grant(demo, demo_resource()), receiver)
    consumer = events.transport_from_url(settings.EVENTS)
    try:
        event = announce(django_capture_on_commit_callbacks)
        assert not Delivery.objects.filter(event_id=event["id"]).exists()
        with django_capture_on_commit_callbacks(execute=True):
            assert consumer.consume(10, 2.0) == 1
        delivery = Delivery.objects.get(subscription=sub, event_id=event["id"])
        assert delivery.state == "delivered" and receiver.requests[0]["signed"]
        assert json.loads(receiver.requests[0]["body"])["id"] == event["id"]
        assert consumer.consume(10, 0.3) == 0  # acknowledged: not handed out again

        # Publishing the same event twice (a retried publish) is de-duplicated by the server.
        events.get_transport().publish(event)
        assert consumer.consume(10, 0.3) == 0

        # A failed fan-out is handed back (nak) and handled on a later round, once.
        second = announce(django_capture_on_commit_callbacks)
        real = webhooks.fan_out
        monkeypatch.setattr(webhooks, "fan_out", lambda event, now=None: (_ for _ in ()).throw(RuntimeError("db")))
        with pytest.raises(RuntimeError):
            consumer.consume(10, 2.0)
        monkeypatch.setattr(webhooks, "fan_out", real)
        handled, deadline = 0, time.monotonic() + 15
        while not handled and time.monotonic() < deadline:
            with django_capture_on_commit_callbacks(execute=True):
                handled = consumer.consume(10, 2.0)
        assert handled == 1
        assert Delivery.objects.get(subscription=sub, event_id=second["id"]).state == "delivered"
        assert len(receiver.requests) == 2 and all(r["signed"] for r in receiver.requests)
    finally:
        consumer.close()

        async def drop():
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().delete_stream(stream)
            finally:
                await nc.close()

        asyncio.run(drop())
