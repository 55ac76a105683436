"""Webhooks: how a snapshot event reaches a consumer system, and the record of every try (the delivery log).

An event becomes one Delivery row per live subscription (`fan_out`, idempotent per event and subscription).
Each try POSTs the JSON body, signed with the subscription's secret:

    X-Shuzheng-Signature: t=<unix seconds>,v1=<hex HMAC-SM3(secret, f"{t}.".encode() + body)>
    X-Shuzheng-Event: <event id>
    X-Shuzheng-Delivery: <delivery id>      (the same on every retry: consumers de-duplicate on it)

Consumers check it with `verify()`. Any 2xx is success; anything else (redirects included, they are not
followed) is retried after RETRY.delays, and after the last one the delivery is failed and audited.

A try never runs inside a database transaction (on SQLite that would hold the write lock for up to the
HTTP timeout). A worker first claims a delivery by moving its next_attempt_at a LEASE ahead, in one short
transaction; whoever does not win the claim skips it. If the worker dies mid-try the lease runs out and the
periodic sweep (tasks.deliver_due) tries again.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import time
from dataclasses import dataclass

import requests
from django.db import transaction
from django.utils import timezone

from shuzheng.audit import services as audit
from shuzheng.core.crypto import hmac_sm3
from shuzheng.org.services import Actor
from shuzheng.sharing.models import Delivery, DeliveryState, Grant, Subscription

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Shuzheng-Signature"
EVENT_HEADER = "X-Shuzheng-Event"
DELIVERY_HEADER = "X-Shuzheng-Delivery"
USER_AGENT = "Shuzheng-Webhooks/1"
TIMEOUT = (5, 5)  # connect, read (seconds): one slow consumer must not hold a worker for long
# How long a claimed delivery stays invisible to other workers: longer than one try (at most ~10 s).
LEASE = dt.timedelta(minutes=2)
WORKER = Actor(label="worker", ip="127.0.0.1", operator=True)


@dataclass(frozen=True)
class Retry:
    """When to try again after a failed try: delays[n-1] after the n-th failure; after len(delays) + 1
    tries the delivery is failed. Tests pass their own (or their own `now`) instead of waiting."""

    delays: tuple[dt.timedelta, ...] = (
        dt.timedelta(seconds=10),
        dt.timedelta(seconds=30),
        dt.timedelta(minutes=2),
        dt.timedelta(minutes=10),
        dt.timedelta(hours=1),
    )

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, attempts: int) -> dt.timedelta | None:
        """The wait after `attempts` failed tries, or None when there is to be no further try."""
        if attempts >= self.max_attempts:
            return None
        return self.delays[max(attempts, 1) - 1]


RETRY = Retry()


# --------------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------------


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _mac(secret: bytes | str, body: bytes, t: int) -> str:
    return hmac_sm3(_key(secret), f"{t}.".encode() + body).hex()


def sign(secret: bytes | str, body: bytes, t: int) -> str:
    """The X-Shuzheng-Signature value for `body` sent at unix time `t`. The timestamp is signed too, so a
    captured request cannot be replayed later than the receiver's tolerance."""
    return f"t={int(t)},v1={_mac(secret, body, int(t))}"


def parse_signature(header: str) -> tuple[int, list[str]] | None:
    """(t, [v1 signatures]) from a header value, or None when it is malformed. Several v1 entries are
    allowed, so a sender may sign with an old and a new secret while one replaces the other."""
    if not isinstance(header, str) or len(header) > 2000:
        return None
    t, sigs = None, []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if name == "t":
            if t is not None or not value.isdigit() or len(value) > 12:
                return None
            t = int(value)
        elif name == "v1":
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                return None
            sigs.append(value)
        # Unknown schemes (v2, …) are ignored so that a receiver keeps working when a new one is added.
    if t is None or not sigs:
        return None
    return t, sigs


