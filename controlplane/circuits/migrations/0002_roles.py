"""Roles as groups: viewer (read), operator (force, release, edit thresholds), admin (all)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_MODELS = [
    "service",
    "instance",
    "circuit",
    "configversion",
    "snapshot",
    "transition",
    "override",
    "auditevent",
]
OPERATOR_EXTRA = ["override_circuit", "edit_circuit_config"]
ADMIN_APPS = ["circuits", "auth"]


def _ensure_permissions(apps):
    # Permissions are normally created after all migrations; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_roles(apps, schema_editor):
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    circuits = Permission.objects.filter(content_type__app_label="circuits")
    view = list(circuits.filter(codename__in=[f"view_{m}" for m in VIEW_MODELS]))
    operator = view + list(circuits.filter(codename__in=OPERATOR_EXTRA))
    admin = list(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    for name, perms in (("viewer", view), ("operator", operator), ("admin", admin)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*perms)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["viewer", "operator", "admin"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("circuits", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
