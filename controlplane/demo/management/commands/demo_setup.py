"""manage.py demo_setup: the demo fleet's data, idempotently.

Creates (or brings up to date) the demo services and their teams (``payments`` owns
checkout and payments, ``search`` owns search), the users ``operator`` and ``viewer``
(global roles) and ``payments-oncall`` (operator of team payments only; passwords
printed once, when created), a webhook channel pointing at the
demo receiver, demo alert rules with short durations, and a shadow evaluation of a
tighter failure rate on search/recommendations. Every run revokes the
previous demo agent tokens and issues new ones; they and the channel's secret are
written to ``--output`` (mode 0600) for `controlplane.runall` to hand to the fleet.
"""

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from controlplane.alerts.choices import ChannelKind, RuleKind, Severity
from controlplane.alerts.models import AlertRule, Channel
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.choices import AuditAction, ConfigSource, TeamRole
from controlplane.circuits.models import (
    AgentToken,
    Circuit,
    ConfigVersion,
    Membership,
    Service,
    Team,
)
from controlplane.circuits.shadow import running_shadow, start_shadow
from controlplane.core.audit import record_audit
from controlplane.demo.scenario import SERVICES, alert_durations, breaker_config

TOKEN_LABEL = "demo fleet"
CHANNEL_NAME = "demo webhook"
USERS = (("operator", "operator"), ("viewer", "viewer"))
# Team -> its demo services; (user, team, role) of the demo's team-only users.
TEAMS = {"payments": ("checkout", "payments"), "search": ("search",)}
TEAM_USERS = (("payments-oncall", "payments", TeamRole.OPERATOR),)
# The demo circuit that runs a shadow candidate, and the candidate's changes.
SHADOW_CIRCUIT = ("search", "recommendations")
SHADOW_CANDIDATE = {"failure_rate_threshold": 0.3}