def verify(secret: bytes | str, body: bytes, header: str, tolerance_s: int = 300, now: float | None = None) -> bool:
    """True when `header` is a valid signature of `body` with `secret`, made within `tolerance_s` of `now`
    (unix seconds, default the clock). For consumers: check the raw body bytes, before parsing the JSON."""
    parsed = parse_signature(header)
    if parsed is None or not isinstance(body, (bytes, bytearray)):
        return False
    t, sigs = parsed
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = _mac(secret, bytes(body), t)
    # Compare against every candidate without stopping early: the time taken says nothing about which matched.
    ok = False
    for sig in sigs:
        ok |= hmac.compare_digest(expected, sig)
    return ok


def body_of(payload: dict) -> bytes:
    """The exact bytes sent and signed: compact, key-sorted JSON, UTF-8 (resource names stay readable)."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------
# From an event to deliveries
# --------------------------------------------------------------------------------------------------


def live_subscriptions(resource_code: str, now: dt.datetime | None = None):
    """Active subscriptions to `resource_code` whose grant is in force and whose system is active."""
    now = now or timezone.now()
    return (Subscription.objects.select_related("grant__system", "grant__resource")
            .filter(Grant.live_q(now, "grant__"), active=True, grant__resource__code=resource_code,
                    grant__system__is_active=True))


def fan_out(event: dict, now: dt.datetime | None = None) -> list[Delivery]:
    """One Delivery per live subscription to the event's resource, looked up now (when the event is consumed,
    so a grant revoked after the load hears nothing). Returns the deliveries this call created: an event
    handled twice (a transport redelivered it) creates nothing the second time. Their first try is queued
    when the transaction commits."""
    now = now or timezone.now()
    created = []
    with transaction.atomic():
        for sub in live_subscriptions(event["resource"], now):
            delivery, new = Delivery.objects.get_or_create(
                subscription=sub, event_id=event["id"],
                defaults={"payload": event, "next_attempt_at": now})
            if new:
                created.append(delivery)
        if created:
            ids = [str(d.id) for d in created]
            transaction.on_commit(lambda: schedule(ids))
    return created


def schedule(delivery_ids: list[str]) -> None:
    """Queue one try of each delivery on the job worker (at once in immediate mode). A lost job only delays
    the delivery until the periodic sweep finds it due."""
    from shuzheng.sharing import tasks

    for delivery_id in delivery_ids:
        try:
            tasks.deliver(str(delivery_id))
        except Exception:  # noqa: BLE001 - the sweep picks the delivery up; the event must not be lost
            log.warning("could not queue delivery %s; the sweep will try it", delivery_id, exc_info=True)


# --------------------------------------------------------------------------------------------------
# Tries
# --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    status: int | None = None
    error: str = ""


def post(url: str, body: bytes, headers: dict, timeout=TIMEOUT) -> Outcome:
    """One POST. Redirects are not followed (a 3xx is a failure: the consumer should register the final
    URL), and the environment's proxies and .netrc are ignored, so no credentials ride along."""
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                                    stream=True)
            with response:
                if 200 <= response.status_code < 300:
                    return Outcome(True, response.status_code)
                # A little of the answer helps the consumer see why; never read an unbounded body.
                text = next(response.iter_content(300), b"").decode("utf-8", "replace")
                return Outcome(False, response.status_code, f"HTTP {response.status_code} {response.reason}: "
                                                            f"{text}".strip())
    except requests.RequestException as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:1000])


def _undeliverable(sub: Subscription, now: dt.datetime) -> str:
    if not sub.active:
        return "subscription deactivated"
    state = sub.grant.status(now)
    return "" if state == "live" else f"grant {state}"


def _export_refusal(sub: Subscription) -> str:
    """Domestic-only data (出境 control): the URL's host is resolved again at send time (its addresses may
    have changed since the subscription was made); a host off the allow-list fails the delivery unsent."""
    from urllib.parse import urlsplit

    from shuzheng.sharing.services import export_refusal_for_host

    reason = export_refusal_for_host(WORKER, sub.grant, urlsplit(sub.url).hostname or "", "webhook", sub.url)
    return f"export control: {reason}" if reason else ""


def claim(delivery_id, now: dt.datetime | None = None) -> Delivery | None:
    """Takes one due pending delivery for this worker, or None when it is not due or another took it. One
    conditional UPDATE: on PostgreSQL a concurrent claimer waits for it and then no longer matches."""
    now = now or timezone.now()
    taken = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING,
                                    next_attempt_at__lte=now).update(next_attempt_at=now + LEASE)
    if not taken:
        return None
    return Delivery.objects.select_related("subscription__grant__resource").get(pk=delivery_id)


