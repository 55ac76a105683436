"""The gateway's audit and metering: every call is journaled before it is answered, and the journal is
carried into the audit trail and the meters in batches.

Why a journal: an audit record is a database transaction (the SM3 chain's head lock, five index updates, a
commit) costing a few hundred microseconds, several times the cost of the call itself, and calls answered at
thousands a second cannot each wait for one. So a call appends one line — who, what, which items and filters,
how many rows, the outcome — to its process's journal file (one `write` on an O_APPEND descriptor, a few
microseconds) and is answered. Once the line is written it survives the process being killed: it is in the
operating system's cache, the same durability SQLite's WAL with synchronous=NORMAL gives the records written
directly. A shipper thread in each process, and the job worker every minute, take every journal file in turn
(a file lock makes it one shipper per file) and append its new lines to the audit trail
(audit.record_many: one head lock, one multi-row insert) with the meter increments, moving the file's
JournalOffset in the same transaction: each call is recorded exactly once, in the order it was journaled.
Records reach the audit trail within a fraction of a second; files of processes that are gone are shipped by
the others and then removed.

Inside a transaction (tests, the CLI) the record is written to the audit trail directly, in that transaction.

Quotas read the day's totals from the meters plus this process's journaled calls not yet shipped: exact in
one process; across processes a total may lag by the other processes' last fraction of a second of calls.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from shuzheng.audit import services as audit
from shuzheng.sharing import serving
from shuzheng.sharing.models import JournalOffset, Meter

log = logging.getLogger(__name__)
SHIP_INTERVAL_S = 0.1
SHIP_MAX_BYTES = 4 << 20


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


def folder() -> Path:
    """The journal files of this platform's database (one folder per database, should a home ever serve
    several, as the test runs' parallel workers do)."""
    path = Path(settings.HOME) / "journal" / serving.database_tag()
    path.mkdir(parents=True, exist_ok=True)
    return path


