"""The number of queries per sync does not depend on the number of breakers in it."""

from typing import Any

import pytest

from controlplane.circuits.auth import authenticate_agent
from controlplane.circuits.ingest import ingest_sync, parse_sync
from controlplane.circuits.models import Circuit, Transition

pytestmark = pytest.mark.django_db

# Queries of one sync through ingest_sync (token lookup excluded), pinned so that a change
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
