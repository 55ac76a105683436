"""Django settings. Everything a deployment changes comes from the environment:

SHUZHENG_HOME      folder for the embedded database, the job queue, the warehouse and local keys (default ./var)
DATABASE_URL       PostgreSQL in production (postgres://user@host:5432/db); SQLite in SHUZHENG_HOME when unset
SHUZHENG_SECRET_KEY  Django secret; generated once into SHUZHENG_HOME/keys/secret_key when unset
SHUZHENG_HTTPS     "1" when served behind TLS: Secure, __Host- cookies and HSTS
SHUZHENG_ALLOWED_HOSTS  comma-separated; default "*" for the embedded demo
SHUZHENG_TRUST_X_FORWARDED_FOR  "1" behind a reverse proxy that appends the client address
SHUZHENG_IDLE_TIMEOUT_MINUTES, SHUZHENG_LOCKOUT_THRESHOLD, SHUZHENG_LOCKOUT_MINUTES, SHUZHENG_PASSWORD_MIN_LENGTH,
SHUZHENG_API_KEY_MAX_DAYS  identity policy (defaults 15, 5, 30, 12, 366)
DJANGO_SETTINGS_MODULE is shuzheng.settings; SHUZHENG_REDIS_URL moves the job queue to Redis.
SHUZHENG_EVENTS    where webhook events go: inprocess (default), redis://host:6379/0 or nats://host:4222
SHUZHENG_BENCH_BARE  "1" only for bench/gateway.py: an unprotected lookup beside the gateway, for its baseline
SHUZHENG_METRICS_ALLOW  comma-separated CIDRs (besides loopback) that may read /metrics, e.g. the Prometheus host
SHUZHENG_PUBLIC_URL  the platform's public address, the base of the identifiers DCAT and CKAN publish
SHUZHENG_PLATFORM_NAME  the catalog's title in DCAT and CKAN (default 定州市政务数据资源目录)
SHUZHENG_HARVEST_MARGIN_S  how far before the last good run an incremental harvest starts (default 300)
"""

import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent
HOME = Path(os.environ.get("SHUZHENG_HOME", "var")).resolve()
HOME.mkdir(parents=True, exist_ok=True)
KEYS_DIR = HOME / "keys"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _secret_key() -> str:
    if key := os.environ.get("SHUZHENG_SECRET_KEY"):
        return key
    KEYS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = KEYS_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        key = secrets.token_urlsafe(50)
        f.write(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("SHUZHENG_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("SHUZHENG_ALLOWED_HOSTS", "*").split(",")
HTTPS = os.environ.get("SHUZHENG_HTTPS") == "1"
# Behind the city's reverse proxy: take the client address from the proxy's X-Forwarded-For entry.
TRUST_X_FORWARDED_FOR = os.environ.get("SHUZHENG_TRUST_X_FORWARDED_FOR") == "1"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # serves Swagger UI from its own static files, not a CDN
    "huey.contrib.djhuey",
    "shuzheng.core",
    "shuzheng.org",
    "shuzheng.audit",
    "shuzheng.catalog",
    "shuzheng.warehouse",
    "shuzheng.ingest",
    "shuzheng.quality",
    "shuzheng.sharing",
    "shuzheng.security",
    "shuzheng.harvest",
    "shuzheng.web",
]

MIDDLEWARE = [
    "shuzheng.security.metrics.RequestMetricsMiddleware",  # first: it times everything below (/metrics)
    "shuzheng.core.middleware.SecurityHeadersMiddleware",
    "shuzheng.core.middleware.RejectNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shuzheng.core.middleware.ProblemJsonMiddleware",
]

ROOT_URLCONF = "shuzheng.urls"
WSGI_APPLICATION = "shuzheng.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shuzheng.web.context.navigation",
            ],
        },
    }
]

# Metadata database: PostgreSQL when DATABASE_URL is set, else SQLite (WAL) in SHUZHENG_HOME.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    # One test database per test run, so two runs against the same server never drop each other's.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(HOME / "shuzheng.sqlite3"),
            "CONN_MAX_AGE": 60,  # the gateway answers thousands of calls a second; reconnecting each costs
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction starts, so two writers never
                # read the same audit head and then both try to extend it.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            },
            # A file (forked audit verifiers open it too), one per test run so runs never share it.
            "TEST": {"NAME": str(HOME / f"test-{os.getpid()}.sqlite3")},
        }
    }
