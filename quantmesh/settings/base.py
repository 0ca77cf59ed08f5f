"""Settings read from the environment (django-environ).

With no environment at all the portal runs on its embedded defaults: SQLite under var/,
the in-memory channel layer, Celery tasks run in process, the `process` instance backend
and console e-mail. Setting DATABASE_URL, REDIS_URL, EMAIL_URL, ... switches to the
production parts; production.py adds the checks that refuse an unsafe deployment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"
# The embedded defaults keep their SQLite file and collected assets here.
(VAR_DIR / "staticfiles").mkdir(parents=True, exist_ok=True)

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False)

# An embedded-default key is fine on a laptop; production.py refuses it.
INSECURE_SECRET_KEY = "django-insecure-quantmesh-embedded-default-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=True)
QM_BASE_DOMAIN = env.str("QM_BASE_DOMAIN", default="localhost")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", f".{QM_BASE_DOMAIN}", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_ID = 1

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "channels",
    "djstripe",
    "quantmesh",
    "accounts",
    "billing",
    "instances",
    "backups",
    "alerts",
    "strategies",
]

MIDDLEWARE = [
    "quantmesh.logs.RequestIdMiddleware",
    "quantmesh.metrics.RequestMetricsMiddleware",
    "quantmesh.api.versioning.ApiVersionMiddleware",  # outermost but metrics: every /api/ answer, 413s too
    "django.middleware.security.SecurityMiddleware",
    "quantmesh.security.SecurityHeadersMiddleware",
    "quantmesh.security.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.SecondFactorRequiredMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # These two last, and sync only: under ASGI the whole chain then runs in one thread, where an async-capable
    # innermost middleware made each of the others hop between the event loop and a thread (8 hops a
    # request to 5).
    "quantmesh.versions.VersionsMemoMiddleware",
    "billing.middleware.EntitlementsMemoMiddleware",
]

# Web server processes (quantmesh/server.py): 0 means one per CPU with REDIS_URL, one without.
QM_WEB_WORKERS = env.int("QM_WEB_WORKERS", default=0)

ROOT_URLCONF = "quantmesh.urls"
ASGI_APPLICATION = "quantmesh.asgi.application"
WSGI_APPLICATION = None

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A persistent connection that died with a database restart is replaced instead of failing a request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASE_POOL_SIZE = env.int("DATABASE_POOL_SIZE", default=16)  # PostgreSQL only
_POOLED = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0
# Request threads outlive requests (quantmesh/request_gate.py), so without a pool each keeps its
# connection between requests: opening one per request was a fifth of a short request's cost on
# SQLite. A pool keeps PostgreSQL's connections itself (Django refuses persistence beside one).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if _POOLED else 300)
# quantmesh/request_gate.py: HTTP requests running Django code at once in one process (the rest wait
# on the event loop, at most QM_REQUEST_QUEUE_SECONDS): no more than the pool has connections.
QM_REQUEST_CONCURRENCY = env.int("QM_REQUEST_CONCURRENCY", default=DATABASE_POOL_SIZE or 16)
QM_REQUEST_QUEUE_SECONDS = env.float("QM_REQUEST_QUEUE_SECONDS", default=30)
# How long a process keeps a user's entitlements between requests at most (billing/entitlements_cache.py:
# a write drops them everywhere at once; this bounds writes that bypass the ORM). 0 turns it off.
QM_ENTITLEMENTS_CACHE_SECONDS = env.int("QM_ENTITLEMENTS_CACHE_SECONDS", default=60)
# The same for bearer tokens with their users and second-factor state (accounts/auth_cache.py): a
# revoke, a new password, a disabled account or a 2FA change drops them everywhere when it commits.
QM_AUTH_CACHE_SECONDS = env.int("QM_AUTH_CACHE_SECONDS", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    options = DATABASES["default"].setdefault("OPTIONS", {})
    # An unreachable database answers 503 within seconds instead of hanging requests.
    options["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    # Each process shares at most DATABASE_POOL_SIZE connections among its request threads (daphne
    # runs every in-flight request on a thread of its own: without a pool, 200 concurrent clients
    # would open 200 connections, past PostgreSQL's max_connections). A request waits up to
    # DATABASE_POOL_TIMEOUT for one; with CONN_HEALTH_CHECKS each is checked before use (a restart).
    if _POOLED:
        options["pool"] = {
            "min_size": 1,
            "max_size": DATABASE_POOL_SIZE,
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=3),
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "quantmesh.cache.ProcessRedisCache",  # one connection pool per process
            "LOCATION": REDIS_URL,
            # An unreachable Redis answers 503 within seconds instead of hanging requests.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
    # A consumer waits for its next message in blocking pops of 5 s (channels_redis' brpop_timeout);
    # redis-py's default read timeout is 5 s too, so an idle consumer's wait ended in a TimeoutError that
    # closed its websocket (live-log viewers were dropped every few seconds under load).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: a real broker when Redis is configured, otherwise tasks run in the calling process.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the worker logs through LOGGING (JSON in production)
CELERY_TIMEZONE = "UTC"

AUTH_USER_MODEL = "accounts.User"
# Console sessions end after QM_SESSION_IDLE_HOURS without a request (each request renews them);
# API tokens have their own expiry (QM_TOKEN_TTL_DAYS).
SESSION_COOKIE_AGE = int(env.float("QM_SESSION_IDLE_HOURS", default=8) * 3600)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_SAMESITE = "Lax"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# allauth: e-mail is the login, verified before the first login.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True  # confirming the e-mail signs the new customer in
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[QuantMesh Cloud] "
ACCOUNT_LOGOUT_ON_GET = False
# A password change ends every session, this one included (accounts.services.credentials_revoke_all).
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env.str("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="QuantMesh Cloud <no-reply@quantmesh.cloud>")

OTP_TOTP_ISSUER = "QuantMesh Cloud"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Alerts: Telegram's Bot API (tests point QM_TELEGRAM_API_URL at a local server); the same alert
# is not sent twice within the de-duplication window.
QM_TELEGRAM_BOT_TOKEN = env.str("QM_TELEGRAM_BOT_TOKEN", default="")
QM_TELEGRAM_API_URL = env.str("QM_TELEGRAM_API_URL", default="https://api.telegram.org")
QM_ALERT_DEDUPE_SECONDS = env.int("QM_ALERT_DEDUPE_SECONDS", default=1800)
QM_ALERT_RESOURCE_THRESHOLD = env.float("QM_ALERT_RESOURCE_THRESHOLD", default=0.9)

# Backups: a local directory by default; S3-compatible object storage when QM_BACKUP_S3_BUCKET is set
# (credentials from the usual AWS_* environment variables).
QM_BACKUP_S3_BUCKET = env.str("QM_BACKUP_S3_BUCKET", default="")
if QM_BACKUP_S3_BUCKET:
    BACKUP_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": QM_BACKUP_S3_BUCKET,
            "endpoint_url": env.str("QM_BACKUP_S3_ENDPOINT_URL", default="") or None,
            "location": "backups",
            "default_acl": "private",
            "file_overwrite": False,
        },
    }
else:
    BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.path("QM_BACKUP_DIR", default=VAR_DIR / "backups")},
    }
QM_BACKUP_RETENTION_DAYS = env.int("QM_BACKUP_RETENTION_DAYS", default=30)
STORAGES = {
    "backups": BACKUP_STORAGE,
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "accounts.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["quantmesh.api.parsers.JSONParser", "quantmesh.api.parsers.CurlFormJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "quantmesh.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "quantmesh.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": [
        "quantmesh.api.throttles.PerUserRateThrottle",
        "quantmesh.api.throttles.PerAddressAnonRateThrottle",
    ],
}
# API rate limits (429 with Retry-After beyond them): per user, and per address for anonymous calls.
QM_API_USER_RATE = env.str("QM_API_USER_RATE", default="600/minute")
QM_API_ANON_RATE = env.str("QM_API_ANON_RATE", default="120/minute")
# Live log streams one user may hold open at once (more are closed with code 4429).
QM_LOGSTREAMS_PER_USER = env.int("QM_LOGSTREAMS_PER_USER", default=10)
SPECTACULAR_SETTINGS = {
    "TITLE": "QuantMesh Cloud API",
    "DESCRIPTION": "Hosted grid market-making instances. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Stated on every answer as X-API-Version (quantmesh/api/versioning.py); policy in the README.
    "EXTENSIONS_INFO": {"x-api-version": "1"},
}

# API tokens and login protection.
QM_TOKEN_TTL = timedelta(days=env.int("QM_TOKEN_TTL_DAYS", default=30))
QM_LOGIN_IP_LIMIT = env.int("QM_LOGIN_IP_LIMIT", default=30)  # attempts per IP per window
QM_LOGIN_IP_WINDOW = timedelta(seconds=env.int("QM_LOGIN_IP_WINDOW_SECONDS", default=60))
QM_LOGIN_ACCOUNT_FAILURES = env.int("QM_LOGIN_ACCOUNT_FAILURES", default=5)  # failures before a lock
QM_LOGIN_ACCOUNT_WINDOW = timedelta(minutes=env.int("QM_LOGIN_ACCOUNT_WINDOW_MINUTES", default=15))
QM_LOGIN_LOCK = timedelta(minutes=env.int("QM_LOGIN_LOCK_MINUTES", default=15))
# Bearer tokens: an address presenting this many unknown tokens in the window is refused (429).
QM_TOKEN_GUESS_LIMIT = env.int("QM_TOKEN_GUESS_LIMIT", default=20)
QM_TOKEN_GUESS_WINDOW = timedelta(seconds=env.int("QM_TOKEN_GUESS_WINDOW_SECONDS", default=60))
QM_MAX_FIELD_LENGTH = 255

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)

# LOG_FORMAT=json (the production stack): one JSON object per line with the request id (quantmesh/logs.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "quantmesh.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": env.str("LOG_FORMAT", default="plain")}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

QM_ADMIN_PATH = env.str("QM_ADMIN_PATH", default="admin/")
QM_TRUST_X_FORWARDED_FOR = env.bool("QM_TRUST_X_FORWARDED_FOR", default=False)

# Billing: Stripe when keys are configured, else the `local` provider (grants without payment;
# production settings refuse it).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
QM_BILLING_PROVIDER = env.str("QM_BILLING_PROVIDER", default="stripe" if STRIPE_SECRET_KEY else "local")
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith("sk_live_")
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
STRIPE_TEST_SECRET_KEY = "" if STRIPE_LIVE_MODE else STRIPE_SECRET_KEY
# The API version our payloads and code are written for; Stripe answers in this shape whatever the
# account's default is.
STRIPE_API_VERSION = "2026-05-27.dahlia"
if env.str("STRIPE_API_HOST", default=""):  # a Stripe-compatible server (tests run one on loopback)
    STRIPE_API_HOST = env.str("STRIPE_API_HOST")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# The portal's public address: Stripe Checkout and the customer portal return here.
QM_PUBLIC_URL = env.str("QM_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# After a failed payment, instances keep running this long before they are stopped.
QM_PAYMENT_GRACE = timedelta(days=env.int("QM_PAYMENT_GRACE_DAYS", default=3))
# A referrer's credit when a referred user's first invoice is paid: this share of that invoice.
QM_REFERRAL_CREDIT_PERCENT = env.int("QM_REFERRAL_CREDIT_PERCENT", default=20)
# A referred e-mail on the referrer's own domain is the same person, unless the domain is a public
# mail provider's (anyone can have an address there).
QM_REFERRAL_PUBLIC_EMAIL_DOMAINS = env.list(
    "QM_REFERRAL_PUBLIC_EMAIL_DOMAINS",
    default=[
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "foxmail.com",
        "sina.com",
    ],
)
# The daily reconcile ends an entitlement whose paid period ended longer ago than this (Stripe's
# renewal retries and late webhooks fit inside it).
QM_BILLING_RECONCILE_MARGIN = timedelta(days=env.int("QM_BILLING_RECONCILE_MARGIN_DAYS", default=2))
# Reminders to unpaid customers, this many hours before their instances stop.
QM_DUNNING_REMINDER_HOURS = env.list("QM_DUNNING_REMINDER_HOURS", cast=int, default=[48, 24, 4])

# Instances.
QM_RUNTIME_BACKEND = env.str("QM_RUNTIME_BACKEND", default="process")
QM_ENGINE_IMAGE = env.str("QM_ENGINE_IMAGE", default="quantmesh/engine:latest")
QM_DOCKER_NETWORK = env.str("QM_DOCKER_NETWORK", default="host")
# The docker backend manages only containers labelled with this deployment's scope (when set).
QM_RUNTIME_SCOPE = env.str("QM_RUNTIME_SCOPE", default="")
# The swarm backend: the volume driver and its options (JSON) holding instance data, and placement
# constraints for instance tasks. With plain local volumes instances stay on the worker's node.
QM_SWARM_VOLUME_DRIVER = env.str("QM_SWARM_VOLUME_DRIVER", default="local")
QM_SWARM_VOLUME_OPTIONS = env.json("QM_SWARM_VOLUME_OPTIONS", default={})
QM_SWARM_CONSTRAINTS = env.list("QM_SWARM_CONSTRAINTS", default=[])
# Each worker node's Docker API by hostname, e.g. {"node2": "unix:///run/qm-node2/docker.sock"}:
# logs, statistics, files and engine addresses are read where the task runs.
QM_SWARM_NODE_ENGINES = env.json("QM_SWARM_NODE_ENGINES", default={})
# Regions customers choose from, code -> name; a region is the nodes labelled quantmesh.region=<code>.
QM_REGIONS = env.json("QM_REGIONS", default={})
QM_DEFAULT_REGION = env.str("QM_DEFAULT_REGION", default="")
QM_PROCESS_ROOT = env.path("QM_PROCESS_ROOT", default=VAR_DIR / "instances")
# Engines' run keys (proxy secret, the key of their secrets on the volume) live here, on the host's
# tmpfs, never on a disk or volume (the docker backend bind-mounts each instance's directory).
# Default: /dev/shm/quantmesh-keys-<uid> (instances/runtime/base.py).
QM_RUN_KEYS_DIR = env.str("QM_RUN_KEYS_DIR", default="")
QM_INSTANCE_URL_TEMPLATE = env.str(
    "QM_INSTANCE_URL_TEMPLATE",
    default="http://instance-{slug}.{domain}:8000" if DEBUG else "https://instance-{slug}.{domain}",
)
QM_INSTANCE_PORT = 8080  # the engine's port inside its container, as the manual shows
QM_CREATE_WAIT_SECONDS = env.float("QM_CREATE_WAIT_SECONDS", default=60)  # POST create waits this long for running
# While it waits (on the channel layer), a lifecycle call also re-reads the instance this often.
QM_WAIT_RECHECK_SECONDS = env.float("QM_WAIT_RECHECK_SECONDS", default=1.0)
QM_PROVISION_TIMEOUT_SECONDS = env.float("QM_PROVISION_TIMEOUT_SECONDS", default=60)  # to healthy, else failed
QM_STOP_TIMEOUT_SECONDS = env.int("QM_STOP_TIMEOUT_SECONDS", default=10)
QM_RECONCILE_INTERVAL_SECONDS = env.float("QM_RECONCILE_INTERVAL_SECONDS", default=15)
QM_CRASH_LOOP_RESTARTS = env.int("QM_CRASH_LOOP_RESTARTS", default=5)  # restarts within the window → failed
QM_CRASH_LOOP_WINDOW_SECONDS = env.int("QM_CRASH_LOOP_WINDOW_SECONDS", default=600)
QM_RESTART_BACKOFF_SECONDS = env.float("QM_RESTART_BACKOFF_SECONDS", default=5)  # doubles per restart, capped
QM_RESTART_BACKOFF_MAX_SECONDS = env.float("QM_RESTART_BACKOFF_MAX_SECONDS", default=300)
QM_HEARTBEAT_STALE_SECONDS = env.float("QM_HEARTBEAT_STALE_SECONDS", default=60)
QM_DATA_RETENTION_DAYS = env.int("QM_DATA_RETENTION_DAYS", default=30)
# Secrets the portal keeps (exchange keys, proxy secrets) are encrypted under this key list (Fernet keys,
# comma-separated; the first encrypts, all decrypt: quantmesh/crypto.py). Unset: one random key kept in
# QM_ENCRYPTION_KEY_FILE (embedded default only; production requires the list).
QM_ENCRYPTION_KEYS = env.list("QM_ENCRYPTION_KEYS", default=[k for k in [env.str("QM_ENCRYPTION_KEY", default="")] if k])  # noqa: E501
QM_ENCRYPTION_KEY_FILE = env.path("QM_ENCRYPTION_KEY_FILE", default=VAR_DIR / "encryption.key")

# Production routing by Traefik's HTTP provider (instances/traefik.py); unset: the endpoint is off.
QM_TRAEFIK_PROVIDER_TOKEN = env.str("QM_TRAEFIK_PROVIDER_TOKEN", default="")
QM_TRAEFIK_PORTAL_URL = env.str("QM_TRAEFIK_PORTAL_URL", default="http://portal:8000")
QM_TRAEFIK_CERT_RESOLVER = env.str("QM_TRAEFIK_CERT_RESOLVER", default="letsencrypt")
# Prometheus: scrape endpoints want this bearer token and refuse everyone while it is unset; the
# portal's address as the service-discovery target (default: the Host Prometheus used).
QM_METRICS_TOKEN = env.str("QM_METRICS_TOKEN", default="")
QM_METRICS_PORTAL_TARGET = env.str("QM_METRICS_PORTAL_TARGET", default="")
# Grafana: its data source is the portal's tenant filter in front of Prometheus.
QM_PROMETHEUS_URL = env.str("QM_PROMETHEUS_URL", default="http://prometheus:9090")
QM_GRAFANA_DATASOURCE_TOKEN = env.str("QM_GRAFANA_DATASOURCE_TOKEN", default="")
# Custom domains are verified against these DNS servers (default: the system's resolver).
QM_DNS_NAMESERVERS = env.list("QM_DNS_NAMESERVERS", default=[])
QM_DNS_PORT = env.int("QM_DNS_PORT", default=53)
QM_DNS_TIMEOUT_SECONDS = env.float("QM_DNS_TIMEOUT_SECONDS", default=2)
QM_DOMAINS_PER_INSTANCE = env.int("QM_DOMAINS_PER_INSTANCE", default=5)
QM_DOMAIN_PENDING_HOURS = env.int("QM_DOMAIN_PENDING_HOURS", default=72)  # unverified names are released after
QM_WS_HEARTBEAT_SECONDS = env.float("QM_WS_HEARTBEAT_SECONDS", default=20)
# How often the portal reads each running engine's trading state and PnL, and how long it keeps them.
QM_ENGINE_SAMPLE_SECONDS = env.float("QM_ENGINE_SAMPLE_SECONDS", default=15)
QM_ENGINE_HISTORY_DAYS = env.int("QM_ENGINE_HISTORY_DAYS", default=8)

CELERY_BEAT_SCHEDULE = {
    "instances-reconcile": {"task": "instances.tasks.reconcile", "schedule": QM_RECONCILE_INTERVAL_SECONDS},
    "billing-expire-subscriptions": {"task": "billing.tasks.expire_subscriptions", "schedule": 300},
    "billing-reconcile": {"task": "billing.tasks.reconcile_subscriptions", "schedule": 86400},
    "billing-dunning": {"task": "billing.tasks.dunning_remind", "schedule": 900},
    "instances-autoscale": {"task": "instances.tasks.autoscale", "schedule": 60},
    "domains-recheck": {"task": "instances.tasks.domains_recheck", "schedule": 300},
    "alerts-watch": {"task": "alerts.tasks.watch", "schedule": 60},
    "instances-sample-engines": {"task": "instances.tasks.sample_engines", "schedule": QM_ENGINE_SAMPLE_SECONDS},
    "backups-daily": {"task": "backups.tasks.daily", "schedule": 3600},  # each instance once a day
    "backups-prune": {"task": "backups.tasks.prune", "schedule": 3600},
}
