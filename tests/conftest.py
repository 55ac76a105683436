"""Shared fixtures. The Dingzhou demo is loaded once per test database; each test runs in a transaction
rolled back afterwards, so tests see the demo and never each other's changes.

`platform` starts the real thing — `shuzheng migrate`, `shuzheng demo load`, `shuzheng serve` — in a
subprocess with its own SHUZHENG_HOME (and, on PostgreSQL, its own database), for tests over real HTTP
and the browser tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

os.environ.setdefault("SHUZHENG_HOME", tempfile.mkdtemp(prefix="shuzheng-test-"))

import pyotp  # noqa: E402
import pytest  # noqa: E402

DEMO_PASSWORD = "Dingzhou#2026"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from shuzheng.demo.loader import load_demo

    with django_db_blocker.unblock():
        load_demo()
    yield
    from shuzheng.warehouse import lake

    lake.close()  # the Iceberg catalog's connections, so that the test database can be dropped


@pytest.fixture
def demo(db):
    """Handy handles on the demo: organizations by key and the Actor of a demo account."""
    from shuzheng.demo.loader import demo_credit_code
    from shuzheng.org.models import Organization, User
    from shuzheng.org.services import Actor

    class Demo:
        password = DEMO_PASSWORD

        def org(self, key: str, region: str = "130682") -> Organization:
            return Organization.objects.get(code=demo_credit_code(key, region))

        def user(self, username: str) -> User:
            return User.objects.select_related("organization").get(username=username)

        def actor(self, username: str, ip: str = "127.0.0.1") -> Actor:
            return Actor(user=self.user(username), ip=ip)

        def cli(self) -> Actor:
            return Actor.cli()

    return Demo()


@pytest.fixture
def english():
    """For tests that read English messages: outside a request Django speaks the default zh-hans."""
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture
def jobs_now(settings):
    """Huey runs jobs at once (in the calling thread), and events go in process unless a test says otherwise."""
    from huey.contrib.djhuey import HUEY

    settings.EVENTS = "inprocess"
    was = HUEY.immediate
    HUEY.immediate = True
    yield
    HUEY.immediate = was


def totp_now(secret: str, offset_steps: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + offset_steps * totp.interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
        s.bind(("::" if socket.has_ipv6 else "", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


class Platform:
    def __init__(self, home: Path, env: dict, port: int, proc: subprocess.Popen):
        self.home, self.env, self.port, self.proc = home, env, port, proc
        self.url = f"http://127.0.0.1:{port}"
        self.url6 = f"http://[::1]:{port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shuzheng", *args], env=self.env, capture_output=True,
                              text=True, check=check, timeout=300)


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("platform-home")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env["SHUZHENG_HOME"] = str(home)
    pg_db = None
    if os.environ.get("DATABASE_URL"):
        import psycopg

        pg_db = f"shuzheng_live_{uuid.uuid4().hex[:8]}"
        base = os.environ["DATABASE_URL"]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_db}"')
        env["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + pg_db
    for step in (["migrate", "-v", "0"], ["demo", "load", "-q"]):
        subprocess.run([sys.executable, "-m", "shuzheng", *step], env=env, check=True, timeout=300,
                       capture_output=True)
    port = free_port()
    log = open(home / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "shuzheng", "serve", "--port", str(port), "--workers", "1",
                             "--threads", "8"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/login/")
        yield Platform(home, env, port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if pg_db:
            import psycopg

            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
        shutil.rmtree(home, ignore_errors=True)
