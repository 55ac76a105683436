"""Audit-trail benchmark: audited writes per second (1 writer, then 8 concurrent writers), whether the
concurrent writers left one unbroken chain, and how fast `verify()` recomputes a 1,000,000-record chain.

    .venv/bin/python bench/audit.py [--seconds 5] [--records 1000000]

Runs on SQLite, and on PostgreSQL too when a server answers on 127.0.0.1:5432 (trust auth, user postgres);
the PostgreSQL figures carry a `_pg` suffix. Each database gets a fresh SHUZHENG_HOME (a temporary folder)
and, on PostgreSQL, a fresh database created and dropped here; `shuzheng migrate` builds the schema. The
measurement itself runs in a subprocess of this script with that environment (`--run`), so Django is set
up against exactly one database per process. Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITERS = 8


def log(msg: str) -> None:
    print(f"[bench/audit] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# The measurement: runs inside a subprocess whose environment names one database.
# ----------------------------------------------------------------------------------------------------


def write_loop(label: str, seconds: float, start: threading.Barrier | None, counts: list, slot: int,
               errors: list) -> None:
    """Audited transactions, each a real `transaction.atomic()` around `audit.record()`, until time is up."""
    from django.db import connection, transaction

    from shuzheng.audit import services as audit
    from shuzheng.org.services import Actor

    actor = Actor.cli()
    try:
        if start is not None:
            start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            with transaction.atomic():
                audit.record(actor, "bench.write", object_type="bench", object_id=str(counts[slot]),
                             summary={"writer": label, "i": counts[slot], "field": "full_name", "new": "张三"})
            counts[slot] += 1
    except Exception as exc:  # reported in the JSON: a failed write makes the run count as broken
        errors.append(f"{label}: {exc!r}")
    finally:
        connection.close()  # each thread has its own connection; close it before the thread ends


def measure_writes(seconds: float, writers: int, errors: list) -> tuple[int, float]:
    """(audited writes committed, writes per second) for `writers` concurrent writers."""
    counts = [0] * writers
    if writers == 1:
        t0 = time.perf_counter()
        write_loop("w0", seconds, None, counts, 0, errors)
        return counts[0], counts[0] / (time.perf_counter() - t0)
    barrier = threading.Barrier(writers + 1)
    threads = [threading.Thread(target=write_loop, args=(f"w{k}", seconds, barrier, counts, k, errors))
               for k in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(counts), sum(counts) / (time.perf_counter() - t0)


def bulk_append(total: int, batch: int = 50_000) -> int:
    """Extend the chain to `total` records fast: hashes computed here with the service's own canonical() and
    chain_hash(), rows inserted in batches (executemany on SQLite, COPY on PostgreSQL), then the head moved.
    Returns how many records were added."""
    from django.db import connection, transaction

    from shuzheng.audit import services as audit
    from shuzheng.audit.models import AuditHead

    head = AuditHead.objects.get(id=1)
    seq, prev = head.seq, head.hash
    added = 0
    ts = time.time_ns() // 1000 - total * 1000  # one record per millisecond, ending about now
    cols = ", ".join(audit.FIELDS)
    actor, org, ip, action, otype = "cli:bench", "", "127.0.0.1", "bench.bulk", "bench"
    while seq < total:
        rows = []
        for _ in range(min(batch, total - seq)):
            seq += 1
            summary = audit.summarize({"field": "full_name", "i": seq, "new": "张三", "old": "李四"})
            fields = (seq, ts + seq * 1000, actor, org, ip, action, otype, str(seq), summary)
            prev = audit.chain_hash(prev, audit.canonical(*fields))
            rows.append(fields + (prev,))
        with transaction.atomic(), connection.cursor() as cur:
            if connection.vendor == "postgresql":
                with cur.cursor.copy(f"COPY audit_record ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cur.executemany(f"INSERT INTO audit_record ({cols}) VALUES ({', '.join(['%s'] * 10)})", rows)
            AuditHead.objects.filter(id=1).update(seq=seq, hash=prev)
        added += len(rows)
        log(f"  bulk insert: {seq:,} / {total:,}")
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:  # what autovacuum would do soon after a load: hint bits, statistics
            cur.execute("VACUUM ANALYZE audit_record")
    return added


def run_one(seconds: float, records: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shuzheng.settings")
    import django

    django.setup()
    from django.db import connection

    from shuzheng.audit import services as audit

    vendor = connection.vendor
    errors: list[str] = []
    log(f"{vendor}: 1 writer for {seconds} s")
    n1, w1 = measure_writes(seconds, 1, errors)
    log(f"{vendor}: {w1:,.0f} writes/s; {WRITERS} concurrent writers for {seconds} s")
    n8, w8 = measure_writes(seconds, WRITERS, errors)
    log(f"{vendor}: {w8:,.0f} writes/s; verifying the chain they wrote")
    after_writes = audit.verify()
    # Intact means: the chain verifies, and it holds exactly one record per committed write, none failed.
    intact = after_writes.intact and after_writes.records == n1 + n8 and not errors
    log(f"{vendor}: chain intact: {intact} ({after_writes.records:,} records for {n1 + n8:,} writes, "
        f"{len(errors)} errors) {after_writes.reason} {errors[:1]}")
    log(f"{vendor}: extending the chain to {records:,} records")
    bulk_append(records)
    workers = audit._pool_size(records)
    log(f"{vendor}: verify() ({workers or 1} process{'es' if workers > 1 else ''})")
    result = audit.verify()
    log(f"{vendor}: {result.records:,} records in {result.seconds:.2f} s, intact {result.intact} {result.reason}")
    # Baseline in the same run: the same verify() confined to this one process (the machine's speed varies
    # from run to run; the ratio between the two does not, much).
    audit.VERIFY_PARALLEL_MIN, parallel_min = float("inf"), audit.VERIFY_PARALLEL_MIN
    try:
        one = audit.verify()
    finally:
        audit.VERIFY_PARALLEL_MIN = parallel_min
    log(f"{vendor}: in one process: {one.records:,} records in {one.seconds:.2f} s, intact {one.intact}")
    with connection.cursor() as cur:
        cur.execute("SELECT version()" if vendor == "postgresql" else "SELECT sqlite_version()")
        version = cur.fetchone()[0].split(" on ")[0]
    return {
        "database": vendor,
        "database_version": version,
        "writes_per_s_1": round(w1, 1),
        "writes_per_s_8": round(w8, 1),
        "chain_intact": intact,  # after the concurrent writers: one chain, never forked
        "write_errors": len(errors),
        "records_after_writes": after_writes.records,
        "records_verified": result.records,
        "verify_intact": result.intact and one.intact,
        "verify_seconds": round(result.seconds, 3),
        "verify_records_per_s": round(result.records / result.seconds),
        "verify_processes": workers or 1,
        "verify_records_per_s_1process": round(one.records / one.seconds),
    }


# ----------------------------------------------------------------------------------------------------
# The driver: one fresh environment per database, the figures merged into one line.
# ----------------------------------------------------------------------------------------------------


def run_in_subprocess(env: dict, seconds: float, records: int) -> dict:
    subprocess.run([sys.executable, "-m", "shuzheng", "migrate", "-v", "0"], env=env, check=True, timeout=300)
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--run", "--seconds", str(seconds), "--records", str(records)],
        env=env, check=True, timeout=1200, stdout=subprocess.PIPE, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception as exc:  # no driver, no server, no trust auth: skip PostgreSQL
        log(f"PostgreSQL not available ({exc.__class__.__name__}); SQLite only")
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each write phase")
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the chain verify() checks")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    # Internal: measure the database this process's environment names.
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.seconds, args.records)), flush=True)
        return

    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    base_env["SHUZHENG_LOG_LEVEL"] = "ERROR"
    out: dict = {"bench": "audit", "cpus": os.cpu_count(), "write_phase_seconds": args.seconds, "writers": WRITERS}

    home = tempfile.mkdtemp(prefix="shuzheng-bench-")
    try:
        log(f"SQLite in {home}")
        out.update(run_in_subprocess({**base_env, "SHUZHENG_HOME": home}, args.seconds, args.records))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    if not args.no_pg and postgres_available():
        import psycopg

        name = f"shuzheng_bench_{uuid.uuid4().hex[:8]}"
        home = tempfile.mkdtemp(prefix="shuzheng-bench-pg-")
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            log(f"PostgreSQL database {name}")
            env = {**base_env, "SHUZHENG_HOME": home, "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + name}
            pg = run_in_subprocess(env, args.seconds, args.records)
            out.update({f"{k}_pg": v for k, v in pg.items()})
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(home, ignore_errors=True)

    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
