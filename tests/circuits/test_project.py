"""Project wiring: migrations complete, settings helpers, async-capable middleware, ASGI."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils.module_loading import import_string

from controlplane.settings import envbool, envint, envlist

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_migrations_are_complete() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_roles_exist_with_their_permissions() -> None:
    from django.contrib.auth.models import Group

    perms = {g.name: {p.codename for p in g.permissions.all()} for g in Group.objects.all()}
    assert "view_circuit" in perms["viewer"] and "override_circuit" not in perms["viewer"]
    assert {"override_circuit", "edit_circuit_config", "view_auditevent"} <= perms["operator"]
    assert {"add_user", "add_agenttoken", "override_circuit"} <= perms["admin"]


def test_env_helpers_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SY_TEST_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SY_TEST_BOOL"):
        envbool("SY_TEST_BOOL", False)
    monkeypatch.setenv("SY_TEST_BOOL", "Yes")
    assert envbool("SY_TEST_BOOL", False) is True
    monkeypatch.setenv("SY_TEST_INT", "five")
    with pytest.raises(ImproperlyConfigured, match="SY_TEST_INT must be an integer"):
        envint("SY_TEST_INT", 1)
    monkeypatch.setenv("SY_TEST_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="between 1 and 10, got 0"):
        envint("SY_TEST_INT", 1, minimum=1, maximum=10)
    monkeypatch.setenv("SY_TEST_LIST", "a, b")
    assert envlist("SY_TEST_LIST", []) == ["a", "b"]
    monkeypatch.setenv("SY_TEST_LIST", "a,,b")
    with pytest.raises(ImproperlyConfigured, match="empty item"):
        envlist("SY_TEST_LIST", [])


def _settings_in_subprocess(env: dict[str, str], expr: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "-c", f"import controlplane.settings as s; print({expr})"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_key_is_required_without_debug() -> None:
    result = _settings_in_subprocess({"DEBUG": "0"}, "s.SECRET_KEY")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr
    result = _settings_in_subprocess({"DEBUG": "1"}, "s.SECRET_KEY")
    assert result.returncode == 0 and result.stdout.strip()


def test_secure_flag_turns_on_https_settings() -> None:
    expr = (
        "(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS)"
    )
    on = _settings_in_subprocess({"SECRET_KEY": "k" * 50, "SWITCHYARD_SECURE": "1"}, expr)
    assert on.stdout.strip() == "(True, True, True, 31536000)", on.stderr
    off = _settings_in_subprocess({"SECRET_KEY": "k" * 50}, expr)
    assert off.stdout.strip() == "(False, False, False, 0)", off.stderr


def test_redis_url_selects_the_redis_channel_layer() -> None:
    expr = "s.CHANNEL_LAYERS['default']['BACKEND']"
    with_redis = _settings_in_subprocess(
        {"DEBUG": "1", "REDIS_URL": "redis://127.0.0.1:6379/15"}, expr
    )
    assert with_redis.stdout.strip() == "channels_redis.core.RedisChannelLayer"
    without = _settings_in_subprocess({"DEBUG": "1", "REDIS_URL": ""}, expr)
    assert without.stdout.strip() == "channels.layers.InMemoryChannelLayer"


def test_every_middleware_is_async_capable() -> None:
    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "async_capable", False), path


async def test_static_files_are_served_under_asgi() -> None:
    from django.test import AsyncClient

    response = await AsyncClient().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response.is_async  # file chunks are read in a thread, not in the event loop
    assert b"body" in b"".join([chunk async for chunk in response.streaming_content])


def test_asgi_application_routes_http_and_websocket() -> None:
    from channels.routing import ProtocolTypeRouter

    from controlplane.asgi import application
    from controlplane.circuits.watch import WatchFastPath

    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}
    # The agents' long poll is answered ahead of Django's middleware stack.
    assert isinstance(application.application_mapping["http"], WatchFastPath)


@pytest.mark.django_db
def test_roles_come_back_after_a_flush() -> None:
    from django.contrib.auth.models import Group
    from django.core.management.sql import emit_post_migrate_signal

    Group.objects.all().delete()  # what a flush leaves behind
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")  # as flush does
    operator = Group.objects.get(name="operator")
    assert operator.permissions.filter(codename="override_circuit").exists()
    assert set(Group.objects.values_list("name", flat=True)) == {"viewer", "operator", "admin"}
