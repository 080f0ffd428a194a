"""Telemetry reports: cut at every sync and 10-second boundary, numbered per process
start, sent until acknowledged, bounded (docs/traffic.md)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.agent import Agent
from tests.agent.conftest import TOKEN, LoopbackControlPlane
from tests.agent.test_agent_sync import make_agent

ROOT = Path(__file__).resolve().parents[2]


class WallClock:
    """The agent's wall clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


@pytest.fixture
def registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry()


def sent_reports(plane: LoopbackControlPlane) -> list[dict[str, Any]]:
    """Every report of every sync, in the order sent (repeats included)."""
    return [r for req in plane.syncs() for r in req.json.get("telemetry", [])]


def stored(plane: LoopbackControlPlane) -> list[dict[str, Any]]:
    with plane.lock:
        return [plane.reports[key] for key in sorted(plane.reports, key=lambda k: k[1])]


def test_reports_are_cut_at_10_second_boundaries_and_numbered(plane, registry):
    wall = WallClock(1_000_003.0)
    db = registry.get_or_create("db")
    cache = registry.get_or_create("cache")
    agent = make_agent(plane, registry, watch=False, wall_clock=wall)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        for _ in range(3):
            db.call(lambda: 1)
        db.call(boom, lambda: "fallback")
        wall.set(1_000_010.5)  # past the boundary: the sync loop cuts without a sync
        agent._wake.set()  # what the end of its wait does
        assert plane.wait_for(lambda: agent.stats()["report_seq"] == 1)
        syncs_before = len(plane.syncs())
        cache.call(lambda: 1)
        db.call(lambda: 1)
        wall.set(1_000_012.0)
        assert agent.flush()
        assert len(plane.syncs()) == syncs_before + 1
        assert plane.wait_for(lambda: agent.pending_reports == 0)
    first, second = stored(plane)
    assert (first["seq"], first["bucket"]) == (1, 1_000_000)
    (entry,) = first["breakers"]
    assert entry["name"] == "db"
    assert {k: entry[k] for k in ("calls", "successes", "failures", "fallbacks")} == {
        "calls": 4,
        "successes": 3,
        "failures": 1,
        "fallbacks": 1,
    }
    assert (entry["slow_calls"], entry["rejected"]) == (0, 0)
    assert sum(n for _, n in entry["latency"]) == 4
    assert (second["seq"], second["bucket"]) == (2, 1_000_010)
    assert {b["name"]: b["calls"] for b in second["breakers"]} == {"cache": 1, "db": 1}


def test_a_sync_cuts_a_report_and_only_grown_breakers_are_in_it(plane, registry):
    wall = WallClock(2_000_001.0)
    registry.get_or_create("idle")
    busy = registry.get_or_create("busy", CircuitBreakerConfig(failure_threshold=1))
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        assert agent.flush()  # nothing grew: no report, no seq used
        assert agent.stats()["report_seq"] == 0
        with contextlib.suppress(Boom):
            busy.call(boom)
        busy.call(lambda: 1, lambda: "fallback")  # rejected: open
        wall.set(2_000_004.0)
        assert agent.flush()
    (report,) = stored(plane)
    assert (report["seq"], report["bucket"]) == (1, 2_000_000)
    (entry,) = report["breakers"]
    assert entry["name"] == "busy"
    assert (entry["calls"], entry["failures"], entry["rejected"], entry["fallbacks"]) == (
        1,
        1,
        1,
        1,
    )
    assert sum(n for _, n in entry["latency"]) == 1  # nothing measured for the rejection


def test_reports_are_sent_again_until_acknowledged(plane, registry):
    wall = WallClock(3_000_000.0)
    breaker = registry.get_or_create("db")
    plane.telemetry_ack_limit = 0  # stores nothing: telemetry_through stays 0
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        breaker.call(lambda: 1)
        assert agent.flush()
        breaker.call(lambda: 1)
        assert agent.flush()
        assert agent.pending_reports == 2
        assert [r["seq"] for r in sent_reports(plane)] == [1, 1, 2]
        plane.telemetry_ack_limit = 1
        assert agent.flush()
        assert agent.pending_reports == 1
        plane.telemetry_ack_limit = None
        assert agent.flush()
        assert agent.pending_reports == 0
        assert [r["seq"] for r in sent_reports(plane)] == [1, 1, 2, 1, 2, 2]
    # Stored once each, however often sent.
    assert [r["seq"] for r in stored(plane)] == [1, 2]
    assert sum(b["calls"] for r in stored(plane) for b in r["breakers"]) == 2


def test_waiting_reports_are_bounded_and_the_drops_counted_once(plane, registry):
    wall = WallClock(4_000_000.0)
    breaker = registry.get_or_create("db")
    down = True

    def behaviour(req: Any) -> tuple[int, bytes] | None:
        return (503, b'{"detail": "down"}') if down else None

    with make_agent(plane, registry, watch=False, wall_clock=wall, max_reports=3) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        plane.sync_behaviour = behaviour
        for _ in range(5):
            breaker.call(lambda: 1)
            assert not agent.flush()  # cuts a report, which cannot be sent
        assert (agent.pending_reports, agent.dropped_reports) == (3, 2)
        down = False
        assert agent.flush()
        first_ok = plane.syncs()[-1].json
        assert [r["seq"] for r in first_ok["telemetry"]] == [3, 4, 5]
        assert first_ok["dropped_reports"] == 2
        assert agent.flush()
        assert plane.syncs()[-1].json["dropped_reports"] == 0
    assert plane.dropped_reports == 2
    assert agent.pending_reports == 0


