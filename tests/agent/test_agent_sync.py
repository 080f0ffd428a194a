"""The agent against a loopback control plane that behaves."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent
from tests.agent.conftest import TOKEN, LoopbackControlPlane


class Boom(Exception):
    pass


def trip(breaker: Any) -> None:
    """Fail calls until the breaker opens."""

    def fail() -> None:
        raise Boom

    for _ in range(100):
        if breaker.state is CircuitState.OPEN:
            return
        with contextlib.suppress(Exception):
            breaker.call(fail)
    raise AssertionError(f"{breaker.name} did not open")


def make_agent(plane: LoopbackControlPlane, registry: CircuitBreakerRegistry, **kw: Any) -> Agent:
    kw.setdefault("interval", 60.0)
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    kw.setdefault("request_timeout", 1.0)
    return Agent(plane.url, TOKEN, "checkout", registry=registry, **kw)


@pytest.fixture
def registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry()


def test_first_sync_reports_every_breaker_with_its_running_config(plane, registry):
    registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=7))
    registry.get_or_create("search")
    with make_agent(plane, registry, watch=False):
        assert plane.wait_for(lambda: len(plane.syncs()) >= 1)
    req = plane.syncs()[0]
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    body = req.json
    assert body["protocol"] == 1
    assert body["service"] == "checkout"
    assert body["instance"]["library_version"] == "0.1.0"
    assert body["instance"]["started_at"].endswith("Z")
    by_name = {b["name"]: b for b in body["breakers"]}
    assert set(by_name) == {"payments", "search"}
    assert by_name["payments"]["config"]["failure_threshold"] == 7
    assert by_name["payments"]["state"] == "closed"
    assert by_name["payments"]["config_version"] == 0
    assert body["transitions"] == []
    assert body["dropped_transitions"] == 0


def test_transition_is_sent_within_a_fraction_of_a_second(plane, registry):
    breaker = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=2))
    with make_agent(plane, registry, watch=False) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        before = len(plane.syncs())
        tripped_at = time.monotonic()
        trip(breaker)
        assert plane.wait_for(lambda: len(plane.syncs()) > before, timeout=10.0)
        req = plane.syncs()[before]
    assert req.at - tripped_at < 1.0
    (transition,) = req.json["transitions"]
    assert transition["id"] == 1
    assert transition["breaker"] == "payments"
    assert (transition["from"], transition["to"]) == ("closed", "open")
    assert transition["reason"] in {"failure_threshold", "failure_rate"}
    assert transition["at"].endswith("Z")


def test_a_burst_of_transitions_goes_out_in_one_coalesced_sync(plane, registry):
    breaker = registry.get_or_create("payments")
    with make_agent(plane, registry, watch=False, coalesce=0.1) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        before = len(plane.syncs())
        breaker.force_open("drill")
        breaker.release()
        breaker.force_closed("drill")
        breaker.release()
        assert plane.wait_for(
            lambda: agent.pending_transitions == 0 and len(plane.syncs()) > before
        )
        time.sleep(0.2)
        new = plane.syncs()[before:]
    assert len(new) == 1
    assert [t["id"] for t in new[0].json["transitions"]] == [1, 2, 3, 4]
    assert [t["to"] for t in new[0].json["transitions"]] == [
        "forced_open",
        "closed",
        "forced_closed",
        "closed",
    ]


def test_transitions_are_forgotten_only_through_acked_through(plane, registry):
    breaker = registry.get_or_create("payments")
    plane.ack_limit = 2
    with make_agent(plane, registry, watch=False, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        for _ in range(2):
            breaker.force_open()
            breaker.release()
        assert plane.wait_for(lambda: agent.pending_transitions == 2)
        # The unacknowledged ones are resent with their original ids.
        before = len(plane.syncs())
        agent.request_sync()
        assert plane.wait_for(lambda: len(plane.syncs()) > before)
        assert [t["id"] for t in plane.syncs()[-1].json["transitions"]] == [3, 4]
        plane.ack_limit = None
        agent.request_sync()
        assert plane.wait_for(lambda: agent.pending_transitions == 0)
    assert sorted(i for (_, i) in plane.stored_transitions) == [1, 2, 3, 4]


def test_central_config_is_applied_keeping_code_only_fields_and_reported(plane, registry):
    config = CircuitBreakerConfig(failure_threshold=5, ignore_exceptions=(KeyError,))
    breaker = registry.get_or_create("payments", config)
    wire = dict(config.to_dict(), failure_threshold=2, timeout=12.5)
    plane.breakers = {"payments": {"config_version": 4, "config": wire, "override": None}}
    with make_agent(plane, registry, watch=False) as agent:
        assert plane.wait_for(lambda: breaker.config_version == 4)
        assert breaker.config.failure_threshold == 2
        assert breaker.config.timeout == 12.5
        assert breaker.config.ignore_exceptions == (KeyError,)
        before = len(plane.syncs())
        agent.request_sync()
        assert plane.wait_for(lambda: len(plane.syncs()) > before)
    (reported,) = plane.syncs()[-1].json["breakers"]
    assert reported["config_version"] == 4
    assert reported["config"]["failure_threshold"] == 2


def test_an_invalid_central_config_leaves_the_running_one_in_force(plane, registry, caplog):
    breaker = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=5))
    plane.breakers = {
        "payments": {"config_version": 2, "config": {"failure_threshold": 0}, "override": None}
    }
    with (
        caplog.at_level(logging.WARNING, logger="breakers.agent"),
        make_agent(plane, registry, watch=False) as agent,
    ):
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
    assert breaker.config.failure_threshold == 5
    assert breaker.config_version == 0
    assert "failure_threshold" in caplog.text


def test_override_forces_and_release_restores(plane, registry):
    breaker = registry.get_or_create("payments")
    override = {"state": "forced_open", "until": None, "reason": "db failover", "by": "alice"}
    plane.breakers = {"payments": {"config_version": 1, "config": {}, "override": override}}
    plane.poll_interval = 0.1
    with make_agent(plane, registry, min_interval=0.05, watch=False):
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN)
        plane.publish({"payments": {"config_version": 1, "config": {}, "override": None}})
        assert plane.wait_for(lambda: breaker.state is CircuitState.CLOSED)
        plane.publish(
            {
                "payments": {
                    "config_version": 1,
                    "config": {},
                    "override": dict(override, state="forced_closed"),
                }
            }
        )
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_CLOSED)


def test_override_expires_locally_at_until_without_the_server(plane, registry):
    breaker = registry.get_or_create("payments")
    until = (datetime.now(UTC) + timedelta(seconds=0.4)).isoformat().replace("+00:00", "Z")
    override = {"state": "forced_open", "until": until, "reason": "drill", "by": "alice"}
    plane.breakers = {"payments": {"config_version": 1, "config": {}, "override": override}}
    with make_agent(plane, registry, watch=False) as agent:
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN)
        plane.sync_behaviour = lambda req: (503, b"down")  # the server is gone now
        assert plane.wait_for(lambda: breaker.state is CircuitState.CLOSED, timeout=10.0)
        assert agent.running


def test_override_for_a_breaker_created_later_is_applied_on_the_next_sync(plane, registry):
    override = {"state": "forced_open", "until": None, "reason": "", "by": "alice"}
    plane.breakers = {"late": {"config_version": 1, "config": {}, "override": override}}
    with make_agent(plane, registry, watch=False, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        late = registry.get_or_create("late")
        agent.request_sync()
        assert plane.wait_for(lambda: late.state is CircuitState.FORCED_OPEN)


def test_locally_forced_breaker_is_not_released_by_an_empty_desired_state(plane, registry):
    breaker = registry.get_or_create("payments")
    breaker.force_open("maintenance by the application itself")
    with make_agent(plane, registry, watch=False) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
    assert breaker.state is CircuitState.FORCED_OPEN


def test_watch_applies_a_forced_state_as_soon_as_it_is_published(plane, registry):
    breaker = registry.get_or_create("payments")
    plane.watch_hold = 5.0
    with make_agent(plane, registry) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert plane.wait_for(lambda: len(plane.watches()) >= 1)
        assert plane.watches()[-1].query["since"] in {"0", "1"}
        published = time.monotonic()
        plane.publish(
            {
                "payments": {
                    "config_version": 1,
                    "config": {},
                    "override": {
                        "state": "forced_open",
                        "until": None,
                        "reason": "x",
                        "by": "alice",
                    },
                }
            }
        )
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN, timeout=10.0)
        applied = time.monotonic()
        # The next watch asks from the version it just applied.
        assert plane.wait_for(lambda: plane.watches()[-1].query["since"] == "2")
        assert agent.desired_version == 2
    assert applied - published < 1.0


class _ManualClock:
    """A monotonic clock the test moves (the agent schedules syncs on it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("poll_interval", "min_interval", "bound"),
    [(0.01, 0.5, 0.5), (1e9, 0.5, 3600.0)],
    ids=["below-min_interval", "above-an-hour"],
)
def test_server_poll_interval_is_clamped_to_its_bounds(
    plane, registry, poll_interval, min_interval, bound
):
    """The server's poll_interval is obeyed between min_interval and one hour."""
    plane.poll_interval = poll_interval
    clock = _ManualClock()
    agent = make_agent(
        plane, registry, interval=60.0, min_interval=min_interval, watch=False, monotonic=clock
    )
    agent._phase = 0.0  # its periodic syncs fall on whole intervals (see the tests below)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] == 1)
        # A first attempt that timed out on a busy machine was received too.
        first = len(plane.syncs())
        # Just before the bound: no sync, even when the loop is woken to look again (a
        # request for a sync in a day asks for nothing sooner than the schedule).
        clock.now = bound * 0.9
        agent.request_sync(86_400.0)
        assert not plane.wait_for(lambda: len(plane.syncs()) > first, timeout=0.3)
        # Just after it, the periodic sync is due.
        clock.now = bound * 1.1
        agent.request_sync(86_400.0)
        assert plane.wait_for(lambda: len(plane.syncs()) == first + 1)


