"""The gateway's audit and metering writer: every call is audited and metered before it is answered, in
batches (group commit).

One transaction per call would serialize the gateway on the audit head's lock and on a commit per call. Here a
call hands its record to a per-process writer thread and waits; the thread appends everything waiting as one
batch (audit.record_many: one head lock, one insert, one commit) together with the day's meter increments,
then releases the waiting calls. A call is answered only after its record is committed, so nothing is lost
and a failed write fails the call. With N calls in flight a batch holds up to N records.

Inside a transaction (tests, the CLI) the record is written inline on the caller's connection instead: a
separate thread could not see the caller's uncommitted rows and, on SQLite, would wait for its lock.

Quotas read the day's totals from the meters: exact in one process; across processes a total may lag by
the batches other processes have not yet written (at most a few calls).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from shuzheng.audit import services as audit
from shuzheng.sharing.models import Meter

log = logging.getLogger(__name__)
MAX_BATCH = 500
WAIT_S = 30


@dataclass
class Use:
    """What a call adds to its grant's meter for the day."""

    grant_id: object
    system: str
    consumer: str
    provider: str
    resource: str
    rows: int = 0
    bytes: int = 0
    error: bool = False


@dataclass
class _Pending:
    entry: audit.Entry
    use: Use | None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Recorder:
    def __init__(self):
        self._lock = threading.Condition()
        self._queue: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._totals: dict[tuple, tuple[int, int]] = {}

    # ---- calls ----

    def record(self, entry: audit.Entry, use: Use | None = None) -> None:
        """Returns once the record is committed; raises if it could not be."""
        if connection.in_atomic_block:
            self._write([_Pending(entry, use)])
            return
        pending = _Pending(entry, use)
        with self._lock:
            self._queue.append(pending)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gateway-recorder", daemon=True)
                self._thread.start()
            self._lock.notify()
        if not pending.done.wait(WAIT_S):
            raise RuntimeError("the audit writer did not answer")
        if pending.error is not None:
            raise pending.error

    def today(self, grant_id) -> tuple[int, int]:
        """(calls, rows) of a grant today, for its quotas."""
        key = (str(grant_id), timezone.localdate())
        totals = self._totals.get(key)
        if totals is None:
            row = Meter.objects.filter(grant_id=grant_id, day=key[1]).values_list("calls", "rows").first()
            totals = self._totals[key] = tuple(row) if row else (0, 0)
        return totals

    # ---- the writer ----

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue:
                        self._lock.wait()
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    self._write(batch)
                except BaseException as exc:  # the calls fail; the writer goes on with the next batch
                    log.exception("writing %s gateway audit records failed", len(batch))
                    for p in batch:
                        p.error = exc
                    connections["default"].close()
                finally:
                    for p in batch:
                        p.done.set()
        finally:
            connections.close_all()

    def _write(self, batch: list[_Pending]) -> None:
        day = timezone.localdate()
        increments: dict[object, list] = defaultdict(lambda: [None, 0, 0, 0, 0])
        for p in batch:
            if p.use is not None:
                inc = increments[p.use.grant_id]
                inc[0] = p.use
                inc[1] += 1
                inc[2] += p.use.rows
                inc[3] += p.use.bytes
                inc[4] += int(p.use.error)
        with transaction.atomic():
            audit.record_many([p.entry for p in batch])
            for grant_id, (use, calls, rows, size, errors) in increments.items():
                updated = Meter.objects.filter(day=day, grant_id=grant_id).update(
                    calls=F("calls") + calls, rows=F("rows") + rows, bytes=F("bytes") + size,
                    errors=F("errors") + errors)
                if not updated:
                    Meter.objects.create(day=day, grant_id=grant_id, system=use.system, consumer=use.consumer,
                                         provider=use.provider, resource=use.resource, calls=calls, rows=rows,
                                         bytes=size, errors=errors)
            if increments:
                fresh = Meter.objects.filter(day=day, grant_id__in=list(increments)).values_list("grant_id", "calls",
                                                                                                "rows")
                totals = {(str(g), day): (c, r) for g, c, r in fresh}
        if increments:
            if len(self._totals) > 10_000:
                self._totals = {k: v for k, v in self._totals.items() if k[1] == day}
            self._totals.update(totals)


recorder = Recorder()

