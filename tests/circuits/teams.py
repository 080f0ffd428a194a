"""Two teams with one of everything each (the ``world`` fixture of tests/circuits), and
users of every role towards them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import Group, User
from django.utils import timezone

from controlplane.alerts.models import Alert, AlertRule, Silence
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    Instance,
    Membership,
    Service,
    Team,
    Transition,
)
from controlplane.circuits.operations import force_circuit


@dataclass
class Side:
    """One team's objects: a service with one of everything."""

    team: Team
    service: Service
    circuit: Circuit
    instance: Instance
    transition: Transition
    alert: Alert
    silence: Silence
    token_id: int
    audit: AuditEvent
    # Objects a case makes before its request (a drill, a rollout), by name, for its URL.
    extra: dict[str, int] = field(default_factory=dict)


def _side(name: str, team_name: str, rule: AlertRule, by: User) -> Side:
    now = timezone.now()
    team = Team.objects.create(name=team_name, slug=team_name)
    service = Service.objects.create(name=name, team=team)
    circuit = Circuit.objects.create(service=service, name=f"{name}-db")
    instance = Instance.objects.create(
        service=service, instance_id=f"{name}-1", first_seen=now, last_seen=now
    )
    transition = Transition.objects.create(
        instance=instance, circuit=circuit, seq=1, from_state="closed", to_state="open",
        at=now - timedelta(minutes=5), reason="failure_rate", received_at=now,
    )  # fmt: skip
    alert = Alert.objects.create(
        rule=rule, circuit=circuit, status="firing", started_at=now, fired_at=now, created_at=now
    )
    silence = Silence.objects.create(
        service=service, starts_at=now, expires_at=now + timedelta(hours=1), reason="known"
    )
    token, _ = create_agent_token(service)
    force_circuit(circuit, "forced_open", reason="setup", user=by)
    audit = AuditEvent.objects.filter(service=service).order_by("-at", "-id").first()
    assert audit is not None
    return Side(team, service, circuit, instance, transition, alert, silence, token.pk, audit)


def _user(role: str, world: dict[str, Side]) -> User:
    # No password: clients log in with force_login or a token (no hashing per test).
    user = User.objects.create_user(username=role)
    scope, _, name = role.partition("_")
    if scope == "global":
        user.groups.add(Group.objects.get(name=name))
    elif scope == "team":
        Membership.objects.create(user=user, team=world["A"].team, role=name)
    return user
