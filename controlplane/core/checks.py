"""System checks for configuration mistakes the typed env helpers cannot see alone."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=False)
def check_deployment_settings(app_configs: Iterable[Any] | None, **kwargs: Any) -> list:
    """Flag settings combinations that would break or weaken a deployment."""
    problems: list = []
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        problems.append(
            Error(
                "ALLOWED_HOSTS is empty while DEBUG=0: every request would be refused.",
                hint="Set ALLOWED_HOSTS to the comma-separated host names of the service.",
                id="switchyard.E001",
            )
        )
    if not settings.DEBUG and settings.SECRET_KEY.startswith("django-insecure"):
        problems.append(
            Error(
                "SECRET_KEY is the development key while DEBUG=0.",
                hint="Set SECRET_KEY to a long random value.",
                id="switchyard.E002",
            )
        )
    if not settings.DEBUG and not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set with DEBUG=0: live events and long polls only reach "
                "clients of the same process.",
                hint="Set REDIS_URL when running more than one web process.",
                id="switchyard.W001",
            )
        )
    if settings.SWITCHYARD_SECURE and settings.DEBUG:
        problems.append(
            Warning(
                "SWITCHYARD_SECURE=1 with DEBUG=1: the HTTPS redirect applies to the dev server.",
                id="switchyard.W002",
            )
        )
    body = settings.SWITCHYARD_SYNC_MAX_BODY_BYTES
    if (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None
        and body >= settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    ):
        problems.append(
            Error(
                "DATA_UPLOAD_MAX_MEMORY_SIZE must exceed SWITCHYARD_SYNC_MAX_BODY_BYTES.",
                id="switchyard.E003",
            )
        )
    return problems