def test_periodic_syncs_fall_on_each_process_s_own_phase_of_the_interval(plane, registry):
    """A fleet that synced together (started, or delayed by a slow control plane, at the
    same moment) spreads its next syncs over the interval instead of syncing together
    from then on; steadily, each process syncs one interval after its last sync."""
    interval = 5.0
    fleet = [make_agent(plane, CircuitBreakerRegistry(), interval=interval) for _ in range(500)]
    for moment in (0.0, 1234.567):  # all synced at this moment
        gaps = [agent._next_slot(moment) - moment for agent in fleet]
        assert all(interval / 2 <= gap < interval * 1.5 for gap in gaps)
        # Spread: each tenth of the interval holds a tenth of the fleet, give or take.
        tenths = [0] * 10
        for gap in gaps:
            tenths[int((moment + gap) % interval / interval * 10)] += 1
        assert max(tenths) < 100 and min(tenths) > 20, tenths
    for agent in fleet[:20]:
        slot = agent._next_slot(0.0)
        # A sync that took a moment still keeps the process on its phase...
        assert agent._next_slot(slot + 0.3) == pytest.approx(slot + interval)
        # ... and one delayed by most of an interval goes back to it.
        assert agent._next_slot(slot + 4.0) == pytest.approx(slot + 2 * interval)


