"""Gateway benchmark: verification calls over HTTP through the full policy path, against the same lookup
through a bare endpoint in the same server, plus a masked 100-row page, the SQL rewrite and masked against
unmasked export, on a 1,000,000-row population resource.

    .venv/bin/python bench/gateway.py [--rows 1000000] [--seconds 10] [--clients 8] [--keep DIR]

Set-up (not timed): a fresh SHUZHENG_HOME with the demo catalog and the household register
(定州市户籍人口基本信息, 14 items) loaded with `rows` generated people (SHUZHENG_DEMO_PEOPLE); an application
system of the civil-affairs bureau gets its grant through the real workflow (apply, provider approval, platform
office approval; default masks: ID number, name, addresses masked) and an API key. `shuzheng serve` runs with
SHUZHENG_BENCH_BARE=1, which adds /api/v1/share/_bare/<code>/verify: the same serving-store lookup with no
key, grant, quota, mask or audit record. One warm-up call builds the serving store.

Measured:
  - verify_rps / verify_p95_ms: `clients` processes, each one keep-alive connection, POSTing
    /api/v1/share/<code>/verify with {"candidates": {ID number, name}} of real people in a loop for `seconds`.
    Every call is authenticated, checked against its grant, audited (batched, committed before the answer)
    and metered. bare_rps / bare_p95_ms: the same against the bare endpoint. The two alternate twice
    (bare, policy, bare, policy) and each figure is the mean of its two runs, so drift on the machine hits
    both. policy_ratio = verify_rps / bare_rps. The clients run on the same 2 cores as the server.
  - page100_p95_ms: 200 sequential GET /records?limit=100 (masked), p95.
  - rewrite_ms: sqlgate.rewrite of a two-table join with five columns and a WHERE, mean over 2,000.
  - export: the grant's masked SELECT and the same SELECT with no masks, over all rows, written by
    sharing.exports.write_export as CSV (watermark ordering included in both); export_ratio = masked rows/s
    over unmasked rows/s.

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = "101001000/000001"
URL_CODE = CODE.replace("/", "-")
TARGETS = {"policy_ratio": 0.67, "verify_rps": 2000, "rewrite_ms": 2.0, "export_ratio": 0.5}


def log(msg: str) -> None:
    print(f"[bench/gateway] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETUP = r"""
import datetime as dt, json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'
django.setup()
from django.utils import timezone
from shuzheng.demo.loader import demo_credit_code
from shuzheng.org import services as org
from shuzheng.org.models import User
from shuzheng.org.services import Actor
from shuzheng.sharing import services
officer = Actor(user=User.objects.get(username='officer-civil-affairs'))
org.create_system(officer, {'code': 'bench-verify', 'name': 'bench', 'organization': demo_credit_code('civil-affairs', '130682')})
_k, key = org.create_api_key(officer, 'bench-verify')
app = services.apply(officer, {'resource': %(code)r, 'system': 'bench-verify', 'purpose': 'benchmark', 'legal_basis': 'benchmark',
    'items': ['公民身份号码', '姓名', '性别', '出生日期', '户籍地址', '现住址', '民族'], 'method': 'interface',
    'period_end': (timezone.localdate() + dt.timedelta(days=30)).isoformat()})
