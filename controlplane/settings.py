"""Settings for the Switchyard control plane, read from environment variables only.

Every variable goes through a small typed helper that raises ImproperlyConfigured
naming the variable on a bad value, so a typo stops the process at start-up.
Without DATABASE_URL and REDIS_URL the service runs on embedded defaults
(SQLite under var/, an in-process channel layer, Celery on a filesystem broker).
"""

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from controlplane.demo.scenario import MAX_SPEED as _DEMO_MAX_SPEED
from controlplane.demo.scenario import MIN_SPEED as _DEMO_MIN_SPEED

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    """Read a boolean variable: 1/true/yes/on or 0/false/no/off (empty = false)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def envint(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Read an integer variable, optionally bounded (inclusive)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        value = default
    else:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(
            f"{name} must be an integer between {minimum} and {maximum}, got {value}"
        )
    return value


def envfloat(name: str, default: float, *, minimum: float, maximum: float) -> float:
    """Read a number, bounded (inclusive)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        value = default
    else:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(
            f"{name} must be a number between {minimum:g} and {maximum:g}, got {raw!r}"
        )
    return value


def envstr(name: str, default: str) -> str:
    """Read a string variable (surrounding whitespace stripped)."""
    return os.environ.get(name, default).strip()


def envlist(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; empty items are an error (a stray comma is a typo)."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    if raw.strip() == "":
        return []
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name} has an empty item in {raw!r}")
    return items


DEBUG = envbool("DEBUG", False)
# The test runner needs no SECRET_KEY (tests never serve real users).
TESTING = "pytest" in sys.modules or sys.argv[1:2] == ["test"]