def test_a_server_without_telemetry_through_does_not_hold_reports(plane, registry):
    wall = WallClock(5_000_000.0)
    breaker = registry.get_or_create("db")
    plane.answer_telemetry = False
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        breaker.call(lambda: 1)
        assert agent.flush()
        assert agent.pending_reports == 0
        assert agent.stats()["last_error"] is None
        breaker.call(lambda: 1)
        assert agent.flush()
    assert [r["seq"] for r in sent_reports(plane)] == [1, 2]


def test_a_round_split_over_several_syncs_sends_each_report_once(plane, registry):
    wall = WallClock(6_000_000.0)
    breakers = [registry.get_or_create(f"b{i}") for i in range(3)]
    plane.limits = {"breakers": 1}
    plane.max_breakers = 1
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["rounds"] >= 1)
        for b in breakers:
            b.call(lambda: 1)
        rounds = agent.stats()["rounds"]
        start = len(plane.syncs())
        assert agent.flush()
        assert agent.stats()["rounds"] == rounds + 1
        round_syncs = plane.syncs()[start:]
    assert len(round_syncs) == 3
    seqs = [r["seq"] for req in round_syncs for r in req.json["telemetry"]]
    assert seqs == [1]
    assert sorted(b["name"] for r in stored(plane) for b in r["breakers"]) == ["b0", "b1", "b2"]


def test_a_report_the_server_refuses_is_dropped_and_counted(plane, registry):
    wall = WallClock(7_000_000.0)
    breaker = registry.get_or_create("db")

    def refuse_reports(req: Any) -> tuple[int, bytes] | None:
        if req.json.get("telemetry"):
            body = {"detail": "bad", "errors": {"telemetry[0].bucket": "out of range"}}
            return 400, json.dumps(body).encode()
        return None

    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        plane.sync_behaviour = refuse_reports
        breaker.call(lambda: 1)
        assert agent.flush()  # the refused report is left out and the sync goes again
        assert (agent.pending_reports, agent.dropped_reports) == (0, 1)
        assert plane.syncs()[-1].json["dropped_reports"] == 1


def test_seq_goes_on_across_stop_and_start_and_starts_at_1_in_a_new_process(plane, registry):
    wall = WallClock(8_000_000.0)
    breaker = registry.get_or_create("db")
    agent = make_agent(plane, registry, watch=False, wall_clock=wall)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        breaker.call(lambda: 1)
        assert agent.flush()
    breaker.call(lambda: 1)  # while no agent runs: not reported
    with agent:
        breaker.call(lambda: 1)
        breaker.call(lambda: 1)
        assert agent.flush()
    assert [(r["seq"], r["breakers"][0]["calls"]) for r in stored(plane)] == [(1, 1), (2, 2)]

    script = textwrap.dedent(
        f"""
        import time

        from breakers import CircuitBreakerRegistry
        from breakers.agent import Agent

        registry = CircuitBreakerRegistry()
        breaker = registry.get_or_create("db")
        agent = Agent({plane.url!r}, {TOKEN!r}, "checkout", registry=registry,
                      interval=60.0, watch=False)
        agent.start()
        deadline = time.monotonic() + 20
        while agent.stats()["syncs_ok"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the first sync, so that it cuts before the calls
        for _ in range(7):
            breaker.call(lambda: 1)
        assert agent.flush()
        agent.stop()
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, timeout=30, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    with plane.lock:
        by_process = sorted((inst, seq) for inst, seq in plane.reports if inst != agent.instance_id)
        calls = [plane.reports[key]["breakers"][0]["calls"] for key in by_process]
    assert [seq for _, seq in by_process] == [1, 1]
    assert len({inst for inst, _ in by_process}) == 2
    assert calls == [7, 7]


def test_max_reports_is_validated(plane, registry):
    with pytest.raises(ValueError, match=r"^max_reports must be an integer"):
        Agent(plane.url, TOKEN, "checkout", registry=registry, max_reports=0)


def test_stop_sends_the_calls_since_the_last_cut(plane, registry):
    wall = WallClock(9_000_000.0)
    breaker = registry.get_or_create("db")
    agent = make_agent(plane, registry, watch=False, wall_clock=wall)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        syncs = len(plane.syncs())
        for _ in range(3):
            breaker.call(lambda: 1)
    assert len(plane.syncs()) == syncs + 1  # the final flush
    assert [(r["seq"], r["breakers"][0]["calls"]) for r in stored(plane)] == [(1, 3)]
    assert agent.pending_reports == 0


def test_a_backlog_drains_in_back_to_back_syncs(plane, registry):
    wall = WallClock(10_000_000.0)
    breakers = [registry.get_or_create(f"breaker-{i:03}") for i in range(40)]
    plane.limits = {"body_bytes": 16 * 1024}
    with make_agent(plane, registry, watch=False, wall_clock=wall) as agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        plane.sync_behaviour = lambda req: (503, b'{"detail": "down"}')
        for _ in range(6):
            for b in breakers:
                b.call(lambda: 1)
            assert not agent.flush()
        assert agent.pending_reports >= 6
        plane.sync_behaviour = None
        start = len(plane.syncs())
        assert agent.flush()
        assert agent.pending_reports == 0
        syncs = plane.syncs()[start:]
    assert len(syncs) > 1  # a quarter of 16 KiB per sync: several syncs
    assert all(len(req.body) <= 16 * 1024 for req in syncs)
    assert sum(b["calls"] for r in stored(plane) for b in r["breakers"]) == 6 * 40
