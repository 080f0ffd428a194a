"""A write outside a caller's transaction goes to PostgreSQL as one pipeline: the same
rows as a write in a transaction, in two round trips, and a failure anywhere in it
stores nothing and leaves the connection usable."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from controlplane.circuits.models import Instance, Service, Snapshot, Transition
from controlplane.circuits.sync import store as store_module
from controlplane.circuits.sync.store import Item, Store
from tests.circuits.sync_helpers import parse_sync, transition

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Counts the times the client waited for the server (libpq's protocol trace: each
    run of messages the client sent that the server then answered)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    fd, path = tempfile.mkstemp()
    found: list[int] = []
    try:
        pgconn.trace(fd)
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        yield found
    finally:
        pgconn.untrace()
        os.close(fd)
        with open(path) as trace:
            sides = [line.split("\t")[0] for line in trace if line.strip()]
        os.unlink(path)
        found.append(sum(1 for pair in itertools.pairwise(sides) if pair == ("F", "B")))


def _items(service: Service, *bodies: dict[str, Any]) -> list[Item]:
    return [Item(service.pk, service.name, parse_sync(b), timezone.now()) for b in bodies]


def _stored(service: Service) -> dict[str, Any]:
    """What the database holds of ``service``'s one instance, without ids or times."""
    instance = Instance.objects.get(service=service)
    return {
        "instance": (
            instance.generation,
            instance.restarts,
            instance.acked_through,
            instance.dropped_transitions,
        ),
        "snapshots": sorted(
            Snapshot.objects.filter(instance=instance).values_list(
                "circuit__name",
                "state",
                "calls",
                "failures",
                "rejected",
                "calls_delta",
                "failures_delta",
                "rejected_delta",
                "delta_seconds",
                "generation",
            )
        ),
        "transitions": sorted(
            Transition.objects.filter(instance=instance).values_list(
                "circuit__name", "generation", "seq", "from_state", "to_state"
            )
        ),
    }


def _story(sync_body: Any) -> list[dict[str, Any]]:
    """A process's syncs: registration, traffic, a trip, a replay, a restart."""
    restarted = {"started_at": "2026-11-27T11:00:00Z"}
    return [
        sync_body(clock=1.0, breakers=[{"name": "db"}, {"name": "cache"}]),
        sync_body(clock=6.0, breakers=[{"name": "db", "calls": 40}, {"name": "cache"}]),
        sync_body(
            clock=11.0,
            breakers=[{"name": "db", "state": "open", "calls": 90, "failures": 30}],
            transitions=[transition(1)],
        ),
        sync_body(
            clock=16.0,
            breakers=[{"name": "db", "state": "open", "calls": 90, "rejected": 25}],
            transitions=[transition(1)],  # a replay
        ),
        sync_body(
            clock=2.0,
            instance=restarted,
            breakers=[{"name": "db", "calls": 7}, {"name": "cache", "calls": 3}],
            transitions=[transition(1, **{"from": "open", "to": "closed"})],
        ),
    ]


def test_a_pipelined_write_stores_what_a_write_in_a_transaction_stores(
    sync_body: Any, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 0
    piped = Service.objects.create(name="piped")
    wrapped = Service.objects.create(name="wrapped")
    store = Store()
    pipelined = []
    for body in _story(sync_body):
        items = _items(piped, body)
        pipelined.append(store._pipelines(items))
        store.write(items)
        with transaction.atomic():
            other = _items(wrapped, body)
            assert not store._pipelines(other)  # a caller's transaction: its own
            store.write(other)
        assert items[0].acked_through == other[0].acked_through
    # The first sync registers its breakers (Django's transaction, the service's lock);
    # every later one goes as a pipeline.
    assert pipelined == [False, True, True, True, True]
    assert _stored(piped) == _stored(wrapped)
    assert _stored(piped)["instance"] == (1, 1, 1, 0)
    assert len(_stored(piped)["transitions"]) == 2


def test_a_steady_write_waits_for_the_database_twice(sync_body: Any) -> None:
    service = Service.objects.create(name="trips")
    store = Store()
    store.write(_items(service, sync_body(clock=1.0, breakers=[{"name": "db"}])))
    body = sync_body(
        clock=6.0,
        breakers=[{"name": "db", "state": "open", "calls": 10, "failures": 10}],
        transitions=[transition(1)],
    )
    with round_trips() as piped:
        written = store.write(_items(service, body))
    assert (written.instances, written.transitions_new, written.snapshots) == (1, 1, 1)
    # BEGIN and the instances' upsert; then transitions, snapshots and COMMIT.
    assert piped == [2]
    replay = sync_body(
        clock=11.0,
        breakers=[{"name": "db", "state": "open", "calls": 10, "failures": 10}],
        transitions=[transition(1)],
    )
    with round_trips() as wrapped, transaction.atomic():
        store.write(_items(service, replay))
    assert wrapped[0] >= 4  # BEGIN, instances, transitions, snapshots (COMMIT after)


@pytest.mark.parametrize("failure", ["database", "python"])
def test_a_pipelined_write_that_fails_stores_nothing_and_the_connection_goes_on(
    sync_body: Any, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    service = Service.objects.create(name="fails")
    store = Store()
    store.write(_items(service, sync_body(clock=1.0, breakers=[{"name": "db"}])))
    before = Instance.objects.get(service=service).last_seen
    real = store._traffic

    def traffic(*args: Any) -> Any:
        # Everything before has been sent (the instance's upsert has even answered).
        if failure == "database":
            with store_module._binding_cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        else:
            raise RuntimeError("not a database error")
        return real(*args)

    monkeypatch.setattr(store, "_traffic", traffic)
    items = _items(
        service,
        sync_body(
            clock=6.0,
            breakers=[{"name": "db", "state": "open", "calls": 5}],
            transitions=[transition(1)],
        ),
    )
    assert store._pipelines(items)
    expected = DatabaseError if failure == "database" else RuntimeError
    with pytest.raises(expected):
        store.write(items)
    # Rolled back whole: no transition, the snapshot and the instance as they were.
    assert Transition.objects.count() == 0
    assert Snapshot.objects.get().state == "closed"
    assert Instance.objects.get(service=service).last_seen == before
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    monkeypatch.setattr(store, "_traffic", real)
    store.forget()  # as the group commit does after a failed write
    store.write(items)  # sent again, it is stored
    assert Transition.objects.count() == 1
    assert Snapshot.objects.get().state == "open"


def test_a_steady_write_with_telemetry_waits_for_the_database_three_times(
    sync_body: Any,
) -> None:
    service = Service.objects.create(name="reports")
    store = Store()
    store.write(_items(service, sync_body(clock=1.0, breakers=[{"name": "db"}])))

    def report(seq: int) -> dict[str, Any]:
        growth = {"name": "db", "calls": 10, "failures": 2, "latency": [[3, 10]]}
        return {"seq": seq, "bucket": 1_764_928_800 + 10 * seq, "breakers": [growth]}

    body = sync_body(
        clock=6.0,
        breakers=[{"name": "db", "state": "open", "calls": 10, "failures": 2}],
        transitions=[transition(1)],
        telemetry=[report(1)],
    )
    with round_trips() as piped:
        written = store.write(_items(service, body))
    assert (written.transitions_new, written.snapshots, written.traffic) == (1, 1, 1)
    # BEGIN, the active rollouts and the telemetry watermark; the instances' upsert;
    # then transitions, snapshots, traffic and COMMIT.
    assert piped == [3]
