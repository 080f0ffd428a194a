"""Roles as groups: viewer (read), operator (force, release, edit thresholds, drills),
admin (all).

A migration creates them; ``ensure_roles`` also runs after every migrate and flush
(post_migrate), so a database emptied by a flush gets its roles back.
"""

from typing import Any

from django.contrib.auth.models import Group, Permission

VIEW_MODELS = (
    "service", "instance", "circuit", "configversion", "snapshot", "transition",
    "override", "auditevent", "team", "membership", "drill",
)  # fmt: skip
OPERATOR_EXTRA = ("override_circuit", "edit_circuit_config", "run_drill")
ADMIN_APPS = ("circuits", "auth")


def ensure_roles(**kwargs: Any) -> None:
    """Create the three groups if missing and give them their permissions (idempotent)."""
    circuits = Permission.objects.filter(content_type__app_label="circuits")
    view = list(circuits.filter(codename__in=[f"view_{m}" for m in VIEW_MODELS]))
    operator = view + list(circuits.filter(codename__in=OPERATOR_EXTRA))
    admin = list(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    for name, perms in (("viewer", view), ("operator", operator), ("admin", admin)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*perms)
