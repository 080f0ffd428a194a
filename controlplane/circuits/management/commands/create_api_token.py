"""manage.py create_api_token USERNAME [--scope read|operate|admin] [--team SLUG]
[--days N]: a personal API token acting as that user, cut to its scope and team."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlplane.circuits import tokens
from controlplane.circuits.choices import TokenScope


class Command(BaseCommand):
    help = (
        "Create a personal API token for USERNAME (scope at most the user's rights, a team "
        "among theirs, a lifetime of at most SWITCHYARD_API_TOKEN_MAX_DAYS days). The token "
        "is the last word of the output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--label", default="", help="a note to tell tokens apart")
        parser.add_argument(
            "--scope",
            default=TokenScope.READ.value,
            choices=TokenScope.values,
            help="read (default), operate or admin",
        )
        parser.add_argument("--team", default="", help="a team's slug: act on its services only")
        parser.add_argument(
            "--days", type=int, default=None, help="lifetime (default and at most the maximum)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"username: no user named {options['username']!r}") from None
        if not user.is_active:
            raise CommandError(f"username: user {options['username']!r} is inactive")
        wanted = tokens.TokenRequest(
            scope=options["scope"], team=options["team"], days=options["days"],
            label=options["label"],
        )  # fmt: skip
        errors, _ = tokens.check(user, wanted)
        if errors:
            field, reason = next(iter(errors.items()))
            flag = "days" if field == "expires_in_days" else field
            raise CommandError(f"--{flag}: {reason}")
        token, raw = tokens.create(user, wanted, actor=None)
        expires = token.expires_at.isoformat() if token.expires_at else "never"
        self.stderr.write(
            f"API token for {user.get_username()}, scope {token.scope}"
            f"{', team ' + token.team.slug if token.team else ''}, expires {expires} "
            "(shown once, store it now):"
        )
        self.stdout.write(raw)
