"""Settings for long_task.

Everything that differs between a laptop and a deployment comes from the environment;
see docs/configuration.md for the full list.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# Off unless asked for: a server started without environment (gunicorn, a service manager)
# must not run in debug mode with a public key. `make run` and the tests set DJANGO_DEBUG=1.
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for local development: `make run` does).")
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "long_task.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before background_task: our process_tasks command extends theirs (leases, graceful stop).
    "operations",
    "long_task.apps.BackgroundTasksConfig",
    # The example import target (SPEC §13); an application adds its own models the same way.
    "contacts",
]

MIDDLEWARE = [
    "operations.middleware.RejectNulBytesMiddleware",
    "operations.middleware.FileStoreDeadlineMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "operations.middleware.OptionalTrailingSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: under ASGI, Django's own middlewares run as async inside a sync-only one, each
    # of their hooks a hop to a thread and back; inside none, all run in the request's thread.
    "operations.logins.LoginsLockedMiddleware",
]

ROOT_URLCONF = "long_task.urls"
WSGI_APPLICATION = "long_task.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# SQLite by default (one machine); DATABASE_URL=postgres://... is the scale-out path.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend, with fair write locks (see long_task/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "long_task.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        # The web and the worker write at once: WAL lets readers go on during a chunk,
        # IMMEDIATE takes the write lock at BEGIN so no transaction fails half-way with
        # "database is locked", and the timeout makes a writer wait for the other's commit.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        f"PRAGMA wal_autocheckpoint={os.environ.get('LONG_TASK_SQLITE_CHECKPOINT_PAGES', '10000')}",
    }
    # The test database must be a file: worker subprocesses in the tests open it too.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("LONG_TASK_TEST_SQLITE", str(BASE_DIR / "test-db.sqlite3"))}
# PostgreSQL: a process that would open a connection per request (the ASGI web, long_task/asgi.py)
# takes it from a pool of its own instead, of at most LONG_TASK_DATABASE_POOL connections (0: no
# pool); the pool keeps them open, so persistent connections are off.
LONG_TASK_DATABASE_POOL = int(os.environ.get("LONG_TASK_DATABASE_POOL", "0"))
if LONG_TASK_DATABASE_POOL > 0 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": LONG_TASK_DATABASE_POOL,
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's user names and passwords, with every password check counted before its hash, in the
# database, so that guessing is bounded across all web processes (see operations/logins.py).
AUTHENTICATION_BACKENDS = ["operations.logins.GuardedModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("LONG_TASK_MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"


def file_storage(url: str, environ=os.environ) -> dict:
    """STORAGES["default"] for LONG_TASK_STORAGE_URL: "" is the local disk under MEDIA_ROOT;
    s3://bucket/prefix is django-storages' S3 backend with the usual AWS_* variables (the
    credentials go the way boto3 finds them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a
    profile, an instance role...)."""
    if not url:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    parsed = urlsplit(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ImproperlyConfigured(f"LONG_TASK_STORAGE_URL must be s3://bucket/prefix, not {url!r}")
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": parsed.netloc,
            "location": parsed.path.strip("/"),
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or None,
            "file_overwrite": True,  # names are chosen by the server and never reused
            "client_config": Config(
                s3={"addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE") or None},
                # The workers' calls. Connection errors and 5xx are retried by
                # operations/storage/ as well, with a backoff of its own; botocore's few quick
                # retries come first. The web's calls wait LONG_TASK_STORE_WEB_DEADLINE_SECONDS
                # at most and are not retried (operations/storage/deadline.py).
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=60,
                tcp_keepalive=True,
            ),
        },
    }


LONG_TASK_STORAGE_URL = os.environ.get("LONG_TASK_STORAGE_URL", "")
STORAGES = {
    "default": file_storage(LONG_TASK_STORAGE_URL),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploads stream into the file store as they arrive (operations/uploads.py): on local disk to a
# temporary file next to the media root, so that storing the upload is a rename, not a second
# copy; on S3 into the object itself (a multipart upload), nothing on the web's disk. Only the
# views that take files let the handler read file parts; every other view refuses them unread.
FILE_UPLOAD_HANDLERS = ["operations.uploads.CheckedUploadHandler"]
FILE_UPLOAD_TEMP_DIR = None if LONG_TASK_STORAGE_URL else str(MEDIA_ROOT / "incoming")
# S3: reads are ranged GETs of this many bytes (from the checkpoint's offset on: I8); uploads
# and joined exports are multipart uploads of parts this large (memory: one part, I7).
LONG_TASK_S3_READ_BYTES = int(os.environ.get("LONG_TASK_S3_READ_BYTES", str(4 * 1024**2)))
LONG_TASK_S3_PART_BYTES = max(5 * 1024**2, int(os.environ.get("LONG_TASK_S3_PART_BYTES", str(8 * 1024**2))))
# S3: the worker fetches the next block in a thread while it parses the current one (memory:
# one block more), so that an import does not wait on each GET. 0: one GET at a time.
LONG_TASK_S3_READ_AHEAD = os.environ.get("LONG_TASK_S3_READ_AHEAD", "1") != "0"
# Transient file-store errors (connection lost, 5xx) retried by workers, with backoff, before
# they fail the operation.
LONG_TASK_STORAGE_RETRIES = int(os.environ.get("LONG_TASK_STORAGE_RETRIES", "5"))
# A web request waits at most this long for the file store to answer, and does not try again:
# then a 503 (operations/storage/deadline.py). A hung store must not hold the web's threads.
LONG_TASK_STORE_WEB_DEADLINE_SECONDS = float(os.environ.get("LONG_TASK_STORE_WEB_DEADLINE_SECONDS", "10"))
# Per-user quotas (operations/quotas.py; 0: none): the bytes of the files kept for a user's
# operations (413 past it), and the uploads of one user streaming in at once (429 past it).
LONG_TASK_QUOTA_STORED_BYTES = int(os.environ.get("LONG_TASK_QUOTA_STORED_BYTES", str(10 * 1024**3)))
LONG_TASK_QUOTA_CONCURRENT_UPLOADS = int(os.environ.get("LONG_TASK_QUOTA_CONCURRENT_UPLOADS", "2"))
# Resumable uploads (tus, /api/uploads/): deleted this many seconds after their last piece if
# never finished, or finished and never used; at most this many unfinished ones a user, and bytes.
LONG_TASK_UPLOAD_EXPIRY = float(os.environ.get("LONG_TASK_UPLOAD_EXPIRY", str(24 * 3600)))
LONG_TASK_MAX_UNFINISHED_UPLOADS = int(os.environ.get("LONG_TASK_MAX_UNFINISHED_UPLOADS", "10"))
LONG_TASK_MAX_UNFINISHED_UPLOAD_BYTES = int(
    os.environ.get("LONG_TASK_MAX_UNFINISHED_UPLOAD_BYTES", str(LONG_TASK_QUOTA_STORED_BYTES))
)

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request then gets 401 with "WWW-Authenticate: Token".
        "operations.api.authentication.TokenAuthentication",
        "operations.api.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["operations.api.permissions.IsAuthenticatedOrAnonymousAllowed"],
    "DEFAULT_PARSER_CLASSES": [
        "operations.api.parsing.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "operations.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": [
        "operations.api.throttling.AnonymousThrottle",
        "operations.api.throttling.WriteThrottle",
        "operations.api.throttling.UploadThrottle",
        "operations.api.throttling.ReadThrottle",
        "operations.api.throttling.PieceThrottle",
    ],
    # Trusted proxies in front of the web processes: the client's address (for throttles) is
    # the one the last of them saw. 0: REMOTE_ADDR (X-Forwarded-For is the client's to write).
    "NUM_PROXIES": int(os.environ.get("LONG_TASK_NUM_PROXIES", "0")),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "long_task API",
    "DESCRIPTION": "Long-running operations that can be paused, resumed and terminated.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its page need a login like every other endpoint (SPEC §8).
    "SERVE_PERMISSIONS": ["operations.api.permissions.IsAuthenticatedOrAnonymousAllowed"],
    # Swagger UI from the sidecar package: /api/docs/ works without a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "operations.api.schema.add_errors_and_bounds",
    ],
}

# The request throttles' counters (failed logins are counted in the database, shared by every
# process). LocMemCache counts per process: with several web processes (gunicorn --workers N,
# several machines) a client gets N times the rates, unless they share a cache:
# LONG_TASK_CACHE_URL=db (the database; run `manage.py createcachetable` once) or redis://...
_cache_url = os.environ.get("LONG_TASK_CACHE_URL", "")
if _cache_url == "db":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "long_task_cache"}}
elif _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}}
elif _cache_url:
    raise ImproperlyConfigured("LONG_TASK_CACHE_URL must be empty, db or redis://...")

# --- long_task ----------------------------------------------------------------------------
# Throttles (429 with Retry-After), as "N/second", "N/minute", "N/hour" or "N/day"; empty: none.
LONG_TASK_THROTTLE_RATES = {
    # Requests without a user (LONG_TASK_ALLOW_ANONYMOUS), per client address.
    "anonymous": os.environ.get("LONG_TASK_THROTTLE_ANONYMOUS", "120/minute"),
    # Register, start, pause, resume, terminate: per user.
    "writes": os.environ.get("LONG_TASK_THROTTLE_WRITES", "600/minute"),
    # Reads (status, lists, events, rows, row errors, downloads): per user.
    "reads": os.environ.get("LONG_TASK_THROTTLE_READS", "1200/minute"),
    # Requests that send a file to import: per user.
    "uploads": os.environ.get("LONG_TASK_THROTTLE_UPLOADS", "120/minute"),
    # Requests of resumable uploads (create, pieces, offsets), per user.
    "pieces": os.environ.get("LONG_TASK_THROTTLE_PIECES", "600/minute"),
    # Failed logins (HTTP basic, the admin's and the API's login pages) per user name from a client
    # address, and per client address; over either, a login is refused before its password is
    # hashed, even a right one, until the window (from the first failure) has passed.
    "login_failures": os.environ.get("LONG_TASK_THROTTLE_LOGIN_FAILURES", "5/minute"),
    "login_failures_address": os.environ.get("LONG_TASK_THROTTLE_LOGIN_FAILURES_ADDRESS", "30/minute"),
}
# Long polls that wait (`wait_for_change`) and streams (rows, row errors, downloads) open at once,
# per user (429 above; 0: no bound). Counted in the cache: several web processes share the count
# when they share a cache (LONG_TASK_CACHE_URL).
LONG_TASK_MAX_WAITS_PER_USER = int(os.environ.get("LONG_TASK_MAX_WAITS_PER_USER", "4"))
LONG_TASK_MAX_STREAMS_PER_USER = int(os.environ.get("LONG_TASK_MAX_STREAMS_PER_USER", "4"))
# Anonymous access, for trusted local use only (SPEC §8).
LONG_TASK_ALLOW_ANONYMOUS = env_bool("LONG_TASK_ALLOW_ANONYMOUS", False)
# Registered operations that never started, per user (429 above): registering costs nothing else.
LONG_TASK_MAX_REGISTERED = int(os.environ.get("LONG_TASK_MAX_REGISTERED", "100"))
# Retention: stored files of finished (completed or terminated) operations are deleted this many
# days after they finished (0: kept forever); a temporary upload that has not grown for this many
# seconds belongs to a web process that died, and is deleted. Idle workers sweep every
# LONG_TASK_SWEEP_SECONDS, and so does `manage.py sweep`.
LONG_TASK_RETENTION_DAYS = float(os.environ.get("LONG_TASK_RETENTION_DAYS", "30"))
LONG_TASK_INCOMING_MAX_AGE = float(os.environ.get("LONG_TASK_INCOMING_MAX_AGE", str(24 * 3600)))
LONG_TASK_SWEEP_SECONDS = float(os.environ.get("LONG_TASK_SWEEP_SECONDS", "3600"))
# Largest accepted upload, in bytes (413 above it).
LONG_TASK_MAX_UPLOAD_BYTES = int(os.environ.get("LONG_TASK_MAX_UPLOAD_BYTES", str(2 * 1024**3)))
# Largest CSV field, in bytes; a longer field (often an unclosed quote) rejects its row.
LONG_TASK_CSV_FIELD_LIMIT = int(os.environ.get("LONG_TASK_CSV_FIELD_LIMIT", str(1024**2)))
# Bounds the memory of one line; a row within the field limit can be wider than one field.
LONG_TASK_CSV_LINE_LIMIT = int(os.environ.get("LONG_TASK_CSV_LINE_LIMIT", str(16 * 1024**2)))
# The header row: at most this many columns, in at most this many bytes (400 above either). Each
# column costs every row of every import, and the status and admin pages that show the header.
LONG_TASK_CSV_MAX_COLUMNS = int(os.environ.get("LONG_TASK_CSV_MAX_COLUMNS", "1000"))
LONG_TASK_CSV_HEADER_BYTES = int(os.environ.get("LONG_TASK_CSV_HEADER_BYTES", str(64 * 1024)))
# A worker's lease on an operation; a dead worker's operation is taken over after this.
LONG_TASK_LEASE_SECONDS = float(os.environ.get("LONG_TASK_LEASE_SECONDS", "30"))
# Target wall time of one chunk: bounds how long a pause waits for the worker's ack.
LONG_TASK_CHUNK_SECONDS = float(os.environ.get("LONG_TASK_CHUNK_SECONDS", "0.05"))
# Target wall time of a chunk that a pause cancels in flight rather than waits for (an import on
# PostgreSQL: operations/stop_requests.py). Longer chunks: fewer commits and statements a row.
LONG_TASK_CANCELLABLE_CHUNK_SECONDS = float(os.environ.get("LONG_TASK_CANCELLABLE_CHUNK_SECONDS", "0.25"))
# The most bytes of the file one chunk of an import reads (a block more at most): what a chunk
# holds until it commits stays bounded however fast its rows come (I7).
LONG_TASK_CHUNK_BYTES = int(os.environ.get("LONG_TASK_CHUNK_BYTES", str(1024 * 1024)))
# Target wall time of one chunk of a terminate's rollback. PostgreSQL deletes under row locks that
# block nobody, and each commit waits for a WAL flush: longer chunks there. SQLite's write lock
# blocks every other writer (a pause request too) while a chunk deletes: as short as imports.
LONG_TASK_ROLLBACK_CHUNK_SECONDS = float(
    os.environ.get(
        "LONG_TASK_ROLLBACK_CHUNK_SECONDS",
        LONG_TASK_CHUNK_SECONDS if DATABASES["default"]["ENGINE"] == "long_task.sqlite" else 0.5,
    )
)
# The most rows in one chunk of an import, and of a terminate's rollback: chunks are sized by
# time up to these. A low bound makes the chunk count of a file predictable (the tests use it).
LONG_TASK_CHUNK_ROWS = int(os.environ.get("LONG_TASK_CHUNK_ROWS", "200000"))
LONG_TASK_ROLLBACK_CHUNK_ROWS = int(os.environ.get("LONG_TASK_ROLLBACK_CHUNK_ROWS", "5000000"))
# The rows of a run's first chunk, sized before any row was timed: small, since its rows may cost
# many times the usual (a file whose rows the target's table all refuses) and a pause waits for it.
LONG_TASK_FIRST_CHUNK_ROWS = int(os.environ.get("LONG_TASK_FIRST_CHUNK_ROWS", "100"))
# CPU niceness of process_tasks workers (0-19): the web keeps answering at once during imports.
LONG_TASK_WORKER_NICE = int(os.environ.get("LONG_TASK_WORKER_NICE", "10"))
# How often an idle worker looks for stalled operations (expired leases).
LONG_TASK_RECOVERY_SECONDS = float(os.environ.get("LONG_TASK_RECOVERY_SECONDS", "2"))
# Database errors a worker retries (with backoff) before it marks the operation failed.
LONG_TASK_DB_RETRIES = int(os.environ.get("LONG_TASK_DB_RETRIES", "5"))
# Upper bound of the optional "wait" parameter of pause/terminate, in seconds.
LONG_TASK_MAX_WAIT_SECONDS = float(os.environ.get("LONG_TASK_MAX_WAIT_SECONDS", "10"))

# django-background-tasks: its task only wakes a worker up (operations keep their own leases,
# and recovery of dead workers never waits for the library's lock); a wake-up that fails is
# tried this many times.
MAX_ATTEMPTS = 3

# --- Production ---------------------------------------------------------------------------
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    # Behind a TLS-terminating proxy, the header it sets to "https" (X-Forwarded-Proto, most
    # often). Only then: without a proxy, any client could send the header and skip the redirect.
    _proxy_ssl_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
    if _proxy_ssl_header:
        if not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
            raise ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER must be a header name, e.g. X-Forwarded-Proto")
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "3600"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    # Preloading is a decision per domain (submitting it to hstspreload.org), not a default.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "operations": {"handlers": ["console"], "level": os.environ.get("LONG_TASK_LOG_LEVEL", "INFO")},
        "background_task": {"handlers": ["console"], "level": "WARNING"},
        # Server errors (500s) with their tracebacks. Django's default sends them to the console
        # only when DEBUG is on, and by mail to ADMINS otherwise: under gunicorn they were lost.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
