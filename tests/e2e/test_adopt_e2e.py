"""An adopted pybreaker breaker steered by a real control plane: its twin reaches the
server through the agent, and an operator's force reaches the pybreaker calls within a
second, its release too."""

from __future__ import annotations

import time
from typing import Any

import pybreaker
import pytest

from breakers import CircuitBreakerRegistry
from breakers.integrations.adopt import adopt_pybreaker
from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Service
from tests.e2e.conftest import ControlPlaneProcess, change_feed_listeners, override, wait_for
from tests.e2e.test_agent_e2e import circuit_id, new_agent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_force_reaches_an_adopted_pybreaker_within_a_second(
    control_plane: ControlPlaneProcess, operator: Any
) -> None:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    operator_token = create_api_token(operator)[1]
    registry = CircuitBreakerRegistry()
    db = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, name="legacy-db")
    adopt_pybreaker(db, registry=registry)

    def refused() -> bool:
        try:
            db.call(lambda: None)
        except pybreaker.CircuitBreakerError:
            return True
        return False

    with new_agent(control_plane.url, token, registry) as agent:
        assert wait_for(lambda: circuit_id(control_plane, operator_token, "legacy-db"))
        cid = circuit_id(control_plane, operator_token, "legacy-db")
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        started = time.monotonic()
        override(control_plane, operator_token, cid, "forced_open", "legacy db failover")
        assert wait_for(refused, timeout=1.0)
        assert time.monotonic() - started < 1.0
        override(control_plane, operator_token, cid, None, "back")
        assert wait_for(lambda: not refused(), timeout=1.0)
        assert db.current_state == "closed"
