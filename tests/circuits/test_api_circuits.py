"""Operator API: circuits with fleet state, filters, pagination, detail and history."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import create_config_version, force_circuit

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def now(time_machine: Any) -> datetime:
    time_machine.move_to(T0, tick=False)
    return T0


def _report(
    post_sync: Any, sync_body: Any, instance: str, states: dict[str, str], **kw: Any
) -> None:
    body = sync_body(
        instance={"id": instance},
        breakers=[{"name": name, "state": state} for name, state in states.items()],
        **kw,
    )
    assert post_sync(body).status_code == 200


def _by_name(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.content
    return {c["name"]: c for c in response.json()["results"]}


def test_fleet_state_is_the_worst_live_state_with_counts(
    now: datetime, post_sync, sync_body, viewer_api: APIClient
) -> None:
    for i in range(3):
        _report(
            post_sync,
            sync_body,
            f"web-{i}",
            {"db": "open" if i == 0 else "closed", "cache": "closed"},
        )
    circuits = _by_name(viewer_api.get("/api/v1/circuits/"))
    db = circuits["db"]
    assert (db["state"], db["instances"], db["summary"]) == ("open", 3, "open on 1 of 3")
    assert db["counts"] == {
        "forced_open": 0,
        "open": 1,
        "half_open": 0,
        "forced_closed": 0,
        "closed": 2,
    }
    assert db["service"] == "checkout" and isinstance(db["id"], int)
    assert db["config_version"] == 1 and db["override"] is None
    assert circuits["cache"]["summary"] == "closed on 3 of 3"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["closed", "half_open", "forced_closed"], "half_open"),
        (["closed", "forced_closed"], "forced_closed"),
        (["open", "forced_open", "half_open"], "forced_open"),
        (["closed", "closed"], "closed"),
    ],
)
def test_severity_order(
    now: datetime, post_sync, sync_body, viewer_api: APIClient, states: list[str], expected: str
) -> None:
    for i, state in enumerate(states):
        _report(post_sync, sync_body, f"web-{i}", {"db": state})
    assert _by_name(viewer_api.get("/api/v1/circuits/"))["db"]["state"] == expected


def test_stale_instances_do_not_count(
    now: datetime, post_sync, sync_body, viewer_api: APIClient, time_machine: Any
) -> None:
    _report(post_sync, sync_body, "old", {"db": "open"})
    # Live window: 3 poll intervals of 5 s.
    time_machine.move_to(T0 + timedelta(seconds=16), tick=False)
    _report(post_sync, sync_body, "new", {"db": "closed"})
    db = _by_name(viewer_api.get("/api/v1/circuits/"))["db"]
    assert (db["state"], db["summary"]) == ("closed", "closed on 1 of 1")
    time_machine.move_to(T0 + timedelta(seconds=40), tick=False)
    db = _by_name(viewer_api.get("/api/v1/circuits/"))["db"]
    assert (db["state"], db["instances"], db["summary"]) == ("unknown", 0, "no live instance")


def test_override_comes_first(
    now: datetime, post_sync, sync_body, viewer_api: APIClient, operator: User
) -> None:
    _report(post_sync, sync_body, "web-1", {"db": "open"})
    _report(post_sync, sync_body, "web-2", {"db": "closed"})
    force_circuit(Circuit.objects.get(), "forced_closed", reason="known flake", user=operator)
    db = _by_name(viewer_api.get("/api/v1/circuits/"))["db"]
    assert db["state"] == "forced_closed"
    assert db["override"] == {
        "state": "forced_closed",
        "until": None,
        "reason": "known flake",
        "by": "otto",
    }
    assert db["summary"] == "forced_closed by override (applied on 0 of 2)"


def test_filters_service_state_and_q(
    now: datetime, post_sync, sync_body, other_agent_token: str, viewer_api: APIClient
) -> None:
    _report(
        post_sync,
        sync_body,
        "web-1",
        {"db_main": "open", "db_replica": "closed", "cache": "half_open"},
    )
    body = sync_body(instance={"id": "bill-1"}, breakers=[{"name": "db_main", "state": "open"}])
    assert post_sync(body, token=other_agent_token).status_code == 200

    def names(query: str) -> list[tuple[str, str]]:
        response = viewer_api.get(f"/api/v1/circuits/?{query}")
        assert response.status_code == 200, response.content
        return [(c["service"], c["name"]) for c in response.json()["results"]]

    assert names("service=checkout") == [
        ("checkout", "cache"),
        ("checkout", "db_main"),
        ("checkout", "db_replica"),
    ]
    assert names("state=open") == [("billing", "db_main"), ("checkout", "db_main")]
    assert names("state=open&service=billing") == [("billing", "db_main")]
    assert names("q=DB_&state=closed") == [("checkout", "db_replica")]
    assert names("state=half_open&state=closed") == [
        ("checkout", "cache"),
        ("checkout", "db_replica"),
    ]
    response = viewer_api.get("/api/v1/circuits/?state=exploded")
    assert response.status_code == 400 and response.json()["field"] == "state"


def test_list_is_paginated_with_page_size(
    now: datetime, post_sync, sync_body, viewer_api: APIClient
) -> None:
    _report(post_sync, sync_body, "web-1", {f"c{i:02d}": "closed" for i in range(7)})
    page = viewer_api.get("/api/v1/circuits/?page_size=3&page=2").json()
    assert page["count"] == 7
    assert [c["name"] for c in page["results"]] == ["c03", "c04", "c05"]
    assert page["next"] and page["previous"]


def test_list_query_count_does_not_grow_with_circuits(
    now: datetime, post_sync, sync_body, viewer_api: APIClient, operator: User
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_api.get("/api/v1/circuits/").status_code == 200
        return len(ctx.captured_queries)

    _report(post_sync, sync_body, "web-1", {"a": "open"})
    count_queries()  # the first request also records the token's last use
    small = count_queries()
    for i in range(4):
        _report(post_sync, sync_body, f"web-{i}", {f"c{j}": "closed" for j in range(10)})
    for circuit in Circuit.objects.all()[:3]:
        force_circuit(circuit, "forced_open", reason="drill", user=operator)
    assert count_queries() == small


def test_detail_shows_each_instance_state_and_config_version(
    now: datetime, post_sync, sync_body, viewer_api: APIClient, operator: User
) -> None:
    _report(post_sync, sync_body, "web-1", {"db": "open"})
    circuit = Circuit.objects.get()
    create_config_version(circuit, {"timeout": 5}, expected_version=1, user=operator)
    body = sync_body(
        instance={"id": "web-2"}, breakers=[{"name": "db", "state": "closed", "config_version": 2}]
    )
    post_sync(body)
    detail = viewer_api.get(f"/api/v1/circuits/{circuit.pk}/").json()
    assert detail["config_version"] == 2
    assert detail["config"]["timeout"] == 5.0
    rows = {r["instance"]: r for r in detail["instance_states"]}
    assert rows["web-1"]["state"] == "open" and rows["web-1"]["config_version"] == 0
    assert rows["web-1"]["config_drift"] is True
    assert rows["web-2"]["config_version"] == 2 and rows["web-2"]["config_drift"] is False
    assert rows["web-2"]["live"] is True
    assert viewer_api.get("/api/v1/circuits/999999/").status_code == 404


def test_transition_history_newest_first_paginated(
    now: datetime, post_sync, sync_body, viewer_api: APIClient
) -> None:
    transitions = [
        {
            "id": i,
            "breaker": "db",
            "from": "closed" if i % 2 else "open",
            "to": "open" if i % 2 else "closed",
            "at": f"2026-11-27T11:00:{i:02d}Z",
            "reason": "failure_threshold" if i % 2 else "probes_succeeded",
        }
        for i in range(1, 6)
    ]
    _report(post_sync, sync_body, "web-1", {"db": "open"}, transitions=transitions)
    circuit = Circuit.objects.get()
    page = viewer_api.get(f"/api/v1/circuits/{circuit.pk}/transitions/?page_size=2").json()
    assert "count" not in page and page["previous"] is None and page["next"]
    first = page["results"][0]
    assert (first["instance"], first["from"], first["to"], first["reason"]) == (
        "web-1",
        "closed",
        "open",
        "failure_threshold",
    )
    assert first["at"] == "2026-11-27T11:00:05Z"
    assert [r["seq"] for r in page["results"]] == [5, 4]
    opens = viewer_api.get(f"/api/v1/circuits/{circuit.pk}/transitions/?to=open").json()
    assert [r["seq"] for r in opens["results"]] == [5, 3, 1]
    since = viewer_api.get(
        f"/api/v1/circuits/{circuit.pk}/transitions/?since=2026-11-27T11:00:04Z"
    ).json()
    assert [r["seq"] for r in since["results"]] == [5, 4]
    bad = viewer_api.get(f"/api/v1/circuits/{circuit.pk}/transitions/?since=yesterday")
    assert bad.status_code == 400 and bad.json()["field"] == "since"