def claim_due(now: dt.datetime | None = None, limit: int = 10) -> list[Delivery]:
    """Takes up to `limit` due pending deliveries, oldest due first. SKIP LOCKED on PostgreSQL lets several
    workers sweep at once without waiting on each other; SQLite ignores it (its write transactions are
    serial, so the claim is atomic there too)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(Delivery.objects.select_for_update(skip_locked=True)
                   .filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
                   .order_by("next_attempt_at").values_list("id", flat=True)[:limit])
        if ids:
            Delivery.objects.filter(pk__in=ids).update(next_attempt_at=now + LEASE)
    return list(Delivery.objects.select_related("subscription__grant__resource").filter(pk__in=ids)
                .order_by("created_at"))


def _fail(delivery: Delivery, reason: str) -> None:
    audit.record(WORKER, "sharing.webhook_failed", delivery, summary={
        "subscription": str(delivery.subscription_id), "url": delivery.subscription.url,
        "event": delivery.event_id, "resource": delivery.payload.get("resource"), "attempts": delivery.attempts,
        "status": delivery.last_status, "error": reason[:200]})


def attempt(delivery: Delivery, now: dt.datetime | None = None, retry: Retry = RETRY) -> Delivery:
    """One try of a claimed delivery, its outcome written on the row: attempts, last status and error, and
    either delivered, the next try (now + the backoff), or failed (audited). `now` (default: the clock
    after the POST) only places the next try; the signature always carries the real time."""
    sub = delivery.subscription
    reason = _undeliverable(sub, now or timezone.now()) or _export_refusal(sub)
    outcome = None
    if not reason:
        body = body_of(delivery.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(sub.secret, body, int(time.time())),
            EVENT_HEADER: delivery.event_id,
            DELIVERY_HEADER: str(delivery.id),
        }
        outcome = post(sub.url, body, headers)
    now = now or timezone.now()
    with transaction.atomic():
        row = Delivery.objects.select_for_update().select_related("subscription").get(pk=delivery.pk)
        if outcome is None:
            # Nothing was sent: the subscription or its grant ended while the delivery waited.
            row.state, row.next_attempt_at, row.last_error = DeliveryState.FAILED, None, reason
            row.save(update_fields=["state", "next_attempt_at", "last_error"])
            _fail(row, reason)
            return row
        row.attempts += 1
        row.last_status, row.last_error = outcome.status, outcome.error[:2000]
        if outcome.ok:
            row.state, row.delivered_at, row.next_attempt_at = DeliveryState.DELIVERED, now, None
        elif row.state == DeliveryState.PENDING:
            delay = retry.delay_after(row.attempts)
            if delay is None:
                row.state, row.next_attempt_at = DeliveryState.FAILED, None
                _fail(row, row.last_error)
            else:
                row.next_attempt_at = now + delay
        row.save(update_fields=["attempts", "last_status", "last_error", "state", "delivered_at", "next_attempt_at"])
    if not outcome.ok:
        log.info("webhook %s to %s failed (try %s): %s", row.id, sub.url, row.attempts, row.last_error)
    return row


def deliver(delivery_id, now: dt.datetime | None = None, retry: Retry = RETRY) -> Delivery | None:
    """Claims and tries one delivery if it is due (the job queued when it was created or redelivered)."""
    delivery = claim(delivery_id, now)
    return attempt(delivery, now, retry) if delivery is not None else None


def deliver_due(now: dt.datetime | None = None, retry: Retry = RETRY, batch: int = 10,
                budget_s: float = 50.0) -> int:
    """Tries every due pending delivery, a small batch at a time (each batch's lease covers its tries), for
    at most about `budget_s` so that one sweep ends before the next minute's starts. Returns the tries."""
    started, tried = time.monotonic(), 0
    while time.monotonic() - started < budget_s:
        due = claim_due(now, batch)
        if not due:
            break
        for delivery in due:
            attempt(delivery, now, retry)
            tried += 1
    return tried
