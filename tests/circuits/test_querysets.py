"""The reusable filters of the circuits models (querysets.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.circuits.models import Circuit, Instance, Override, Service
from controlplane.circuits.querysets import live_cutoff

pytestmark = pytest.mark.django_db


def test_override_filters(service: Service, other_service: Service) -> None:
    now = timezone.now()
    mine = Circuit.objects.create(service=service, name="db")
    theirs = Circuit.objects.create(service=other_service, name="db")
    expired = Override.objects.create(
        circuit=mine,
        state="forced_open",
        reason="r",
        created_at=now - timedelta(hours=2),
        expires_at=now - timedelta(hours=1),
    )
    ended = Override.objects.create(
        circuit=theirs, state="forced_open", reason="r", created_at=now, ended_at=now
    )
    forever = Override.objects.create(
        circuit=theirs, state="forced_closed", reason="r", created_at=now
    )
    assert set(Override.objects.not_ended()) == {expired, forever}
    assert list(Override.objects.in_force(now)) == [forever]
    assert list(Override.objects.of_service(service.pk)) == [expired]
    assert ended not in Override.objects.of_service(other_service.pk).not_ended()


def test_instance_live_and_not_live(service: Service) -> None:
    now = timezone.now()
    seen = {"service": service, "first_seen": now}
    fresh = Instance.objects.create(instance_id="a", last_seen=now, **seen)
    stale = Instance.objects.create(
        instance_id="b", last_seen=live_cutoff(now) - timedelta(seconds=1), **seen
    )
    assert list(Instance.objects.live(now)) == [fresh]
    assert list(Instance.objects.not_live(now)) == [stale]


def test_fleet_state_is_unknown_without_live_reports(service: Service) -> None:
    Circuit.objects.create(service=service, name="db")
    circuit = Circuit.objects.with_fleet_state().get()
    assert (circuit.fleet_state, circuit.instances_live, circuit.active_override_list) == (
        "unknown",
        0,
        [],
    )
