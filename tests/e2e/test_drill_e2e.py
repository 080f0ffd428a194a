"""A drill end to end: a real control plane (uvicorn) and real agents in this process.
The drill reaches only the instances it chose; the control plane is killed while it runs,
and the drilled breakers still close within a second of its end, by the agents' own
clocks; restarted, the control plane shows the drill ended at its bound, with an outcome
that counts exactly the calls the application made."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

import pytest

from breakers import CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.drills import settle_outcomes
from controlplane.circuits.models import Service
from tests.e2e.conftest import ControlPlaneProcess, change_feed_listeners, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

NAMES = ["app-1", "app-2", "app-3"]
DURATION = 4.0  # seconds


class Boom(Exception):
    pass


def drive(breaker: Any, truth: dict[str, int], fail: bool) -> None:
    """One request through the breaker with a fallback, counted as the application saw it."""
    ran = []

    def work() -> str:
        ran.append(True)
        if fail:
            raise Boom
        return "ok"

    assert breaker.call(work, fallback=lambda: "cached") == ("cached" if fail or not ran else "ok")
    if not ran:
        truth["rejected"] += 1
        truth["fallbacks"] += 1
    elif fail:
        truth["calls"] += 1
        truth["failures"] += 1
        truth["fallbacks"] += 1
    else:
        truth["calls"] += 1
        truth["successes"] += 1


def test_a_drill_releases_within_a_second_of_its_end_with_the_server_killed(
    own_control_plane: ControlPlaneProcess, operator: Any
) -> None:
    server = own_control_plane
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    api = create_api_token(operator)[1]
    registries = {name: CircuitBreakerRegistry() for name in NAMES}
    breakers = {name: r.get_or_create("payments") for name, r in registries.items()}
    agents = [
        Agent(
            server.url, token, "checkout", registry=registries[name], instance_id=name,
            backoff_initial=0.1, backoff_max=0.5, request_timeout=2.0, report_delay_max=0.5,
        )
        for name in NAMES
    ]  # fmt: skip
    for agent in agents:
        agent.start()
    try:
        status: int
        assert wait_for(lambda: all(a.stats()["syncs_ok"] >= 1 for a in agents), timeout=10)
        status, circuits = server.request("GET", "/api/v1/circuits/?service=checkout", token=api)
        assert status == 200, circuits
        (circuit,) = circuits["results"]
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        path = f"/api/v1/circuits/{circuit['id']}/drills/"
        status, drill = server.request(
            "POST", path, {"share": 67, "duration": DURATION, "reason": "game day"}, token=api
        )
        assert status == 201, drill
        chosen, others = set(drill["instances"]), set(NAMES) - set(drill["instances"])
        assert len(chosen) == 2 and drill["live_instances"] == 3
        ends_at = datetime.fromisoformat(drill["ends_at"]).timestamp()
        assert wait_for(
            lambda: all(breakers[n].state is CircuitState.FORCED_OPEN for n in chosen),
            timeout=1.0,
        )
        # The application's traffic while the drill runs: every instance, a known mix.
        truth = {"calls": 0, "successes": 0, "failures": 0, "rejected": 0, "fallbacks": 0}
        for i in range(30):
            for name in NAMES:
                drive(breakers[name], truth, fail=i % 10 == 0)
        assert (truth["rejected"], truth["calls"], truth["fallbacks"]) == (60, 30, 63)
        assert all(CircuitState.FORCED_OPEN is not breakers[n].state for n in others)
        for agent in agents:  # the reports stored before the crash
            assert agent.flush(timeout=5.0)
        server.kill()  # a crash while the drill runs: nothing flushed

        released: dict[str, float] = {}
        seen: dict[str, set[CircuitState]] = {n: set() for n in NAMES}
        deadline = ends_at + 3.0
        while time.time() < deadline and len(released) < len(chosen):
            for name in NAMES:
                state = breakers[name].state
                seen[name].add(state)
                if name in chosen and name not in released and state is CircuitState.CLOSED:
                    released[name] = time.time()
            time.sleep(0.002)
        lags = {name: at - ends_at for name, at in released.items()}
        print(f"\nrelease after the drill's end, server down: {lags}")
        assert set(released) == chosen, (seen, lags)
        assert all(-0.05 <= lag <= 1.0 for lag in lags.values()), lags
        assert all(CircuitState.FORCED_OPEN not in seen[n] for n in others), seen
        assert all(breakers[n].state is CircuitState.CLOSED for n in NAMES)

        server.start()
        detail_path = f"{path}{drill['id']}/"

        def ended() -> dict[str, Any] | None:
            with contextlib.suppress(OSError):
                status, body = server.request("GET", detail_path, token=api)
                if status == 200 and body["ended_at"] is not None:
                    return dict(body)
            return None

        # The agents' next syncs tell the restarted server; it ends the drill at its bound.
        for agent in agents:
            agent.request_sync()
        assert wait_for(lambda: ended() is not None, timeout=15.0), server.output()
        record = ended()
        assert record is not None
        assert record["state"] == "ended" and record["end_reason"] == "completed"
        assert record["ended_by"] == "system" and record["ended_at"] == record["ends_at"]
        # Once the agents' last reports are in, the outcome counts what the application did.
        for agent in agents:
            assert agent.flush(timeout=5.0)

        def counted() -> dict[str, Any]:
            settle_outcomes()
            status, body = server.request("GET", detail_path, token=api)
            assert status == 200, body
            return dict(body["outcome"]["during"])

        fields = ("calls", "successes", "failures", "rejected", "fallbacks")
        assert wait_for(
            lambda: {k: counted()[k] for k in fields} == truth, timeout=15.0, interval=0.5
        ), (counted(), truth)
        outcome = ended()["outcome"]  # type: ignore[index]
        by_instance = {row["instance"]: row for row in outcome["instances"]}
        assert set(by_instance) == chosen
        for row in by_instance.values():
            assert row["forced_at"] is not None and row["released_at"] is not None
    finally:
        for agent in agents:
            agent.stop()
