"""App configuration for controlplane.alerts."""

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Registers the alert checks; gives the roles their permissions after migrate and flush."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "controlplane.alerts"
    label = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from controlplane.alerts import checks  # noqa: F401  (registers the checks)
        from controlplane.alerts.choices import AlertAuditAction
        from controlplane.core.audit import register_actions

        register_actions(AlertAuditAction.choices)
        from controlplane.alerts.roles import ensure_alert_roles

        post_migrate.connect(ensure_alert_roles, dispatch_uid="alerts-ensure-roles")
