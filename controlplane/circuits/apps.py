"""App configuration for controlplane.circuits."""

from django.apps import AppConfig


class CircuitsConfig(AppConfig):
    """Registers the audit model and actions; re-creates the roles after migrate and flush;
    registers the traffic SQL functions on SQLite connections."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "controlplane.circuits"
    label = "circuits"
    verbose_name = "Circuits"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from controlplane.circuits.choices import AuditAction
        from controlplane.circuits.models import AuditEvent
        from controlplane.circuits.roles import ensure_roles
        from controlplane.circuits.traffic_sql import on_connection_created
        from controlplane.core.audit import register_actions, register_model

        register_model(AuditEvent)
        register_actions(AuditAction.choices)

        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="circuits-ensure-roles")
        # The traffic tables' SQL functions on SQLite connections (PostgreSQL: migration 0005).
        connection_created.connect(
            on_connection_created, dispatch_uid="circuits-traffic-sqlite-functions"
        )
