"""Concurrent syncs against PostgreSQL: registration races and one instance's batches."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from controlplane.circuits.models import Circuit, ConfigVersion, Service, Transition
from tests.circuits.sync_helpers import parse_sync, store_sync

# Real transactions (threads commit on their own connections); the serialized contents
# keep the data migrations' rows for the tests after this one.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _in_threads(work: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=5)
            results[index] = work[index]()
        except Exception as exc:  # reported below, with the test's assertion
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_instances_registering_the_same_circuits_at_once_create_each_once(sync_body) -> None:
    service = Service.objects.create(name="race")
    names = [{"name": f"dep_{i}", "config": {"failure_threshold": 2 + i % 3}} for i in range(50)]

    def first_sync(instance: str) -> Callable[[], Any]:
        body = sync_body(instance={"id": instance}, breakers=names)
        return lambda: store_sync(service, parse_sync(body))

    results = _in_threads([first_sync(f"web-{i}") for i in range(4)])
    assert all(isinstance(r, dict) for r in results), results
    assert Circuit.objects.filter(service=service).count() == 50
    assert ConfigVersion.objects.filter(circuit__service=service).count() == 50
    assert all(len(r["breakers"]) == 50 for r in results)
    assert all(r["breakers"]["dep_4"]["config_version"] == 1 for r in results)


def test_concurrent_batches_of_one_instance_ack_exactly(sync_body) -> None:
    service = Service.objects.create(name="race2")
    breakers = [{"name": "db", "state": "open"}]
    store_sync(service, parse_sync(sync_body(breakers=breakers)))

    def batch(first: int) -> Callable[[], Any]:
        transitions = [
            {
                "id": i,
                "breaker": "db",
                "from": "closed",
                "to": "open",
                "at": "2026-11-27T10:04:00Z",
                "reason": "failure_threshold",
            }
            for i in range(first, first + 10)
        ]
        body = sync_body(breakers=breakers, transitions=transitions)
        return lambda: store_sync(service, parse_sync(body))

    # Overlapping replays of the same ids from several threads.
    results = _in_threads([batch(1), batch(1), batch(5), batch(11)])
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(Transition.objects.values_list("seq", flat=True)) == list(range(1, 21))
    final = store_sync(service, parse_sync(sync_body(breakers=breakers)))
    assert final["acked_through"] == 20