class Command(BaseCommand):
    help = "Create or update the demo fleet's services, users, channel and alert rules."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, default=settings.BASE_DIR / "var" / "demo" / "fleet.json",
            help="where to write the new agent tokens and the webhook secret (mode 0600)",
        )  # fmt: skip
        parser.add_argument(
            "--receiver-url", default="http://127.0.0.1:8001/hook",
            help="the demo webhook receiver's URL",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        speed = float(settings.SWITCHYARD_DEMO_SPEED)
        with transaction.atomic():
            created_users = self.ensure_users()
            secret = self.ensure_channel(options["receiver_url"])
            self.ensure_rules(speed)
            tokens = self.new_tokens()
            created_users += self.ensure_teams()
            self.ensure_shadow(speed)
        output: Path = options["output"]
        output.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"tokens": tokens, "webhook_secret": secret}, out)
        self.stdout.write(
            f"Demo fleet ready: services {', '.join(tokens)}; rules and channel "
            f"'{CHANNEL_NAME}' set for speed {speed:g}."
        )
        for username, password in created_users:
            self.stdout.write(f"  username: {username:<9} password: {password}  (shown once)")

    def ensure_shadow(self, speed: float) -> None:
        """A candidate evaluated beside search/recommendations (registered here as its
        breakers will register it, if no agent has yet): would tripping at 30 % of
        failures instead of 50 % have opened more often on its flapping traffic?"""
        service, name = SHADOW_CIRCUIT
        circuit = Circuit.objects.filter(service__name=service, name=name).first()
        if circuit is None:
            circuit = Circuit.objects.create(service=Service.objects.get(name=service), name=name)
            circuit.current_config = ConfigVersion.objects.create(
                circuit=circuit,
                version=1,
                config=breaker_config(speed).to_dict(),
                source=ConfigSource.AGENT,
                reason="registered by the demo setup",
            )
            circuit.save(update_fields=["current_config"])
        if running_shadow(circuit) is None:
            start_shadow(
                circuit,
                config=SHADOW_CANDIDATE,
                user=None,
                reason="demo: would a 30 % failure rate threshold trip more often?",
            )

    def ensure_users(self) -> list[tuple[str, str]]:
        """Create the demo users that are missing; returns (username, password) pairs."""
        User = get_user_model()
        created = []
        for username, group_name in USERS:
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(username=username, password=password)
            group = Group.objects.filter(name=group_name).first()
            if group is not None:
                user.groups.add(group)
            created.append((username, password))
        return created

    def ensure_teams(self) -> list[tuple[str, str]]:
        """The demo teams, their services (a service with a team keeps it) and team-only
        users; returns the (username, password) pairs of the users created."""
        User = get_user_model()
        created = []
        for name, services in TEAMS.items():
            team, _ = Team.objects.get_or_create(name=name, defaults={"slug": name})
            Service.objects.filter(name__in=services, team__isnull=True).update(team=team)
        for username, team_name, role in TEAM_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                password = secrets.token_urlsafe(12)
                user = User.objects.create_user(username=username, password=password)
                created.append((username, password))
            Membership.objects.get_or_create(
                user=user, team=Team.objects.get(name=team_name), defaults={"role": role}
            )
        return created

    def ensure_channel(self, url: str) -> str:
        """The demo webhook channel, pointed at ``url``; returns its secret."""
        channel = Channel.objects.filter(name=CHANNEL_NAME).first()
        secret = str((channel.config if channel else {}).get("secret") or "")
        if len(secret) < 16:
            secret = secrets.token_urlsafe(24)
        config = {"url": url, "secret": secret, "timeout": 5}
        if channel is None:
            Channel.objects.create(name=CHANNEL_NAME, kind=ChannelKind.WEBHOOK, config=config)
        else:
            # A demo channel a failed run marked failed works again on the next start.
            channel.config, channel.kind, channel.enabled = config, ChannelKind.WEBHOOK, True
            channel.failed_at, channel.last_error = None, ""
            channel.save()
        return secret

    def ensure_rules(self, speed: float) -> None:
        """The demo alert rules, with durations shortened by the demo speed."""
        d = alert_durations(speed)
        channel = Channel.objects.get(name=CHANNEL_NAME)
        rules = [
            ("demo: circuit open too long", RuleKind.OPEN_TOO_LONG, Severity.CRITICAL,
             {"duration": d["open_too_long"]}),
            ("demo: failure rate above 50%", RuleKind.FAILURE_RATE, Severity.WARNING,
             {"threshold": 0.5, "for": d["failure_rate_for"]}),
            ("demo: agent silent", RuleKind.AGENT_SILENT, Severity.WARNING,
             {"after": d["agent_silent"]}),
        ]  # fmt: skip
        for name, kind, severity, params in rules:
            rule, _ = AlertRule.objects.update_or_create(
                name=name, defaults={"kind": kind, "severity": severity, "params": params}
            )
            rule.full_clean()
            rule.channels.add(channel)

    def new_tokens(self) -> dict[str, str]:
        """Revoke the previous demo tokens and issue one new token per demo service."""
        now = timezone.now()
        tokens = {}
        for name in SERVICES:
            service, _ = Service.objects.get_or_create(name=name)
            for old in AgentToken.objects.filter(
                service=service, label=TOKEN_LABEL, revoked_at__isnull=True
            ):
                old.revoked_at = now
                old.save(update_fields=["revoked_at"])
                record_audit(
                    actor=None, action=AuditAction.AGENT_TOKEN_REVOKE, target=old,
                    service_id=service.pk, before={"prefix": old.prefix},
                )  # fmt: skip
            token, raw = create_agent_token(service, label=TOKEN_LABEL)
            record_audit(
                actor=None, action=AuditAction.AGENT_TOKEN_CREATE, target=token,
                service_id=service.pk, after={"prefix": token.prefix, "service": name},
            )  # fmt: skip
            tokens[name] = raw
        return tokens
