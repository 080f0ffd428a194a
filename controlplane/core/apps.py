"""App configuration for controlplane.core."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Registers the project's system checks."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "controlplane.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from controlplane.core import checks  # noqa: F401  (registers the checks)
