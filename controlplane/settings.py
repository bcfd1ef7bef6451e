"""The one settings module: everything is read from the environment through ``controlplane.env``."""

from __future__ import annotations

import ipaddress
import os
import re
import warnings
from pathlib import Path

import dj_database_url

from controlplane.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_optional_str,
    env_str,
)
from controlplane.network import network_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

# Fail closed: DEBUG only when asked for, and then a throwaway key is acceptable.
DEBUG = env_bool("DEBUG", False)
_secret = env_optional_str("SECRET_KEY")
if _secret is None:
    if not DEBUG:
        raise ImproperlyConfiguredEnv("SECRET_KEY (or SECRET_KEY_FILE) is required unless DEBUG=1")
    _secret = "insecure-debug-only-key-do-not-use-in-production"
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "channels",
    # The stages, lowest first (docs/architecture.md).
    "ledger",
    "intake",
    "liveness",
    "progress",
    "recovery",
    "alerts",
    "dashboard",
    "api",
    "monitoring",  # its migrations only: they created the tables the stage apps now own
    "devnet",
    "controlplane",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the dashboard's static files from the web process itself (uvicorn's workers, DEBUG off included).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
# The web process (`python -m controlplane.serve`): uvicorn worker processes serving HTTP and the live sockets. Each
# worker holds a database pool of its own (DB_POOL_MAX_SIZE connections at most). Default: one per usable core.
WEB_WORKERS = env_int("WEB_WORKERS", len(os.sched_getaffinity(0)), minimum=1)
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfiguredEnv("DATABASE_URL must point at PostgreSQL (postgres://...)")
# A bounded psycopg pool per process: under ASGI, persistent per-thread connections would pile up until
# Postgres refuses clients. Each process holds at most DB_POOL_MAX_SIZE connections.
DATABASES["default"]["OPTIONS"] = {
    "pool": {
        "min_size": env_int("DB_POOL_MIN_SIZE", 1, minimum=0),
        "max_size": env_int("DB_POOL_MAX_SIZE", 8, minimum=1),
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0, minimum=0.1),
    },
    # Short queries only: JIT compilation (tens of ms, triggered by the cost estimates of large tables) costs more
    # than any of them saves.
    "options": "-c jit=off",
}
# Each connection is checked as it leaves the pool (Django passes the pool its check): after a Postgres restart a
# request or a job gets a fresh connection instead of failing on one the restart broke.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
    # Jobs that call operators (catch-up), on workers of their own: `rqworker operators`.
    "operators": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
}
# Jobs run in the worker's process, not a fork per job: the aggregator connection lasts across jobs.
RQ = {"WORKER_CLASS": "controlplane.worker.PersistentWorker"}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, and channels_redis blocks 5 s waiting for a
        # message: an idle socket's consumer would die with "Timeout reading" every few seconds.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}]},
    },
}
# Shared by every replica (the API's write throttle counts here); short timeouts, since Redis is disposable.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cp",
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Dashboard -----------------------------------------------------------------------------------
# Read-only pages (and their sockets) need a logged-in user unless the dashboard is made public.
PUBLIC_DASHBOARD = env_bool("PUBLIC_DASHBOARD", False)
# Each live socket rejoins its group and checks its sequence this often (catches a message lost at the end).
LIVE_HEARTBEAT_SECONDS = env_float("LIVE_HEARTBEAT_SECONDS", 30.0, minimum=0.5)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Compressed copies at collectstatic (the image runs it); no manifest, so pages render without a collectstatic
# (tests, `make run`), and the finders let whitenoise serve app static files straight from the source tree.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Without a collectstatic (tests, `make run`) STATIC_ROOT does not exist; the finders serve everything then.
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = False
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
# Served over https (behind a TLS proxy): cookies only over https, and browsers told to keep to it (HSTS). On by
# default without DEBUG; HTTPS_ONLY=0 for a plain-http dashboard on a trusted network (a browser refuses to send
# secure cookies over http, so logging in would not work there).
HTTPS_ONLY = env_bool("HTTPS_ONLY", not DEBUG)
if HTTPS_ONLY:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
# Messages (a new API key is shown once through one) live in the session, never in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Login attempts per client address (the dashboard's and the admin's forms), counted in Redis: N/s|m|h|d.
LOGIN_RATE = env_str("LOGIN_RATE", "10/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", LOGIN_RATE):
    raise ImproperlyConfiguredEnv(f"LOGIN_RATE={LOGIN_RATE!r} must look like 10/min (s, m, h or d)")
