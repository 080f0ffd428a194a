"""Canary rollouts: a new config version on some instances, then promoted or rolled back.

A rollout runs ``to_version`` on the instances its selector picks
(:func:`breakers.canary.selected` of their stable identity) while every other instance
keeps ``from_version``, the circuit's current config. The desired state carries it as
each breaker's ``canary`` key (desired.py); agents that do not know the key keep
the current config. Starting, promoting (``to_version`` becomes the current config) and
rolling back are each one transaction with an audit event and one bump of the service's
desired version, like every other change of what agents run (operations.py).

While a rollout runs, a new config version of its circuit is refused
(:class:`RolloutActiveError`): the baseline must stay the version the canary is compared
with. Overrides still apply to every instance, canary or not.

The two groups' figures (:func:`figures`) read the rollout's traffic rows (written by the
sync store per group, by the version each instance reports running), the transitions
since the start (trips by the version they happened under) and the live snapshots.
:func:`evaluate_auto_rollbacks` rolls back, as the system, every rollout whose canary
group trips more per instance than the baseline by more than its margin.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from breakers.canary import MAX_NAMED, MAX_PERCENT, MIN_PERCENT, selected
from breakers.canary import stable_identity as stable_identity
from breakers.config import CircuitBreakerConfig, config_errors
from breakers.latency import percentile
from controlplane.circuits import events
from controlplane.circuits.choices import (
    AuditAction,
    CircuitState,
    ConfigSource,
    RolloutGroup,
    RolloutState,
)
from controlplane.circuits.models import (
    Circuit,
    ConfigVersion,
    Rollout,
    RolloutTraffic,
    Snapshot,
    Transition,
)
from controlplane.circuits.operations import (
    change_desired_state,
    check_reason,
    lock_circuit,
    next_version,
)
from controlplane.circuits.querysets import live_cutoff
from controlplane.core.audit import actor_name

#: Bounds of an automatic rollback margin (trips per instance).
MAX_MARGIN = 1_000_000.0


class RolloutInvalidError(ValueError):
    """A rollout that cannot start as asked; ``errors`` maps fields to reasons."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k} {v}" for k, v in errors.items()))