class Recorder:
    def __init__(self, ship_in_background: bool = True):
        self._background = ship_in_background
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._name = ""
        self._pid = 0
        self._shipper: threading.Thread | None = None
        self._totals: dict[tuple, tuple[int, int]] = {}  # (grant, day) -> shipped (calls, rows)
        self._unshipped: dict[tuple, list[int]] = {}  # (grant, day) -> this process's journaled, not shipped

    # ---- calls ----

    def record(self, entry: audit.Entry, use: Use | None = None) -> None:
        """Journals the call (or, inside a transaction, records it there); raises if it cannot."""
        if connection.in_atomic_block:
            self._write([(entry, use)])
        else:
            self.journal(entry, use)

    def journal(self, entry: audit.Entry, use: Use | None = None) -> None:
        """Appends the call to this process's journal file."""
        now = time.time_ns() // 1000
        line = orjson.dumps({
            "e": [entry.actor, entry.actor_org, entry.ip, entry.action, entry.object_type, entry.object_id,
                  entry.summary, entry.ts or now],
            "u": None if use is None else [str(use.grant_id), use.system, use.consumer, use.provider, use.resource,
                                           use.rows, use.bytes, use.error]}, default=str) + b"\n"
        with self._lock:
            fd = self._journal_fd()
            os.write(fd, line)
            if use is not None:
                counts = self._unshipped.setdefault((str(use.grant_id), timezone.localdate()), [0, 0])
                counts[0] += 1
                counts[1] += use.rows

    def today(self, grant_id) -> tuple[int, int]:
        """(calls, rows) of a grant today, for its quotas."""
        key = (str(grant_id), timezone.localdate())
        totals = self._totals.get(key)
        if totals is None:
            row = Meter.objects.filter(grant_id=grant_id, day=key[1]).values_list("calls", "rows").first()
            totals = self._totals[key] = tuple(row) if row else (0, 0)
        calls, rows = self._unshipped.get(key, (0, 0))
        return totals[0] + calls, totals[1] + rows

    def _journal_fd(self) -> int:
        """This process's journal file (a new one after a fork), and its shipper."""
        if self._fd is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._name = f"{self._pid}-{secrets.token_hex(4)}.jsonl"
            self._fd = os.open(folder() / self._name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._unshipped = {}
            if self._background:
                self._shipper = threading.Thread(target=self._ship_forever, name="gateway-journal", daemon=True)
                self._shipper.start()
        return self._fd

    # ---- shipping ----

    def _ship_forever(self) -> None:
        while True:
            time.sleep(SHIP_INTERVAL_S)
            try:
                self.ship()
            except Exception:  # the lines stay in the journal; the next round tries again
                log.exception("shipping the gateway journal failed")
                connections["default"].close()

    def ship(self) -> int:
        """Carries every journal file's new lines into the audit trail and the meters; returns how many."""
        shipped = 0
        for path in sorted(folder().glob("*.jsonl")):
            try:
                shipped += self._ship_file(path)
            except FileNotFoundError:
                continue  # removed by another shipper
        return shipped

    def _ship_file(self, path: Path) -> int:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another shipper has it
            offset = JournalOffset.objects.filter(name=path.name).values_list("offset", flat=True).first() or 0
            f.seek(offset)
            data = f.read(SHIP_MAX_BYTES)
            end = data.rfind(b"\n") + 1  # a line still being written is left for the next round
            if end == 0:
                if self._orphan(path):
                    if data:  # its process died in the middle of a write: nothing was answered for that call
                        log.warning("discarding an incomplete last line of %s", path.name)
                    JournalOffset.objects.filter(name=path.name).delete()
                    path.unlink()
                return 0
            batch = []
            for line in data[:end].splitlines():
                item = orjson.loads(line)
                actor, org, ip, action, object_type, object_id, summary, ts = item["e"]
                use = item["u"]
                batch.append((audit.Entry(actor, org, ip, action, object_type, object_id, summary, ts),
                              None if use is None else Use(*use)))
            with transaction.atomic():
                self._write(batch)
                updated = JournalOffset.objects.filter(name=path.name).update(offset=offset + end)
                if not updated:
                    JournalOffset.objects.create(name=path.name, offset=offset + end)
        if path.name == self._name:
            with self._lock:  # these calls now count through the meters
                for _entry, use in batch:
                    if use is not None:
                        counts = self._unshipped.get((str(use.grant_id), timezone.localdate()))
                        if counts:
                            counts[0] -= 1
                            counts[1] -= use.rows
        return len(batch)

    def _orphan(self, path: Path) -> bool:
        """The file of a process that is gone (nobody will write to it again)."""
        if path.name == self._name:
            return False
        try:
            os.kill(int(path.name.split("-")[0]), 0)
        except (ValueError, ProcessLookupError):
            return True
        except PermissionError:
            return False
        return False

    # ---- the audit trail ----

    def _write(self, batch: list[tuple[audit.Entry, Use | None]]) -> None:
        """Appends records and their meter increments in one transaction (the caller's, if it has one)."""
        day = timezone.localdate()
        increments: dict[str, list] = {}
        for _entry, use in batch:
            if use is not None:
                inc = increments.setdefault(str(use.grant_id), [use, 0, 0, 0, 0])
                inc[1] += 1
                inc[2] += use.rows
                inc[3] += use.bytes
                inc[4] += int(use.error)
        grant_field = Meter._meta.get_field("grant").target_field
        totals = {}
        with transaction.atomic(), connection.cursor() as cur:
            audit.record_many([entry for entry, _use in batch])
            # One statement per grant that adds to (or starts) the day's meter and returns the totals.
            for grant_id, (use, calls, rows, size, errors) in increments.items():
                cur.execute(UPSERT, [day, grant_field.get_db_prep_value(grant_id, connection), use.system,
                                     use.consumer, use.provider, use.resource, calls, rows, size, errors])
                totals[(grant_id, day)] = tuple(cur.fetchone())
        if totals:
            if len(self._totals) > 10_000:
                self._totals = {k: v for k, v in self._totals.items() if k[1] == day}
            self._totals.update(totals)


UPSERT = """
INSERT INTO sharing_meter (day, grant_id, system, consumer, provider, resource, calls, rows, bytes, errors)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (day, grant_id) DO UPDATE SET calls = sharing_meter.calls + excluded.calls,
    rows = sharing_meter.rows + excluded.rows, bytes = sharing_meter.bytes + excluded.bytes,
    errors = sharing_meter.errors + excluded.errors
RETURNING calls, rows
"""

recorder = Recorder()