def test_server_poll_interval_within_bounds_is_obeyed(plane, registry):
    plane.poll_interval = 1
    clock = _ManualClock()
    agent = make_agent(
        plane, registry, interval=60.0, min_interval=0.2, watch=False, monotonic=clock
    )
    agent._phase = 0.0  # its periodic syncs fall on whole intervals
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] == 1)
        first = len(plane.syncs())  # with a first attempt that timed out, if any
        clock.now = 0.9
        agent.request_sync(86_400.0)
        assert not plane.wait_for(lambda: len(plane.syncs()) > first, timeout=0.3)
        clock.now = 1.1
        agent.request_sync(86_400.0)
        assert plane.wait_for(lambda: len(plane.syncs()) == first + 1)


def test_stop_flushes_pending_transitions(plane, registry):
    breaker = registry.get_or_create("payments")
    agent = make_agent(plane, registry, watch=False, coalesce=5.0).start()
    assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
    breaker.force_open()
    agent.stop(timeout=2.0)
    assert not agent.running
    assert [t["to"] for t in plane.stored_transitions.values()] == ["forced_open"]


async def test_asyncio_application_sees_the_forced_state(plane, registry):
    import asyncio

    from breakers import CircuitOpenError

    breaker = registry.get_or_create("payments")
    plane.watch_hold = 5.0

    async def fetch() -> str:
        await asyncio.sleep(0)
        return "ok"

    with make_agent(plane, registry) as agent:
        assert await breaker.call_async(fetch) == "ok"
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        plane.publish(
            {
                "payments": {
                    "config_version": 1,
                    "config": {},
                    "override": {
                        "state": "forced_open",
                        "until": None,
                        "reason": "x",
                        "by": "alice",
                    },
                }
            }
        )
        for _ in range(100):  # the event loop keeps running while the agent works
            if breaker.state is CircuitState.FORCED_OPEN:
                break
            assert await breaker.call_async(fetch) == "ok"
            await asyncio.sleep(0.01)
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(fetch)
        assert await breaker.call_async(fetch, fallback=lambda: "fallback") == "fallback"