class RolloutConflictError(Exception):
    """The circuit already has an active rollout, or the rollout has ended."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def _selector(
    circuit: Circuit, percent: Any, instances: Any, errors: dict[str, str]
) -> dict[str, Any]:
    if (percent is None) == (instances is None):
        errors["percent"] = "give either percent or instances"
        return {}
    if percent is not None:
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int)
            or not MIN_PERCENT <= percent <= MAX_PERCENT
        ):
            errors["percent"] = (
                f"must be an integer from {MIN_PERCENT} to {MAX_PERCENT}, got {percent!r}"
            )
            return {}
        return {"percent": percent, "salt": secrets.token_hex(8)}
    if (
        not isinstance(instances, Sequence)
        or isinstance(instances, str)
        or not all(isinstance(n, str) and n for n in instances)
    ):
        errors["instances"] = "must be a list of instance identities"
        return {}
    names = sorted(set(instances))
    if not 1 <= len(names) <= MAX_NAMED:
        errors["instances"] = f"must name 1 to {MAX_NAMED} instances, got {len(names)}"
        return {}
    known = {
        stable_identity(iid, host, pid)
        for iid, host, pid in circuit.service.instances.values_list(
            "instance_id", "hostname", "pid"
        )
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        errors["instances"] = (
            f"not the identity of an instance of {circuit.service.name}: "
            + ", ".join(repr(n) for n in unknown[:10])
        )
        return {}
    return {"instances": names}


def start_rollout(
    circuit: Circuit,
    *,
    user: User | None,
    to_version: int | None = None,
    config: Mapping[str, Any] | None = None,
    percent: int | None = None,
    instances: Sequence[str] | None = None,
    auto_rollback_margin: float | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> Rollout:
    """Run a config version on some instances of ``circuit`` (module docstring).

    The version is ``to_version`` (an existing version other than the current one) or a
    new one made of ``config`` over the current config; the instances are ``percent`` %
    of them or the ``instances`` named by stable identity. Raises RolloutInvalidError
    naming every bad field, RolloutConflictError when a rollout already runs.
    """
    errors: dict[str, str] = {}
    try:
        reason = check_reason(reason, required=False)
    except ValueError as exc:
        errors["reason"] = str(exc).removeprefix("reason ")
    if auto_rollback_margin is not None and (
        isinstance(auto_rollback_margin, bool)
        or not isinstance(auto_rollback_margin, int | float)
        or not 0 <= auto_rollback_margin <= MAX_MARGIN
    ):
        errors["auto_rollback_margin"] = (
            f"must be a number of trips per instance from 0 to {MAX_MARGIN:g}"
        )
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        select = _selector(circuit, percent, instances, errors)
        current = circuit.current_config
        if current is None:
            errors["circuit"] = "has no config version yet"
        if (to_version is None) == (config is None):
            errors.setdefault("to_version", "give either to_version or config")
        target: ConfigVersion | None = None
        if to_version is not None and current is not None:
            target = circuit.config_versions.filter(version=to_version).first()
            if isinstance(to_version, bool) or not isinstance(to_version, int) or target is None:
                errors["to_version"] = f"is not a version of this circuit: {to_version!r}"
            elif target.pk == current.pk:
                errors["to_version"] = f"must differ from the current version {current.version}"
        if config is not None and current is not None:
            if not isinstance(config, Mapping):
                errors["config"] = "must be an object of wire fields"
            else:
                base = CircuitBreakerConfig.from_dict(current.config)
                problems = config_errors(config, base=base)
                for name, problem in problems.items():
                    errors[f"config.{name}"] = problem
                if not problems:
                    merged = CircuitBreakerConfig.from_dict(config, base=base).to_dict()
                    if merged == current.config:
                        errors["config"] = (
                            f"is the current config (v{current.version}): nothing to roll out"
                        )
        if errors:
            raise RolloutInvalidError(errors)
        assert current is not None
        if Rollout.objects.filter(circuit=circuit, state=RolloutState.ACTIVE).exists():
            raise RolloutConflictError(
                "circuit", f"circuit {circuit} already has an active rollout"
            )
        if target is None:
            target = ConfigVersion.objects.create(
                circuit=circuit,
                version=next_version(circuit),
                config=merged,
                source=ConfigSource.OPERATOR,
                reason=reason,
                created_by=user,
            )
        try:
            with transaction.atomic():
                rollout = Rollout.objects.create(
                    circuit=circuit,
                    from_version=current,
                    to_version=target,
                    select=select,
                    auto_rollback_margin=auto_rollback_margin,
                    reason=reason,
                    created_by=user,
                    started_at=now,
                )
        except IntegrityError:
            raise RolloutConflictError(
                "circuit", f"circuit {circuit} already has an active rollout"
            ) from None
        rollout.circuit = circuit
        _changed(rollout, user, AuditAction.ROLLOUT_START, reason, None, rollout_wire(rollout), now)
    return rollout


def _changed(
    rollout: Rollout,
    user: User | None,
    action: str,
    reason: str,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    circuit = rollout.circuit
    config_version = circuit.current_config.version if circuit.current_config else 0
    change_desired_state(
        circuit,
        actor=user,
        action=action,
        reason=reason,
        before=before,
        after=after,
        now=now,
        event=lambda version: events.config_event(
            circuit, config_version=config_version, desired_version=version
        ),
    )


def _end(
    rollout: Rollout, state: str, *, user: User | None, reason: str, now: datetime | None
) -> Rollout:
    reason = check_reason(reason, required=False)
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(rollout.circuit)
        rollout = Rollout.objects.select_related("from_version", "to_version").get(pk=rollout.pk)
        if rollout.state != RolloutState.ACTIVE:
            raise RolloutConflictError(
                "state", f"rollout {rollout.pk} has ended ({rollout.get_state_display()})"
            )
        before = rollout_wire(rollout)
        rollout.state = state
        rollout.ended_at = now
        rollout.ended_by = user
        rollout.end_reason = reason
        rollout.save(update_fields=["state", "ended_at", "ended_by", "end_reason"])
        if state == RolloutState.PROMOTED:
            circuit.current_config = rollout.to_version
            circuit.save(update_fields=["current_config"])
            action = AuditAction.ROLLOUT_PROMOTE
        else:
            action = AuditAction.ROLLOUT_ROLLBACK
        rollout.circuit = circuit
        _changed(rollout, user, action, reason, before, rollout_wire(rollout), now)
    return rollout


def promote_rollout(
    rollout: Rollout, *, user: User | None, reason: str = "", now: datetime | None = None
) -> Rollout:
    """Make the rollout's version the circuit's current config on every instance."""
    return _end(rollout, RolloutState.PROMOTED, user=user, reason=reason, now=now)


def rollback_rollout(
    rollout: Rollout, *, user: User | None, reason: str = "", now: datetime | None = None
) -> Rollout:
    """Return every canary instance to the current config (``user`` None: the system)."""
    return _end(rollout, RolloutState.ROLLED_BACK, user=user, reason=reason, now=now)


def rollout_wire(rollout: Rollout) -> dict[str, Any]:
    """A rollout as the audit trail records it."""
    return {
        "id": rollout.pk,
        "from_version": rollout.from_version.version,
        "to_version": rollout.to_version.version,
        "select": rollout.select,
        "state": rollout.state,
        "auto_rollback_margin": rollout.auto_rollback_margin,
    }


# -- the two groups ----------------------------------------------------------------------


@dataclass
class Group:
    """One group's figures over the rollout so far (docs/rollouts.md, "Figures")."""

    name: str
    version: int
    selected: int = 0  # live instances the selector puts in this group
    running: int = 0  # live instances that report running this group's version
    calls: int = 0
    failures: int = 0
    slow_calls: int = 0
    rejected: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    trips: int = 0

    @property
    def failure_rate(self) -> float | None:
        """Failures over calls (0-1), None without calls."""
        return self.failures / self.calls if self.calls else None

    @property
    def p99(self) -> float | None:
        """Seconds, from the merged histogram (breakers.latency)."""
        return percentile(self.latency, 0.99) if self.latency else None

    @property
    def trips_per_instance(self) -> float | None:
        """Trips over the instances running the version, None without any."""
        return self.trips / self.running if self.running else None

    def wire(self) -> dict[str, Any]:
        """The group as the API and the page show it."""
        return {
            "version": self.version,
            "instances_selected": self.selected,
            "instances_running": self.running,
            "calls": self.calls,
            "failures": self.failures,
            "failure_rate": self.failure_rate,
            "slow_calls": self.slow_calls,
            "rejected": self.rejected,
            "p99": self.p99,
            "trips": self.trips,
            "trips_per_instance": self.trips_per_instance,
        }


