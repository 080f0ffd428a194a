"""manage.py create_api_token USERNAME: a personal API token acting as that user."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlplane.circuits.auth import create_api_token
from controlplane.circuits.choices import AuditAction
from controlplane.core.audit import record_audit


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME. The token is the last word of the output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--label", default="", help="a note to tell tokens apart")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"username: no user named {options['username']!r}") from None
        if not user.is_active:
            raise CommandError(f"username: user {options['username']!r} is inactive")
        with transaction.atomic():
            token, raw = create_api_token(user, label=options["label"][:100])
            record_audit(
                actor=None,
                action=AuditAction.API_TOKEN_CREATE,
                target=token,
                after={"prefix": token.prefix, "user": user.get_username()},
            )
        self.stderr.write(f"API token for {user.get_username()} (shown once, store it now):")
        self.stdout.write(raw)