services.decide(Actor(user=User.objects.get(username='officer-public-security')), app.number, {'decision': 'approve'})
services.decide(Actor(user=User.objects.get(username='reviewer')), app.number, {'decision': 'approve'})
print(json.dumps({'key': key}))
"""


def prepare(home: Path, rows: int) -> tuple[dict, str]:
    env = {**os.environ, "SHUZHENG_HOME": str(home), "SHUZHENG_DEMO_PEOPLE": str(rows)}
    env.pop("DATABASE_URL", None)
    for step in (["migrate", "-v", "0"], ["demo", "load", "-q"]):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "shuzheng", *step], env=env, check=True, capture_output=True)
        log(f"{' '.join(step)}: {time.perf_counter() - t0:.0f} s")
    out = subprocess.run([sys.executable, "-c", SETUP % {"code": CODE}], env=env, check=True, capture_output=True,
                         text=True).stdout
    return env, json.loads(out.strip().splitlines()[-1])["key"]


def candidates(env: dict, n: int = 20_000) -> list[dict]:
    script = ("import json, os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
              "from shuzheng.catalog.models import Resource\nfrom shuzheng.warehouse import lake\n"
              "from shuzheng.security import fieldcrypt\n"
              f"r = Resource.objects.get(code={CODE!r}); t = lake.open_table(r.mount_target); con = lake.duck()\n"
              "items = list(r.published.items.order_by('position'))\n"
              "lake.view(con, 'p', t, items, t.current_snapshot(), cipher=fieldcrypt.cipher_for(r, items))\n"
              f"rows = con.execute('SELECT \"公民身份号码\", \"姓名\" FROM p USING SAMPLE {n} ROWS').fetchall()\n"
              "print(json.dumps(rows, ensure_ascii=False))")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True).stdout
    return [{"公民身份号码": i, "姓名": n} for i, n in json.loads(out.strip().splitlines()[-1])]


# ---- the load generator: one process per client, one keep-alive connection each ----


def _client(port: int, path: str, key: str, bodies: list[bytes], seconds: float, start: float, queue) -> None:
    try:
        _calls(port, path, key, bodies, seconds, start, queue)
    except Exception as exc:  # a client that fails must still report, or the run would wait for it forever
        print(f"client failed: {exc!r}", file=sys.stderr)
        queue.put(([], 1))


def _calls(port: int, path: str, key: str, bodies: list[bytes], seconds: float, start: float, queue) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nConnection: keep-alive\r\n").encode()
    requests = [head + f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    latencies, errors, i = [], 0, 0
    buf = b""
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while True:
        t0 = time.perf_counter()
        if time.time() >= end:
            break
        sock.sendall(requests[i % len(requests)])
        i += 1
        # Read one response: headers, then Content-Length bytes.
        while b"\r\n\r\n" not in buf:
            buf += _recv(sock)
        header, _, buf = buf.partition(b"\r\n\r\n")
        length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buf) < length:
            buf += _recv(sock)
        body, buf = buf[:length], buf[length:]
        if not header.startswith(b"HTTP/1.1 200"):
            errors += 1
            if errors == 1:
                print(header[:200], body[:300], file=sys.stderr)
        latencies.append(time.perf_counter() - t0)
    sock.close()
    queue.put((latencies, errors))


def _recv(sock) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


def load(port: int, path: str, key: str, people: list[dict], clients: int, seconds: float) -> dict:
    queue = multiprocessing.Queue()
    share = len(people) // clients
    start = time.time() + 1.0
    procs = []
    for c in range(clients):
        bodies = [json.dumps({"candidates": p}, ensure_ascii=False).encode() for p in people[c * share:(c + 1) * share]]
        proc = multiprocessing.Process(target=_client, args=(port, path, key, bodies, seconds, start, queue))
        proc.start()
        procs.append(proc)
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(x for r, _e in results for x in r)
    errors = sum(e for _r, e in results)
    return {"rps": len(latencies) / seconds, "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
            "calls": len(latencies), "errors": errors}


def page100(port: int, key: str, n: int = 200) -> float:
    import http.client

    con = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        con.request("GET", f"/api/v1/share/{URL_CODE}/records?limit=100", headers={"Authorization": f"Bearer {key}"})
        response = con.getresponse()
        body = response.read()
        times.append(time.perf_counter() - t0)
        assert response.status == 200, body[:300]
    con.close()
    times.sort()
    return times[int(n * 0.95)] * 1000


IN_PROCESS = r"""
import json, os, time, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'
django.setup()
from shuzheng.sharing import exports, filters, gateway, masks, sqlgate
from shuzheng.sharing.models import Grant
from shuzheng.warehouse import lake

# The SQL rewrite: a two-table join with five columns and a WHERE.
scope = lambda name: sqlgate.TableScope(name=name, source_sql='"v_' + name.split('.')[1] + '"',
    columns={"公民身份号码": "substr(\"公民身份号码\", 1, 6) || '********'", "姓名": "\"姓名\"", "性别": "\"性别\"",
             "出生日期": "\"出生日期\"", "户籍地址": "\"户籍地址\""}, row_filter="starts_with(\"户籍地址\", '河北省')")
query = ('SELECT p."公民身份号码", p."姓名", p."性别", e."出生日期", e."户籍地址" FROM public_security.household_register p '
         'JOIN civil_affairs.elderly_allowance e ON p."公民身份号码" = e."公民身份号码" WHERE p."性别" = \'2\' AND e."出生日期" < DATE \'1950-01-01\'')
for _ in range(200):
    sqlgate.rewrite(query, scope)
t0 = time.perf_counter()
for _ in range(2000):
    sqlgate.rewrite(query, scope)
rewrite_ms = (time.perf_counter() - t0) / 2000 * 1000

# Export: the grant's masked SELECT against the same SELECT unmasked, all rows, CSV, watermark ordering in both.
grant = Grant.objects.get(system__code='bench-verify', revoked_at__isnull=True)
policy = gateway._policy(grant.id, (str(grant.updated_at), grant.resource.published_id))
from shuzheng.warehouse.models import Table
snapshot = Table.objects.get(resource=grant.resource).current_snapshot_id
out = {}
for label in ('unmasked', 'masked', 'unmasked2', 'masked2'):
    con = lake.duck()
    gateway._create_view(con, 'src', policy, snapshot)
    masks.register(con)
    if label.startswith('masked'):
        cols = ", ".join(masks.sql(policy.specs[n], filters.quote_ident(n), policy.types[n], policy.system) + " AS " + filters.quote_ident(n) for n in policy.items)
    else:
        cols = ", ".join(filters.quote_ident(n) for n in policy.items)
    path = lake.root().parent / f'bench-{label}.csv'
    t0 = time.perf_counter()
    written = exports.write_export(con, f"SELECT {cols} FROM src", 'csv', path, b'0123456789abcdef', {})
    out[label] = (written.rows, time.perf_counter() - t0)
    path.unlink()
    con.close()
