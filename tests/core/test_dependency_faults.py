"""Faults of the dependencies (Redis hung or gone, PostgreSQL cut, hung or killed),
against a real uvicorn: durable writes answer promptly and are committed, live events
degrade, health says what is down, database errors are JSON 503s, and the first request
after the database is back succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Override, Service, Transition
from tests.e2e.conftest import ControlPlaneProcess, server_env
from tests.faults import HungServer, closed_port

pytestmark = pytest.mark.django_db(transaction=True)

# What "promptly" means here: well inside the agent's 5 s sync timeout.
PROMPT = 2.0


def _sync_body(transitions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    state = "open" if transitions else "closed"
    return {
        "protocol": 1,
        "instance": {
            "id": "web-1",
            "hostname": "web",
            "pid": 4242,
            "started_at": "2026-11-28T05:00:00Z",
            "library_version": "0.1.0",
        },
        "breakers": [
            {
                "name": "payments",
                "state": state,
                "config_version": 0,
                "calls": 0,
                "successes": 0,
                "failures": 0,
                "slow_calls": 0,
                "rejected": 0,
                "failure_rate": 0.0,
                "trip_count": 0,
                "state_since": "2026-11-28T05:00:00Z",
                "retry_after": None,
            }
        ],
        "transitions": transitions or [],
        "dropped_transitions": 0,
    }


def _transition(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "breaker": "payments",
        "from": "closed" if n % 2 else "open",
        "to": "open" if n % 2 else "closed",
        "at": "2026-11-28T05:00:01Z",
        "reason": "failure_threshold" if n % 2 else "probes_succeeded",
    }


class Fleet:
    """A service with an agent token, and an operator's API token."""

    def __init__(self) -> None:
        self.service = Service.objects.create(name="checkout")
        self.agent = create_agent_token(self.service)[1]
        user = User.objects.create_user("otto", password="otto-pw-123!")
        user.groups.add(Group.objects.get(name="operator"))
        self.api = create_api_token(user)[1]


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = call(*args, **kwargs)
    return time.monotonic() - started, result


@pytest.fixture
def fleet(transactional_db: None) -> Fleet:
    return Fleet()


@pytest.fixture(params=["hung", "gone"])
def broken_redis(request: Any) -> Iterator[str]:
    """A Redis URL that accepts connections and never answers, or where nothing listens."""
    if request.param == "gone":
        yield f"redis://127.0.0.1:{closed_port()}/0"
        return
    with HungServer() as server:
        yield server.url


def test_writes_answer_promptly_and_commit_when_redis_hangs_or_is_gone(
    fleet: Fleet, broken_redis: str
) -> None:
    server = ControlPlaneProcess(server_env(REDIS_URL=broken_redis))
    server.start()
    try:
        # First sight of the instance (the one-sync transaction), then transitions
        # (the group-committed intake), each publishing live events after its commit.
        elapsed, (status, _) = timed(
            server.request, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent
        )
        assert status == 200 and elapsed < PROMPT, (status, elapsed)
        circuit = Circuit.objects.get(service=fleet.service)
        for n in range(1, 6):
            elapsed, (status, body) = timed(
                server.request,
                "POST",
                "/api/v1/agent/sync",
                _sync_body([_transition(n)]),
                token=fleet.agent,
            )
            assert status == 200 and elapsed < PROMPT, (status, elapsed)
            assert body["acked_through"] == n
        # Operator forces and releases (more than the delivery pause needs to engage).
        for round_ in range(4):
            elapsed, (status, body) = timed(
                server.request,
                "POST",
                f"/api/v1/circuits/{circuit.pk}/override/",
                {"state": "forced_open", "reason": f"drill {round_}"},
                token=fleet.api,
            )
            assert status == 201 and elapsed < PROMPT, (status, elapsed, body)
            elapsed, (status, _) = timed(
                server.request,
                "DELETE",
                f"/api/v1/circuits/{circuit.pk}/override/",
                token=fleet.api,
            )
            assert status == 204 and elapsed < PROMPT, (status, elapsed)
        elapsed, (status, body) = timed(
            server.request,
            "POST",
            f"/api/v1/circuits/{circuit.pk}/override/",
            {"state": "forced_open", "reason": "final"},
            token=fleet.api,
        )
        assert status == 201 and elapsed < PROMPT, (status, elapsed, body)
        # The next sync carries the new desired state at once.
        elapsed, (status, body) = timed(
            server.request, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent
        )
        assert status == 200 and elapsed < PROMPT, (status, elapsed)
        assert body["breakers"]["payments"]["override"]["state"] == "forced_open"
        assert body["desired_version"] == 9
    finally:
        server.stop()
    # Everything acknowledged is committed.
    assert Transition.objects.filter(circuit=circuit).count() == 5
    overrides = Override.objects.filter(circuit=circuit)
    assert overrides.count() == 5
    assert overrides.filter(ended_at__isnull=True).get().reason == "final"
    assert Service.objects.get(pk=fleet.service.pk).desired_version == 9