# Writes through the API (recovery runs, acknowledgements) per user, counted in the shared cache: N/s|m|h|d.
API_WRITE_RATE = env_str("API_WRITE_RATE", "60/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", API_WRITE_RATE):
    raise ImproperlyConfiguredEnv(f"API_WRITE_RATE={API_WRITE_RATE!r} must look like 60/min (s, m, h or d)")

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 50, minimum=1),
    "UNAUTHENTICATED_USER": None,
    # Scripts send "Authorization: Token <key>" (staff create them in the admin); browsers use their session
    # (CSRF enforced). The token class comes first so a request without credentials gets 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Reads: any user (anyone with PUBLIC_DASHBOARD); writes: staff, and write-scoped tokens.
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.auth.ApiAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["controlplane.auth.WriteRateThrottle"],
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AVS control plane API",
    "DESCRIPTION": "Batches, operators, alerts and recovery runs of the verification network. Errors are "
    '`{"error": "...", "field": "..."}`. Operators post signed responses to `POST /api/v1/signatures` '
    "(open to the network, not part of this schema).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["api.schema.drop_trailing_slash_aliases"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.close_input_objects",
        "api.schema.allow_empty_filters",
    ],
    "ENUM_NAME_OVERRIDES": {
        "AlertKindEnum": "alerts.models.AlertKind",
        "AlertStateEnum": "alerts.models.AlertState",
        "AlertSeverityEnum": "alerts.models.AlertSeverity",
        "BatchStatusEnum": "ledger.models.batches.BatchStatus",
        "RecoveryKindEnum": "recovery.models.RecoveryKind",
        "RecoveryStatusEnum": "recovery.models.RecoveryStatus",
        "OperatorStateEnum": "liveness.models.OperatorState",
    },
}

# --- The network being controlled -------------------------------------------------------------
# The devnet writes one JSON file (RPC URL, contract addresses, keys); the network settings below fall back
# to it, so `make run` needs none of them. A real deployment sets them and has no such file.
DEVNET_DIR = Path(env_str("DEVNET_DIR", str(BASE_DIR / ".devnet")))
DEVNET_FILE = Path(env_str("DEVNET_FILE", str(DEVNET_DIR / "devnet.json")))
NODE_MODULES_DIR = Path(env_str("NODE_MODULES_DIR", str(BASE_DIR / "node_modules")))

# Chain, contracts, aggregator and operators' control tokens: resolved and validated once, here.
# OPERATOR_CONTROL_TOKENS is JSON {"0xoperatorId": "token"} (OPERATOR_CONTROL_TOKENS_FILE for a file).
NETWORK = network_from_env(network_file=DEVNET_FILE)
CHAIN_RPC_URL = NETWORK.chain_rpc_url
SERVICE_MANAGER_ADDRESS = NETWORK.service_manager_address
REGISTRY_ADDRESSES = list(NETWORK.registry_addresses)
OPERATOR_STATE_RETRIEVER_ADDRESS = NETWORK.operator_state_retriever_address
START_BLOCK = NETWORK.start_block
AGGREGATOR_URL = NETWORK.aggregator_url
AGGREGATOR_PROTOCOL = NETWORK.aggregator_protocol
OPERATOR_CONTROL_TOKENS = NETWORK.operator_control_tokens
INGEST_CONFIRMATIONS = env_int("INGEST_CONFIRMATIONS", 2, minimum=0)
INGEST_BLOCKS_KEPT = env_int("INGEST_BLOCKS_KEPT", 1024, minimum=16)
INGEST_POLL_INTERVAL = env_float("INGEST_POLL_INTERVAL", 1.0, minimum=0.05)
INGEST_INITIAL_RANGE = env_int("INGEST_INITIAL_RANGE", 2000, minimum=1)
INGEST_MAX_RANGE = env_int("INGEST_MAX_RANGE", 50_000, minimum=1)
INGEST_RANGE_LOGS = env_int("INGEST_RANGE_LOGS", 2000, minimum=1)

