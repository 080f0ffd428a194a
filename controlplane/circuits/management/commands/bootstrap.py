"""manage.py bootstrap: create the first admin user once, printing its password once."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "If no user exists, create user 'admin' (superuser, admin group) with a random password."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        with transaction.atomic():
            if User.objects.exists():
                self.stdout.write("Users exist already; nothing to do.")
                return
            password = secrets.token_urlsafe(18)
            user = User.objects.create_superuser(username="admin", email="", password=password)
            group = Group.objects.filter(name="admin").first()
            if group is not None:
                user.groups.add(group)
        self.stdout.write(
            "Created the first user. Sign in at /admin/ (shown once):\n"
            f"  username: admin\n  password: {password}"
        )
