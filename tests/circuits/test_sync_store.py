"""The sync's store: liveness from the instance, rates from counters over the agent's
clock, restarts, group commit and its failures, set-based writes."""

from __future__ import annotations

import asyncio
import gc
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.circuits.models import Circuit, Instance, Service, Snapshot, Transition
from controlplane.circuits.sync.store import GroupCommit, Item, Store
from tests.circuits.sync_helpers import parse_sync, transition

pytestmark = pytest.mark.django_db


def _write(store: Store, service: Service, *bodies: dict[str, Any]) -> list[Item]:
    items = [Item(service.pk, service.name, parse_sync(b), timezone.now()) for b in bodies]
    store.write(items)
    return items


def _snapshot() -> Snapshot:
    return Snapshot.objects.get()


def test_the_parsed_sync_and_the_cached_rows_are_not_tracked_by_the_garbage_collector(
    sync_body: Any, service: Service, django_capture_on_commit_callbacks: Any
) -> None:
    """A worker decodes hundreds of syncs a second and caches a row per snapshot: none
    of it adds to what a full collection walks (controlplane.serve._run)."""
    store = Store()
    bucket = int(timezone.now().timestamp()) // 10 * 10
    body = sync_body(
        clock=12.0,
        breakers=[{"name": "db", "calls": 4}, {"name": "cache", "state": "open"}],
        transitions=[transition(1, "cache")],
        telemetry=[
            {
                "seq": 1,
                "bucket": bucket,
                "breakers": [{"name": "db", "calls": 4, "latency": [[3, 4]]}],
            }
        ],
    )
    with django_capture_on_commit_callbacks(execute=True):  # the cache fills on commit
        (item,) = _write(store, service, body)
    assert item.error is None
    sync = item.sync
    parts = [sync, sync.instance, *sync.breakers, *sync.transitions, *sync.telemetry]
    parts += [growth for report in sync.telemetry for growth in report.breakers]
    assert len(parts) == 7
    assert [gc.is_tracked(part) for part in parts] == [False] * len(parts)
    assert len(store.rows) == 2
    assert [gc.is_tracked(row) for row in store.rows.values()] == [False, False]


