"""Shared fixtures. The Dingzhou demo is loaded once per test database; each test runs in a transaction
rolled back afterwards, so tests see the demo and never each other's changes.

`platform` starts the real thing — `shuzheng migrate`, `shuzheng demo load`, `shuzheng serve` — in a
subprocess with its own SHUZHENG_HOME (and, on PostgreSQL, its own database), for tests over real HTTP
and the browser tests. When the session has such tests, it is started in the background as the test database
is set up, so that its demo load and the test database's run side by side."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

os.environ.setdefault("SHUZHENG_HOME", tempfile.mkdtemp(prefix="shuzheng-test-"))

import pyotp  # noqa: E402
import pytest  # noqa: E402

DEMO_PASSWORD = "Dingzhou#2026"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, request, tmp_path_factory):
    from shuzheng.demo.loader import load_demo

    if any("platform" in getattr(item, "fixturenames", ()) for item in request.session.items):
        # The session's platform migrates and loads its own demo in other processes: let it do so while this
        # one loads the test database's (two cores, two loads at once), rather than after.
        _EarlyPlatform.start_for(tmp_path_factory)
    try:
        with django_db_blocker.unblock():
            load_demo()
        yield
    finally:
        _EarlyPlatform.discard()  # started for tests that then never asked for it (-x, a failed setup)
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


@contextlib.contextmanager
def running_platform(home: Path, extra_env: dict | None = None, demo: bool | str = True):
    """`shuzheng migrate`, (`shuzheng demo load`,) `shuzheng serve` in `home` (and, on PostgreSQL, a new
    database), stopped and removed on exit. Tests that need two instances side by side start the second.
    demo="catalog" loads the demo's organizations and catalog without its warehouse data (faster)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env["SHUZHENG_HOME"] = str(home)
    env.update(extra_env or {})
    pg_db = None
    if os.environ.get("DATABASE_URL"):
        import psycopg

        pg_db = f"shuzheng_live_{uuid.uuid4().hex[:8]}"
        base = os.environ["DATABASE_URL"]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_db}"')
        env["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + pg_db
    steps = [["migrate", "-v", "0"]] + ([["demo", "load", "-q"] + (["--catalog-only"] if demo == "catalog" else [])]
                                        if demo else [])
    port = free_port()
    log = open(home / "serve.log", "w")
    proc = None
    try:
        for step in steps:
            subprocess.run([sys.executable, "-m", "shuzheng", *step], env=env, check=True, timeout=300,
                           capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "shuzheng", "serve", "--port", str(port), "--workers", "1",
                                 "--threads", "8"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        _wait_http(f"http://127.0.0.1:{port}/login/")
        yield Platform(home, env, port, proc)
    finally:
        if proc is not None:
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


class _EarlyPlatform(threading.Thread):
    """`running_platform` entered in a thread, so that the session's platform gets ready in the background;
    the `platform` fixture waits for it and leaves it at the end of the session as it would its own."""

    started: _EarlyPlatform | None = None
    asked = False  # the `platform` fixture has run: nothing to start early any more

    def __init__(self, home: Path):
        super().__init__(name="early-platform", daemon=True)
        self.context = running_platform(home)
        self.live: Platform | None = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self.live = self.context.__enter__()
        except BaseException as exc:  # noqa: BLE001 - raised again where the fixture is asked for
            self.error = exc

    @classmethod
    def start_for(cls, tmp_path_factory) -> None:
        if cls.started is None and not cls.asked:
            cls.started = cls(tmp_path_factory.mktemp("platform-home"))
            cls.started.start()

    @classmethod
    def take(cls) -> _EarlyPlatform | None:
        early, cls.started = cls.started, None
        if early is not None:
            early.join()
        return early

    @classmethod
    def discard(cls) -> None:
        early = cls.take()
        if early is not None and early.live is not None:
            early.context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    _EarlyPlatform.asked = True
    early = _EarlyPlatform.take()
    if early is None:
        with running_platform(tmp_path_factory.mktemp("platform-home")) as live:
            yield live
        return
    if early.error is not None:
        raise early.error
    try:
        yield early.live
    finally:
        early.context.__exit__(None, None, None)


# Modules whose tests touch no database (pure functions, files, DuckDB, hypothesis): `./run test` runs them on
# the SQLite pass only (the PostgreSQL pass deselects the `nodb` marker), since a second run proves nothing new.
NO_DATABASE = {"test_masks", "test_exports", "test_quality_checks", "test_sqlgate", "test_population",
               "test_validators", "test_crypto"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__ in NO_DATABASE:
            if "db" in item.fixturenames or "platform" in item.fixturenames:
                raise pytest.UsageError(f"{item.nodeid} uses the database: take its module out of NO_DATABASE")
            item.add_marker(pytest.mark.nodb)

