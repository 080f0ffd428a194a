"""The project's system checks (core.checks) and liveness (core.health)."""

import pytest
from django.conf import settings
from django.core import checks
from django.test import Client, override_settings


def _ids() -> set[str]:
    return {message.id for message in checks.run_checks(tags=[checks.Tags.security])}


@override_settings(DEBUG=False, ALLOWED_HOSTS=["example.org"], SECRET_KEY="s" * 50)
def test_a_sound_configuration_passes() -> None:
    assert not {i for i in _ids() if i and i.startswith("switchyard.E")}


@override_settings(DEBUG=False, ALLOWED_HOSTS=[], SECRET_KEY="django-insecure-x")
def test_empty_hosts_and_development_key_are_errors() -> None:
    assert {"switchyard.E001", "switchyard.E002"} <= _ids()


@override_settings(DEBUG=False, SWITCHYARD_SYNC_MAX_BODY_BYTES=10, DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_upload_limit_must_exceed_the_sync_limit() -> None:
    assert "switchyard.E003" in _ids()


@pytest.mark.django_db
def test_healthz_answers_get_and_refuses_other_methods(client: Client) -> None:
    assert client.get("/healthz").json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok" if settings.REDIS_URL else "off",
    }
    refused = client.post("/healthz")
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    assert refused.json()["field"] == "detail"
