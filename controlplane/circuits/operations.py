"""Operator actions on circuits: force, release, new config version, override expiry.

Each is one transaction that writes a new row, an audit event, bumps the service's
desired version and publishes the typed event of the change after the commit (its sinks
wake the agents' long polls and update the dashboards).
"""

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from breakers.config import CircuitBreakerConfig, config_errors
from controlplane.circuits import events
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.choices import (
    AuditAction,
    ConfigSource,
    MembershipSource,
    OverrideEnd,
    OverrideState,
    RolloutState,
)
from controlplane.circuits.desired import bump_desired_version, override_wire
from controlplane.circuits.models import (
    AgentToken,
    Circuit,
    ConfigVersion,
    Membership,
    Override,
    Rollout,
    Service,
    Team,
)
from controlplane.core.audit import MAX_REASON_LENGTH, record_audit

# Longest override expiry accepted (30 days), in seconds.
MAX_EXPIRES_IN_SECONDS = 30 * 24 * 3600


class NotForcedError(Exception):
    """Release of a circuit that has no override in force."""


class ConfigConflictError(Exception):
    """A config edit based on a version that is no longer the current one."""

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"expected_version is {expected} but the current version is {current}; "
            "reload the config and retry"
        )


class RolloutActiveError(Exception):
    """A new config version of a circuit whose canary rollout runs (docs/rollouts.md)."""


class ConfigInvalidError(ValueError):
    """A config that breaks the library's rules; ``errors`` maps fields to reasons."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k} {v}" for k, v in errors.items()))


def change_desired_state(
    circuit: Circuit,
    *,
    actor: User | None,
    action: str,
    reason: str,
    before: Any,
    after: Any,
    now: datetime | None,
    event: Callable[[int], events.DesiredStateEvent],
) -> int:
    """Audit a change of ``circuit``'s desired state, bump its service's desired version
    and publish ``event(new_version)`` after commit (which wakes the agents' watches)."""
    record_audit(
        actor=actor,
        action=action,
        target=circuit,
        reason=reason,
        before=before,
        after=after,
        service_id=circuit.service_id,
        now=now,
    )
    version = bump_desired_version(circuit.service_id)
    events.publish(event(version))
    return version


def check_reason(reason: str, *, required: bool) -> str:
    if not isinstance(reason, str):
        raise ValueError("reason must be a string")
    reason = reason.strip()
    if required and not reason:
        raise ValueError("reason must not be empty")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(
            f"reason must be at most {MAX_REASON_LENGTH} characters, got {len(reason)}"
        )
    return reason


def lock_circuit(circuit: Circuit) -> Circuit:
    # Serialises every override and config change of one circuit.
    return (
        Circuit.objects.select_for_update(of=("self",))
        .select_related("service", "current_config")
        .get(pk=circuit.pk)
    )


def next_version(circuit: Circuit) -> int:
    """The number of a new config version: above every version the circuit has (a
    rollout's version that was rolled back is never current but keeps its number)."""
    highest = circuit.config_versions.aggregate(top=Max("version"))["top"]
    return (highest or 0) + 1


def _open_override(circuit: Circuit) -> Override | None:
    return (
        Override.objects.filter(circuit=circuit, ended_at__isnull=True)
        .select_related("created_by")
        .first()
    )


def force_circuit(
    circuit: Circuit,
    state: str,
    *,
    reason: str,
    user: User | None,
    expires_in: float | None = None,
    now: datetime | None = None,
) -> Override:
    """Force ``circuit`` open or closed on every instance until released or expired.

    An override already in force is replaced. Raises ValueError naming the bad parameter.
    """
    if state not in OverrideState.values:
        raise ValueError(f"state must be one of {', '.join(OverrideState.values)}, got {state!r}")
    reason = check_reason(reason, required=True)
    if expires_in is not None:
        ok = isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool)
        if not ok or not 1 <= expires_in <= MAX_EXPIRES_IN_SECONDS:
            raise ValueError(
                f"expires_in must be a number of seconds between 1 and {MAX_EXPIRES_IN_SECONDS}, "
                f"got {expires_in!r}"
            )
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        previous = _open_override(circuit)
        before = None
        if previous is not None:
            expired = previous.expires_at is not None and previous.expires_at <= now
            before = None if expired else override_wire(previous)
            previous.ended_at = now
            previous.ended_by = None if expired else user
            previous.end_reason = OverrideEnd.EXPIRED if expired else OverrideEnd.REPLACED
            previous.save(update_fields=["ended_at", "ended_by", "end_reason"])
        override = Override.objects.create(
            circuit=circuit,
            state=state,
            reason=reason,
            created_by=user,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in) if expires_in is not None else None,
        )
        after = override_wire(override)
        change_desired_state(
            circuit,
            actor=user,
            action=AuditAction.OVERRIDE_FORCE,
            reason=reason,
            before=before,
            after=after,
            now=now,
            event=lambda version: events.override_event(
                circuit, action="force", override=after, desired_version=version
            ),
        )
    return override


