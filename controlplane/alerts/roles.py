"""Alert permissions of the roles: viewers read, operators ack and silence, admins all."""

from typing import Any

from django.contrib.auth.models import Group, Permission

VIEW_MODELS = ("alert", "alertrule", "silence", "channel", "notification", "notificationattempt")
OPERATOR_EXTRA = ("acknowledge_alert", "add_silence", "change_silence", "delete_silence")


def ensure_alert_roles(**kwargs: Any) -> None:
    """Add the alerts app's permissions to the three groups (idempotent).

    Runs after every app's post_migrate, so it also follows the circuits app creating
    the groups; it does nothing until the permissions exist.
    """
    perms = Permission.objects.filter(content_type__app_label="alerts")
    if not perms.exists():
        return
    view = list(perms.filter(codename__in=[f"view_{m}" for m in VIEW_MODELS]))
    operator = view + list(perms.filter(codename__in=OPERATOR_EXTRA))
    for name, granted in (("viewer", view), ("operator", operator), ("admin", list(perms))):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*granted)
