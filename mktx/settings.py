"""The one settings file. Everything that varies between machines comes from the environment (CONTRACT.md)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mktx.env import env_bool, env_int, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEV_SECRET_KEY = "dev-insecure-mktx-secret-key-change-me-in-production"  # noqa: S105 - refused in production

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DEBUG is off (the dev key is refused in production)")
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters")

# Production names its hosts: no default there (mktx.E004 refuses to start without them), any host in development.
ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS", "*" if DEBUG else "").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "mktx.api",
    "mktx.iam",
    "mktx.accounts",
    "mktx.tallies",
    "contacts",
    "campaigns",
    "automation",
    "chatbot",
    "analytics",
    "webhooks_app",
]

MIDDLEWARE = [
    "mktx.api.middleware.RequestIdMiddleware",
    "mktx.api.middleware.ApiErrorEnvelopeMiddleware",
    "mktx.api.exceptions.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "mktx.api.middleware.BodySizeLimitMiddleware",
    "mktx.api.middleware.QueryStringNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mktx.api.middleware.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "mktx.urls"
WSGI_APPLICATION = "mktx.wsgi.application"
APPEND_SLASH = False

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

# --- database -------------------------------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", "sqlite:///var/mktx.sqlite3")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _name = str(_db.get("NAME") or "var/mktx.sqlite3")
    if _name != ":memory:" and not Path(_name).is_absolute():
        _name = str(BASE_DIR / _name)
    if _name != ":memory:":
        Path(_name).parent.mkdir(parents=True, exist_ok=True)
    _db["NAME"] = _name
    _db["CONN_MAX_AGE"] = 0
    # Several processes (API workers, the task cluster) share the file: wait for locks, take the write lock up
    # front so that a read-then-write transaction never fails half way, and let readers run beside a writer.
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _db["ENGINE"] not in ("django.db.backends.postgresql",):
    raise ImproperlyConfigured(f"DATABASE_URL: only PostgreSQL and SQLite are supported, not {_db['ENGINE']}")
DATABASES = {"default": _db}
IS_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and task broker -----------------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "")
# Redis fails open (mktx/redis.py): a call waits at most this long, and after a failure Redis is not tried again
# for MKTX_REDIS_RETRY_SECONDS.
MKTX_REDIS_TIMEOUT = env_int("MKTX_REDIS_TIMEOUT_MS", 100, minimum=1) / 1000
MKTX_REDIS_RETRY_SECONDS = env_int("MKTX_REDIS_RETRY_SECONDS", 5, minimum=0)
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} is not a redis:// URL")
    CACHES = {
        "default": {
            "BACKEND": "mktx.redis.FailOpenRedisCache",  # a down Redis is a cache miss, not a 500 (mktx/redis.py)
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("MKTX_CACHE_PREFIX", "mktx"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "mktx_cache",
            "KEY_PREFIX": env_str("MKTX_CACHE_PREFIX", "mktx"),
        }
    }

TASKS_SYNC = env_bool("MKTX_TASKS_SYNC", False)
Q_CLUSTER: dict[str, object] = {
    "name": "mktx",
    "workers": env_int("MKTX_WORKERS", 4, minimum=1),  # the sender and resumer loops hold one each
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "queue_limit": 50,
    "bulk": 10,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "sync": TASKS_SYNC,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.5

# --- auth -------------------------------------------------------------------------------------------------------------

AUTH_USER_MODEL = "iam.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if env_bool("MKTX_FAST_PASSWORD_HASHER", False):
    # MD5 makes a stolen hash trivial to crack: development only (the test suite sets it in mktx/test_settings.py)
    if not DEBUG:
        raise ImproperlyConfigured("MKTX_FAST_PASSWORD_HASHER is refused when DEBUG is off")
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

JWT_ALGORITHM = env_str("JWT_ALGORITHM", "HS256")
if JWT_ALGORITHM not in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512"):
    raise ImproperlyConfigured(f"JWT_ALGORITHM={JWT_ALGORITHM!r} is not supported (HS256 or RS256)")
JWT_SIGNING_KEY = env_str("JWT_SIGNING_KEY", SECRET_KEY if JWT_ALGORITHM.startswith("HS") else "")
# The external IAM's key: its RS public key, or with HS its shared secret (which may be JWT_SIGNING_KEY itself).
# Unset: no external IAM, and every token must name a user stored here.
JWT_VERIFYING_KEY = env_str("JWT_VERIFYING_KEY", "")
JWT_ISSUER = env_str("JWT_ISSUER", "mktx")  # the `iss` of the tokens issued here
if JWT_ALGORITHM.startswith("RS") and not JWT_VERIFYING_KEY:
    raise ImproperlyConfigured("JWT_VERIFYING_KEY (a PEM public key) is required with an RS algorithm")
JWT_ACCESS_TTL = env_int("JWT_ACCESS_TTL", 3600, minimum=1)
JWT_REFRESH_TTL = env_int("JWT_REFRESH_TTL", 1209600, minimum=1)
JWT_LEEWAY = 5  # seconds of clock skew tolerated with an external IAM

SIMPLE_JWT = {
    "ALGORITHM": JWT_ALGORITHM,
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "VERIFYING_KEY": JWT_VERIFYING_KEY or None,
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=JWT_ACCESS_TTL),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=JWT_REFRESH_TTL),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "LEEWAY": JWT_LEEWAY,
}

# Encrypt stored X OAuth tokens: FIELD_ENCRYPTION_KEYS, newest first (new tokens are encrypted with the first, any
# of them decrypts, `rotate_field_encryption` re-encrypts with the first), or one FIELD_ENCRYPTION_KEY. Derived from
# the secret key when neither is set, which only development accepts (mktx.E003).
_field_keys = [k.strip() for k in env_str("FIELD_ENCRYPTION_KEYS", "").split(",") if k.strip()]
if _field_keys and env_str("FIELD_ENCRYPTION_KEY", ""):
    raise ImproperlyConfigured("Set FIELD_ENCRYPTION_KEYS or FIELD_ENCRYPTION_KEY, not both")
FIELD_ENCRYPTION_KEYS_DERIVED = not (_field_keys or env_str("FIELD_ENCRYPTION_KEY", ""))
FIELD_ENCRYPTION_KEYS = _field_keys or [
    env_str("FIELD_ENCRYPTION_KEY", "")
    or base64.urlsafe_b64encode(hashlib.sha256(("field-encryption:" + SECRET_KEY).encode()).digest()).decode()
]

# --- REST framework ---------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["mktx.iam.authentication.MerchantJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["mktx.api.permissions.IsMerchantMember", "mktx.api.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["mktx.api.throttling.MerchantRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["mktx.api.renderers.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["mktx.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "mktx.api.pagination.SkipTakePagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mktx.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%SZ",
    "COERCE_DECIMAL_TO_STRING": False,
}

MKTX_API_RATE_LIMIT = env_rate("MKTX_API_RATE_LIMIT", "100/minute")
MKTX_LOGIN_RATE_LIMIT = env_rate("MKTX_LOGIN_RATE_LIMIT", "20/minute")
# How many reverse proxies in front of the service append to X-Forwarded-For; 0 = use the socket's address only.
MKTX_TRUSTED_PROXIES = env_int("MKTX_TRUSTED_PROXIES", 0, minimum=0)
# Failed logins per email (API and admin) before that email answers 429 for the rest of the window. A success does
# not reset the count: the window alone ends a lockout, so an attacker cannot clear it with a known password.
MKTX_LOGIN_FAILURE_LIMIT = env_int("MKTX_LOGIN_FAILURE_LIMIT", 10, minimum=1)
MKTX_LOGIN_FAILURE_WINDOW = env_int("MKTX_LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1)
# Expression indexes on the shared contacts table for numeric attribute keys of segments (PostgreSQL): at most this
# many keys, the most widely used (contacts/services/attribute_indexes.py); the others are compared without one.
MKTX_MAX_ATTRIBUTE_INDEXES = env_int("MKTX_MAX_ATTRIBUTE_INDEXES", 16, minimum=0)
MKTX_MAX_BODY_BYTES = env_int("MKTX_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MKTX_MAX_BODY_BYTES
MKTX_INBOUND_DRAIN_GRACE = env_int("MKTX_INBOUND_DRAIN_GRACE_MS", 250, minimum=0) / 1000
MKTX_WEBHOOK_MAX_BYTES = env_int("MKTX_WEBHOOK_MAX_BYTES", 256 * 1024, minimum=1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "mktx: X (Twitter) marketing API",
    "DESCRIPTION": (
        "Multi-tenant API for merchants' X accounts: inbox, contacts, templates, segments, campaigns, "
        "automation flows and the AI chatbot. Every response is wrapped in `{success, data}` (lists add "
        "`pagination`); errors are `{success: false, error, code, details}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1/mkt-x",
    # several models have a `status` or a `type`: name each choice set (`check --deploy` warns of the collision)
    "ENUM_NAME_OVERRIDES": {
        "AccountStatusEnum": "mktx.accounts.models.AccountStatus",
        "ConversationStatusEnum": "contacts.models.ConversationStatus",
        "TemplateTypeEnum": "campaigns.models.TemplateType",
        "TemplateTypeInputEnum": "campaigns.models.TemplateType.values",  # the inputs list values without labels
        "CampaignTypeInputEnum": "campaigns.models.CampaignType.values",
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mktx.api.schema.envelope_postprocessing_hook",
    ],
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- X and the outside world ------------------------------------------------------------------------------------------

X_API_BASE_URL = env_url("X_API_BASE_URL", "https://api.x.com")
X_CONSUMER_KEY = env_str("X_CONSUMER_KEY", "")
X_CONSUMER_SECRET = env_str("X_CONSUMER_SECRET", "")
X_BEARER_TOKEN = env_str("X_BEARER_TOKEN", "")
X_API_CONNECT_TIMEOUT = env_int("X_API_CONNECT_TIMEOUT_MS", 3050, minimum=1) / 1000
X_API_READ_TIMEOUT = env_int("X_API_READ_TIMEOUT_MS", 10000, minimum=1) / 1000
MKTX_PUBLIC_URL = env_url("MKTX_PUBLIC_URL", "http://localhost:5000")
MKTX_X_DM_DAILY_LIMIT = env_int("MKTX_X_DM_DAILY_LIMIT", 500, minimum=0)
MKTX_ATTACHMENT_ALLOW_PRIVATE = env_bool("MKTX_ATTACHMENT_ALLOW_PRIVATE", False)
# Wall-clock limit on one fetch of a merchant-supplied URL (mktx/egress.py), besides its connect/read timeouts.
MKTX_MEDIA_FETCH_DEADLINE = env_int("MKTX_MEDIA_FETCH_DEADLINE_MS", 5000, minimum=1) / 1000
MKTX_CAMPAIGN_DAILY_LIMIT = env_int("MKTX_CAMPAIGN_DAILY_LIMIT", 10000, minimum=0)
# the share of MKTX_X_DM_DAILY_LIMIT that campaigns and flows leave to conversation replies (rounded up: 500 -> 50)
_REPLY_RESERVE = env_str("MKTX_REPLY_RESERVE", "").strip() or "0.1"
try:
    MKTX_REPLY_RESERVE = float(_REPLY_RESERVE)
except ValueError:
    raise ImproperlyConfigured(f"MKTX_REPLY_RESERVE={_REPLY_RESERVE!r} is not a fraction (0.1 is 10%)") from None
if not 0 <= MKTX_REPLY_RESERVE <= 0.9:  # NaN fails this too
    raise ImproperlyConfigured(f"MKTX_REPLY_RESERVE={_REPLY_RESERVE!r} must be a fraction between 0 and 0.9")
# until X has answered an account's DM send with its x-rate-limit-* headers, its campaign DMs are this far apart
MKTX_MIN_SEND_INTERVAL_MS = env_int("MKTX_MIN_SEND_INTERVAL_MS", 1000, minimum=0)
# the campaign sender: how many sender loops may run at once, how long one loop runs before handing over (0: send
# what is due now and stop, as the tests do), how long a claimed delivery is leased to its worker
MKTX_SENDER_LANES = env_int("MKTX_SENDER_LANES", 1, minimum=1)  # keep it below MKTX_WORKERS: inbound work needs one
MKTX_SENDER_BUDGET_SECONDS = env_int("MKTX_SENDER_BUDGET_SECONDS", 0 if TASKS_SYNC else 50, minimum=0)
MKTX_SENDER_LEASE_SECONDS = env_int("MKTX_SENDER_LEASE_SECONDS", 120, minimum=10)
# a sender or resumer loop's hold on its lane, renewed every pass: a loop killed with its worker frees it this soon
MKTX_LANE_LEASE_SECONDS = env_int("MKTX_LANE_LEASE_SECONDS", 30, minimum=5)
# automation flows: the loop guard's flow DMs per contact per 24 h; resumer loops at once, and how long one runs
MKTX_FLOW_SENDS_PER_CONTACT_DAY = env_int("MKTX_FLOW_SENDS_PER_CONTACT_DAY", 10, minimum=0)
MKTX_FLOW_LANES = env_int("MKTX_FLOW_LANES", 2, minimum=1)
MKTX_FLOW_BUDGET_SECONDS = env_int("MKTX_FLOW_BUDGET_SECONDS", 0 if TASKS_SYNC else 50, minimum=0)
# audiences estimated above this many contacts are frozen by a worker rather than in the start request
MKTX_INLINE_FREEZE_LIMIT = env_int("MKTX_INLINE_FREEZE_LIMIT", 20000, minimum=0)
MKTX_REPLY_ATTRIBUTION_HOURS = env_int("MKTX_REPLY_ATTRIBUTION_HOURS", 72, minimum=1)
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")

MKTX_DEMO_EMAIL = env_str("MKTX_DEMO_EMAIL", "demo@goodgo.local")
MKTX_DEMO_PASSWORD = env_str("MKTX_DEMO_PASSWORD", "demo-password-1")

# --- i18n, static, security ---------------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("MKTX_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("MKTX_SECURE_COOKIES", True)
    # HTTPS only, unless turned off explicitly (then `check --deploy` says so); the probes stay reachable over http
    SECURE_SSL_REDIRECT = env_bool("MKTX_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("MKTX_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MKTX_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("MKTX_HSTS_PRELOAD", True)
# X-Forwarded-Proto is only a proxy's word when a proxy is trusted; without one any client could claim https
if MKTX_TRUSTED_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- logging: one line per record on stdout, with the request id --------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "mktx.api.logging.RequestIdFilter"}},
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "line",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.db.backends": {"level": "INFO"},
        "django-q": {"level": "WARNING" if not DEBUG else "INFO"},
    },
}