def release_circuit(
    circuit: Circuit,
    *,
    user: User | None,
    reason: str = "",
    now: datetime | None = None,
) -> Override:
    """End the override in force on ``circuit``; raises NotForcedError if there is none."""
    reason = check_reason(reason, required=False)
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        override = _open_override(circuit)
        if override is None or (override.expires_at is not None and override.expires_at <= now):
            raise NotForcedError(f"circuit {circuit} has no override in force")
        before = override_wire(override)
        override.ended_at = now
        override.ended_by = user
        override.end_reason = OverrideEnd.RELEASED
        override.save(update_fields=["ended_at", "ended_by", "end_reason"])
        change_desired_state(
            circuit,
            actor=user,
            action=AuditAction.OVERRIDE_RELEASE,
            reason=reason,
            before=before,
            after=None,
            now=now,
            event=lambda version: events.override_event(
                circuit, action="release", override=None, desired_version=version
            ),
        )
    return override


def create_config_version(
    circuit: Circuit,
    config: Mapping[str, Any],
    *,
    expected_version: int,
    user: User | None,
    reason: str = "",
    now: datetime | None = None,
) -> ConfigVersion:
    """Create version N+1 of the circuit's config, if N is still ``expected_version``.

    ``config`` may name only the fields that change; the others are kept from version
    N. Raises ConfigConflictError (stale expected_version), RolloutActiveError (a canary
    rollout of the circuit runs: promote or roll it back first) or ConfigInvalidError.
    """
    reason = check_reason(reason, required=False)
    if not isinstance(config, Mapping):
        raise ConfigInvalidError({"config": "must be an object of wire fields"})
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        current = circuit.current_config
        current_version = current.version if current else 0
        if expected_version != current_version:
            raise ConfigConflictError(expected_version, current_version)
        if Rollout.objects.filter(circuit=circuit, state=RolloutState.ACTIVE).exists():
            raise RolloutActiveError(
                f"a canary rollout of circuit {circuit} runs: promote it or roll it back first"
            )
        base = CircuitBreakerConfig.from_dict(current.config) if current else None
        errors = config_errors(config, base=base)
        if errors:
            raise ConfigInvalidError(errors)
        merged = CircuitBreakerConfig.from_dict(config, base=base).to_dict()
        new = ConfigVersion.objects.create(
            circuit=circuit,
            version=next_version(circuit),
            config=merged,
            source=ConfigSource.OPERATOR,
            reason=reason,
            created_by=user,
        )
        circuit.current_config = new
        circuit.save(update_fields=["current_config"])
        change_desired_state(
            circuit,
            actor=user,
            action=AuditAction.CONFIG_CREATE,
            reason=reason,
            before={"version": current_version, "config": current.config if current else None},
            after={"version": new.version, "config": merged},
            now=now,
            event=lambda version: events.config_event(
                circuit, config_version=new.version, desired_version=version
            ),
        )
    return new


def _expire_event(circuit: Circuit, version: int) -> events.OverrideEvent:
    return events.override_event(circuit, action="expire", override=None, desired_version=version)