_DEV_SECRET_KEY = "django-insecure-switchyard-dev-key-do-not-use-in-production"
SECRET_KEY = envstr("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = envlist(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# Behind TLS: HTTPS-only cookies, HSTS and the redirect, all off by default.
SWITCHYARD_SECURE = envbool("SWITCHYARD_SECURE", False)
SESSION_COOKIE_SECURE = SWITCHYARD_SECURE
CSRF_COOKIE_SECURE = SWITCHYARD_SECURE
SECURE_SSL_REDIRECT = SWITCHYARD_SECURE
SECURE_HSTS_SECONDS = envint(
    "SECURE_HSTS_SECONDS", 31_536_000 if SWITCHYARD_SECURE else 0, minimum=0, maximum=63_072_000
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SWITCHYARD_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SWITCHYARD_SECURE else None
# Health probes come over plain HTTP from the load balancer.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^health/"]
SESSION_COOKIE_HTTPONLY = True
# The security headers of every response (docs/operations.md "Security headers").
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# HSTS preload is a decision of the registrable domain's owner (the browsers' list then
# covers the domain and all its subdomains, and leaving it takes months): off unless
# asked for, and `check --deploy` is not told to expect it then.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Powerful browser features no page of Switchyard uses, refused to every page and frame
# (the Permissions-Policy header, controlplane.middleware.PermissionsPolicyMiddleware).
SWITCHYARD_PERMISSIONS_POLICY_DENY = [
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "encrypted-media",
    "fullscreen",
    "geolocation",
    "gyroscope",
    "hid",
    "idle-detection",
    "magnetometer",
    "microphone",
    "midi",
    "payment",
    "picture-in-picture",
    "publickey-credentials-get",
    "screen-wake-lock",
    "serial",
    "usb",
    "xr-spatial-tracking",
]

# Content-Security-Policy (django-csp): scripts, styles, images and connections (the
# dashboard's WebSocket included: 'self' covers ws: and wss: to the same host) come from
# this origin only; no inline script or style, no eval, no plugin, no framing.
# SWITCHYARD_CSP_REPORT_ONLY sends the same policy as Content-Security-Policy-Report-Only
# (the browser reports what it would block and blocks nothing); SWITCHYARD_CSP_REPORT_URI
# is where browsers send their reports. The SWITCHYARD_CSP_*_SOURCES lists add sources
# (origins, schemes, or quoted keywords and hashes such as 'sha256-...') to one directive,
# for a proxy in front that injects its own script or style.
_CSP_SOURCE = re.compile(r"'[A-Za-z0-9+/=_-]+'|[^\s;,']+")


def _csp_sources(name: str) -> list[str]:
    sources = envlist(name, [])
    for source in sources:
        if not _CSP_SOURCE.fullmatch(source):
            raise ImproperlyConfigured(
                f"{name} items must be CSP sources (an origin, a scheme such as https:, or "
                f"a quoted keyword or hash), got {source!r}"
            )
    return sources


SWITCHYARD_CSP_REPORT_ONLY = envbool("SWITCHYARD_CSP_REPORT_ONLY", False)
SWITCHYARD_CSP_REPORT_URI = envstr("SWITCHYARD_CSP_REPORT_URI", "")
if SWITCHYARD_CSP_REPORT_URI and not _CSP_SOURCE.fullmatch(SWITCHYARD_CSP_REPORT_URI):
    raise ImproperlyConfigured(
        f"SWITCHYARD_CSP_REPORT_URI must be a URL, got {SWITCHYARD_CSP_REPORT_URI!r}"
    )
_CSP_DIRECTIVES: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'", *_csp_sources("SWITCHYARD_CSP_SCRIPT_SOURCES")],
    "style-src": ["'self'", *_csp_sources("SWITCHYARD_CSP_STYLE_SOURCES")],
    "img-src": ["'self'", *_csp_sources("SWITCHYARD_CSP_IMG_SOURCES")],
    "connect-src": ["'self'", *_csp_sources("SWITCHYARD_CSP_CONNECT_SOURCES")],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if SWITCHYARD_CSP_REPORT_URI:
    _CSP_DIRECTIVES["report-uri"] = [SWITCHYARD_CSP_REPORT_URI]
CONTENT_SECURITY_POLICY = None if SWITCHYARD_CSP_REPORT_ONLY else {"DIRECTIVES": _CSP_DIRECTIVES}
CONTENT_SECURITY_POLICY_REPORT_ONLY = (
    {"DIRECTIVES": _CSP_DIRECTIVES} if SWITCHYARD_CSP_REPORT_ONLY else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Beat's DatabaseScheduler (docker-compose); it loads CELERY_BEAT_SCHEDULE on start.
    "django_celery_beat",
    # Failed-login tracking and lockout (admin and dashboard sign-in).
    "axes",
    "controlplane.core",
    "controlplane.circuits",
    "controlplane.alerts",
    "dashboard",
    "controlplane.demo",
    "drf_spectacular_sidecar",
]

# Every middleware here is async-capable, so long polls never pin a thread.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "controlplane.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view failing because the database is away: 503 with Retry-After, not a 500.
    "controlplane.core.errors.DatabaseUnavailableMiddleware",
    # Last: turns a locked-out sign-in into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Sign-in lockout: after SWITCHYARD_LOGIN_FAILURE_LIMIT failed sign-ins for one username
# from one address, that pair is refused (429) for SWITCHYARD_LOGIN_COOLOFF_MINUTES.
# API tokens and agent tokens are not passwords and are not counted here.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend"]
AXES_FAILURE_LIMIT = envint("SWITCHYARD_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = envint("SWITCHYARD_LOGIN_COOLOFF_MINUTES", 15, minimum=1, maximum=10080) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# Single sign-on with OpenID Connect (docs/sso.md): on when SWITCHYARD_OIDC_ISSUER is
# set, and then the provider's endpoints, the client id and the client secret must be
# set too. Authorization code flow with PKCE (S256), state and nonce checked, the ID
# token's RS256 signature checked against the provider's keys (JWKS), its issuer and
# audience against these settings. Endpoints are https:// URLs (http:// on a loopback
# host only). The secret is read here and sent to the token endpoint only, never logged.
_ROLE_NAMES = ("viewer", "operator", "admin")


def _oidc_url(name: str) -> str:
    value = envstr(name, "")
    loopback = re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/\S*)?", value)
    if value and not (re.fullmatch(r"https://[^\s/]+(/\S*)?", value) or loopback):
        raise ImproperlyConfigured(
            f"{name} must be an https:// URL (http:// on a loopback host only), got {value!r}"
        )
    return value


def _json_map(name: str) -> dict[str, Any]:
    raw = envstr(name, "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {raw!r}")
    return value


def _team_map(name: str) -> dict[str, dict[str, str]]:
    """Claim value -> {team slug: role}."""
    found = _json_map(name)
    for claim_value, teams in found.items():
        if not isinstance(teams, dict) or not all(
            isinstance(slug, str) and slug and role in _ROLE_NAMES for slug, role in teams.items()
        ):
            raise ImproperlyConfigured(
                f"{name}[{claim_value!r}] must map team slugs to one of {', '.join(_ROLE_NAMES)}, "
                f"got {teams!r}"
            )
    return found


def _role_map(name: str) -> dict[str, str]:
    """Claim value -> global role."""
    found = _json_map(name)
    for claim_value, role in found.items():
        if role not in _ROLE_NAMES:
            raise ImproperlyConfigured(
                f"{name}[{claim_value!r}] must be one of {', '.join(_ROLE_NAMES)}, got {role!r}"
            )
    return found


SWITCHYARD_OIDC_ISSUER = envstr("SWITCHYARD_OIDC_ISSUER", "").rstrip("/")
SWITCHYARD_OIDC_ENABLED = bool(SWITCHYARD_OIDC_ISSUER)
# The provider's name on the sign-in page's button ("Sign in with <name>").
SWITCHYARD_OIDC_PROVIDER_NAME = envstr("SWITCHYARD_OIDC_PROVIDER_NAME", "single sign-on")
# The claim whose values (a list, or one string such as Google's hd) are mapped to team
# roles by SWITCHYARD_OIDC_TEAM_MAP (JSON: value -> {team slug: role}) and to global
# roles by SWITCHYARD_OIDC_ROLE_MAP (JSON: value -> role). Values mapped to nothing are
# ignored; several values granting one team give the highest of their roles.
SWITCHYARD_OIDC_TEAMS_CLAIM = envstr("SWITCHYARD_OIDC_TEAMS_CLAIM", "groups")
SWITCHYARD_OIDC_TEAM_MAP = _team_map("SWITCHYARD_OIDC_TEAM_MAP")
SWITCHYARD_OIDC_ROLE_MAP = _role_map("SWITCHYARD_OIDC_ROLE_MAP")
# A first sign-in of someone matched to no user creates one (else it is refused).
SWITCHYARD_OIDC_CREATE_USERS = envbool("SWITCHYARD_OIDC_CREATE_USERS", True)
# Seconds each request to the provider (token, userinfo, keys) may take.
SWITCHYARD_OIDC_TIMEOUT = envint("SWITCHYARD_OIDC_TIMEOUT", 10, minimum=1, maximum=120)
# Optional RP-initiated logout: after the local session ends, the browser is sent to
# this end-session endpoint of the provider (with the ID token as a hint).
SWITCHYARD_OIDC_END_SESSION_ENDPOINT = _oidc_url("SWITCHYARD_OIDC_END_SESSION_ENDPOINT")
# The password form of the sign-in page (and the admin's): on by default. Off, the page
# offers single sign-on only and a password sign-in is refused (403).
SWITCHYARD_LOCAL_LOGIN = envbool("SWITCHYARD_LOCAL_LOGIN", True)

# mozilla-django-oidc's settings, from the ones above.
OIDC_OP_ISSUER = SWITCHYARD_OIDC_ISSUER
OIDC_OP_AUTHORIZATION_ENDPOINT = _oidc_url("SWITCHYARD_OIDC_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = _oidc_url("SWITCHYARD_OIDC_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = _oidc_url("SWITCHYARD_OIDC_USERINFO_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = _oidc_url("SWITCHYARD_OIDC_JWKS_ENDPOINT")
OIDC_RP_CLIENT_ID = envstr("SWITCHYARD_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = envstr("SWITCHYARD_OIDC_CLIENT_SECRET", "")
OIDC_RP_SCOPES = envstr("SWITCHYARD_OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_NONCE = True
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TIMEOUT = SWITCHYARD_OIDC_TIMEOUT
OIDC_CREATE_USER = SWITCHYARD_OIDC_CREATE_USERS
OIDC_STORE_ID_TOKEN = bool(SWITCHYARD_OIDC_END_SESSION_ENDPOINT)
OIDC_AUTHENTICATION_CALLBACK_URL = "dashboard:oidc_callback"
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
if SWITCHYARD_OIDC_ENABLED:
    _missing = [
        name
        for name, value in (
            ("SWITCHYARD_OIDC_AUTHORIZATION_ENDPOINT", OIDC_OP_AUTHORIZATION_ENDPOINT),
            ("SWITCHYARD_OIDC_TOKEN_ENDPOINT", OIDC_OP_TOKEN_ENDPOINT),
            ("SWITCHYARD_OIDC_USERINFO_ENDPOINT", OIDC_OP_USER_ENDPOINT),
            ("SWITCHYARD_OIDC_JWKS_ENDPOINT", OIDC_OP_JWKS_ENDPOINT),
            ("SWITCHYARD_OIDC_CLIENT_ID", OIDC_RP_CLIENT_ID),
            ("SWITCHYARD_OIDC_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
        )
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(
            f"SWITCHYARD_OIDC_ISSUER is set: {', '.join(_missing)} must be set too"
        )
    if "openid" not in OIDC_RP_SCOPES.split():
        raise ImproperlyConfigured(
            f"SWITCHYARD_OIDC_SCOPES must include openid, got {OIDC_RP_SCOPES!r}"
        )
    AUTHENTICATION_BACKENDS.append("controlplane.circuits.sso.OIDCBackend")
elif not SWITCHYARD_LOCAL_LOGIN:
    raise ImproperlyConfigured(
        "SWITCHYARD_LOCAL_LOGIN=0 needs single sign-on: set SWITCHYARD_OIDC_ISSUER and the rest"
    )
if SWITCHYARD_LOCAL_LOGIN:
    AUTHENTICATION_BACKENDS.append("django.contrib.auth.backends.ModelBackend")
if SWITCHYARD_OIDC_ENABLED and SWITCHYARD_OIDC_END_SESSION_ENDPOINT:
    # The sign-out form's answer sends the browser on to the provider: the policy's
    # form-action covers redirects after a form is sent.
    _CSP_DIRECTIVES["form-action"].append(
        re.sub(r"^(\w+://[^/?#]+).*$", r"\1", SWITCHYARD_OIDC_END_SESSION_ENDPOINT)
    )

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"
WSGI_APPLICATION = "controlplane.wsgi.application"

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

# Database: DATABASE_URL (postgres://...), else SQLite under var/ for `make run`.
_DEFAULT_SQLITE = BASE_DIR / "var" / "switchyard.sqlite3"
DATABASE_URL = envstr("DATABASE_URL", "")
if not DATABASE_URL:
    _DEFAULT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
try:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL or f"sqlite:///{_DEFAULT_SQLITE}",
            conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, minimum=0, maximum=3600),
            conn_health_checks=True,
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
# A database that is away answers within these bounds, never after minutes: a connect
# attempt gives up after DATABASE_CONNECT_TIMEOUT seconds, a statement is cancelled by
# PostgreSQL after DATABASE_STATEMENT_TIMEOUT_MS (0: never), and a request waits at most
# DATABASE_POOL_TIMEOUT seconds for a pooled connection (then a JSON 503, Retry-After).
DATABASE_CONNECT_TIMEOUT = envint("DATABASE_CONNECT_TIMEOUT", 3, minimum=1, maximum=600)
DATABASE_STATEMENT_TIMEOUT_MS = envint(
    "DATABASE_STATEMENT_TIMEOUT_MS", 30_000, minimum=0, maximum=86_400_000
)
DATABASE_TCP_TIMEOUT_MS = envint("DATABASE_TCP_TIMEOUT_MS", 10_000, minimum=0, maximum=600_000)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    # A server cut off by the network (packets dropped, no reset) is noticed by the
    # kernel: unacknowledged data for DATABASE_TCP_TIMEOUT_MS, or keepalive probes
    # unanswered for about as long while a query waits, close the connection (a 503).
    if DATABASE_TCP_TIMEOUT_MS:
        _pg_options.setdefault("tcp_user_timeout", DATABASE_TCP_TIMEOUT_MS)
        _pg_options.setdefault("keepalives", 1)
        _pg_options.setdefault("keepalives_idle", max(1, DATABASE_TCP_TIMEOUT_MS // 2000))
        _pg_options.setdefault("keepalives_interval", max(1, DATABASE_TCP_TIMEOUT_MS // 6000))
        _pg_options.setdefault("keepalives_count", 3)
    # Migrations may rewrite big tables: they run without the statement timeout.
    if DATABASE_STATEMENT_TIMEOUT_MS and sys.argv[1:2] != ["migrate"]:
        _pg_options["options"] = (
            f"{_pg_options.get('options', '')} -c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}"
        ).strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool(
    "DATABASE_POOL", True
):
    # Under ASGI every concurrent sync runs in its own thread; a bounded pool keeps a
    # burst of agents from exhausting PostgreSQL's connections (they queue instead).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    _pool_timeout = envint("DATABASE_POOL_TIMEOUT", 3, minimum=1, maximum=600)
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": envint("DATABASE_POOL_MIN_SIZE", 2, minimum=0, maximum=1000),
        "max_size": envint("DATABASE_POOL_MAX_SIZE", 20, minimum=1, maximum=1000),
        "timeout": _pool_timeout,
        # While the database is away the pool retries connecting with a growing delay;
        # it gives up after this long, so that the first request after the database is
        # back connects at once instead of waiting out the last delay.
        "reconnect_timeout": float(_pool_timeout),
        # Connections idle this long, or this old, are replaced (a restarted server or a
        # proxy that dropped them is noticed before a request needs them).
        "max_idle": 300.0,
        "max_lifetime": 1800.0,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent agents and a web process share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The dashboard's address as people reach it (scheme, host, optional port and path):
# links in alert notifications start with it. Empty: the links are paths only.
SWITCHYARD_PUBLIC_URL = envstr("SWITCHYARD_PUBLIC_URL", "").rstrip("/")
if SWITCHYARD_PUBLIC_URL and not re.fullmatch(
    r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~!$&'()*+,;=:@%/\-]*)?", SWITCHYARD_PUBLIC_URL
):
    raise ImproperlyConfigured(
        "SWITCHYARD_PUBLIC_URL must be http(s)://host[:port][/path] without query or "
        f"fragment, got {SWITCHYARD_PUBLIC_URL!r}"
    )

# Redis: channel layer, cache and Celery broker; without it, in-process equivalents.
REDIS_URL = envstr("REDIS_URL", "")
# Namespace of every Redis key and channel of this deployment (the watch change feed,
# the channel layer, the cache), so deployments sharing a Redis server share nothing.
SWITCHYARD_REDIS_PREFIX = envstr("SWITCHYARD_REDIS_PREFIX", "switchyard")
if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", SWITCHYARD_REDIS_PREFIX):
    raise ImproperlyConfigured(
        "SWITCHYARD_REDIS_PREFIX must be 1-64 letters, digits, '_', '.' or '-', "
        f"got {SWITCHYARD_REDIS_PREFIX!r}"
    )
# Connect and read timeout of every Redis connection (channel layer, cache, the watch
# change feed, the Celery broker), milliseconds: a hung Redis costs live events, never
# the durable writes (controlplane/core/live.py).
SWITCHYARD_REDIS_TIMEOUT_MS = envint(
    "SWITCHYARD_REDIS_TIMEOUT_MS", 1000, minimum=50, maximum=60_000
)
_REDIS_TIMEOUT = SWITCHYARD_REDIS_TIMEOUT_MS / 1000
# Live events waiting for the delivery thread, per process; beyond, they are dropped.
SWITCHYARD_EVENTS_QUEUE = envint("SWITCHYARD_EVENTS_QUEUE", 10_000, minimum=10, maximum=1_000_000)
# After 3 failed deliveries in a row, live events are dropped for this many seconds.
SWITCHYARD_EVENTS_PAUSE_SECONDS = envint(
    "SWITCHYARD_EVENTS_PAUSE_SECONDS", 5, minimum=1, maximum=3600
)
if REDIS_URL:
    from channels_redis.core import RedisChannelLayer

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": _REDIS_TIMEOUT,
                        # A socket's receive waits in BRPOP up to channels_redis's
                        # brpop_timeout (5 s) for a message: reads may take that long
                        # and then the usual timeout, or every idle socket would drop.
                        # Publishing is bounded apart (controlplane/core/live.py).
                        "socket_timeout": RedisChannelLayer.brpop_timeout + _REDIS_TIMEOUT,
                    }
                ],
                "prefix": SWITCHYARD_REDIS_PREFIX,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": SWITCHYARD_REDIS_PREFIX,
            "OPTIONS": {
                "socket_connect_timeout": _REDIS_TIMEOUT,
                "socket_timeout": _REDIS_TIMEOUT,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: CELERY_BROKER_URL, else REDIS_URL, else kombu's filesystem transport under
# var/celery (no server needed: `make run` starts a worker and beat beside the web app).
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _CELERY_DIR = Path(envstr("CELERY_FILESYSTEM_DIR", str(BASE_DIR / "var" / "celery")))
    for _sub in ("queue", "processed", "control"):
        (_CELERY_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DIR / "queue"),
        "data_folder_out": str(_CELERY_DIR / "queue"),
        "processed_folder": str(_CELERY_DIR / "processed"),
        "control_folder": str(_CELERY_DIR / "control"),
        "store_processed": False,
    }
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    # A hung broker fails a publish instead of holding its caller. Reads get at least
    # 5 s: the worker's blocking fetches wait up to a second for a message.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": _REDIS_TIMEOUT,
        "socket_timeout": max(_REDIS_TIMEOUT, 5.0),
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = max(_REDIS_TIMEOUT, 1.0)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Tasks run in a worker in every mode; eager execution is for tests that ask for it.
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Seconds between alert evaluation cycles.
SWITCHYARD_ALERT_INTERVAL = envint("SWITCHYARD_ALERT_INTERVAL", 15, minimum=1, maximum=3600)
# Seconds between checks of the canary rollouts' automatic rollback (docs/rollouts.md).
SWITCHYARD_ROLLOUT_CHECK_INTERVAL = envint(
    "SWITCHYARD_ROLLOUT_CHECK_INTERVAL", 5, minimum=1, maximum=3600
)
# A notification claimed longer ago than this many seconds (its worker died) is handed
# out again.
SWITCHYARD_ALERT_CLAIM_TTL = envint("SWITCHYARD_ALERT_CLAIM_TTL", 120, minimum=5, maximum=86400)
# Delivery attempts before a notification is given up, and the first retry's delay in
# seconds (doubling at each retry).
SWITCHYARD_ALERT_MAX_ATTEMPTS = envint("SWITCHYARD_ALERT_MAX_ATTEMPTS", 8, minimum=1, maximum=100)
SWITCHYARD_ALERT_RETRY_BACKOFF = envint(
    "SWITCHYARD_ALERT_RETRY_BACKOFF", 10, minimum=1, maximum=3600
)
# Traffic (docs/traffic.md, "Retention and roll-ups"): days each resolution is kept (at
# least; a partition goes once it is wholly older), and days of partitions made ahead.
SWITCHYARD_TRAFFIC_RAW_DAYS = envint("SWITCHYARD_TRAFFIC_RAW_DAYS", 7, minimum=1, maximum=90)
SWITCHYARD_TRAFFIC_MINUTE_DAYS = envint(
    "SWITCHYARD_TRAFFIC_MINUTE_DAYS", 30, minimum=1, maximum=730
)
SWITCHYARD_TRAFFIC_HOUR_DAYS = envint("SWITCHYARD_TRAFFIC_HOUR_DAYS", 400, minimum=1, maximum=3660)
if (
    not SWITCHYARD_TRAFFIC_RAW_DAYS
    <= SWITCHYARD_TRAFFIC_MINUTE_DAYS
    <= SWITCHYARD_TRAFFIC_HOUR_DAYS
):
    raise ImproperlyConfigured(
        "SWITCHYARD_TRAFFIC_RAW_DAYS <= SWITCHYARD_TRAFFIC_MINUTE_DAYS <= "
        "SWITCHYARD_TRAFFIC_HOUR_DAYS must hold, got "
        f"{SWITCHYARD_TRAFFIC_RAW_DAYS}, {SWITCHYARD_TRAFFIC_MINUTE_DAYS}, "
        f"{SWITCHYARD_TRAFFIC_HOUR_DAYS}"
    )
SWITCHYARD_TRAFFIC_AHEAD_DAYS = envint("SWITCHYARD_TRAFFIC_AHEAD_DAYS", 7, minimum=1, maximum=90)
# History (docs/history.md): days transitions and audit events are kept (at least; a
# monthly partition goes once it is wholly older; 0 keeps audit events for ever), and
# days of monthly partitions made ahead.
SWITCHYARD_TRANSITION_RETENTION_DAYS = envint(
    "SWITCHYARD_TRANSITION_RETENTION_DAYS", 400, minimum=31, maximum=36600
)
SWITCHYARD_AUDIT_RETENTION_DAYS = envint(
    "SWITCHYARD_AUDIT_RETENTION_DAYS", 0, minimum=0, maximum=36600
)
if 0 < SWITCHYARD_AUDIT_RETENTION_DAYS < 31:
    raise ImproperlyConfigured(
        "SWITCHYARD_AUDIT_RETENTION_DAYS must be 0 (kept for ever) or between 31 and "
        f"36600, got {SWITCHYARD_AUDIT_RETENTION_DAYS}"
    )
SWITCHYARD_HISTORY_AHEAD_DAYS = envint("SWITCHYARD_HISTORY_AHEAD_DAYS", 62, minimum=31, maximum=366)
# The one place periodic work is scheduled; each run expires before the next is due,
# so a backlog after an outage does not replay stale cycles.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "circuits-expire-overrides": {
        "task": "controlplane.circuits.tasks.expire_overrides_task",
        "schedule": 5.0,
        "options": {"expires": 4.0},
    },
    # Drills past their end are ended, their outcomes settled (controlplane/circuits/drills.py).
    "circuits-drills": {
        "task": "circuits.drills",
        "schedule": 5.0,
        "options": {"expires": 4.0},
    },
    # Traffic partitions ahead, roll-ups, retention (controlplane/circuits/maintenance.py).
    "circuits-traffic-maintenance": {
        "task": "circuits.traffic_maintenance",
        "schedule": 60.0,
        "options": {"expires": 50.0},
    },
    # History partitions ahead and retention (the same module).
    "circuits-history-maintenance": {
        "task": "circuits.history_maintenance",
        "schedule": 3600.0,
        "options": {"expires": 3000.0},
    },
    # Automatic rollback of canary rollouts (controlplane/circuits/rollouts.py).
    "circuits-rollout-check": {
        "task": "circuits.rollout_check",
        "schedule": float(SWITCHYARD_ROLLOUT_CHECK_INTERVAL),
        "options": {"expires": SWITCHYARD_ROLLOUT_CHECK_INTERVAL * 0.8},
    },
    "alerts-evaluate": {
        "task": "controlplane.alerts.tasks.evaluate_alerts_task",
        "schedule": float(SWITCHYARD_ALERT_INTERVAL),
        "options": {"expires": SWITCHYARD_ALERT_INTERVAL * 0.8},
    },
}
# /metrics: Prometheus scrapes with an API token (Authorization: Bearer syu_...) of a
# user who may view circuits, unless this allows anonymous scraping.
SWITCHYARD_METRICS_PUBLIC = envbool("SWITCHYARD_METRICS_PUBLIC", False)
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "switchyard@localhost")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [p for p in [BASE_DIR / "static"] if p.is_dir()]
# Hashed, compressed names once `collectstatic` has written its manifest; plain names
# (served from the finders) before that, so DEBUG=0 works without a build step.
_MANIFEST = STATIC_ROOT / "staticfiles.json"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if envbool(
                "STATICFILES_MANIFEST",
                not DEBUG
                and not TESTING
                and (_MANIFEST.exists() or sys.argv[1:2] == ["collectstatic"]),
            )
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without a collectstatic step (`make run` with DEBUG=0), serve from the finders.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.circuits.api.authentication.APITokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.core.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "controlplane.core.schema.AutoSchema",
    # JSON bodies are measured against SWITCHYARD_JSON_MAX_DEPTH before they are parsed.
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.core.jsonlimits.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "controlplane.core.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard control plane API",
    "DESCRIPTION": "Agent sync and operator API for fleets of circuit breakers.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies without the read-only fields of the answers (their own components).
    "COMPONENT_SPLIT_REQUEST": True,
    # The API's bodies are JSON (form encodings serve the browsable API's forms only).
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    # The agent sync and watch and /healthz are plain Django views: described here.
    "PREPROCESSING_HOOKS": ["controlplane.circuits.schema.add_plain_views"],
    # Swagger UI from drf-spectacular-sidecar's static files: the docs work offline and
    # no page pulls code from another host. (No Redoc page: its template loads web fonts
    # from Google.)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "CircuitStateEnum": "controlplane.circuits.choices.CircuitState",
        "FleetStateEnum": "controlplane.circuits.choices.FleetState",
        "OverrideStateEnum": "controlplane.circuits.choices.OverrideState",
    },
}

# Switchyard's own knobs.
# How often agents sync (seconds); sent to agents in every sync answer.
SWITCHYARD_POLL_INTERVAL = envint("SWITCHYARD_POLL_INTERVAL", 5, minimum=1, maximum=3600)
# An instance is live while seen within this many poll intervals.
SWITCHYARD_LIVE_INTERVALS = envint("SWITCHYARD_LIVE_INTERVALS", 3, minimum=1, maximum=100)
# How long an agent's watch (long poll) is held before an empty 204, seconds.
SWITCHYARD_WATCH_HOLD = envint("SWITCHYARD_WATCH_HOLD", 25, minimum=1, maximum=300)
# Explicit limits on one sync request: its body in bytes, its breakers, its transitions.
SWITCHYARD_SYNC_MAX_BODY_BYTES = envint(
    "SWITCHYARD_SYNC_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024
)
SWITCHYARD_SYNC_MAX_BREAKERS = envint(
    "SWITCHYARD_SYNC_MAX_BREAKERS", 500, minimum=1, maximum=100_000
)
SWITCHYARD_SYNC_MAX_TRANSITIONS = envint(
    "SWITCHYARD_SYNC_MAX_TRANSITIONS", 5000, minimum=1, maximum=1_000_000
)
# Telemetry reports (docs/traffic.md) one sync may carry; each report names at most
# SWITCHYARD_SYNC_MAX_BREAKERS breakers.
SWITCHYARD_SYNC_MAX_REPORTS = envint("SWITCHYARD_SYNC_MAX_REPORTS", 64, minimum=1, maximum=10_000)
# History exports (GET /api/v1/transitions/export/, /api/v1/audit/export/) cover a
# window of at most this many days, given by since and until (docs/api.md).
SWITCHYARD_EXPORT_MAX_DAYS = envint("SWITCHYARD_EXPORT_MAX_DAYS", 400, minimum=1, maximum=3660)
# Personal API tokens (docs/operations.md "API tokens") live at most this many days;
# a token created without a lifetime gets this one.
SWITCHYARD_API_TOKEN_MAX_DAYS = envint(
    "SWITCHYARD_API_TOKEN_MAX_DAYS", 365, minimum=1, maximum=3660
)
# Longest drill (docs/drills.md), seconds: a drill asks for 1 s up to this; agents
# release it at its end by their own clock, whatever the server does meanwhile.
SWITCHYARD_DRILL_MAX_SECONDS = envint(
    "SWITCHYARD_DRILL_MAX_SECONDS", 3600, minimum=1, maximum=86_400
)
# On PostgreSQL an export is one COPY statement, read as the client takes the file: it
# is cancelled after this many seconds (instead of DATABASE_STATEMENT_TIMEOUT_MS).
SWITCHYARD_EXPORT_TIMEOUT_S = envint("SWITCHYARD_EXPORT_TIMEOUT_S", 3600, minimum=1, maximum=86_400)
# Hostile input (docs/api.md "Limits"). Arrays and objects nested deeper than this in any
# JSON body (agent sync, operator API) are a 400 before the body is parsed.
SWITCHYARD_JSON_MAX_DEPTH = envint("SWITCHYARD_JSON_MAX_DEPTH", 32, minimum=8, maximum=512)
# Circuits one service may have; a sync that would register more is a 400. Every sync
# answer lists them all (about 420 bytes each): agents refuse answers over 8 MiB.
SWITCHYARD_MAX_CIRCUITS_PER_SERVICE = envint(
    "SWITCHYARD_MAX_CIRCUITS_PER_SERVICE", 1000, minimum=1, maximum=10_000
)
# Timestamps an agent sends (transition times, state_since, last_failure, started_at)
# must lie between January 1st of this year (UTC) and now plus the allowed clock skew.
SWITCHYARD_SYNC_EARLIEST_YEAR = envint(
    "SWITCHYARD_SYNC_EARLIEST_YEAR", 2000, minimum=1971, maximum=2100
)
SWITCHYARD_SYNC_MAX_CLOCK_SKEW = envint(
    "SWITCHYARD_SYNC_MAX_CLOCK_SKEW", 86_400, minimum=0, maximum=31_536_000
)
# The sync's store (controlplane/circuits/sync/store.py, docs/operations.md).
# A revoked agent token is refused by the sync within this many seconds.
SWITCHYARD_SYNC_TOKEN_SECONDS = envint("SWITCHYARD_SYNC_TOKEN_SECONDS", 5, minimum=0, maximum=300)
# A breaker's counters that changed without its state are stored at most once per this
# many seconds of the agent's clock (rates then cover at least this long); states,
# configs and transitions at once. 0: on every sync. The default 8 stores them on every
# other sync of an agent syncing every 5 s (jitter included), and halves the snapshot
# rows written.
SWITCHYARD_SYNC_COUNTER_SECONDS = envint(
    "SWITCHYARD_SYNC_COUNTER_SECONDS", 8, minimum=0, maximum=60
)
# Largest request body on every other route of the ASGI app (controlplane/requestguard.py):
# a declared Content-Length above it is refused (413) before anything is read, a
# streamed body is cut off (413) once it passes it. The agent sync has its own limit.
SWITCHYARD_MAX_BODY_BYTES = envint(
    "SWITCHYARD_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024
)
# A refusal (413, 401, ...) sent before a body was read to its end reads and discards the
# rest of it, up to this many bytes and seconds, before the connection is closed: most
# clients read the answer only after sending their whole body, and a close on unread
# bytes resets the connection under them. A body declared longer is not read at all.
SWITCHYARD_BODY_DRAIN_BYTES = envint(
    "SWITCHYARD_BODY_DRAIN_BYTES", 16 * 1024 * 1024, minimum=0, maximum=1024 * 1024 * 1024
)
SWITCHYARD_BODY_DRAIN_SECONDS = envint("SWITCHYARD_BODY_DRAIN_SECONDS", 10, minimum=0, maximum=300)
# Agent request rates (controlplane/circuits/ratelimit.py), per web process, refused with
# 429 and Retry-After. Per agent token, for the sync and for the watch each: a budget for
# a whole fleet sharing the token (2,000 instances syncing every 5 s are 400/s). 0: no limit.
SWITCHYARD_AGENT_RATE_PER_SECOND = envint(
    "SWITCHYARD_AGENT_RATE_PER_SECOND", 1000, minimum=0, maximum=1_000_000
)
SWITCHYARD_AGENT_RATE_BURST = envint(
    "SWITCHYARD_AGENT_RATE_BURST", 5000, minimum=1, maximum=10_000_000
)
# Per instance (agent token and the instance id the agent names), for the watch: an
# agent watches once per change or per hold; one asking again and again is spinning.
SWITCHYARD_AGENT_WATCH_RATE_PER_SECOND = envint(
    "SWITCHYARD_AGENT_WATCH_RATE_PER_SECOND", 2, minimum=0, maximum=1_000_000
)
SWITCHYARD_AGENT_WATCH_RATE_BURST = envint(
    "SWITCHYARD_AGENT_WATCH_RATE_BURST", 30, minimum=1, maximum=10_000_000
)
# The demo (`make run`; controlplane/demo): its schedules and alert durations run this
# many times faster. The fleet's processes read the variable themselves, within the same
# bounds (controlplane.demo.scenario.speed_from_env).
SWITCHYARD_DEMO_SPEED = envfloat(
    "SWITCHYARD_DEMO_SPEED", 1.0, minimum=_DEMO_MIN_SPEED, maximum=_DEMO_MAX_SPEED
)
# Django refuses larger bodies before the view sees them; keep it above the sync limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, SWITCHYARD_SYNC_MAX_BODY_BYTES + 1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO").upper()},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