rows = out['masked'][0]
masked = 2 * rows / (out['masked'][1] + out['masked2'][1])
unmasked = 2 * rows / (out['unmasked'][1] + out['unmasked2'][1])
print(json.dumps({'rewrite_ms': rewrite_ms, 'export_rows': rows, 'export_masked_rows_per_s': masked,
                  'export_unmasked_rows_per_s': unmasked}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per server worker")
    parser.add_argument("--keep", help="keep the platform home in this folder")
    args = parser.parse_args()

    home = Path(args.keep or tempfile.mkdtemp(prefix="shuzheng-bench-gateway-"))
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env, key = prepare(home, args.rows)
    log(f"platform home ready in {time.perf_counter() - t0:.0f} s: {home}")
    people = candidates(env)
    port = free_port()
    server_env = {**env, "SHUZHENG_BENCH_BARE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "shuzheng", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", str(args.workers), "--threads", str(args.threads), "--no-worker"],
                              env=server_env, stdout=subprocess.DEVNULL, stderr=open(home / "serve.log", "w"))
    try:
        import http.client
        import urllib.request

        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        warm = time.perf_counter()
        for path in (f"/api/v1/share/{URL_CODE}/verify", f"/api/v1/share/_bare/{URL_CODE}/verify"):
            for _ in range(args.workers * args.threads * 2):  # every worker process opens the store once
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                con.request("POST", path, json.dumps({"candidates": people[0]}, ensure_ascii=False).encode(),
                            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                reply = con.getresponse()
                body = reply.read()
                assert reply.status == 200 and json.loads(body)["match"], body[:300]
                con.close()
        log(f"serving store built and warm in {time.perf_counter() - warm:.1f} s")
        runs = {"bare": [], "policy": []}
        for name in ("bare", "policy", "bare", "policy"):
            path = f"/api/v1/share/{URL_CODE}/verify" if name == "policy" else f"/api/v1/share/_bare/{URL_CODE}/verify"
            result = load(port, path, key, people, args.clients, args.seconds)
            log(f"{name}: {result['rps']:.0f} calls/s, p95 {result['p95_ms']:.2f} ms, errors {result['errors']}")
            runs[name].append(result)
        page_p95 = page100(port, key)
        log(f"100-row masked page p95: {page_p95:.1f} ms")
    finally:
        server.terminate()
        server.wait(30)
    inproc = subprocess.run([sys.executable, "-c", IN_PROCESS], env=env, check=True, capture_output=True, text=True)
    extra = json.loads(inproc.stdout.strip().splitlines()[-1])
    verify_rps = statistics.mean(r["rps"] for r in runs["policy"])
    bare_rps = statistics.mean(r["rps"] for r in runs["bare"])
    result = {
        "rows": args.rows, "clients": args.clients, "seconds": args.seconds,
        "server": f"gunicorn gthread {args.workers}x{args.threads}", "cpus": os.cpu_count(),
        "verify_rps": round(verify_rps), "verify_p95_ms": round(statistics.mean(r["p95_ms"] for r in runs["policy"]), 2),
        "bare_rps": round(bare_rps), "bare_p95_ms": round(statistics.mean(r["p95_ms"] for r in runs["bare"]), 2),
        "policy_ratio": round(verify_rps / bare_rps, 3),
        "errors": sum(r["errors"] for rs in runs.values() for r in rs),
        "page100_p95_ms": round(page_p95, 2), "rewrite_ms": round(extra["rewrite_ms"], 3),
        "export_rows": extra["export_rows"],
        "export_masked_rows_per_s": round(extra["export_masked_rows_per_s"]),
        "export_unmasked_rows_per_s": round(extra["export_unmasked_rows_per_s"]),
        "export_ratio": round(extra["export_masked_rows_per_s"] / extra["export_unmasked_rows_per_s"], 3),
    }
    result["targets_met"] = {
        "policy_ratio": result["policy_ratio"] >= TARGETS["policy_ratio"],
        "verify_rps": result["verify_rps"] >= TARGETS["verify_rps"],
        "rewrite_ms": result["rewrite_ms"] < TARGETS["rewrite_ms"],
        "export_ratio": result["export_ratio"] >= TARGETS["export_ratio"]}
    print(json.dumps(result, ensure_ascii=False))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
