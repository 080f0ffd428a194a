"""manage.py create_agent_token SERVICE: a new agent token (registers the service if new)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.choices import AuditAction
from controlplane.circuits.models import Service, name_validator
from controlplane.core.audit import record_audit


class Command(BaseCommand):
    help = (
        "Create an agent token for SERVICE (registering the service if it is new). "
        "The token is the last word of the output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service", help="service name")
        parser.add_argument("--label", default="", help="a note to tell tokens apart")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["service"]
        try:
            name_validator(name)
        except ValidationError as exc:
            raise CommandError(f"service: {exc.messages[0]}") from None
        with transaction.atomic():
            service, created = Service.objects.get_or_create(name=name)
            token, raw = create_agent_token(service, label=options["label"][:100])
            record_audit(
                actor=None,
                action=AuditAction.AGENT_TOKEN_CREATE,
                target=token,
                service_id=service.pk,
                after={"prefix": token.prefix, "service": service.name},
            )
        if created:
            self.stderr.write(f"Registered service {service.name}.")
        self.stderr.write(f"Agent token for service {service.name} (shown once, store it now):")
        self.stdout.write(raw)
