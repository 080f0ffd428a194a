"""A real OpenID Connect provider for tests/e2e/test_sso_e2e.py: django-oidc-provider in a
Django of its own (its own SQLite file, cookies named apart from Switchyard's, which
shares the 127.0.0.1 host). Read from OP_DB (the SQLite file) and OP_SITE_URL."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

DEBUG = False
SECRET_KEY = "oidc-provider-of-the-tests-only"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oidc_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.e2e.oidc_op.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["OP_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# Switchyard runs on the same host: cookies are not told apart by port.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"
LOGIN_URL = "/accounts/login/"
SITE_URL = os.environ["OP_SITE_URL"]
OIDC_USERINFO = "tests.e2e.oidc_op.claims.userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "tests.e2e.oidc_op.claims.GroupClaims"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
