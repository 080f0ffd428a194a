"""Builders of fleet history for alert tests: circuits, instances, snapshots and
transitions written straight to the models (the durable rows evaluation reads)."""

import itertools
from datetime import UTC, datetime

from controlplane.circuits.models import Circuit, Instance, Service, Snapshot, Transition

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
WEBHOOK_SECRET = "s3cret-s3cret-s3cret"


class Fleet:
    """Writes a fleet's rows: ``report`` a snapshot, ``move`` a transition."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._seq = itertools.count(1)

    def circuit(self, name: str = "db") -> Circuit:
        return Circuit.objects.get_or_create(service=self.service, name=name)[0]

    def instance(self, name: str = "web-1", *, seen: datetime = T0) -> Instance:
        inst, created = Instance.objects.get_or_create(
            service=self.service, instance_id=name, defaults={"first_seen": seen, "last_seen": seen}
        )
        if not created and inst.last_seen != seen:
            inst.last_seen = seen
            inst.save(update_fields=["last_seen"])
        return inst

    def report(
        self,
        circuit: Circuit,
        state: str,
        at: datetime,
        *,
        instance: str = "web-1",
        failure_rate: float | None = None,
        since: datetime | None = None,
    ) -> Snapshot:
        inst = self.instance(instance, seen=at)
        snap, _ = Snapshot.objects.update_or_create(
            instance=inst,
            circuit=circuit,
            defaults={
                "state": state,
                "updated_at": at,
                "failure_rate": failure_rate,
                "state_since": since or at,
            },
        )
        return snap

    def move(
        self,
        circuit: Circuit,
        from_state: str,
        to_state: str,
        at: datetime,
        *,
        instance: str = "web-1",
    ) -> Transition:
        inst = self.instance(instance, seen=at)
        return Transition.objects.create(
            instance=inst,
            circuit=circuit,
            seq=next(self._seq),
            from_state=from_state,
            to_state=to_state,
            at=at,
            reason="failure_rate",
            received_at=at,
        )
