"""Rollout propagation over real HTTP: a control plane (uvicorn, PostgreSQL, Redis) and
real agents with fixed instance ids. A canary started through the API reaches exactly
the instances its selector picks within one sync interval, and a rollback returns every
canary to the current config within 1 s; a viewer's token can start nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from breakers import CircuitBreakerRegistry
from breakers.agent import Agent
from breakers.canary import selected
from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.choices import TokenScope
from controlplane.circuits.models import Circuit, Rollout, Service
from tests.e2e.conftest import ControlPlaneProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

AGENTS = 24
SYNC_INTERVAL = 5.0  # the agents' (and the server's) default
ROLLBACK_WITHIN = 1.0


@pytest.fixture
def fleet(own_control_plane: ControlPlaneProcess) -> Iterator[dict[str, Any]]:
    service = Service.objects.create(name="shop")
    token = create_agent_token(service)[1]
    breakers: dict[str, Any] = {}
    agents = []
    try:
        for n in range(AGENTS):
            registry = CircuitBreakerRegistry()
            identity = f"shop-{n}"
            breakers[identity] = registry.get_or_create("db")
            agents.append(
                Agent(
                    own_control_plane.url, token, "shop", registry=registry,
                    instance_id=identity, interval=SYNC_INTERVAL,
                ).start()
            )  # fmt: skip
        assert wait_for(lambda: all(b.config_version == 1 for b in breakers.values()), 30)
        yield breakers
    finally:
        for agent in agents:
            agent.stop(timeout=1.0)


def test_a_canary_reaches_its_instances_and_a_rollback_every_canary_within_a_second(
    own_control_plane: ControlPlaneProcess, fleet: dict[str, Any], operator: User, viewer: User
) -> None:
    circuit = Circuit.objects.get()
    url = f"/api/v1/circuits/{circuit.pk}/rollouts/"
    body = {"config": {"failure_threshold": 3}, "percent": 40, "reason": "e2e"}
    viewer_token = create_api_token(viewer, scope=TokenScope.READ)[1]
    status, _ = own_control_plane.request("POST", url, body, token=viewer_token)
    assert status == 403
    token = create_api_token(operator, scope=TokenScope.OPERATE)[1]

    sent = time.monotonic()
    status, rollout = own_control_plane.request("POST", url, body, token=token)
    assert status == 201, rollout
    canary = {i for i in fleet if selected(rollout["select"], i)}
    assert 0 < len(canary) < AGENTS

    def versions() -> dict[str, int]:
        return {i: b.config_version for i, b in fleet.items()}

    wanted = {i: (2 if i in canary else 1) for i in fleet}
    assert wait_for(lambda: versions() == wanted, SYNC_INTERVAL, interval=0.005), versions()
    reached = time.monotonic() - sent
    assert all(fleet[i].config.failure_threshold == 3 for i in canary)

    sent = time.monotonic()
    status, ended = own_control_plane.request(
        "POST", f"{url}{rollout['id']}/rollback/", {"reason": "e2e"}, token=token
    )
    assert status == 200, ended
    back = wait_for(lambda: set(versions().values()) == {1}, ROLLBACK_WITHIN, interval=0.005)
    took = time.monotonic() - sent
    assert back, (took, versions())
    assert Rollout.objects.get().state == "rolled_back"
    print(f"\ncanary on {len(canary)} of {AGENTS}: {reached * 1000:.0f} ms; "
          f"rollback: {took * 1000:.0f} ms")  # fmt: skip
