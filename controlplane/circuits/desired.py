"""The desired state of a service: what its agents should run (configs, overrides,
drills and shadow evaluations)."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from breakers.canary import CanaryWire
from breakers.wire import format_timestamp
from controlplane.circuits.choices import RolloutState
from controlplane.circuits.models import (
    Circuit,
    Drill,
    Override,
    Rollout,
    Service,
    ShadowEvaluation,
)


def isoformat(value: datetime | None) -> str | None:
    """The wire timestamp (breakers.wire: UTC, microseconds, Z), or None."""
    return format_timestamp(value)


def active_overrides(now: datetime | None = None) -> Any:
    """Overrides in force at ``now``: ``Override.objects.in_force(now)``."""
    return Override.objects.in_force(now)


def override_wire(override: Override) -> dict[str, Any]:
    """An override as agents and clients see it."""
    return {
        "state": override.state,
        "until": isoformat(override.expires_at),
        "reason": override.reason,
        "by": override.created_by.get_username() if override.created_by else "system",
    }


def drill_wire(drill: Drill) -> dict[str, Any]:
    """A drill as agents see it: the instances to force open until ``until``."""
    return {
        "id": drill.pk,
        "state": "forced_open",
        "until": isoformat(drill.ends_at),
        "instances": list(drill.instances),
        "reason": drill.reason,
    }


def shadow_wire(evaluation: ShadowEvaluation) -> dict[str, Any]:
    """A running shadow evaluation as agents see it (breakers.wire.ShadowWire)."""
    return {
        "evaluation": evaluation.pk,
        "config_version": evaluation.config_version,
        "config": evaluation.config,
    }


def canary_wire(rollout: Rollout) -> CanaryWire:
    """The ``canary`` key of a breaker while its rollout runs (breakers.canary)."""
    return {
        "rollout": rollout.pk,
        "config_version": rollout.to_version.version,
        "config": rollout.to_version.config,
        "select": rollout.select,
    }


def active_rollouts(service_id: int) -> dict[int, Rollout]:
    """The active rollout of each circuit of a service, by circuit id (one query)."""
    rows = Rollout.objects.filter(
        circuit__service_id=service_id, state=RolloutState.ACTIVE
    ).select_related("to_version")
    return {r.circuit_id: r for r in rows}


def desired_state_from(
    desired_version: int,
    circuits: Iterable[Circuit],
    overrides: Iterable[Override],
    *,
    now: datetime,
    drills: Iterable[Drill] = (),
    shadows: Iterable[ShadowEvaluation] = (),
    rollouts: Mapping[int, Rollout] | None = None,
) -> dict[str, Any]:
    """Assemble the desired state from loaded rows (circuits with current_config loaded).

    Overrides and drills past their end at ``now`` are left out; a breaker has a
    ``shadow`` key only while a shadow evaluation of it runs. ``rollouts``: the active
    rollout of each circuit id (to_version loaded), carried as its ``canary`` key.
    """
    rollouts = rollouts or {}
    in_force = {o.circuit_id: o for o in overrides if o.expires_at is None or o.expires_at > now}
    running = {d.circuit_id: d for d in drills if d.ended_at is None and d.ends_at > now}
    shadowed = {e.circuit_id: e for e in shadows}
    breakers: dict[str, Any] = {}
    for circuit in sorted(circuits, key=lambda c: c.name):
        current = circuit.current_config
        override = in_force.get(circuit.id)
        drill = running.get(circuit.id)
        breakers[circuit.name] = {
            "config_version": current.version if current else 0,
            "config": current.config if current else None,
            "override": override_wire(override) if override else None,
            "drill": drill_wire(drill) if drill else None,
        }
        shadow = shadowed.get(circuit.id)
        if shadow is not None:
            breakers[circuit.name]["shadow"] = shadow_wire(shadow)
        rollout = rollouts.get(circuit.id)
        if rollout is not None:
            breakers[circuit.name]["canary"] = canary_wire(rollout)
    return {
        "desired_version": desired_version,
        "poll_interval": settings.SWITCHYARD_POLL_INTERVAL,
        "breakers": breakers,
    }


def service_circuits(service_id: int) -> QuerySet[Circuit]:
    """Every circuit of a service with its current config, as desired states need them."""
    return Circuit.objects.filter(service_id=service_id).for_desired_state()


def open_overrides(service_id: int) -> QuerySet[Override]:
    """Overrides of a service not ended yet (some may be past their expiry)."""
    return Override.objects.of_service(service_id).not_ended().select_related("created_by")


def open_drills(service_id: int) -> QuerySet[Drill]:
    """Drills of a service not ended yet (some may be past their end)."""
    return Drill.objects.of_service(service_id).filter(ended_at__isnull=True)


def running_shadows(service_id: int) -> QuerySet[ShadowEvaluation]:
    """The shadow evaluations running on a service's circuits."""
    return ShadowEvaluation.objects.filter(circuit__service_id=service_id, ended_at__isnull=True)


def build_desired_state(service_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """What every agent of the service should run, in six queries.

    Returns {"desired_version", "poll_interval", "breakers": {name: {"config_version",
    "config", "override", "drill"[, "shadow"][, "canary"]}}}; overrides and drills past
    their end are never included, ``canary`` only while a rollout of the circuit runs
    (docs/rollouts.md). The version is read first, so the answer is never older than
    the version it claims.
    """

    now = now or timezone.now()
    desired_version = (
        Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
    )
    return desired_state_from(
        desired_version,
        service_circuits(service_id),
        open_overrides(service_id),
        now=now,
        drills=open_drills(service_id),
        shadows=running_shadows(service_id),
        rollouts=active_rollouts(service_id),
    )


def bump_desired_version(service_id: int) -> int:
    """Increment the service's desired version inside the caller's transaction.

    Returns the new version; the caller publishes the event that carries it
    (``controlplane.circuits.events``), which wakes the watchers after the commit.
    """
    Service.objects.filter(pk=service_id).update(desired_version=F("desired_version") + 1)
    version: int = (
        Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
    )
    return version
