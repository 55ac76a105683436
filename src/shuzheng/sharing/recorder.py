"""The gateway's audit and metering writer: every call is audited and metered before it is answered, in
batches (group commit).

One transaction per call would serialize the gateway on the audit head's lock and on a commit per call. Here a
call hands its record to a per-process writer thread and waits; the thread appends everything waiting as one
batch (audit.record_many: one head lock, one multi-row insert, one commit) together with the day's meter
increments, then releases the waiting calls. A call is answered only after its record is committed, so
nothing is lost and a failed write fails the call. The commit is most of a batch's cost, so the larger the
batch the cheaper each record: with N calls in flight a batch holds up to N records. (Letting the calls take
turns as the writer instead, with no thread, was measured slower: each call found the writer free and wrote
a batch of one.)

Inside a transaction (tests, the CLI) the record is written inline on the caller's connection.

Quotas read the day's totals from the meters: exact in one process; across processes a total may lag by
the batches other processes have not yet written (at most a few calls).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
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
    written: bool = False
    error: BaseException | None = None


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._writing = False  # a call is writing a batch now
        self._totals: dict[tuple, tuple[int, int]] = {}

    # ---- calls ----

    def record(self, entry: audit.Entry, use: Use | None = None) -> None:
        """Returns once the record is committed; raises if it could not be."""
        pending = _Pending(entry, use)
        if connection.in_atomic_block:
            self._write([pending])
            return
        with self._lock:
            self._queue.append(pending)
            lead = not self._writing
            self._writing = True
        while not pending.written:
            if lead:
                self._write_turn()
                break
            if not pending.done.wait(WAIT_S):
                raise RuntimeError("the audit writer did not answer")
            pending.done.clear()
            lead = not pending.written  # woken without being written: it is this call's turn to write
        if pending.error is not None:
            raise pending.error

    def _write_turn(self) -> None:
        """Writes one batch (which holds this call's record), wakes its calls, passes the turn on."""
        with _writers_queue():  # waiting here (other processes' writers) lets this process's batch grow
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                self._write(batch)
            except BaseException as exc:  # those calls fail; the next batch is tried afresh
                log.exception("writing %s gateway audit records failed", len(batch))
                for p in batch:
                    p.error = exc
        for p in batch:
            p.written = True
            p.done.set()
        with self._lock:
            if self._queue:
                self._queue[0].done.set()  # its turn: it writes the next batch
            else:
                self._writing = False

    def today(self, grant_id) -> tuple[int, int]:
        """(calls, rows) of a grant today, for its quotas."""
        key = (str(grant_id), timezone.localdate())
        totals = self._totals.get(key)
        if totals is None:
            row = Meter.objects.filter(grant_id=grant_id, day=key[1]).values_list("calls", "rows").first()
            totals = self._totals[key] = tuple(row) if row else (0, 0)
        return totals

    # ---- the writer ----

    def _write(self, batch: list[_Pending]) -> None:
        day = timezone.localdate()
        increments: dict[object, list] = {}
        for p in batch:
            if p.use is not None:
                inc = increments.setdefault(p.use.grant_id, [p.use, 0, 0, 0, 0])
                inc[1] += 1
                inc[2] += p.use.rows
                inc[3] += p.use.bytes
                inc[4] += int(p.use.error)
        grant_field = Meter._meta.get_field("grant").target_field
        with transaction.atomic(), connection.cursor() as cur:
            audit.record_many([p.entry for p in batch])
            # One statement per grant that adds to (or starts) the day's meter and returns the totals.
            totals = {}
            for grant_id, (use, calls, rows, size, errors) in increments.items():
                cur.execute(UPSERT, [day, grant_field.get_db_prep_value(grant_id, connection), use.system,
                                     use.consumer, use.provider, use.resource, calls, rows, size, errors])
                total_calls, total_rows = cur.fetchone()
                totals[(str(grant_id), day)] = (total_calls, total_rows)
        if totals:
            if len(self._totals) > 10_000:
                self._totals = {k: v for k, v in self._totals.items() if k[1] == day}
            self._totals.update(totals)

_lock_file = None


@contextlib.contextmanager
def _writers_queue():
    """On SQLite, the writers of all server processes queue on a file lock before they begin: SQLite's own
    busy handler would make a writer that finds the database locked sleep 1, 2, 5 … ms while its calls wait,
    where flock wakes the next writer the moment the lock is released (and its batch has grown meanwhile).
    PostgreSQL queues writers on the audit head's row lock without sleeping."""
    global _lock_file
    if connection.vendor != "sqlite":
        yield
        return
    if _lock_file is None:
        _lock_file = open(Path(settings.HOME) / "audit-writers.lock", "a")
    fcntl.flock(_lock_file, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(_lock_file, fcntl.LOCK_UN)


UPSERT = """
INSERT INTO sharing_meter (day, grant_id, system, consumer, provider, resource, calls, rows, bytes, errors)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (day, grant_id) DO UPDATE SET calls = sharing_meter.calls + excluded.calls,
    rows = sharing_meter.rows + excluded.rows, bytes = sharing_meter.bytes + excluded.bytes,
    errors = sharing_meter.errors + excluded.errors
RETURNING calls, rows
"""

recorder = Recorder()