# Where snapshot events for webhooks go: "inprocess" (the embedded default, through the job queue), or
# redis://host:6379/0 (Redis Streams) or nats://host:4222 (NATS JetStream) when deployed at scale.
EVENTS = os.environ.get("SHUZHENG_EVENTS", "inprocess")

# Who may read /metrics besides loopback (security.metrics): the Prometheus server's network, as CIDRs. A bad
# entry stops the start-up here rather than leaving the metrics open or unreachable.
METRICS_ALLOW = tuple(ipaddress.ip_network(c.strip(), strict=False)
                      for c in os.environ.get("SHUZHENG_METRICS_ALLOW", "").split(",") if c.strip())

# The platform's public address (https://sjgx.example.gov.cn): the base of every identifier the catalog's DCAT
# and CKAN interfaces publish, so they never depend on the Host header a caller sends. Unset: the request's.
PUBLIC_URL = os.environ.get("SHUZHENG_PUBLIC_URL", "").rstrip("/")
# The catalog's title in DCAT and CKAN (dct:title of the dcat:Catalog, status_show's site_title).
PLATFORM_NAME = os.environ.get("SHUZHENG_PLATFORM_NAME", "定州市政务数据资源目录")

# Incremental harvests start this many seconds before the last good one did (clock skew, slow commits).
HARVEST_MARGIN_S = _env_int("SHUZHENG_HARVEST_MARGIN_S", 300)

# bench/gateway.py only: exposes an unprotected lookup beside the gateway to measure the policy path's cost.
BENCH_BARE = os.environ.get("SHUZHENG_BENCH_BARE") == "1"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "org.User"
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"

# Argon2id first: new and changed passwords are hashed with it; others are upgraded on login.
PASSWORD_HASHERS = [
    "shuzheng.core.hashers.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
PASSWORD_MIN_LENGTH = _env_int("SHUZHENG_PASSWORD_MIN_LENGTH", 12)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": PASSWORD_MIN_LENGTH},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "shuzheng.core.validators.PasswordComplexityValidator"},
]

# Lockout and two-factor (等保 level 3: login failure handling, two kinds of authentication for administrators).
LOCKOUT_THRESHOLD = _env_int("SHUZHENG_LOCKOUT_THRESHOLD", 5)
LOCKOUT_MINUTES = _env_int("SHUZHENG_LOCKOUT_MINUTES", 30)
TOTP_ISSUER = os.environ.get("SHUZHENG_TOTP_ISSUER", "Shuzheng")
API_KEY_MAX_DAYS = _env_int("SHUZHENG_API_KEY_MAX_DAYS", 366)

# Sessions: an idle timeout (the cookie's age is renewed on every request) and strict cookie flags.
SESSION_COOKIE_AGE = _env_int("SHUZHENG_IDLE_TIMEOUT_MINUTES", 15) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # templates send the token in a header (hx-headers), never read from JS
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = HTTPS
SESSION_COOKIE_NAME = "__Host-sz_session" if HTTPS else "sz_session"
CSRF_COOKIE_NAME = "__Host-sz_csrf" if HTTPS else "sz_csrf"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HTTPS:
    SECURE_HSTS_SECONDS = 31536000
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Asia/Shanghai"
USE_TZ = True

# API pages: at most this many items per request (limit=…); more is a 422 naming `limit`.
NINJA_PAGINATION_MAX_LIMIT = 500

STATIC_URL = "/static/"

WHITENOISE_USE_FINDERS = True

# Background jobs: Huey on SQLite in SHUZHENG_HOME (embedded default); Redis at scale via SHUZHENG_REDIS_URL.
if os.environ.get("SHUZHENG_REDIS_URL"):
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": "shuzheng",
        "url": os.environ["SHUZHENG_REDIS_URL"],
        "immediate": False,
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "shuzheng",
        "filename": str(HOME / "jobs.sqlite3"),
        "immediate": os.environ.get("SHUZHENG_JOBS_IMMEDIATE") == "1",
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SHUZHENG_LOG_LEVEL", "WARNING")},
}
