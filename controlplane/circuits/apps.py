"""App configuration for controlplane.circuits."""

from django.apps import AppConfig


class CircuitsConfig(AppConfig):
    """Registers the project's system checks once apps are ready."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "controlplane.circuits"
    label = "circuits"
    verbose_name = "Circuits"

    def ready(self) -> None:
        from controlplane import checks  # noqa: F401  (registers the checks)
