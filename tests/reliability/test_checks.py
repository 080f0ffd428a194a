"""The count the fault tests rely on finds what it must: acknowledged transitions that
are missing, stored twice, altered, and holes in an instance's ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.circuits.models import Circuit, Instance, Service, Transition
from tests.reliability.checks import tally
from tests.reliability.fleet import SERVICE

pytestmark = [pytest.mark.django_db, pytest.mark.reliability]

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def stamp(n: int) -> str:
    return (T0 + timedelta(microseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key(n: int) -> list[str]:
    return ["dep_0", "closed", "open", stamp(n)] if n % 2 else ["dep_0", "open", "closed", stamp(n)]


def store(instance: Instance, circuit: Circuit, seq: int, content: list[str]) -> None:
    _, from_state, to_state, at = content
    Transition.objects.create(
        instance=instance,
        circuit=circuit,
        seq=seq,
        from_state=from_state,
        to_state=to_state,
        at=datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        reason="failure_threshold",
        received_at=T0,
    )


def record(acked: list[int], produced: int) -> dict:
    return {
        "instance": "i-1",
        "produced": produced,
        "pending": 0,
        "dropped": 0,
        "acked": {str(i): key(i) for i in acked},
    }


@pytest.fixture
def rows():
    service = Service.objects.create(name=SERVICE)
    instance = Instance.objects.create(
        service=service, instance_id="i-1", first_seen=T0, last_seen=T0
    )
    return instance, Circuit.objects.create(service=service, name="dep_0")


def test_everything_stored_once_is_clean(rows):
    instance, circuit = rows
    for n in range(1, 6):
        store(instance, circuit, n, key(n))
    counted = tally(SERVICE, [record([1, 2, 3, 4, 5], 5)])
    assert counted.clean and counted.problems == []
    assert (counted.produced, counted.acked, counted.stored) == (5, 5, 5)


def test_lost_altered_duplicated_and_gaps_are_counted(rows):
    instance, circuit = rows
    store(instance, circuit, 1, key(1))
    store(instance, circuit, 2, key(1))  # id 2 stored with id 1's content: altered, twice
    store(instance, circuit, 4, key(4))
    store(instance, circuit, 6, key(6))  # stored, never acknowledged
    counted = tally(SERVICE, [record([1, 2, 3, 4, 5], 6)])
    assert counted.lost == 2  # ids 3 and 5
    assert counted.altered == 1
    assert counted.duplicated == 1
    assert counted.gaps == 2  # 3 and 5, below 6
    assert counted.stored_unacked == 1
    assert not counted.clean
    assert len(counted.problems) == 4
