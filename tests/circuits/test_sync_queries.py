"""Round trips per flush of the buffered sync path, and queries per sync of the
one-transaction path, do not depend on how many syncs, instances or breakers they carry."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from controlplane.circuits import intake as intake_module
from controlplane.circuits.auth import authenticate_agent
from controlplane.circuits.ingest import ingest_sync, parse_sync
from controlplane.circuits.intake import Intake
from controlplane.circuits.models import Circuit, Transition
from tests.circuits.test_sync_intake import (  # noqa: F401 (an autouse fixture)
    _answer,
    _batch,
    _close_thread_connections,
    _flush,
    _service,
    _until_buffered,
)

pytestmark = pytest.mark.django_db

# Round trips of one flush, whatever the number of syncs, instances and breakers in it:
# BEGIN, the instance update, the transition insert, the snapshot upsert, COMMIT.
FLUSH_ROUND_TRIPS = 5

# Queries of one sync through ingest_sync (the Django view, and the first sync of an
# instance in a web process) (token lookup excluded), pinned so that a change
# that adds a per-breaker query, or any query, is noticed:
# first sync: instance lock, create, re-lock; open overrides; the service's circuits;
# service lock, re-check, circuit insert, config version insert, circuit update; snapshot
# upsert (one statement on PostgreSQL), transition insert, instance update; savepoint pair.
FIRST_SYNC_QUERIES = 15
# steady state: instance lock (with the desired version), open overrides, circuits,
# snapshot upsert, transition insert, instance update; savepoint pair.
STEADY_SYNC_QUERIES = 8


def _body(sync_body: Any, n: int, first_id: int) -> dict[str, Any]:
    return sync_body(
        breakers=[
            {"name": f"dep_{i}", "state": "open", "calls": first_id * 10, "failures": first_id}
            for i in range(n)
        ],
        transitions=[
            {
                "id": first_id + i,
                "breaker": f"dep_{i}",
                "from": "closed",
                "to": "open",
                "at": "2026-11-27T10:04:00Z",
                "reason": "failure_rate",
            }
            for i in range(n)
        ],
    )


@pytest.mark.parametrize("n", [1, 200])
def test_query_count_per_sync_is_constant(
    n: int, sync_body: Any, agent_token: str, django_assert_num_queries: Any
) -> None:
    service = authenticate_agent(agent_token).service
    first = parse_sync(_body(sync_body, n, first_id=1))
    with django_assert_num_queries(FIRST_SYNC_QUERIES):
        ingest_sync(service, first)
    assert Circuit.objects.filter(service=service).count() == n

    steady = parse_sync(_body(sync_body, n, first_id=1000))
    with django_assert_num_queries(STEADY_SYNC_QUERIES):
        answer = ingest_sync(service, steady)
    assert answer["acked_through"] == 1000 + n - 1
    assert len(answer["breakers"]) == n
    assert Transition.objects.count() == 2 * n


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("instances", [1, 40])
async def test_round_trips_per_flush_do_not_grow_with_syncs(
    instances: int, sync_body: Any, monkeypatch: Any, settings: Any
) -> None:
    settings.REDIS_URL = ""  # the in-process change feed: live from the start
    service_id, _ = await sync_to_async(_service)()
    intake = Intake(flusher=False)
    for i in range(instances):  # first sight: the one-sync transaction, caches filled
        await intake.accept(service_id, "checkout", _batch(sync_body, f"i{i}", 20, []))

    db_threads: list[str] = []
    real = intake_module.in_db_thread

    async def counting(func: Any, *args: Any) -> Any:
        db_threads.append(func.__name__)
        return await real(func, *args)

    monkeypatch.setattr(intake_module, "in_db_thread", counting)
    tasks = [
        asyncio.ensure_future(
            intake.accept(service_id, "checkout", _batch(sync_body, f"i{i}", 20, [1], calls=5))
        )
        for i in range(instances)
    ]
    await _until_buffered(intake, instances)
    assert not any(t.done() for t in tasks)  # answered only once stored
    result, statements = await _flush(intake, counters=True)
    answers = [_answer(r) for r in await asyncio.gather(*tasks)]

    assert statements == FLUSH_ROUND_TRIPS
    assert db_threads == []  # steady state: no database work outside the flush
    assert result.syncs == instances and result.transitions_new == instances
    assert {a["acked_through"] for a in answers} == {1}
    assert set(answers[0]["breakers"]) == {f"dep_{i}" for i in range(20)}
    assert await sync_to_async(Transition.objects.count)() == instances
    kinds = sorted(e["type"] for e in result.events)
    assert kinds == ["fleet.snapshots"] * instances + ["fleet.transitions"]
