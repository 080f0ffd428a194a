"""POST /api/v1/agent/sync: storage, idempotency, desired state, restarts, scoping."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.models import (
    Circuit,
    ConfigVersion,
    Instance,
    Service,
    Snapshot,
    Transition,
)
from controlplane.circuits.operations import create_config_version, force_circuit

pytestmark = pytest.mark.django_db


def _transition(tid: int, breaker: str = "feature_store", **kw: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "breaker": breaker,
        "from": "closed",
        "to": "open",
        "at": f"2026-11-27T10:04:{tid % 60:02d}Z",
        "reason": "failure_rate",
        "failure_rate": 0.55,
        "calls": 11,
        "failures": 6,
        **kw,
    }


def test_first_sync_registers_instance_circuits_and_stores_everything(
    post_sync, sync_body, service: Service
) -> None:
    body = sync_body(
        breakers=[
            {
                "name": "feature_store",
                "state": "open",
                "calls": 1200,
                "failures": 90,
                "failure_rate": 0.55,
                "trip_count": 4,
                "retry_after": 12.5,
                "config": {"failure_threshold": 7, "timeout": 10},
            },
            {"name": "payments", "state": "closed"},
        ],
        transitions=[
            _transition(1),
            _transition(
                2,
                "feature_store",
                **{"from": "open", "to": "half_open", "reason": "timeout_elapsed"},
            ),
        ],
        service="checkout",
    )
    response = post_sync(body)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["acked_through"] == 2
    assert answer["desired_version"] == 0
    assert answer["poll_interval"] == 5
    assert set(answer["breakers"]) == {"feature_store", "payments"}
    store = answer["breakers"]["feature_store"]
    assert store["config_version"] == 1
    # The agent's config is registered as version 1, completed with the library defaults.
    assert store["config"]["failure_threshold"] == 7
    assert store["config"]["timeout"] == 10.0
    assert store["config"]["success_threshold"] == 3
    assert store["override"] is None

    instance = Instance.objects.get(service=service, instance_id="web-1")
    assert (instance.hostname, instance.pid, instance.library_version) == ("web", 4242, "0.1.0")
    assert instance.acked_through == 2
    circuit = Circuit.objects.get(service=service, name="feature_store")
    assert circuit.current_config.version == 1
    assert circuit.current_config.source == "agent"
    snapshot = Snapshot.objects.get(instance=instance, circuit=circuit)
    assert (snapshot.state, snapshot.calls, snapshot.failures, snapshot.trip_count) == (
        "open",
        1200,
        90,
        4,
    )
    assert snapshot.retry_after == 12.5
    history = list(Transition.objects.filter(circuit=circuit).order_by("seq"))
    assert [(t.seq, t.from_state, t.to_state, t.reason) for t in history] == [
        (1, "closed", "open", "failure_rate"),
        (2, "open", "half_open", "timeout_elapsed"),
    ]
    assert history[0].at == datetime(2026, 11, 27, 10, 4, 1, tzinfo=UTC)


def test_replayed_sync_stores_each_transition_once(post_sync, sync_body) -> None:
    body = sync_body(
        breakers=[{"name": "feature_store", "state": "open"}],
        transitions=[_transition(i) for i in range(1, 6)],
    )
    first = post_sync(body)
    second = post_sync(body)
    assert first.status_code == second.status_code == 200
    assert first.json()["acked_through"] == second.json()["acked_through"] == 5
    assert Transition.objects.count() == 5
    assert ConfigVersion.objects.count() == 1
    assert Circuit.objects.count() == 1


def test_partial_overlap_stores_only_the_new_transitions(post_sync, sync_body) -> None:
    breakers = [{"name": "feature_store", "state": "open"}]
    post_sync(sync_body(breakers=breakers, transitions=[_transition(i) for i in (1, 2, 3)]))
    answer = post_sync(
        sync_body(breakers=breakers, transitions=[_transition(i) for i in (2, 3, 4, 5)])
    ).json()
    assert answer["acked_through"] == 5
    assert sorted(Transition.objects.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]


def test_acked_through_is_kept_when_a_sync_has_no_transitions(post_sync, sync_body) -> None:
    breakers = [{"name": "feature_store", "state": "open"}]
    post_sync(sync_body(breakers=breakers, transitions=[_transition(9)]))
    assert post_sync(sync_body(breakers=breakers)).json()["acked_through"] == 9


def test_new_started_at_is_a_restart_and_transition_ids_start_over(post_sync, sync_body) -> None:
    breakers = [{"name": "feature_store", "state": "open", "calls": 500, "failures": 50}]
    post_sync(sync_body(breakers=breakers, transitions=[_transition(1), _transition(2)]))
    restarted = {"started_at": "2026-11-27T11:00:00Z"}
    answer = post_sync(
        sync_body(
            instance=restarted,
            breakers=[{"name": "feature_store", "state": "closed", "calls": 20, "failures": 1}],
            transitions=[_transition(1, **{"from": "open", "to": "closed", "reason": "reset"})],
        )
    ).json()
    assert answer["acked_through"] == 1
    instance = Instance.objects.get()
    assert (instance.restarts, instance.generation) == (1, 1)
    assert instance.started_at == datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    # The restarted process's transition 1 is a new row, not a duplicate of the old one.
    assert Transition.objects.count() == 3
    snapshot = Snapshot.objects.get()
    # Counters start over with the process: the delta is the new value, not negative.
    assert (snapshot.calls, snapshot.calls_delta, snapshot.failures_delta) == (20, 20, 1)


def test_counter_deltas_and_state_changes_between_syncs(
    post_sync, sync_body, service: Service
) -> None:
    post_sync(sync_body(breakers=[{"name": "db", "calls": 100, "failures": 10, "rejected": 5}]))
    post_sync(sync_body(breakers=[{"name": "db", "calls": 160, "failures": 25, "rejected": 5}]))
    snapshot = Snapshot.objects.get()
    assert (snapshot.calls, snapshot.calls_delta, snapshot.failures_delta) == (160, 60, 15)
    assert snapshot.rejected_delta == 0
    # A counter that went down (a reset the agent did not announce) counts from zero.
    post_sync(sync_body(breakers=[{"name": "db", "calls": 30, "failures": 2}]))
    assert Snapshot.objects.values_list("calls_delta", flat=True).get() == 30

    db = Circuit.objects.get(name="db")
    body = sync_body(breakers=[{"name": "db", "state": "open", "config_version": 1}])
    first = _write(service, body)
    assert first.events[-1]["snapshots"] == [
        {
            "circuit_id": db.id,
            "circuit": "db",
            "state": "open",
            "previous_state": "closed",
            "config_version": 1,
        }
    ]
    # The same report again changes nothing: no event.
    assert _write(service, body).events == []
    snapshot = Snapshot.objects.get()
    assert (snapshot.state, snapshot.config_version) == ("open", 1)


def _write(service: Service, body: dict[str, Any]) -> Any:
    from django.utils import timezone

    from controlplane.circuits.sync.store import Item, get_store
    from tests.circuits.sync_helpers import parse_sync

    return get_store().write([Item(service.pk, service.name, parse_sync(body), timezone.now())])


def test_answer_carries_central_config_and_override(
    post_sync, sync_body, service: Service, operator: User
) -> None:
    post_sync(sync_body(breakers=[{"name": "db"}]))
    circuit = Circuit.objects.get(name="db")
    create_config_version(
        circuit, {"failure_threshold": 9}, expected_version=1, user=operator, reason="tune"
    )
    force_circuit(circuit, "forced_open", reason="db failover", user=operator, expires_in=600)
    answer = post_sync(sync_body(breakers=[{"name": "db"}])).json()
    assert answer["desired_version"] == 2
    db = answer["breakers"]["db"]
    assert db["config_version"] == 2
    assert db["config"]["failure_threshold"] == 9
    assert db["override"]["state"] == "forced_open"
    assert db["override"]["reason"] == "db failover"
    assert db["override"]["by"] == "otto"
    until = datetime.fromisoformat(db["override"]["until"])
    assert timedelta(seconds=590) < until - datetime.now(UTC) <= timedelta(seconds=600)


def test_expired_override_is_never_in_the_answer_and_bumps_the_version(
    post_sync, sync_body, operator: User, time_machine
) -> None:
    time_machine.move_to(datetime(2026, 11, 27, 12, 0, tzinfo=UTC), tick=False)
    post_sync(sync_body(breakers=[{"name": "db"}]))
    circuit = Circuit.objects.get(name="db")
    force_circuit(circuit, "forced_closed", reason="ride it out", user=operator, expires_in=60)
    assert post_sync(sync_body(breakers=[{"name": "db"}])).json()["breakers"]["db"]["override"]
    time_machine.move_to(datetime(2026, 11, 27, 12, 1, 1, tzinfo=UTC), tick=False)
    answer = post_sync(sync_body(breakers=[{"name": "db"}])).json()
    assert answer["breakers"]["db"]["override"] is None
    assert answer["desired_version"] == 2  # force, then expiry


def test_existing_circuit_keeps_its_central_config_when_another_agent_reports(
    post_sync, sync_body
) -> None:
    post_sync(sync_body(breakers=[{"name": "db", "config": {"failure_threshold": 4}}]))
    answer = post_sync(
        sync_body(
            instance={"id": "web-2"},
            breakers=[{"name": "db", "config": {"failure_threshold": 40}}],
        )
    ).json()
    assert answer["breakers"]["db"]["config"]["failure_threshold"] == 4
    assert ConfigVersion.objects.count() == 1
    assert Snapshot.objects.count() == 2


def test_token_of_another_service_cannot_write_this_service(
    post_sync, sync_body, other_agent_token: str, service: Service
) -> None:
    response = post_sync(
        sync_body(breakers=[{"name": "db"}], service="checkout"), token=other_agent_token
    )
    assert response.status_code == 403
    assert response.json()["field"] == "service"
    assert not Instance.objects.exists()
    assert not Circuit.objects.exists()


def test_sync_without_service_name_writes_the_tokens_own_service(
    post_sync, sync_body, other_agent_token: str, other_service: Service
) -> None:
    response = post_sync(sync_body(breakers=[{"name": "db"}]), token=other_agent_token)
    assert response.status_code == 200
    assert Circuit.objects.get().service == other_service


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "send an agent token"),
        ("Bearer sya_not-a-real-token", "invalid or revoked"),
        ("Bearer syu_personal-token", "invalid or revoked"),
        ("Basic dXNlcjpwYXNz", "send an agent token"),
    ],
)
def test_missing_or_bad_token_is_401(client, sync_body, header: str | None, reason: str) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(
        "/api/v1/agent/sync", data=sync_body(), content_type="application/json", **extra
    )
    assert response.status_code == 401
    assert reason in response.json()["reason"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(post_sync, sync_body, agent_token: str) -> None:
    from controlplane.circuits.models import AgentToken

    assert post_sync(sync_body()).status_code == 200
    AgentToken.objects.update(revoked_at=datetime.now(UTC))
    assert post_sync(sync_body()).status_code == 401


def test_get_is_not_allowed(client, agent_token: str) -> None:
    response = client.get("/api/v1/agent/sync", HTTP_AUTHORIZATION=f"Bearer {agent_token}")
    assert response.status_code == 405
