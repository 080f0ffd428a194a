"""The desired state of a service: what its agents should run (configs and overrides)."""

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.circuits.models import Circuit, Override, Service
from controlplane.circuits.signals import desired_state_changed


def isoformat(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z suffix, or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def active_overrides(now: datetime | None = None) -> Any:
    """Overrides in force at ``now``: not ended and not past their expiry."""
    now = now or timezone.now()
    return Override.objects.filter(ended_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def override_wire(override: Override) -> dict[str, Any]:
    """An override as agents and clients see it."""
    return {
        "state": override.state,
        "until": isoformat(override.expires_at),
        "reason": override.reason,
        "by": override.created_by.get_username() if override.created_by else "system",
    }


def build_desired_state(service_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """What every agent of the service should run, in three queries.

    Returns {"desired_version", "poll_interval", "breakers": {name: {"config_version",
    "config", "override"}}}; expired overrides are never included.
    """
    now = now or timezone.now()
    desired_version = (
        Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
    )
    circuits = (
        Circuit.objects.filter(service_id=service_id)
        .select_related("current_config")
        .only("id", "name", "current_config__version", "current_config__config")
        .order_by("name")
    )
    overrides = {
        o.circuit_id: o
        for o in active_overrides(now)
        .filter(circuit__service_id=service_id)
        .select_related("created_by")
    }
    breakers: dict[str, Any] = {}
    for circuit in circuits:
        current = circuit.current_config
        override = overrides.get(circuit.id)
        breakers[circuit.name] = {
            "config_version": current.version if current else 0,
            "config": current.config if current else None,
            "override": override_wire(override) if override else None,
        }
    return {
        "desired_version": desired_version,
        "poll_interval": settings.SWITCHYARD_POLL_INTERVAL,
        "breakers": breakers,
    }


def bump_desired_version(service_id: int) -> int:
    """Increment the service's desired version inside the caller's transaction.

    Sends ``desired_state_changed`` after the commit. Returns the new version.
    """
    Service.objects.filter(pk=service_id).update(desired_version=F("desired_version") + 1)
    version: int = (
        Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
    )
    transaction.on_commit(
        lambda: desired_state_changed.send(
            sender=Service, service_id=service_id, desired_version=version
        ),
        robust=True,
    )
    return version
