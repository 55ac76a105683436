"""Key rotation without downtime, against a running `shuzheng serve` (the `platform` fixture): while client
threads verify people over real HTTP, `shuzheng keys rotate` re-encrypts the household register under a new
data key in another process. No call may fail, and every answer must stay right."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PEOPLE = "101001000/000001"

SETUP = r"""
import datetime, json, django
django.setup()
from shuzheng.catalog.models import Resource
from shuzheng.org import services as org
from shuzheng.org.models import User
from shuzheng.org.services import Actor
from shuzheng.security import fieldcrypt
from shuzheng.sharing import services
from shuzheng.warehouse import lake

def actor(name):
    return Actor(user=User.objects.get(username=name), ip="127.0.0.1")

officer = actor("officer-civil-affairs")
org.create_system(officer, {"code": "rotation-check", "name": "轮换核验系统", "organization": officer.user.organization.code})
_key, raw = org.create_api_key(officer, "rotation-check")
application = services.apply(officer, {
    "resource": "%(code)s", "system": "rotation-check", "purpose": "密钥轮换期间的核验", "legal_basis": "测试",
    "items": ["公民身份号码", "姓名"], "clear_items": [], "row_filter": [], "method": "interface",
    "period_end": (datetime.date.today() + datetime.timedelta(days=365)).isoformat()})
for decider in ("officer-public-security", "reviewer"):
    if application.state != "approved":
        application = services.decide(actor(decider), application.number, {"decision": "approve"})
resource = Resource.objects.select_related("published").get(code="%(code)s")
items = list(resource.published.items.order_by("position"))
table = lake.open_table(resource.mount_target)
con = lake.duck()
lake.view(con, "t", table, items, table.current_snapshot(), cipher=fieldcrypt.cipher_for(resource, items))
rows = con.execute('SELECT "公民身份号码", "姓名" FROM t LIMIT 50').fetchall()
print(json.dumps({"key": raw, "rows": rows, "encrypted": sorted(fieldcrypt.encrypted_items(items))}))
""" % {"code": PEOPLE}


def _verify(url: str, key: str, row) -> tuple[int, dict]:
    body = json.dumps({"candidates": {"公民身份号码": row[0], "姓名": row[1]}}).encode()
    request = urllib.request.Request(f"{url}/api/v1/share/{PEOPLE.replace('/', '-')}/verify", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")[:300]}


def test_rotation_under_concurrent_gateway_calls_fails_no_call(platform):
    env = dict(platform.env, DJANGO_SETTINGS_MODULE="shuzheng.settings")
    setup = subprocess.run([sys.executable, "-c", SETUP], env=env, capture_output=True, text=True, timeout=300)
    assert setup.returncode == 0, setup.stderr[-3000:]
    given = json.loads(setup.stdout.strip().splitlines()[-1])
    assert "公民身份号码" in given["encrypted"]
    key, rows = given["key"], given["rows"]
    status, first = _verify(platform.url, key, rows[0])
    assert status == 200 and first["match"] is True, first

    stop = threading.Event()
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            answer = _verify(platform.url, key, rows[i % len(rows)])
            with lock:
                answers.append(answer)
            i += 1
            # A breath between calls: unpaced, four threads kept both cores busy (~20,000 calls) and the
            # rotation they run alongside took three times as long; paced, a call still lands every few
            # milliseconds from the start of the rotation to after its end (~8,000 calls).
            stop.wait(0.005)

    threads = [threading.Thread(target=client, args=(n * 7,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        rotated = platform.cli("keys", "rotate", "--resource", PEOPLE)
        # Keep calling a moment after the commit, while the new snapshot's serving store is built: until
        # calls are answered from the new snapshot and a hundred more have been answered since the rotation
        # returned, 3 s at most (it was a fixed 3 s, ~1,600 calls after the rotation with the clients paced).
        new = json.loads(rotated.stdout.strip().splitlines()[-1])[0]["snapshot_id"]
        since, deadline = len(answers), time.monotonic() + 3
        while time.monotonic() < deadline and not (
                len(answers) >= since + 100 and any(a[1].get("snapshot_id") == new for a in answers[since:])):
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    result = json.loads(rotated.stdout.strip().splitlines()[-1])[0]
    failed = [a for a in answers if a[0] != 200 or a[1].get("match") is not True]
    assert not failed, failed[:5]
    assert len(answers) > 20
    snapshots = {a[1]["snapshot_id"] for a in answers}
    status, last = _verify(platform.url, key, rows[1])
    assert status == 200 and last["match"] is True
    # Calls answered from the old snapshot during the rewrite, from the new one after.
    assert result["snapshot_id"] in snapshots | {last["snapshot_id"]}
    listed = json.loads(platform.cli("keys", "list", "--json").stdout)
    states = {k["key"]: k["state"] for k in listed if k["resource"] == PEOPLE}
    assert states[result["key"]] == "active" and "retiring" in states.values()
    assert platform.cli("audit", "verify", check=False).returncode == 0
