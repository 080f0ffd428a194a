"""Fail-static: a broken control plane never touches a protected call."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any

import pytest

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent, _Backoff
from tests.agent.conftest import TOKEN, LoopbackControlPlane
from tests.agent.test_agent_sync import make_agent


@pytest.fixture
def registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry()


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def calls_work(breaker: Any, n: int = 200) -> bool:
    return all(breaker.call(lambda i=i: i) == i for i in range(n))


def central(config_version: int, **fields: Any) -> dict[str, Any]:
    base = CircuitBreakerConfig().to_dict()
    return {"config_version": config_version, "config": dict(base, **fields), "override": None}


@pytest.mark.parametrize(
    "answer",
    [
        (500, b"Internal Server Error"),
        (200, b"{not json"),
        (200, b"[1, 2, 3]"),
        (200, b'{"desired_version": "twelve", "breakers": {}}'),
        (200, b'{"desired_version": 3, "breakers": ["payments"]}'),
        (200, b'{"desired_version": 3, "breakers": {}, "acked_through": "all"}'),
        (401, b'{"detail": "invalid token"}'),
    ],
    ids=["500", "garbage", "array", "bad-version", "bad-breakers", "bad-ack", "401"],
)
def test_bad_answers_keep_the_last_config_and_calls_working(plane, registry, answer):
    breaker = registry.get_or_create("payments")
    plane.breakers = {"payments": central(3, failure_threshold=9)}
    with make_agent(plane, registry, watch=False, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: breaker.config_version == 3)
        plane.sync_behaviour = lambda req: answer
        breaker.force_open()
        breaker.release()
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] >= 2)
        assert calls_work(breaker)
        assert breaker.config.failure_threshold == 9
        assert breaker.config_version == 3
        # Nothing was acknowledged, so nothing was forgotten.
        assert agent.pending_transitions == 2
        assert agent.stats()["last_error"]


def test_slow_server_times_out_and_never_delays_calls(plane, registry):
    breaker = registry.get_or_create("payments")
    release = threading.Event()

    def slow(req: Any) -> None:
        release.wait(3.0)
        return None

    plane.sync_behaviour = slow
    agent = make_agent(plane, registry, request_timeout=0.2).start()
    try:
        assert plane.wait_for(lambda: len(plane.requests) >= 1)
        started = time.perf_counter()
        assert calls_work(breaker, 1000)
        assert time.perf_counter() - started < 0.5
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] >= 1, timeout=10.0)
        assert "timed out" in agent.stats()["last_error"]
    finally:
        stopped = time.monotonic()
        agent.stop(timeout=0.5)
        release.set()
    assert time.monotonic() - stopped < 1.0


def test_refused_connections_back_off_and_recover(refused_url, registry):
    forced = registry.get_or_create("payments")
    healthy = registry.get_or_create("search")
    agent = Agent(
        refused_url,
        TOKEN,
        "checkout",
        registry=registry,
        interval=60.0,
        backoff_initial=0.1,
        backoff_max=0.4,
        request_timeout=0.5,
    )
    plane = None
    try:
        with agent:
            started = time.monotonic()
            forced.force_open()
            assert wait_for(lambda: agent.stats()["syncs_failed"] >= 3, timeout=10.0)
            # Three refusals take at least 0.05 + 0.1 s of backoff (equal jitter on
            # 0.1, 0.2, 0.4): a loop that did not back off would take milliseconds.
            assert time.monotonic() - started >= 0.15
            assert calls_work(healthy) and agent.running
            assert agent.pending_transitions == 1 and agent.stats()["syncs_ok"] == 0
            # The control plane comes up on that port: the next attempt gets through
            # and the transition that waited is delivered and acknowledged.
            plane = LoopbackControlPlane(port=int(refused_url.rsplit(":", 1)[1]))
            assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1, timeout=10.0)
            assert plane.wait_for(lambda: agent.pending_transitions == 0, timeout=10.0)
            assert [t["to"] for t in plane.stored_transitions.values()] == ["forced_open"]
            assert agent.stats()["last_error"] is None
    finally:
        if plane is not None:
            plane.close()


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    backoff = _Backoff(0.5, 8.0, random.Random(7))
    delays = [backoff.fail() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[4:])) == 4  # jittered, not a fixed schedule
    backoff.succeed()
    assert backoff.fail() <= 0.5


def test_full_buffer_drops_oldest_and_reports_the_count(plane, registry):
    breaker = registry.get_or_create("payments")
    plane.sync_behaviour = lambda req: (503, b"unavailable")
    agent = make_agent(
        plane, registry, buffer_size=3, backoff_initial=5.0, backoff_max=5.0, watch=False
    )
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] == 1)
        for _ in range(3):
            breaker.force_open()
            breaker.release()
        assert agent.dropped_transitions == 3
        assert agent.pending_transitions == 3
        plane.sync_behaviour = None  # the link is back
        assert agent.flush(timeout=2.0)
        req = plane.syncs()[-1]
        assert [t["id"] for t in req.json["transitions"]] == [4, 5, 6]
        assert req.json["dropped_transitions"] == 3
        assert agent.pending_transitions == 0
        # Counted once: the next sync reports no drop, the total stays.
        syncs = len(plane.syncs())
        agent.request_sync()
        assert plane.wait_for(lambda: len(plane.syncs()) > syncs)
        assert plane.syncs()[-1].json["dropped_transitions"] == 0
        assert agent.dropped_transitions == 3


def test_token_never_appears_in_logs_or_repr(plane, registry, caplog):
    registry.get_or_create("payments")
    # A server that echoes the Authorization header back in its error body.
    plane.sync_behaviour = lambda req: (500, f"bad: {req.headers['Authorization']}".encode())
    with (
        caplog.at_level(logging.DEBUG, logger="breakers.agent"),
        make_agent(plane, registry, watch=False) as agent,
    ):
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] >= 2)
        shown = repr(agent) + str(agent.stats())
    assert "bad: Bearer ***" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in shown


def test_watch_failures_back_off_and_leave_periodic_sync_working(plane, registry):
    breaker = registry.get_or_create("payments")

    def broken_watch(req: Any) -> tuple[int, bytes] | None:
        return (502, b"bad gateway") if req.path.endswith("/watch") else None

    plane.sync_behaviour = broken_watch
    plane.poll_interval = 0.1
    with make_agent(plane, registry, min_interval=0.05) as agent:
        assert plane.wait_for(lambda: agent.stats()["watch_failed"] >= 2)
        plane.publish(
            {
                "payments": {
                    "config_version": 1,
                    "config": {},
                    "override": {"state": "forced_open", "until": None, "reason": "", "by": "bob"},
                }
            }
        )
        assert plane.wait_for(lambda: breaker.state is CircuitState.FORCED_OPEN)
        watches = len(plane.watches())
    assert watches < 15  # backing off (0.05 s -> 0.2 s), not spinning


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1.0}, "interval"),
        ({"interval": 1e9}, "interval"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": True}, "buffer_size"),
        ({"backoff_initial": 5.0, "backoff_max": 1.0}, "backoff_max"),
        ({"coalesce": -0.1}, "coalesce"),
        ({"instance_id": ""}, "instance_id"),
    ],
)
def test_bad_parameters_name_the_parameter(registry, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        Agent("http://127.0.0.1:1", TOKEN, "checkout", registry=registry, **kwargs)


@pytest.mark.parametrize(
    ("url", "token", "service", "field"),
    [
        ("ftp://x", TOKEN, "s", "url"),
        ("127.0.0.1:8000", TOKEN, "s", "url"),
        ("http://127.0.0.1:8000", "", "s", "token"),
        ("http://127.0.0.1:8000", TOKEN, "", "service"),
    ],
)
def test_bad_endpoint_arguments_name_the_argument(registry, url, token, service, field):
    with pytest.raises(ValueError, match=rf"^{field} must") as info:
        Agent(url, token, service, registry=registry)
    assert TOKEN not in str(info.value)


def test_from_env_reads_the_three_variables(registry):
    env = {
        "SWITCHYARD_URL": "http://127.0.0.1:9",
        "SWITCHYARD_TOKEN": TOKEN,
        "SWITCHYARD_SERVICE": "checkout",
        "SWITCHYARD_INTERVAL": "2.5",
    }
    agent = Agent.from_env(registry=registry, environ=env)
    assert (agent.url, agent.service, agent.interval) == ("http://127.0.0.1:9", "checkout", 2.5)
    assert agent.registry is registry
    for missing in ("SWITCHYARD_URL", "SWITCHYARD_TOKEN", "SWITCHYARD_SERVICE"):
        partial = {k: v for k, v in env.items() if k != missing}
        with pytest.raises(ValueError, match=missing):
            Agent.from_env(registry=registry, environ=partial)
    with pytest.raises(ValueError, match="SWITCHYARD_INTERVAL"):
        Agent.from_env(registry=registry, environ=dict(env, SWITCHYARD_INTERVAL="soon"))


def test_start_from_env_starts_an_agent_or_none_when_optional(plane, registry, monkeypatch):
    from breakers.agent import start_from_env

    monkeypatch.delenv("SWITCHYARD_URL", raising=False)
    assert start_from_env(registry=registry, required=False) is None
    with pytest.raises(ValueError, match="SWITCHYARD_URL"):
        start_from_env(registry=registry)
    monkeypatch.setenv("SWITCHYARD_URL", plane.url)
    monkeypatch.setenv("SWITCHYARD_TOKEN", TOKEN)
    monkeypatch.setenv("SWITCHYARD_SERVICE", "checkout")
    agent = start_from_env(registry=registry, watch=False)
    try:
        assert agent is not None and agent.running
        assert plane.wait_for(lambda: len(plane.syncs()) >= 1)
    finally:
        agent.stop()


def _refusal(field: str, reason: str) -> tuple[int, bytes]:
    body = {"detail": f"{field}: {reason}", "field": field, "reason": reason}
    return 400, json.dumps({**body, "errors": {field: reason}}).encode()


def test_a_refused_transition_is_dropped_and_counted_not_resent_for_ever(plane, registry, caplog):
    # The control plane refuses transition 1 (say its time is out of range) wherever it
    # is in a batch; the ones after it must still get through.
    def refuse_first(req: Any) -> tuple[int, bytes] | None:
        for index, t in enumerate(req.json["transitions"] if req.json else []):
            if t["id"] == 1:
                return _refusal(f"transitions[{index}].at", "must be between ...")
        return None

    breaker = registry.get_or_create("payments")
    caplog.set_level(logging.ERROR, logger="breakers.agent")
    with make_agent(plane, registry, watch=False, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        plane.sync_behaviour = refuse_first
        breaker.force_open()
        breaker.release()
        assert plane.wait_for(lambda: agent.pending_transitions == 0)
        assert sorted(i for (_, i) in plane.stored_transitions) == [2]
        assert agent.dropped_transitions == 1
        # The server hears of the drop once, in the sync that stored transition 2.
        carried = [r.json["dropped_transitions"] for r in plane.syncs()]
        assert sum(carried) == 1 and carried.count(1) == 1
        refused = [r for r in plane.syncs() if any(t["id"] == 1 for t in r.json["transitions"])]
        assert len(refused) == 1  # not sent again
    assert any("refused 1 transition" in r.getMessage() for r in caplog.records)


def test_a_refused_breaker_is_left_out_of_reports(plane, registry):
    # The control plane refuses a breaker by name (the service's circuit limit, say);
    # the other breakers keep being reported and their transitions stored.
    def refuse_bad(req: Any) -> tuple[int, bytes] | None:
        for index, b in enumerate(req.json["breakers"] if req.json else []):
            if b["name"] == "bad":
                return _refusal(f"breakers[{index}].name", "at most 1 circuits are allowed")
        return None

    plane.sync_behaviour = refuse_bad
    registry.get_or_create("bad")
    good = registry.get_or_create("good")
    with make_agent(plane, registry, watch=False, coalesce=0.0) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert [b["name"] for b in plane.syncs()[-1].json["breakers"]] == ["good"]
        good.force_open()
        assert plane.wait_for(lambda: agent.pending_transitions == 0)
        assert sorted(i for (_, i) in plane.stored_transitions) == [1]


def test_a_400_naming_nothing_droppable_backs_off(plane, registry):
    plane.sync_behaviour = lambda req: _refusal("instance.hostname", "bad")
    registry.get_or_create("payments")
    agent = make_agent(plane, registry, watch=False, backoff_initial=5.0, backoff_max=5.0)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] >= 1)
        # The same request would be refused again: the next one waits for the backoff.
        with agent._lock:
            assert agent._next_sync_at - agent._mono() > 1.0
        assert len(plane.syncs()) == 1


def test_a_refused_start_time_is_left_out_so_the_agent_is_still_heard(plane, registry):
    # A host whose clock is far off: the server refuses its start time.
    def refuse_start(req: Any) -> tuple[int, bytes] | None:
        if req.json and req.json["instance"]["started_at"] is not None:
            return _refusal("instance.started_at", "must be between ...")
        return None

    plane.sync_behaviour = refuse_start
    registry.get_or_create("payments")
    with make_agent(plane, registry, watch=False) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert plane.syncs()[-1].json["instance"]["started_at"] is None
        assert agent.stats()["syncs_failed"] == 1
