"""The real server (`shuzheng serve`: gunicorn plus the job worker) over IPv4 and IPv6, and the CLI."""

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest


def fetch(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()




def test_served_over_ipv6_loopback_and_ipv4(platform):
    if not socket.has_ipv6:
        pytest.skip("this host has no IPv6")
    for base in (platform.url6, platform.url):
        status, headers, body = fetch(base + "/api/v1/me")
        assert status == 401 and headers["Content-Type"].startswith("application/problem+json")
        status, headers, body = fetch(base + "/login/")
        assert status == 200 and "Content-Security-Policy" in headers
        status, headers, _ = fetch(base + "/static/shuzheng/site.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")


def test_cli_key_works_over_ipv6(platform):
    subprocess.run(
        [sys.executable, "-c",
         "import os, django; os.environ['DJANGO_SETTINGS_MODULE']='shuzheng.settings'; django.setup()\n"
         "from shuzheng.org import services\n"
         "from shuzheng.demo.loader import demo_credit_code\n"
         "services.create_system(services.Actor.cli(), {'code': 'dual-stack', 'name': '双栈检查系统',"
         " 'organization': demo_credit_code('civil-affairs', '130682')})\n"],
        env=platform.env, check=True, capture_output=True, timeout=120)
    issued = platform.cli("apikey", "create", "--system", "双栈检查系统", "--days", "7")
    key = issued.stdout.strip()
    assert key.startswith("sz_") and "only time" in issued.stderr
    status, _, body = fetch(platform.url6 + "/api/v1/me", {"Authorization": f"Bearer {key}"})
    assert status == 200 and json.loads(body)["system"] == "dual-stack"
    missing = platform.cli("apikey", "create", "--system", "no-such-system", check=False)
    assert missing.returncode == 2 and "No application system" in missing.stderr


def test_demo_load_is_idempotent(platform):
    first = json.loads(platform.cli("demo", "load", "--json", "-q").stdout)
    verify_before = json.loads(platform.cli("audit", "verify", "--json").stdout)
    second = json.loads(platform.cli("demo", "load", "--json", "-q").stdout)
    verify_after = json.loads(platform.cli("audit", "verify", "--json").stdout)
    assert first == second
    assert verify_after["records"] == verify_before["records"]  # nothing changed, so nothing recorded
    assert first["organizations"] == 56 and first["regions"] >= 53
