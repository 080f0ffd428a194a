"""Drills in the agent: a drill forces the breaker open only on the instances it lists,
and each of them releases it at ``until`` by its own clock, the server gone or not."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from breakers import CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent
from tests.agent.conftest import TOKEN, LoopbackControlPlane


def wire_time(seconds_from_now: float) -> str:
    at = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return at.isoformat().replace("+00:00", "Z")


def drill(instances: list[str], until: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "state": "forced_open",
        "until": until,
        "instances": instances,
        "reason": "game day",
        **extra,
    }


def entry(drill_wire: Any, override: Any = None) -> dict[str, Any]:
    return {"config_version": 1, "config": {}, "override": override, "drill": drill_wire}


def agent_for(
    plane: LoopbackControlPlane, registry: CircuitBreakerRegistry, name: str, **kw: Any
) -> Agent:
    return Agent(
        plane.url,
        TOKEN,
        "checkout",
        registry=registry,
        instance_id=name,
        interval=60.0,
        backoff_initial=0.05,
        backoff_max=0.2,
        request_timeout=1.0,
        watch=False,
        **kw,
    )


@pytest.fixture
def fleet(plane: LoopbackControlPlane) -> Any:
    """Three instances (web-1..3), each its own registry with a ``payments`` breaker."""
    registries = {f"web-{i}": CircuitBreakerRegistry() for i in (1, 2, 3)}
    breakers = {name: r.get_or_create("payments") for name, r in registries.items()}
    agents = [agent_for(plane, r, name) for name, r in registries.items()]
    return breakers, agents


def test_a_drill_forces_only_the_listed_instances_and_releases_at_until_by_itself(plane, fleet):
    breakers, agents = fleet
    until = wire_time(1.5)
    plane.breakers = {"payments": entry(drill(["web-1", "web-3"], until))}
    seen: dict[str, set[CircuitState]] = {name: set() for name in breakers}
    for agent in agents:
        agent.start()
    try:
        assert plane.wait_for(
            lambda: all(breakers[n].state is CircuitState.FORCED_OPEN for n in ("web-1", "web-3"))
        )
        assert breakers["web-1"].forced_reason == "drill 7: game day"
        plane.sync_behaviour = lambda req: (503, b"down")  # the server is gone now
        end = datetime.fromisoformat(until).timestamp()
        released: dict[str, float] = {}
        deadline = time.monotonic() + 10.0
        while len(released) < 2 and time.monotonic() < deadline:
            for name, breaker in breakers.items():
                state = breaker.state
                seen[name].add(state)
                if name != "web-2" and name not in released and state is CircuitState.CLOSED:
                    released[name] = time.time()
            time.sleep(0.005)
        assert set(released) == {"web-1", "web-3"}
        for name, at in released.items():
            assert end - 0.05 <= at <= end + 1.0, (name, at - end)
        assert seen["web-2"] == {CircuitState.CLOSED}  # never forced
    finally:
        for agent in agents:
            agent.stop()


def test_an_override_takes_precedence_over_a_drill(plane):
    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("payments")
    override = {"state": "forced_closed", "until": None, "reason": "keep serving", "by": "al"}
    plane.breakers = {"payments": entry(drill(["web-1"], wire_time(30)), override)}
    plane.poll_interval = 0.1
    with agent_for(plane, registry, "web-1", min_interval=0.05):
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_CLOSED)
        # The override released: the drill, still running, applies.
        plane.publish({"payments": entry(drill(["web-1"], wire_time(30)))})
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN)
        # The drill ended early: released.
        plane.publish({"payments": entry(None)})
        assert plane.wait_for(lambda: breaker.state is CircuitState.CLOSED)


@pytest.mark.parametrize(
    "bad",
    [
        drill(["web-1"], None),  # no bound: never applied
        drill(["web-1"], wire_time(-5)),  # already over
        drill("web-1", wire_time(30)),  # type: ignore[arg-type]
        "forced_open",
    ],
)
def test_a_drill_without_a_bound_in_the_future_is_not_applied(plane, bad):
    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("payments")
    plane.breakers = {"payments": entry(bad)}
    with agent_for(plane, registry, "web-1") as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert breaker.state is CircuitState.CLOSED


def test_an_override_past_its_until_gives_way_to_the_running_drill(plane):
    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("payments")
    stale = {"state": "forced_closed", "until": wire_time(-1), "reason": "old", "by": "al"}
    plane.breakers = {"payments": entry(drill(["web-1"], wire_time(30)), stale)}
    with agent_for(plane, registry, "web-1"):
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN)
