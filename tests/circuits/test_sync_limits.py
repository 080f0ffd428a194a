"""Limits of the agent sync: circuits per service, the timestamp range, dropped counts.

Each limit is checked on both sync paths: the Django view (one transaction per sync)
through the one sync pipeline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from controlplane.circuits.models import Circuit, Instance, Service, Snapshot, Transition
from controlplane.circuits.sync.parse import SyncError
from controlplane.circuits.sync.wire import MAX_COUNTER
from tests.circuits.sync_helpers import parse_sync, store_sync
from tests.circuits.test_sync_concurrency import _in_threads

pytestmark = pytest.mark.django_db


def _transition(tid: int, at: str, breaker: str = "db") -> dict[str, Any]:
    return {
        "id": tid,
        "breaker": breaker,
        "from": "closed",
        "to": "open",
        "at": at,
        "reason": "failure_rate",
    }


# -- circuits per service ------------------------------------------------------------------


def test_a_sync_past_the_circuit_limit_is_400_naming_the_breakers(
    post_sync: Any, sync_body: Any, settings: Any
) -> None:
    settings.SWITCHYARD_MAX_CIRCUITS_PER_SERVICE = 3
    assert post_sync(sync_body(breakers=[{"name": "a"}, {"name": "b"}])).status_code == 200
    response = post_sync(sync_body(breakers=[{"name": n} for n in ("a", "b", "c", "d", "e")]))
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == ["breakers[3].name", "breakers[4].name"]
    assert "at most 3" in errors["breakers[3].name"]
    assert "SWITCHYARD_MAX_CIRCUITS_PER_SERVICE" in errors["breakers[3].name"]
    # What was accepted before stays; the refused sync stored nothing.
    assert sorted(Circuit.objects.values_list("name", flat=True)) == ["a", "b"]
    # Up to the limit is fine, and known circuits keep syncing.
    ok = post_sync(sync_body(breakers=[{"name": n} for n in ("a", "b", "c")]))
    assert ok.status_code == 200 and len(ok.json()["breakers"]) == 3


def test_the_circuit_limit_holds_under_concurrent_registration(
    sync_body: Any, settings: Any, transactional_db: None
) -> None:
    settings.SWITCHYARD_MAX_CIRCUITS_PER_SERVICE = 10
    service = Service.objects.create(name="race")

    def register(worker: int) -> Any:
        body = sync_body(
            instance={"id": f"web-{worker}"},
            breakers=[{"name": f"w{worker}_{i}"} for i in range(4)],
        )
        try:
            return store_sync(service, parse_sync(body))
        except SyncError as exc:
            return exc

    results = _in_threads([lambda w=w: register(w) for w in range(6)])
    accepted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, SyncError)]
    assert len(accepted) == 2 and len(refused) == 4, results
    assert all(r.status == 400 for r in refused)
    assert Circuit.objects.filter(service=service).count() == 8


# -- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("transitions[0].at", "0001-01-01T00:00:00+01:00"),  # OverflowError before
        ("transitions[0].at", "1999-12-31T23:59:59Z"),
        ("transitions[0].at", "9999-12-31T23:59:59Z"),
        ("breakers[0].state_since", "9999-12-31T23:59:59Z"),
        ("breakers[0].state_since", "9999-12-31T23:59:59-05:00"),
        ("instance.started_at", "0001-01-01T00:00:00Z"),
    ],
)
def test_timestamps_outside_the_range_are_400_naming_the_field(
    post_sync: Any, sync_body: Any, where: str, value: str
) -> None:
    body = sync_body(
        breakers=[{"name": "db"}],
        transitions=[_transition(1, "2026-11-27T10:04:00Z")],
    )
    top, _, key = where.partition(".")
    name, _, index = top.rstrip("]").partition("[")
    (body[name][int(index)] if index else body[name])[key] = value
    response = post_sync(body)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == [where], errors
    assert not Snapshot.objects.exists() and not Transition.objects.exists()


def test_the_range_follows_the_clock_and_the_settings(
    post_sync: Any, sync_body: Any, settings: Any
) -> None:
    settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW = 60
    soon = (timezone.now() + timedelta(seconds=30)).isoformat()
    later = (timezone.now() + timedelta(seconds=600)).isoformat()
    body = sync_body(breakers=[{"name": "db", "state_since": soon}])
    assert post_sync(body).status_code == 200
    body = sync_body(breakers=[{"name": "db", "state_since": later}])
    assert "breakers[0].state_since" in post_sync(body).json()["errors"]
    settings.SWITCHYARD_SYNC_EARLIEST_YEAR = 2030
    body = sync_body(breakers=[{"name": "db"}])  # state_since 2026-11-27
    assert "breakers[0].state_since" in post_sync(body).json()["errors"]


def test_a_timestamp_accepted_once_is_checked_again(
    post_sync: Any, sync_body: Any, settings: Any
) -> None:
    # Parsed timestamps are remembered between syncs; the range is not.
    settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW = 3600
    soon = (timezone.now() + timedelta(seconds=1800)).isoformat()
    assert post_sync(sync_body(breakers=[{"name": "db", "state_since": soon}])).status_code == 200
    settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW = 60
    response = post_sync(sync_body(breakers=[{"name": "db", "state_since": soon}]))
    assert "breakers[0].state_since" in response.json()["errors"]


def test_reads_of_circuits_with_extreme_stored_times_never_500(
    post_sync: Any, sync_body: Any, viewer_api: Any, viewer: Any, client: Any
) -> None:
    # Rows stored before the range existed: the ends of what PostgreSQL and Python share.
    assert post_sync(sync_body(breakers=[{"name": "db", "state": "open"}])).status_code == 200
    circuit = Circuit.objects.get()
    instance = Instance.objects.get()
    far, early = datetime(9999, 12, 31, 23, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)
    Snapshot.objects.update(state_since=far)
    Instance.objects.update(started_at=early)
    for seq, at in enumerate((early, far), start=1):
        Transition.objects.create(
            instance=instance,
            circuit=circuit,
            generation=0,
            seq=seq,
            from_state="closed",
            to_state="open",
            at=at,
            reason="failure_rate",
            failure_rate=0.5,
            received_at=timezone.now(),
        )
    urls = [
        "/api/v1/circuits/",
        f"/api/v1/circuits/{circuit.pk}/",
        f"/api/v1/circuits/{circuit.pk}/transitions/",
        "/api/v1/instances/",
        "/api/v1/services/",
        "/health/circuits",
    ]
    for url in urls:
        assert viewer_api.get(url).status_code == 200, url
    client.force_login(viewer)
    for url in ("/", f"/circuits/{circuit.pk}/", "/services/", "/instances/"):
        assert client.get(url).status_code == 200, url


# -- dropped transitions ---------------------------------------------------------------------


def test_dropped_transitions_per_sync_are_bounded_and_the_total_saturates(
    post_sync: Any, sync_body: Any
) -> None:
    response = post_sync(sync_body(breakers=[{"name": "db"}], dropped_transitions=2**31))
    assert "dropped_transitions" in response.json()["errors"]
    assert post_sync(sync_body(breakers=[{"name": "db"}])).status_code == 200
    Instance.objects.update(dropped_transitions=MAX_COUNTER - 5)
    body = sync_body(breakers=[{"name": "db"}], dropped_transitions=2**31 - 1)
    assert post_sync(body).status_code == 200
    assert Instance.objects.get().dropped_transitions == MAX_COUNTER


# -- the fast path refuses what the view refuses ---------------------------------------------