@dataclass
class Member:
    """A live instance of the circuit and its place in the rollout."""

    instance_id: str
    identity: str
    canary: bool  # the selector picks it
    running: int  # the config version it reports


def live_instances(circuit_id: int, now: datetime | None = None) -> list[tuple[str, str, int]]:
    """(instance id, stable identity, config version it runs) of every live instance of
    the circuit, by instance id."""
    rows = (
        Snapshot.objects.filter(circuit_id=circuit_id, instance__last_seen__gte=live_cutoff(now))
        .order_by("instance__instance_id")
        .values_list(
            "instance__instance_id", "instance__hostname", "instance__pid", "config_version"
        )
    )
    return [(iid, stable_identity(iid, host, pid), version) for iid, host, pid, version in rows]


def members(rollout: Rollout, now: datetime | None = None) -> list[Member]:
    """The live instances of the rollout's circuit, each with the group the selector puts
    it in (the same decision its agent makes) and the version it runs."""
    return [
        Member(iid, identity, selected(rollout.select, identity), version)
        for iid, identity, version in live_instances(rollout.circuit_id, now)
    ]


def figures(rollout: Rollout, now: datetime | None = None) -> dict[str, Group]:
    """Both groups' figures: instances, traffic, p99 and trips since the start."""
    canary = Group(RolloutGroup.CANARY, rollout.to_version.version)
    baseline = Group(RolloutGroup.BASELINE, rollout.from_version.version)
    groups: dict[str, Group] = {RolloutGroup.CANARY: canary, RolloutGroup.BASELINE: baseline}
    by_version = {canary.version: canary, baseline.version: baseline}
    for m in members(rollout, now):
        (canary if m.canary else baseline).selected += 1
        if m.running in by_version:
            by_version[m.running].running += 1
    for row in RolloutTraffic.objects.filter(rollout=rollout).values(
        "group", "calls", "failures", "slow_calls", "rejected", "latency"
    ):
        g = groups[row["group"]]
        g.calls += row["calls"]
        g.failures += row["failures"]
        g.slow_calls += row["slow_calls"]
        g.rejected += row["rejected"]
        for index, count in (row["latency"] or {}).items():
            g.latency[int(index)] = g.latency.get(int(index), 0) + int(count)
    for version, trips in trips_by_version(rollout, now).items():
        by_version[version].trips = trips
    return groups


def trips_by_version(rollout: Rollout, now: datetime | None = None) -> dict[int, int]:
    """Trips (to open) of the circuit during the rollout, by the version they ran."""
    window = Q(at__gte=rollout.started_at)
    if rollout.ended_at is not None:
        window &= Q(at__lt=rollout.ended_at)
    elif now is not None:
        window &= Q(at__lte=now)
    rows = (
        Transition.objects.filter(
            window,
            circuit_id=rollout.circuit_id,
            to_state=CircuitState.OPEN,
            config_version__in=[rollout.from_version.version, rollout.to_version.version],
        )
        .values("config_version")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["config_version"]: row["n"] for row in rows if row["config_version"] is not None}


# -- automatic rollback ------------------------------------------------------------------


def evaluate_auto_rollbacks(*, now: datetime | None = None) -> list[int]:
    """Roll back, as the system, every active rollout with a margin whose canary group
    trips more per instance than its baseline group by more than the margin; the ids."""
    now = now or timezone.now()
    due = Rollout.objects.filter(
        state=RolloutState.ACTIVE, auto_rollback_margin__isnull=False
    ).select_related("circuit", "from_version", "to_version")
    rolled: list[int] = []
    for rollout in due:
        groups = figures(rollout, now)
        canary = groups[RolloutGroup.CANARY].trips_per_instance
        if canary is None:
            continue  # no instance runs the canary yet
        baseline = groups[RolloutGroup.BASELINE].trips_per_instance or 0.0
        margin = rollout.auto_rollback_margin or 0.0
        if canary - baseline <= margin:
            continue
        reason = (
            f"automatic: the canary tripped {canary:.2f} times per instance, the baseline "
            f"{baseline:.2f} (margin {margin:g})"
        )
        try:
            rollback_rollout(rollout, user=None, reason=reason, now=now)
        except RolloutConflictError:
            continue  # ended meanwhile by someone else
        rolled.append(rollout.pk)
    return rolled


def ended_by_name(rollout: Rollout) -> str:
    """Who ended the rollout ("system" for an automatic rollback); "" while active."""
    if rollout.ended_at is None:
        return ""
    return actor_name(rollout.ended_by)
