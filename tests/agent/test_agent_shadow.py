"""The agent and shadow evaluations: the desired state's ``shadow`` entry starts,
keeps, replaces and ends a candidate; its figures travel in the telemetry reports."""

from __future__ import annotations

import contextlib
import logging

import pytest

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from tests.agent.conftest import LoopbackControlPlane
from tests.agent.test_agent_sync import make_agent
from tests.agent.test_agent_telemetry import Boom, WallClock, boom, stored


@pytest.fixture
def registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry()


def entry(shadow: dict | None) -> dict:
    return {"db": {"config_version": 0, "config": None, "override": None, "shadow": shadow}}


def test_a_candidate_is_started_kept_replaced_and_ended(
    plane: LoopbackControlPlane, registry: CircuitBreakerRegistry
) -> None:
    db = registry.get_or_create("db", CircuitBreakerConfig(ignore_exceptions=(KeyError,)))
    plane.poll_interval = 0.1
    plane.breakers = entry({"evaluation": 5, "config_version": 0, "config": {"timeout": 9}})
    with make_agent(plane, registry, min_interval=0.05, watch=False) as agent:
        assert plane.wait_for(lambda: db.shadow_breaker is not None)
        first = db.shadow_breaker
        assert first is not None
        assert first.config.timeout == 9
        assert first.config.ignore_exceptions == (KeyError,)  # the code's own fields
        before = agent.stats()["syncs_ok"]
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= before + 2)
        assert db.shadow_breaker is first  # the same evaluation: not restarted
        plane.publish(entry({"evaluation": 6, "config_version": 3, "config": {"timeout": 9}}))
        assert plane.wait_for(lambda: db.shadow_breaker is not first)
        report = db.shadow_report()
        assert report is not None and report["config_version"] == 3
        plane.publish(entry(None))
        assert plane.wait_for(lambda: db.shadow_breaker is None)


def test_a_bad_shadow_entry_is_logged_and_changes_nothing(
    plane: LoopbackControlPlane, registry: CircuitBreakerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    db = registry.get_or_create("db")
    plane.breakers = entry({"evaluation": 5, "config_version": 0, "config": {"timeout": -1}})
    with (
        caplog.at_level(logging.WARNING, logger="breakers.agent"),
        make_agent(plane, registry, watch=False) as agent,
    ):
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
    assert db.shadow_breaker is None
    assert "shadow for 'db' not applied" in caplog.text and "timeout" in caplog.text


def test_the_candidates_figures_travel_in_the_reports(
    plane: LoopbackControlPlane, registry: CircuitBreakerRegistry
) -> None:
    wall = WallClock(4_000_001.0)
    db = registry.get_or_create("db", CircuitBreakerConfig(failure_threshold=100))
    plane.breakers = entry(
        {"evaluation": 8, "config_version": 0, "config": {"failure_threshold": 2, "timeout": 600}}
    )
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: db.shadow_breaker is not None)
        for _ in range(2):
            with contextlib.suppress(Boom):
                db.call(boom)
        for _ in range(5):
            db.call(lambda: 1)  # the live breaker runs them; the candidate would not
        wall.set(4_000_004.0)
        assert agent.flush()
        db.call(lambda: 1)
        wall.set(4_000_012.0)
        assert agent.flush()
        assert plane.wait_for(lambda: agent.pending_reports == 0)
    assert db.state is CircuitState.CLOSED
    first, second = stored(plane)
    shadow = first["breakers"][0]["shadow"]
    assert {k: shadow[k] for k in ("evaluation", "rejected", "opened", "unobserved")} == {
        "evaluation": 8,
        "rejected": 5,
        "opened": 1,
        "unobserved": 0,
    }
    (move,) = shadow["transitions"]
    assert (move["from"], move["to"], move["reason"]) == ("closed", "open", "failure_threshold")
    assert move["at"].endswith("Z")
    later = second["breakers"][0]["shadow"]
    assert (later["rejected"], later["opened"], later["transitions"]) == (1, 0, [])