def expire_overrides(*, now: datetime | None = None, service_id: int | None = None) -> int:
    """End every override past its expiry (of one service, or all); returns how many.

    Each is claimed by a conditional UPDATE, so concurrent callers (the periodic task
    and syncs) expire it once. Costs one indexed query when nothing has expired.
    """
    now = now or timezone.now()
    due = Override.objects.filter(ended_at__isnull=True, expires_at__lte=now)
    if service_id is not None:
        due = due.filter(circuit__service_id=service_id)
    rows = list(due.select_related("circuit", "created_by"))
    expired = 0
    for override in rows:
        with transaction.atomic():
            claimed = Override.objects.filter(pk=override.pk, ended_at__isnull=True).update(
                ended_at=override.expires_at, end_reason=OverrideEnd.EXPIRED
            )
            if not claimed:
                continue
            expired += 1
            change_desired_state(
                override.circuit,
                actor=None,
                action=AuditAction.OVERRIDE_EXPIRE,
                reason=override.reason,
                before=override_wire(override),
                after=None,
                now=now,
                event=functools.partial(_expire_event, override.circuit),
            )
    return expired


def issue_agent_token(service: Service, *, label: str, user: User) -> tuple[AgentToken, str]:
    """A new agent token for ``service``, audited; returns the row and the raw token."""
    with transaction.atomic():
        token, raw = create_agent_token(service, label=label, created_by=user)
        record_audit(
            actor=user,
            action=AuditAction.AGENT_TOKEN_CREATE,
            target=token,
            service_id=service.pk,
            after={"prefix": token.prefix, "service": service.name},
        )
    return token, raw


def revoke_agent_token(service: Service, token_id: int, *, user: User) -> bool:
    """Revoke an active token of ``service``, audited; False when there is none."""
    now = timezone.now()
    with transaction.atomic():
        token = (
            AgentToken.objects.select_for_update()
            .filter(pk=token_id, service=service, revoked_at__isnull=True)
            .first()
        )
        if token is None:
            return False
        token.revoked_at = now
        token.save(update_fields=["revoked_at"])
        record_audit(
            actor=user,
            action=AuditAction.AGENT_TOKEN_REVOKE,
            target=token,
            service_id=service.pk,
            before={"prefix": token.prefix, "revoked_at": None},
            after={"prefix": token.prefix, "revoked_at": now.isoformat()},
            now=now,
        )
    return True


def _team_wire(team: Team) -> dict[str, Any]:
    return {"name": team.name, "slug": team.slug}


def save_team(team: Team, *, user: User) -> Team:
    """Create or rename a team, audited."""
    with transaction.atomic():
        before = None
        if team.pk is not None:
            old = Team.objects.filter(pk=team.pk).first()
            before = _team_wire(old) if old is not None else None
        team.save()
        record_audit(
            actor=user,
            action=AuditAction.TEAM_CREATE if before is None else AuditAction.TEAM_UPDATE,
            target=team,
            team=team.name,
            before=before,
            after=_team_wire(team),
        )
    return team


def delete_team(team: Team, *, user: User) -> None:
    """Delete a team, audited: its services lose their team, its members their role."""
    with transaction.atomic():
        record_audit(
            actor=user,
            action=AuditAction.TEAM_DELETE,
            target=team,
            team=team.name,
            before=_team_wire(team),
        )
        team.delete()


def set_membership(team: Team, member: User, role: str, *, user: User) -> Membership:
    """Give ``member`` ``role`` in ``team`` (adding them or changing their role), audited.
    The membership is a person's from now on: single sign-on no longer changes it."""
    with transaction.atomic():
        old = Membership.objects.select_for_update().filter(team=team, user=member).first()
        before = {"user": member.get_username(), "role": old.role} if old else None
        membership, _ = Membership.objects.update_or_create(
            team=team, user=member, defaults={"role": role, "source": MembershipSource.MANUAL}
        )
        record_audit(
            actor=user,
            action=AuditAction.MEMBERSHIP_SET,
            target=team,
            team=team.name,
            before=before,
            after={"user": member.get_username(), "role": role},
        )
    return membership


def remove_membership(team: Team, member: User, *, user: User) -> bool:
    """Remove ``member`` from ``team``, audited; False when they were not in it."""
    with transaction.atomic():
        old = Membership.objects.select_for_update().filter(team=team, user=member).first()
        if old is None:
            return False
        old.delete()
        record_audit(
            actor=user,
            action=AuditAction.MEMBERSHIP_REMOVE,
            target=team,
            team=team.name,
            before={"user": member.get_username(), "role": old.role},
        )
    return True