# Operator liveness: probing each registered operator's node API (GET /eigen/node/health) at its socket.
LIVENESS_PROBE_INTERVAL = env_float("LIVENESS_PROBE_INTERVAL", 10.0, minimum=0.1)
# The whole probe of one operator (health and version) answers within this many seconds, or it is down.
LIVENESS_PROBE_TIMEOUT = env_float("LIVENESS_PROBE_TIMEOUT", 2.0, minimum=0.05)
LIVENESS_PROBE_CONCURRENCY = env_int("LIVENESS_PROBE_CONCURRENCY", 16, minimum=1)
# Consecutive failed probes before an operator is declared down (2 or more tolerates a single blip).
LIVENESS_DOWN_AFTER = env_int("LIVENESS_DOWN_AFTER", 1, minimum=1)

# Signature intake and quorum progress.
INTAKE_MAX_BODY_BYTES = env_int("INTAKE_MAX_BODY_BYTES", 4096, minimum=512)
# Every other request body (API writes, admin forms), refused before it is buffered when larger.
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# How long a signature for a batch not yet ingested waits before it expires.
INTAKE_WAITING_TTL = env_float("INTAKE_WAITING_TTL", 600.0, minimum=1.0)
QUORUM_THRESHOLD_PERCENTAGE = env_int("QUORUM_THRESHOLD_PERCENTAGE", 67, minimum=1)
# The intake is open to anyone: posts per source address (N/s|min|h|d), counted in Redis across replicas.
INTAKE_RATE = env_str("INTAKE_RATE", "600/min")
# Unverified signatures kept per (batch, operator): the first and a few distinct others (at most one can be
# valid). More get 429 with Retry-After until verification settles them, so forgeries cannot pile up.
INTAKE_MAX_UNVERIFIED = env_int("INTAKE_MAX_UNVERIFIED", 3, minimum=1)
# Proxies (addresses or CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# Operator sockets may point only at public addresses, unless these networks (CIDRs) allow more: the devnet's
# operators run on 127.0.0.1. Plain-http targets here may also receive control tokens.
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS", [])
# The verifier claims at most this many pending signatures of a batch at a time.
VERIFY_CHUNK = env_int("VERIFY_CHUNK", 256, minimum=1)
# ... and the chunks of at most this many batches in one pass, checked together with one pairing product.
VERIFY_PASS_BATCHES = env_int("VERIFY_PASS_BATCHES", 64, minimum=1)
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", INTAKE_RATE):
    raise ImproperlyConfiguredEnv(f"INTAKE_RATE={INTAKE_RATE!r} must look like 600/min (s, m, h or d)")
# Behind a trusted proxy, its X-Forwarded-Proto says whether the client came over https.
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
for _proxy in (*TRUSTED_PROXIES, *OUTBOUND_ALLOWED_NETWORKS):
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfiguredEnv(
            f"TRUSTED_PROXIES / OUTBOUND_ALLOWED_NETWORKS: {_proxy!r} is not an address or a network"
        ) from None
# "auto": the fastest installed pairing backend; or "py-ecc" (the reference), or a named faster one.
BLS_PAIRING_BACKEND = env_str("BLS_PAIRING_BACKEND", "auto")
VERIFIER_POLL_INTERVAL = env_float("VERIFIER_POLL_INTERVAL", 1.0, minimum=0.05)

