"""Cryptography benchmark: gateway verification over an encrypted ID-number item (blind index) against the same
over a clear one, SM4-GCM throughput, SM2 signatures.

    .venv/bin/python bench/crypto.py [--rows 100000] [--seconds 5] [--keep DIR]

Set-up (not timed): a fresh SHUZHENG_HOME with the demo catalog and the household register loaded with `rows`
generated people; its 公民身份号码 and 姓名 are 重要 personal items, so they are sealed (SM4-GCM tokens beside
HMAC-SM3 blind indexes). A twin resource with the same items graded 一般 (stored in clear) gets the same CSV.
One application system gets a grant on each through the real workflow, and one warm-up call builds each
serving store.

Measured:
  - blind_index_ratio: gateway.verify (the full policy path in process: key, grant, store lookup, audit
    journal, metering; no HTTP) with {ID number, name} of real people, on the encrypted resource, over the same
    on the clear twin; calls/s of each alternate three times for `seconds` and each figure is the mean of its
    runs. What differs is the blind index: two HMAC-SM3 computations a call (the key item and the compared
    name) and the lookup on the index column.
  - sm4_gcm_mb_s: sealing 64 MiB in 1 MiB messages (core.crypto.sm4_gcm_seal, `cryptography`'s SM4-GCM);
    sm4_gcm_values_per_s: sealing 18-byte ID numbers one by one (gmssl-pyx), as a load does.
  - sm2_sign_per_s / sm2_verify_per_s: gmssl-pyx SM2 signatures (with the default signer id) over 32-byte
    digests, as the audit head is signed.

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CODE = "101001000/000001"
TARGETS = {"blind_index_ratio": 0.8}


def log(msg: str) -> None:
    print(f"[bench/crypto] {msg}", file=sys.stderr, flush=True)


def primitives(seconds: float) -> dict:
    import gmssl_pyx

    from shuzheng.core.crypto import sm4_gcm_seal

    key = os.urandom(16)
    message = os.urandom(1 << 20)
    t0 = time.perf_counter()
    for _ in range(64):
        sm4_gcm_seal(key, message)
    mb_s = 64 / (time.perf_counter() - t0)
    value, n = b"130682199001011234", 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        sm4_gcm_seal(key, value)
    values_s = n / (time.perf_counter() - t0)
    public, private = gmssl_pyx.sm2_key_generate()
    digest = os.urandom(32)
    signs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        signature = gmssl_pyx.sm2_sign(private, public, digest)
        signs += 1
    sign_s = signs / (time.perf_counter() - t0)
    verifies, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        assert gmssl_pyx.sm2_verify(public, digest, signature)
        verifies += 1
    verify_s = verifies / (time.perf_counter() - t0)
    return {"sm4_gcm_mb_s": round(mb_s, 1), "sm4_gcm_values_per_s": round(values_s),
            "sm2_sign_per_s": round(sign_s), "sm2_verify_per_s": round(verify_s)}


def prepare() -> dict:
    """The twin resource, both grants and keys, and real people to verify."""
    import datetime as dt

    from django.utils import timezone

    from shuzheng.catalog import services as catalog
    from shuzheng.catalog.models import Resource
    from shuzheng.ingest import services as ingest
    from shuzheng.org import services as org
    from shuzheng.org.models import User
    from shuzheng.org.services import Actor
    from shuzheng.security import fieldcrypt
    from shuzheng.sharing import services
    from shuzheng.warehouse import lake

    def actor(name):
        return Actor(user=User.objects.get(username=name), ip="127.0.0.1")

    provider, reviewer, applicant = actor("officer-public-security"), actor("reviewer"), actor("officer-civil-affairs")
    register = Resource.objects.select_related("published").get(code=CODE)
    items = list(register.published.items.order_by("position"))
    assert {"公民身份号码", "姓名"} <= fieldcrypt.encrypted_items(items)
    table = lake.open_table(register.mount_target)
    con = lake.duck()
    lake.view(con, "p", table, items, table.current_snapshot(), cipher=fieldcrypt.cipher_for(register, items))
    csv_path = Path(tempfile.mkdtemp()) / "people.csv"
    con.execute(f"COPY p TO '{csv_path}' (HEADER)")
    people = con.execute('SELECT "公民身份号码", "姓名" FROM p USING SAMPLE 20000 ROWS').fetchall()
    con.close()

    version = register.published
    twin = catalog.create_resource(provider, {
        "category": register.category.code, "provider": register.provider.code, "name": "户籍人口（明文对照）",
        "summary": "bench/crypto.py: the household register stored in clear, for comparison.", "format": "database",
        "sharing_type": "conditional", "sharing_conditions": "bench", "sharing_methods": ["interface"],
        "open_type": "closed",
        "update_cycle": "daily", "level": "general",
        "items": [{"name": i.name, "data_type": i.data_type, "length": i.length, "nullable": i.nullable,
                   "is_key": i.is_key, "level": "general", "subject": "other"} for i in items]})
    catalog.submit(provider, twin.code)
    catalog.review(reviewer, twin.code, "approve", "bench")
    catalog.publish(reviewer, twin.code)
    catalog.mount(provider, twin.code, "table", f"public_security.bench_clear_{os.getpid()}")
    twin = Resource.objects.select_related("published").get(pk=twin.pk)
    assert not fieldcrypt.encrypted_items(twin.published.items.all())
    load = ingest.ingest_file(provider, twin.code, csv_path)
    assert load.state == "committed", load.error
    del version

    org.create_system(applicant, {"code": "bench-crypto", "name": "bench", "organization": applicant.user.organization.code})
    _k, key = org.create_api_key(applicant, "bench-crypto")
    for code in (CODE, twin.code):
        application = services.apply(applicant, {
            "resource": code, "system": "bench-crypto", "purpose": "benchmark", "legal_basis": "benchmark",
            "items": ["公民身份号码", "姓名"], "method": "interface",
            "period_end": (timezone.localdate() + dt.timedelta(days=30)).isoformat()})
        for decider in (provider, reviewer):
            if application.state != "approved":
                application = services.decide(decider, application.number, {"decision": "approve"})
    return {"key": key, "encrypted": CODE, "clear": twin.code, "people": people}


def calls_per_s(key: str, code: str, people: list, seconds: float) -> float:
    from shuzheng.sharing import gateway

    n, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ident, name = people[i % len(people)]
        answer = gateway.verify(key, "127.0.0.1", code, {"candidates": {"公民身份号码": ident, "姓名": name}})
        assert answer["match"], answer
        n, i = n + 1, i + 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--keep", help="use (and keep) this SHUZHENG_HOME instead of a temporary one")
    args = parser.parse_args()
    home = Path(args.keep or tempfile.mkdtemp(prefix="bench-crypto-"))
    os.environ.update({"SHUZHENG_HOME": str(home), "SHUZHENG_DEMO_PEOPLE": str(args.rows),
                       "DJANGO_SETTINGS_MODULE": "shuzheng.settings"})
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import django

    django.setup()
    from django.core.management import call_command

    from shuzheng.demo.loader import load_demo

    try:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        load_demo()
        log(f"demo with {args.rows} people: {time.perf_counter() - t0:.0f} s")
        given = prepare()
        people = [tuple(p) for p in given["people"]]
        for code in (given["encrypted"], given["clear"]):
            calls_per_s(given["key"], code, people, 0.5)  # builds the serving store, warms the caches
        runs = {"encrypted": [], "clear": []}
        for _round in range(3):
            for which in ("clear", "encrypted"):
                rate = calls_per_s(given["key"], given[which], people, args.seconds)
                runs[which].append(rate)
                log(f"{which}: {rate:,.0f} calls/s")
        encrypted, clear = statistics.mean(runs["encrypted"]), statistics.mean(runs["clear"])
        result = {"rows": args.rows, "verify_encrypted_per_s": round(encrypted), "verify_clear_per_s": round(clear),
                  "blind_index_ratio": round(encrypted / clear, 3),
                  "runs": {k: [round(v) for v in vs] for k, vs in runs.items()}}
        result.update(primitives(min(args.seconds, 3)))
        result["targets"] = TARGETS
        result["met"] = {"blind_index_ratio": result["blind_index_ratio"] >= TARGETS["blind_index_ratio"]}
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