def test_rates_cover_the_time_between_two_syncs_by_the_agents_clock(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 0
    store = Store()
    _write(store, service, sync_body(clock=10.0, breakers=[{"name": "db", "calls": 100}]))
    first = _snapshot()
    # The first sight counts from the process's start (its clock's origin).
    assert (first.calls_delta, first.delta_seconds) == (100, 10.0)
    body = sync_body(clock=17.5, breakers=[{"name": "db", "calls": 250, "failures": 15}])
    _write(store, service, body)
    row = _snapshot()
    assert (row.calls_delta, row.failures_delta, row.delta_seconds) == (150, 15, 7.5)
    assert row.calls_delta / row.delta_seconds == pytest.approx(20.0)


def test_an_open_circuit_shows_its_rejected_calls_per_second(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 0
    store = Store()
    _write(store, service, sync_body(clock=100.0, breakers=[{"name": "db", "state": "open"}]))
    for step in range(1, 4):
        breaker = {"name": "db", "state": "open", "calls": 0, "rejected": 50 * step}
        _write(store, service, sync_body(clock=100.0 + 5 * step, breakers=[breaker]))
        row = _snapshot()
        assert row.rejected_delta / row.delta_seconds == pytest.approx(10.0)
        assert row.calls_delta == 0


def test_a_rate_across_a_process_restart_is_neither_negative_nor_inflated(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 0
    store = Store()
    old = {"started_at": "2026-11-27T10:00:00Z"}
    new = {"started_at": "2026-11-27T11:00:00Z"}
    _write(
        store,
        service,
        sync_body(instance=old, clock=3000.0, breakers=[{"name": "db", "calls": 9000}]),
    )
    _write(
        store,
        service,
        sync_body(instance=old, clock=3005.0, breakers=[{"name": "db", "calls": 9050}]),
    )
    assert _snapshot().calls_delta / _snapshot().delta_seconds == pytest.approx(10.0)
    # The new process has made 40 calls in the 4 s since it started; its counters are
    # lower AND higher than a stale base could make them look: the generation decides.
    _write(
        store, service, sync_body(instance=new, clock=4.0, breakers=[{"name": "db", "calls": 40}])
    )
    row = _snapshot()
    assert (row.generation, row.calls, row.calls_delta, row.delta_seconds) == (1, 40, 40, 4.0)
    # A restart with more calls than the old process had is not read as growth.
    _write(
        store,
        service,
        sync_body(instance=old, clock=2.0, breakers=[{"name": "db", "calls": 20000}]),
    )
    row = _snapshot()
    assert (row.generation, row.calls_delta, row.delta_seconds) == (2, 20000, 2.0)
    assert Instance.objects.get().restarts == 2


def test_an_idle_breaker_is_not_rewritten_once_its_rate_is_zero(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 0
    store = Store()
    for clock in (5.0, 10.0):
        _write(store, service, sync_body(clock=clock, breakers=[{"name": "db", "calls": 7}]))
    row = _snapshot()
    assert (row.calls_delta, row.delta_seconds) == (0, 5.0)  # zero over its latest window
    written = row.updated_at
    with CaptureQueriesContext(connection) as queries:
        _write(store, service, sync_body(clock=15.0, breakers=[{"name": "db", "calls": 7}]))
    assert _snapshot().updated_at == written
    assert not any(
        q["sql"].startswith('INSERT INTO "circuits_snapshot"') for q in queries.captured_queries
    )


def test_counters_alone_are_stored_at_their_cadence_states_at_once(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_COUNTER_SECONDS = 4
    store = Store()
    _write(store, service, sync_body(clock=10.0, breakers=[{"name": "db", "calls": 10}]))
    _write(store, service, sync_body(clock=11.0, breakers=[{"name": "db", "calls": 20}]))
    assert _snapshot().calls == 10  # 1 s of the agent's clock: not due
    _write(
        store,
        service,
        sync_body(clock=12.0, breakers=[{"name": "db", "state": "open", "calls": 30}]),
    )
    assert (_snapshot().state, _snapshot().calls_delta, _snapshot().delta_seconds) == (
        "open",
        20,
        2.0,
    )
    _write(
        store,
        service,
        sync_body(clock=16.5, breakers=[{"name": "db", "state": "open", "calls": 75}]),
    )
    assert (_snapshot().calls_delta, _snapshot().delta_seconds) == (45, 4.5)


def test_an_idle_breaker_in_a_syncing_process_stays_live_for_ten_minutes(
    sync_body: Any, service: Service, settings: Any
) -> None:
    settings.SWITCHYARD_POLL_INTERVAL = 5
    store = Store()
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        for step in range(0, 121):  # every 5 s for 10 minutes, nothing changes
            traveller.move_to(start + timedelta(seconds=5 * step))
            _write(store, service, sync_body(clock=5.0 * step, breakers=[{"name": "db"}]))
            circuit = Circuit.objects.with_fleet_state().get()
            assert (circuit.fleet_state, circuit.instances_live) == ("closed", 1), step
        assert Snapshot.objects.get().updated_at <= start + timedelta(seconds=5)
        # The process goes quiet: after the live window, nobody holds the circuit.
        traveller.move_to(start + timedelta(seconds=5 * 120 + 16))
        assert Circuit.objects.with_fleet_state().get().fleet_state == "unknown"


def test_one_write_of_fifty_syncs_costs_the_queries_of_one(
    sync_body: Any, service: Service
) -> None:
    store = Store()
    bodies = [
        sync_body(instance={"id": f"web-{i}"}, breakers=[{"name": f"b{j}"} for j in range(20)])
        for i in range(50)
    ]
    _write(store, service, *bodies)  # registration

    def steady(seq: int) -> list[dict[str, Any]]:
        return [
            sync_body(
                instance={"id": f"web-{i}"},
                clock=10.0 * seq,
                breakers=[{"name": f"b{j}", "calls": seq * 100} for j in range(20)],
                transitions=[transition(seq, "b0")],
            )
            for i in range(50)
        ]

    with CaptureQueriesContext(connection) as one:
        _write(store, service, steady(1)[0])
    with CaptureQueriesContext(connection) as fifty:
        _write(store, service, *steady(2))
    # Savepoint, circuits and snapshots read (this test's transaction never commits, so
    # the caches stay empty), instances, transitions, snapshots, release: whatever the
    # number of syncs.
    assert len(fifty.captured_queries) == len(one.captured_queries) == 7
    assert Transition.objects.count() == 51
    assert Snapshot.objects.filter(calls=200).count() == 1000


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_write_failing_for_any_reason_answers_503_and_loses_nothing(
    sync_body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await sync_to_async(Service.objects.create)(name="flaky")
    store = Store()
    group = GroupCommit(store)
    real = store._transitions
    failures = iter([RuntimeError("not a database error")])

    def transitions(*args: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args)

    monkeypatch.setattr(store, "_transitions", transitions)
    body = sync_body(breakers=[{"name": "db", "state": "open"}], transitions=[transition(1)])

    async def send() -> Item:
        item = Item(service.pk, service.name, parse_sync(body), timezone.now())
        await asyncio.wait_for(group.submit(item), timeout=10)
        return item

    failed = await send()
    assert failed.error is not None and failed.error.status == 503
    assert failed.error.headers["Retry-After"]
    assert await sync_to_async(Transition.objects.count)() == 0  # rolled back whole
    stored = await send()  # the agent sends it again
    assert stored.error is None and stored.acked_through == 1
    again = await send()  # and a replay stores nothing twice
    assert again.acked_through == 1
    assert await sync_to_async(Transition.objects.count)() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_only_a_sync_with_nothing_to_lose_is_answered_before_its_write(
    sync_body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await sync_to_async(Service.objects.create)(name="early")
    store = Store()
    group = GroupCommit(store)

    def item(**body: Any) -> Item:
        return Item(service.pk, service.name, parse_sync(sync_body(**body)), timezone.now())

    first = item(clock=1.0, breakers=[{"name": "db"}], transitions=[transition(1)])
    await asyncio.wait_for(group.submit(first), timeout=10)
    assert first.acked_through == 1
    # Writes are held up from now on.
    release = threading.Event()
    real = store.write

    def held(items: list[Item], **kwargs: Any) -> Any:
        release.wait(10)
        return real(items, **kwargs)

    monkeypatch.setattr(store, "write", held)
    report = {"seq": 1, "bucket": 1_764_928_800, "breakers": [{"name": "db", "calls": 50}]}
    counters = item(clock=6.0, breakers=[{"name": "db", "calls": 50}], telemetry=[report])
    await asyncio.wait_for(group.accept(counters), timeout=2)  # answered: not written yet
    # Its report is not covered yet: the agent sends it again until an answer covers it.
    assert (counters.acked_through, counters.telemetry_through) == (1, 0)
    # The first sync of a new process, naming breakers already stored, acknowledges
    # nothing: it is answered at once too (its instance row comes with the next write).
    newcomer = item(clock=7.0, instance={"id": "web-2"}, breakers=[{"name": "db"}])
    await asyncio.wait_for(group.accept(newcomer), timeout=2)
    assert (newcomer.acked_through, newcomer.telemetry_through) == (0, 0)
    # What could be lost, or is new to the store, waits for its write.
    restarted = {"started_at": "2026-11-27T12:00:00Z"}
    unsettled = [
        item(clock=7.0, breakers=[{"name": "db", "calls": 50}], transitions=[transition(2)]),
        item(clock=7.0, breakers=[{"name": "db"}], dropped_transitions=1),
        item(clock=7.0, breakers=[{"name": "db"}, {"name": "new"}]),
        item(clock=7.0, instance=restarted, breakers=[{"name": "db"}]),
        item(clock=7.0, breakers=[{"name": "db"}], dropped_reports=1),
        item(
            clock=7.0,
            breakers=[{"name": "db"}, {"name": "other"}],
            telemetry=[{**report, "breakers": [{"name": "other", "calls": 1}]}],
        ),
    ]
    assert [store.settled(u) for u in unsettled] == [False] * 6
    task = asyncio.ensure_future(group.accept(unsettled[0]))
    done, _ = await asyncio.wait([task], timeout=0.5)
    assert not done
    release.set()
    await asyncio.wait_for(task, timeout=10)
    assert unsettled[0].error is None and unsettled[0].acked_through == 2
    # Queued before it, the newcomer was written with it or before it.
    newcomer_row = await sync_to_async(Instance.objects.get)(instance_id="web-2")
    assert (newcomer_row.acked_through, newcomer_row.generation) == (0, 0)
    row = await sync_to_async(Snapshot.objects.get)(instance__instance_id="web-1")
    # Written in the held write or with the next one: the counters and their growth
    # over the agent's clock either way.
    assert (row.calls, row.clock) == (50, 7.0)
    assert (row.calls_delta, row.delta_seconds) in {(50, 6.0), (0, 1.0)}


@pytest.mark.django_db
def test_snapshot_pages_leave_room_for_in_place_updates_and_no_index_is_redundant() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'circuits_snapshot'")
        assert cursor.fetchone()[0] == ["fillfactor=70"]
        cursor.execute(
            "SELECT tablename, indexdef FROM pg_indexes "
            "WHERE tablename IN ('circuits_snapshot', 'circuits_instance')"
        )
        columns: dict[str, list[str]] = {}
        for table, definition in cursor.fetchall():
            key = definition.split("(", 1)[1].rstrip(")")
            columns.setdefault(table, []).append(key)
    # Each table's indexes: none is the leading column of another (a redundant one is one
    # more write for every row a sync inserts or moves).
    for table, keys in columns.items():
        for key in keys:
            others = [k for k in keys if k != key and k.startswith(key + ",")]
            assert not others, (table, key, others)
    assert sorted(columns["circuits_snapshot"]) == [
        "circuit_id, state",
        "id",
        "instance_id, circuit_id",
    ]
