"""History rows made directly (many, with shared times) for the keyset and export tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from django.utils import timezone

from controlplane.circuits.models import AuditEvent, Circuit, Instance, Service, Transition

STATES = ["open", "half_open", "closed"]
_seq = count(1)


def circuit(service: str = "checkout", name: str = "payments") -> Circuit:
    """A circuit (its service made if new)."""
    owner, _ = Service.objects.get_or_create(name=service)
    return Circuit.objects.get_or_create(service=owner, name=name)[0]


def instance(service: Service, instance_id: str = "web-1") -> Instance:
    now = timezone.now()
    return Instance.objects.get_or_create(
        service=service, instance_id=instance_id, defaults={"first_seen": now, "last_seen": now}
    )[0]


def transitions(
    target: Circuit,
    times: list[datetime],
    instance_id: str = "web-1",
) -> list[Transition]:
    """One transition of ``target`` at each of ``times`` (repeat a time for ties)."""
    owner = instance(target.service, instance_id)
    rows = [
        Transition(
            instance=owner,
            circuit=target,
            seq=next(_seq),
            from_state=STATES[(i + 2) % 3],
            to_state=STATES[i % 3],
            at=at,
            reason="failure_rate",
            failure_rate=(i % 7) / 7 if i % 5 else None,
            calls=i,
            failures=i // 2,
            config_version=1,
            # Whole seconds and fractions (the export writes both as the API does).
            received_at=at + timedelta(seconds=1, microseconds=(i * 120_003) % 1_000_000),
        )
        for i, at in enumerate(times)
    ]
    return Transition.objects.bulk_create(rows)


def audit_events(times: list[datetime], service: Service | None = None) -> list[AuditEvent]:
    """One audit event at each of ``times``, alternating two actions and actors."""
    rows = [
        AuditEvent(
            actor_name=("otto", "ada")[i % 2],
            action=("override.force", "config.create")[i % 2],
            service=service,
            target_type="circuit",
            target_id=str(i),
            target_repr=f"checkout/c{i}",
            reason=f'reason {i}, with "quotes"\nand a newline' if i % 3 == 0 else "",
            before={"state": "closed", "n": i} if i % 2 else None,
            after={"state": "forced_open"},
            at=at,
        )
        for i, at in enumerate(times)
    ]
    return AuditEvent.objects.bulk_create(rows)
