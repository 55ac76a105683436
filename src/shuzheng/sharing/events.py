"""Snapshot events: when a load commits a new snapshot of a resource, one event goes to the event transport,
and whoever consumes the transport turns it into webhook deliveries (webhooks.fan_out).

    {"id": "<uuid4 hex>", "type": "resource.snapshot", "resource": "101001000/000001",
     "snapshot_id": 123, "rows": 20, "load": "<load id>", "at": "2026-11-29T07:17:00Z"}

The transport is chosen by the setting EVENTS, else the environment variable SHUZHENG_EVENTS:

    inprocess                   (default) a Huey job fans the event out; nothing else to run
    redis://host:6379/0         Redis Streams: XADD to "shuzheng:events"; consumer group "webhooks"
    nats://host:4222            NATS JetStream: stream "SHUZHENG", subject "shuzheng.events.snapshot",
                                durable pull consumer "webhooks"

Query parameters rename the Redis stream and group (?stream=…&group=…) or the NATS stream, subject and
consumer (?stream=…&subject=…&durable=…). With Redis or NATS, `run_consumer()` must run somewhere (the worker
or `shuzheng events consume`); an event is acknowledged only after its deliveries are written, so a consumer
that dies in between has it handed out again, and fan-out ignores what it has already seen.

Every transport has the same two calls, `publish(event)` and `consume(max_events, timeout_s) -> handled`,
so tests and the long-running loop drive the same code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connection

from shuzheng.sharing import serving, webhooks

log = logging.getLogger(__name__)

EVENT_TYPE = "resource.snapshot"
REDIS_STREAM = "shuzheng:events"
REDIS_GROUP = "webhooks"
NATS_STREAM = "SHUZHENG"
NATS_SUBJECT = "shuzheng.events.snapshot"
NATS_DURABLE = "webhooks"


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


def snapshot_event(resource_code: str, snapshot_id: int, rows: int, load_id, at: dt.datetime | None = None) -> dict:
    at = (at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return {
        "id": uuid.uuid4().hex,
        "type": EVENT_TYPE,
        "resource": str(resource_code),
        "snapshot_id": int(snapshot_id),
        "rows": int(rows or 0),
        "load": str(load_id),
        "at": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def snapshot_committed(resource, snapshot_id: int, rows_added: int, load_id) -> dict | None:
    """Called by ingest once a load's snapshot is committed (transaction.on_commit). Never raises: the load
    is done whatever happens to its announcement; a failure is logged. Returns the event published."""
    try:
        event = snapshot_event(getattr(resource, "code", resource), snapshot_id, rows_added, load_id)
        publish(event)
        return event
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("snapshot event for %s (load %s) not published", resource, load_id)
        return None


def check_event(event) -> dict:
    """The event if it has the shape above; ValueError otherwise (a consumer drops such a message)."""
    if not isinstance(event, dict) or event.get("type") != EVENT_TYPE:
        raise ValueError("not a snapshot event")
    if not isinstance(event.get("id"), str) or not 0 < len(event["id"]) <= 64:
        raise ValueError("bad event id")
    if not isinstance(event.get("resource"), str) or not event["resource"]:
        raise ValueError("bad resource")
    return event


def handle_event(event: dict) -> int:
    """What every consumer does with an event: the deliveries, one per live subscription, and the new
    snapshot's serving store, so that the gateway's first call after a load need not build it. Returns how
    many deliveries were created (0 for an event seen before)."""
    deliveries = webhooks.fan_out(check_event(event))
    try:
        serving.prebuild(event["resource"], event.get("snapshot_id"))
    except Exception:  # noqa: BLE001 - the gateway builds it on first use anyway
        log.exception("serving store for %s snapshot %s not prebuilt", event["resource"], event.get("snapshot_id"))
    return len(deliveries)


def _decode(data: bytes) -> dict:
    try:
        return check_event(json.loads(data))
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------------


class Transport:
    """publish() an event; consume() fans out up to `max_events` waiting ones, waiting at most `timeout_s`
    for the first, and returns how many it handled."""

    name = ""

    def publish(self, event: dict) -> None:
        raise NotImplementedError

    def consume(self, max_events: int = 100, timeout_s: float = 1.0) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessTransport(Transport):
    """The embedded default: a Huey job fans the event out (at once when jobs run in immediate mode)."""

    name = "inprocess"

    def publish(self, event: dict) -> None:
        from shuzheng.sharing import tasks

        tasks.fan_out_event(check_event(event))

    def consume(self, max_events: int = 100, timeout_s: float = 1.0) -> int:
        return 0  # nothing waits here: the job queue holds the events


def _consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisTransport(Transport):
    """Redis Streams. Entries a consumer read but never acknowledged (it died, or fan-out failed) are taken
    over by XAUTOCLAIM once they have been idle `claim_idle_s`, by any consumer of the group."""

    name = "redis"

    def __init__(self, url: str, stream: str = REDIS_STREAM, group: str = REDIS_GROUP, consumer: str = "",
                 maxlen: int = 100_000, claim_idle_s: float = 60.0):
        import redis

        self._redis = redis
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        self.stream, self.group, self.consumer = stream, group, consumer or _consumer_name()
        self.maxlen, self.claim_idle_s = maxlen, claim_idle_s
        self._group_ready = False

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the start of the stream: events published before the group existed are not lost.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except self._redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def publish(self, event: dict) -> None:
        self._ensure_group()
        # Bounded: acknowledged entries are history, trimmed approximately (cheap) at `maxlen`.
        self.client.xadd(self.stream, {"event": json.dumps(check_event(event))}, maxlen=self.maxlen,
                         approximate=True)

    def consume(self, max_events: int = 100, timeout_s: float = 1.0) -> int:
        self._ensure_group()
        try:
            return self._consume(max_events, timeout_s)
        except self._redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._group_ready = False  # the stream was deleted: create it and the group again next round
            raise

    def _consume(self, max_events: int, timeout_s: float) -> int:
        entries = []
        if self.claim_idle_s is not None:
            _next, claimed, *_rest = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                                            int(self.claim_idle_s * 1000), "0-0", count=max_events)
            entries += claimed
        if len(entries) < max_events:
            block = int(timeout_s * 1000) if timeout_s > 0 and not entries else None  # BLOCK 0 waits forever
            for _stream, read in self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                                        count=max_events - len(entries), block=block) or []:
                entries += read
        handled = 0
        for entry_id, fields in entries:
            if fields is None:  # deleted (trimmed) while pending: nothing to do
                self.client.xack(self.stream, self.group, entry_id)
                continue
            try:
                event = _decode(fields.get(b"event"))
            except ValueError as exc:
                log.warning("dropping malformed event %s on %s: %s", entry_id, self.stream, exc)
                self.client.xack(self.stream, self.group, entry_id)
                continue
            handle_event(event)  # raises: not acknowledged, claimed again after claim_idle_s
            self.client.xack(self.stream, self.group, entry_id)
            handled += 1
        return handled

    def close(self) -> None:
        self.client.close()


class NatsTransport(Transport):
    """NATS JetStream. nats-py is asyncio; this keeps a private event loop and drives it with
    run_until_complete, so Django's ORM (which refuses to run while a loop runs) is called between the
    steps, in the caller's thread: fetch, fan out, acknowledge. publish() connects for one message
    (asyncio.run), which is safe from any thread."""

    name = "nats"

    def __init__(self, url: str, stream: str = NATS_STREAM, subject: str = NATS_SUBJECT, durable: str = NATS_DURABLE,
                 ack_wait_s: float = 60.0, connect_timeout_s: float = 5.0):
        self.url, self.stream, self.subject, self.durable = url, stream, subject, durable
        self.ack_wait_s, self.connect_timeout_s = ack_wait_s, connect_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc = None
        self._sub = None

    @property
    def stream_subjects(self) -> list[str]:
        # The whole family (shuzheng.events.>), so later event types need no change to the stream.
        head, dot, _last = self.subject.rpartition(".")
        return [f"{head}.>"] if dot else [self.subject]

    async def _connect(self):
        import nats

        return await nats.connect(self.url, connect_timeout=self.connect_timeout_s, max_reconnect_attempts=3,
                                  allow_reconnect=True)

    async def _ensure_stream(self, js) -> None:
        from nats.js.errors import NotFoundError

        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=self.stream_subjects)

    async def _publish(self, data: bytes, msg_id: str) -> None:
        nc = await self._connect()
        try:
            js = nc.jetstream(timeout=self.connect_timeout_s)
            await self._ensure_stream(js)
            # Nats-Msg-Id: the server drops a second publish of the same event within its duplicate window.
            await js.publish(self.subject, data, headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    def publish(self, event: dict) -> None:
        event = check_event(event)
        asyncio.run(self._publish(json.dumps(event).encode(), event["id"]))

    async def _open(self) -> None:
        from nats.js.api import ConsumerConfig

        self._nc = await self._connect()
        js = self._nc.jetstream(timeout=self.connect_timeout_s)
        await self._ensure_stream(js)
        self._sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream,
                                            config=ConsumerConfig(ack_wait=self.ack_wait_s))

    def _run(self, coro):
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def consume(self, max_events: int = 100, timeout_s: float = 1.0) -> int:
        import nats.errors

        try:
            if self._sub is None:
                self._run(self._open())
            try:
                msgs = self._run(self._sub.fetch(batch=max_events, timeout=max(timeout_s, 0.2)))
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                return 0
        except Exception:
            self.close()  # reconnect from scratch on the next call
            raise
        handled = 0
        for i, msg in enumerate(msgs):
            try:
                event = _decode(msg.data)
            except ValueError as exc:
                log.warning("dropping malformed event on %s: %s", self.subject, exc)
                self._run(msg.term())  # never redelivered
                continue
            try:
                handle_event(event)
            except Exception:
                # Hand this one and the rest of the batch back now rather than after ack_wait.
                for pending in msgs[i:]:
                    try:
                        self._run(pending.nak(delay=1))
                    except Exception:  # noqa: BLE001 - ack_wait redelivers them anyway
                        break
                raise
            self._run(msg.ack_sync(timeout=self.connect_timeout_s))
            handled += 1
        return handled

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            if self._nc is not None:
                try:
                    self._loop.run_until_complete(self._nc.close())
                except Exception:  # noqa: BLE001 - closing a broken connection
                    log.debug("closing the NATS connection failed", exc_info=True)
            self._loop.close()
        self._loop = self._nc = self._sub = None


# --------------------------------------------------------------------------------------------------
# Choosing the transport
# --------------------------------------------------------------------------------------------------


def configured_url() -> str:
    return (getattr(settings, "EVENTS", "") or os.environ.get("SHUZHENG_EVENTS", "") or "inprocess").strip()


def transport_from_url(url: str) -> Transport:
    """The transport a SHUZHENG_EVENTS value names (see the module docstring)."""
    if url in ("", "inprocess"):
        return InProcessTransport()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    if scheme in ("redis", "rediss", "unix"):
        own = {k: options.pop(k) for k in ("stream", "group") if k in options}
        plain = urlunsplit(parts._replace(query=urlencode(options)))
        return RedisTransport(plain, **own)
    if scheme in ("nats", "tls"):
        own = {k: options.pop(k) for k in ("stream", "subject", "durable") if k in options}
        plain = urlunsplit(parts._replace(query=urlencode(options)))
        return NatsTransport(plain, **own)
    raise ImproperlyConfigured(f"SHUZHENG_EVENTS: unknown transport {url!r} (inprocess, redis://…, nats://…)")


_transports: dict[str, Transport] = {}
_transports_lock = threading.Lock()


def get_transport() -> Transport:
    """The configured transport, one per process (its clients are thread-safe for publish)."""
    url = configured_url()
    with _transports_lock:
        if url not in _transports:
            _transports[url] = transport_from_url(url)
        return _transports[url]


def publish(event: dict) -> None:
    """Publishes through the configured transport. If a broker cannot take the event, it is fanned out in
    process instead (the job queue), so subscribers still hear of it; fan-out is idempotent per event, so
    an event that did reach the broker as well is not delivered twice."""
    transport = get_transport()
    try:
        transport.publish(event)
    except Exception:
        if isinstance(transport, InProcessTransport):
            raise
        log.warning("event %s: %s transport failed; fanning out in process", event.get("id"),
                    transport.name, exc_info=True)
        InProcessTransport().publish(event)


def consume(max_events: int = 100, timeout_s: float = 1.0) -> int:
    """One round of the configured transport's consumer (0 at once for inprocess)."""
    return get_transport().consume(max_events, timeout_s)


def run_consumer(stop: threading.Event, transport: Transport | None = None, batch: int = 100,
                 timeout_s: float = 5.0) -> int:
    """Consumes until `stop` is set; for the worker (a thread) or `shuzheng events consume`. Errors are
    logged and retried with a growing pause (at most a minute). Returns how many events it handled.
    With the inprocess transport there is nothing to consume and it returns at once."""
    own = transport is None
    transport = transport or transport_from_url(configured_url())
    if isinstance(transport, InProcessTransport):
        log.info("events are delivered in process by the job worker; no consumer to run")
        return 0
    handled, pause = 0, 1.0
    try:
        while not stop.is_set():
            try:
                handled += transport.consume(batch, timeout_s)
                pause = 1.0
            except Exception:
                log.exception("event consumer (%s) failed; retrying in %.0f s", transport.name, pause)
                stop.wait(pause)
                pause = min(pause * 2, 60.0)
            finally:
                # A long-lived loop must drop broken or aged database connections, as Huey's jobs do; never
                # inside a transaction (tests run the loop inside one).
                if not connection.in_atomic_block:
                    close_old_connections()
    finally:
        if own:
            transport.close()
    return handled
