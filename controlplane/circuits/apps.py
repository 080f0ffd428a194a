"""App configuration for controlplane.circuits."""

from django.apps import AppConfig


class CircuitsConfig(AppConfig):
    """Registers the audit model and actions and the traffic tables' SQLite functions;
    re-creates the roles after migrate and flush."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "controlplane.circuits"
    label = "circuits"
    verbose_name = "Circuits"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from controlplane.circuits import traffic_sql  # noqa: F401  (connects its receiver)
        from controlplane.circuits.choices import AuditAction
        from controlplane.circuits.models import AuditEvent
        from controlplane.circuits.roles import ensure_roles
        from controlplane.core.audit import register_actions, register_model

        register_model(AuditEvent)
        register_actions(AuditAction.choices)

        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="circuits-ensure-roles")