# Recovery: forwarding to the aggregator, replays, operator catch-up.
AGGREGATOR_TIMEOUT = env_float("AGGREGATOR_TIMEOUT", 5.0, minimum=0.1)
# Over gob, Aligned's aggregator holds a signature for a task it does not know yet for about 200 s, then replies 1.
AGGREGATOR_CALL_TIMEOUT = env_float("AGGREGATOR_CALL_TIMEOUT", 240.0, minimum=0.1)
RECOVERY_INTERVAL = env_float("RECOVERY_INTERVAL", 2.0, minimum=0.1)
RECOVERY_LEASE_SECONDS = env_float("RECOVERY_LEASE_SECONDS", 60.0, minimum=1.0)
RECOVERY_BACKOFF_CAP = env_float("RECOVERY_BACKOFF_CAP", 30.0, minimum=1.0)
# A pending batch whose verified signatures reach quorum is replayed after this many blocks without BatchVerified.
RECOVERY_STUCK_BLOCKS = env_int("RECOVERY_STUCK_BLOCKS", 10, minimum=1)
# An operator lacking a signature on a pending batch older than this is asked to catch up.
RECOVERY_CATCHUP_GRACE = env_float("RECOVERY_CATCHUP_GRACE", 15.0, minimum=0.0)
CATCHUP_CHUNK = env_int("CATCHUP_CHUNK", 50, minimum=1)
# Retention (days): signatures of batches verified this long ago, webhook attempts of delivered alerts, finished
# recovery tasks no staff run asked for. The ledger, progress summaries, alerts and staff runs always stay.
RETENTION_SIGNATURE_DAYS = env_float("RETENTION_SIGNATURE_DAYS", 30.0, minimum=0.0)
RETENTION_WEBHOOK_ATTEMPT_DAYS = env_float("RETENTION_WEBHOOK_ATTEMPT_DAYS", 30.0, minimum=0.0)
RETENTION_RECOVERY_TASK_DAYS = env_float("RETENTION_RECOVERY_TASK_DAYS", 30.0, minimum=0.0)
# Seconds between retention passes (run by the recovery loop).
RETENTION_INTERVAL = env_float("RETENTION_INTERVAL", 600.0, minimum=1.0)
# An owed batch is asked about again and again while it is pending, each time later (the grace, doubling) up to this.
RECOVERY_CATCHUP_ASK_CAP = env_float("RECOVERY_CATCHUP_ASK_CAP", 300.0, minimum=1.0)

# The standby responder: answers on chain (respondToTaskV2) for a batch holding a verified quorum that the
# aggregator can't answer (unreachable, or it said it does not know the task). It signs with the aggregator's own
# key (AGGREGATOR_PRIVATE_KEY_FILE), which the contract requires of whoever responds.
STANDBY_RESPONDER = env_bool("STANDBY_RESPONDER", False)
AGGREGATOR_PRIVATE_KEY = env_optional_str("AGGREGATOR_PRIVATE_KEY")
if STANDBY_RESPONDER and not AGGREGATOR_PRIVATE_KEY:
    raise ImproperlyConfiguredEnv(
        "STANDBY_RESPONDER=1 needs the aggregator's key: set AGGREGATOR_PRIVATE_KEY_FILE (or AGGREGATOR_PRIVATE_KEY)"
    )
if AGGREGATOR_PRIVATE_KEY and not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", AGGREGATOR_PRIVATE_KEY.strip()):
    # Never echo the value: it is a key.
    raise ImproperlyConfiguredEnv("AGGREGATOR_PRIVATE_KEY(_FILE) is not a 32-byte hex private key")
# Blocks a batch stays stuck with a quorum (after RECOVERY_STUCK_BLOCKS, while replays run) before the standby answers.
STANDBY_AFTER_BLOCKS = env_int("STANDBY_AFTER_BLOCKS", 10, minimum=0)
# One attempt waits this long for its transaction's receipt; a transaction still unmined this long after it was
# sent is replaced with the same nonce and fees raised 12.5%.
STANDBY_RECEIPT_WAIT = env_float("STANDBY_RECEIPT_WAIT", 20.0, minimum=0.1)
STANDBY_BUMP_SECONDS = env_float("STANDBY_BUMP_SECONDS", 30.0, minimum=0.1)
# A batch can usefully be answered this many blocks after its creation (the batcher gives up on it after that).
RESPONSE_WINDOW_BLOCKS = env_int("RESPONSE_WINDOW_BLOCKS", 300, minimum=1)

