"""A process with more breakers than one sync may carry, against a loopback control
plane that enforces per-sync limits the way the real one does (413 over a limit)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from breakers import CircuitBreakerRegistry, clock, wire
from breakers.agent import Agent
from tests.agent.conftest import TOKEN, LoopbackControlPlane

ROOT = Path(__file__).resolve().parents[2]
SERVER_LIMITS = {"breakers": 500, "transitions": 5000, "body_bytes": 1024 * 1024}


def make_agent(plane: LoopbackControlPlane, registry: CircuitBreakerRegistry, **kw: Any) -> Agent:
    kw.setdefault("interval", 1.0)
    kw.setdefault("min_interval", 0.2)
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    kw.setdefault("request_timeout", 5.0)
    kw.setdefault("watch", False)
    return Agent(plane.url, TOKEN, "checkout", registry=registry, **kw)


def registry_of(count: int, prefix: str = "dep") -> CircuitBreakerRegistry:
    registry = CircuitBreakerRegistry()
    for i in range(count):
        registry.get_or_create(f"{prefix}-{i:05d}")
    return registry


def accepted(plane: LoopbackControlPlane) -> list[Any]:
    refused = {id(r) for r in plane.too_large}
    return [r for r in plane.syncs() if id(r) not in refused]


def known(plane: LoopbackControlPlane, agent: Agent) -> dict[str, float]:
    with plane.lock:
        return dict(plane.known.get(agent.instance_id, {}))


def test_every_breaker_arrives_within_three_intervals_in_syncs_within_the_limits(plane):
    registry = registry_of(60)
    plane.poll_interval = 1
    plane.max_breakers = 7
    plane.limits = {**SERVER_LIMITS, "breakers": 7}
    agent = make_agent(plane, registry)
    started = time.monotonic()
    with agent:
        assert plane.wait_for(lambda: len(known(plane, agent)) == 60, timeout=15.0)
        arrived = max(known(plane, agent).values())
    assert arrived - started < 3 * 1.0
    # Before it heard the limit the agent sent 60: each 413 halved that (30, 15, 7).
    assert [len(r.json["breakers"]) for r in plane.too_large] == [60, 30, 15]
    assert all(len(r.json["breakers"]) <= 7 for r in accepted(plane))


def test_transitions_arrive_once_in_id_order_after_the_breakers_they_name(plane):
    registry = registry_of(40)
    plane.poll_interval = 1
    plane.max_breakers = 6
    plane.limits = {**SERVER_LIMITS, "breakers": 6}
    with make_agent(plane, registry, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: len(known(plane, agent)) == 40, timeout=15.0)
        names = sorted(b.name for b in registry)
        for name in names[::3]:  # a transition in every part of the round
            registry.get(name).force_open("drill")
        for name in names[::5]:
            registry.get(name).force_closed("drill")
        assert plane.wait_for(lambda: agent.pending_transitions == 0, timeout=15.0)
        # The periodic rounds go on without sending any of them again.
        rounds = agent.stats()["rounds"]
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= rounds + 2, timeout=15.0)
    ids = [i for (_, i) in plane.received]
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) == len(names[::3]) + len(names[::5])
    assert plane.unknown_named == []
    assert all(len(r.json["breakers"]) <= 6 for r in accepted(plane))
    # Only the first round, before the agent heard the limit: 40, 20, 10 refused.
    assert [len(r.json["breakers"]) for r in plane.too_large] == [40, 20, 10]


def test_a_transition_between_reports_goes_at_once_with_the_breaker_it_names(plane):
    registry = registry_of(30)
    plane.limits = {**SERVER_LIMITS, "breakers": 10}
    plane.max_breakers = 10
    plane.poll_interval = 60  # no periodic round during the test
    with make_agent(plane, registry, interval=60.0, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= 1, timeout=15.0)
        before = len(plane.syncs())
        tripped_at = time.monotonic()
        registry.get("dep-00017").force_open("drill")
        assert plane.wait_for(lambda: agent.pending_transitions == 0, timeout=10.0)
        new = plane.syncs()[before:]
    assert len(new) == 1
    assert new[0].at - tripped_at < 1.0
    assert [b["name"] for b in new[0].json["breakers"]] == ["dep-00017"]
    assert new[0].json["breakers"][0]["state"] == "forced_open"
    assert [t["id"] for t in new[0].json["transitions"]] == [1]
    assert agent.stats()["rounds"] == 1  # the next full report stays on its schedule


def test_a_413_halves_the_breakers_per_sync_instead_of_resending_the_refused_body(plane):
    registry = registry_of(50)
    plane.poll_interval = 1
    plane.max_body_bytes = 6000  # a proxy's limit: the server's answers say nothing of it
    with make_agent(plane, registry) as agent:
        assert plane.wait_for(lambda: len(known(plane, agent)) == 50, timeout=15.0)
        rounds = agent.stats()["rounds"]
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= rounds + 2, timeout=15.0)
    refused = [len(r.json["breakers"]) for r in plane.too_large]
    # Each refusal was answered by a smaller sync, never by the same body again.
    assert refused == sorted(refused, reverse=True)
    assert len(set(refused)) == len(refused)
    assert len(refused) <= 4  # 50 -> 25 -> 12 -> 6 fits
    bodies = [r.body for r in plane.too_large]
    assert len(set(bodies)) == len(bodies)
    assert all(len(r.body) <= 6000 for r in accepted(plane))


def test_a_413_naming_the_transitions_halves_them_and_each_arrives_once_in_order(plane):
    registry = registry_of(3)
    plane.max_transitions = 3  # a limit the answers do not tell
    with make_agent(plane, registry, interval=60.0, coalesce=1.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= 1, timeout=10.0)
        breaker = registry.get("dep-00001")
        for _ in range(5):
            breaker.force_open("drill")
            breaker.release()
        assert plane.wait_for(lambda: agent.pending_transitions == 0, timeout=10.0)
    assert [len(r.json["transitions"]) for r in plane.too_large] == [10, 5]
    assert [i for (_, i) in plane.received] == list(range(1, 11))
    assert all(len(r.json["transitions"]) <= 2 for r in accepted(plane))


def test_a_breaker_alone_over_the_limit_is_left_out_and_the_rest_reported(plane, caplog):
    registry = CircuitBreakerRegistry()
    registry.get_or_create("small")
    registry.get_or_create("x" * 200)
    agent = make_agent(plane, registry, instance_id="web-1")
    small = registry.get("small")
    instance = wire.encode_instance("web-1", socket.gethostname(), os.getpid(), 0.0, "0.1.0")
    breaker = wire.encode_breaker("small", small.get_state(), small.config.to_dict(), 0)
    alone = wire.encode_sync_request("checkout", instance, [breaker], [], 0, clock=0.0)
    # Room for the small breaker (and a longer clock, counters, timestamps), not for the
    # one whose name is 199 characters longer.
    plane.max_body_bytes = len(json.dumps(alone, separators=(",", ":"))) + 100
    plane.poll_interval = 1
    with caplog.at_level(logging.ERROR, logger="breakers.agent"), agent:
        assert plane.wait_for(lambda: agent.stats()["too_large"] == 1, timeout=15.0)
        assert plane.wait_for(lambda: "small" in known(plane, agent), timeout=15.0)
        rounds = agent.stats()["rounds"]
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= rounds + 1, timeout=15.0)
        too_large = len(plane.too_large)
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= rounds + 2, timeout=15.0)
    assert "x" * 200 not in known(plane, agent)
    assert len(plane.too_large) == too_large  # left out: not tried again every round
    assert any("x" * 200 in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_process_with_5000_breakers_is_on_the_server_within_three_intervals(plane):
    registry = registry_of(5000)
    plane.poll_interval = 2
    plane.max_breakers = 500
    plane.max_transitions = 5000
    plane.max_body_bytes = 1024 * 1024
    plane.limits = SERVER_LIMITS
    agent = make_agent(plane, registry, interval=2.0, request_timeout=10.0)
    started = time.monotonic()
    with agent:
        assert plane.wait_for(lambda: len(known(plane, agent)) == 5000, timeout=30.0)
        arrived = max(known(plane, agent).values())
        registry.get("dep-04999").force_open("drill")
        assert plane.wait_for(lambda: agent.pending_transitions == 0, timeout=10.0)
    assert arrived - started < 3 * 2.0
    assert plane.too_large == []
    assert all(len(r.json["breakers"]) <= 500 for r in plane.syncs())
    assert [i for (_, i) in plane.received] == [1]
    assert plane.unknown_named == []


# ---------------------------------------------------------------- the clock


def test_each_sync_sends_the_clock_read_before_the_counters_never_going_down(plane):
    registry = registry_of(12)
    plane.limits = {**SERVER_LIMITS, "breakers": 5}
    plane.poll_interval = 0.3
    low = clock.seconds()
    with make_agent(plane, registry, interval=0.3) as agent:
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= 3, timeout=15.0)
    high = clock.seconds()
    clocks = [r.json["clock"] for r in plane.syncs()]
    assert all(isinstance(c, float) for c in clocks)
    assert clocks == sorted(clocks)
    assert low <= clocks[0] and clocks[-1] <= high
    assert len(set(clocks)) > 1


def test_a_new_process_reports_a_clock_that_starts_near_zero(plane):
    script = textwrap.dedent(
        f"""
        import time
        from breakers import CircuitBreakerRegistry
        from breakers.agent import Agent

        registry = CircuitBreakerRegistry()
        registry.get_or_create("payments")
        agent = Agent({plane.url!r}, {TOKEN!r}, "checkout", registry=registry,
                      interval=0.2, min_interval=0.2, watch=False)
        agent.start()
        deadline = time.monotonic() + 20
        while agent.stats()["syncs_ok"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        agent.stop()
        """
    )
    plane.poll_interval = 0.2
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=30, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    clocks = [r.json["clock"] for r in plane.syncs()]
    assert len(clocks) >= 3
    # Seconds since the library was imported in that process, not since boot.
    assert 0.0 <= clocks[0] < 5.0
    assert clocks == sorted(clocks)


ALL_LIMITS = {"breakers": 7, "transitions": 9, "body_bytes": 2048}


@pytest.mark.parametrize(
    ("limits", "kept"),
    [
        (ALL_LIMITS, ALL_LIMITS),
        ({**ALL_LIMITS, "other": 3}, ALL_LIMITS),
        ({"breakers": -1, "transitions": 2.5, "body_bytes": 4096}, {"body_bytes": 4096}),
        ({"breakers": 0, "transitions": "9", "body_bytes": True}, None),
        ([1, 2], None),
        ("500", None),
        (None, None),
    ],
)
def test_limits_of_an_answer_are_read_leniently(limits, kept):
    answer = wire.decode_answer(
        json.dumps({"desired_version": 1, "breakers": {}, "limits": limits}).encode()
    )
    assert answer.get("limits") == kept