# --- Alerts ------------------------------------------------------------------------------------
# Rules are evaluated every ALERTS_INTERVAL seconds by `manage.py alerts` (one active replica).
ALERTS_INTERVAL = env_float("ALERTS_INTERVAL", 10.0, minimum=0.1)
# A pending batch this many blocks past its creation (by the ingested head) is stalled.
ALERT_BATCH_STALLED_BLOCKS = env_int("ALERT_BATCH_STALLED_BLOCKS", 20, minimum=1)
# Blocks the ingest cursor may trail the confirmed head (head - INGEST_CONFIRMATIONS) before it is lagging.
ALERT_INGEST_LAG_BLOCKS = env_int("ALERT_INGEST_LAG_BLOCKS", 20, minimum=1)
# A cursor standing still this long while there are confirmed blocks to ingest (or the chain unreachable).
ALERT_INGEST_STOPPED_SECONDS = env_float("ALERT_INGEST_STOPPED_SECONDS", 60.0, minimum=1.0)
# An operator never seen alive (no probe answered, no signature) is not "down" for alerts until it has failed
# this long: operators (or this control plane) that are starting up do not page anyone.
ALERT_STARTUP_GRACE_SECONDS = env_float("ALERT_STARTUP_GRACE_SECONDS", 60.0, minimum=0.0)
ALERT_AGGREGATOR_UNREACHABLE_SECONDS = env_float("ALERT_AGGREGATOR_UNREACHABLE_SECONDS", 30.0, minimum=0.0)
# Invalid or conflicting signatures by an operator alert while any was seen within this window.
ALERT_SIGNATURE_WINDOW_SECONDS = env_float("ALERT_SIGNATURE_WINDOW_SECONDS", 3600.0, minimum=1.0)
# An open recovery task that has been attempted this many times is failing.
ALERT_RECOVERY_FAILING_ATTEMPTS = env_int("ALERT_RECOVERY_FAILING_ATTEMPTS", 5, minimum=1)
# The aggregator's (and standby's) account should hold what this many responses cost at the last one's price.
ALERT_RESPONDER_BALANCE_RESPONSES = env_int("ALERT_RESPONDER_BALANCE_RESPONSES", 20, minimum=1)
# A pending batch with a quorum and no response this close to the end of RESPONSE_WINDOW_BLOCKS is about to be lost.
ALERT_WINDOW_CLOSING_BLOCKS = env_int("ALERT_WINDOW_CLOSING_BLOCKS", 50, minimum=1)
# Timeout of the evaluator's own JSON-RPC calls (chain head, genesis).
ALERT_CHAIN_TIMEOUT = env_float("ALERT_CHAIN_TIMEOUT", 5.0, minimum=0.1)

# --- Webhooks and metrics ------------------------------------------------------------------------
# Where people reach this control plane: links in webhook payloads (generatorURL, externalURL).
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000")
# HMAC-SHA256 key for webhook signatures (or WEBHOOK_SECRET_FILE). Unset, nothing is sent (fail closed).
WEBHOOK_SECRET = env_optional_str("WEBHOOK_SECRET")
# Connect and read timeout of one POST to a receiver.
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 5.0, minimum=0.1)
# How long a worker holds a delivery before another may take it over (must exceed WEBHOOK_TIMEOUT).
WEBHOOK_LEASE_SECONDS = env_float("WEBHOOK_LEASE_SECONDS", 30.0, minimum=1.0)
# Retries back off exponentially up to this many seconds (with jitter) and never stop while an endpoint is active.
WEBHOOK_BACKOFF_CAP = env_float("WEBHOOK_BACKOFF_CAP", 60.0, minimum=1.0)
# GET /metrics requires "Authorization: Bearer <METRICS_TOKEN>" (or METRICS_TOKEN_FILE); without a token it is
# refused, unless METRICS_PUBLIC=1 opens it to anyone who can reach it.
METRICS_TOKEN = env_optional_str("METRICS_TOKEN")
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", DEBUG)  # a DEBUG (local) control plane: public
# Timeout of the scrape's one JSON-RPC call (the chain head); a slow or down chain never fails a scrape.
METRICS_CHAIN_TIMEOUT = env_float("METRICS_CHAIN_TIMEOUT", 1.0, minimum=0.05)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # The pool warns on every reconnect attempt during an outage; the loops say it once (controlplane.outages).
        "psycopg.pool": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
