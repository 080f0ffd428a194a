"""End to end: the agent in this (application) process, the control plane in uvicorn."""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Instance, Service, Transition
from tests.e2e.conftest import ControlPlaneProcess, change_feed_listeners, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def trip(breaker: Any) -> None:
    for _ in range(100):
        if breaker.state is CircuitState.OPEN:
            return
        with contextlib.suppress(Exception):
            breaker.call(fail)
    raise AssertionError(f"{breaker.name} did not open")


@pytest.fixture
def agent_token() -> tuple[Service, str]:
    service = Service.objects.create(name="checkout")
    return service, create_agent_token(service)[1]


def new_agent(url: str, token: str, registry: CircuitBreakerRegistry, **kw: Any) -> Agent:
    kw.setdefault("interval", 30.0)
    kw.setdefault("backoff_initial", 0.1)
    kw.setdefault("backoff_max", 0.5)
    kw.setdefault("request_timeout", 2.0)
    kw.setdefault("report_delay_max", 0.5)
    return Agent(url, token, "checkout", registry=registry, **kw)


def stored(service: Service) -> list[tuple[str, int, str, str]]:
    return sorted(
        (t.circuit.name, t.seq, t.from_state, t.to_state)
        for t in Transition.objects.filter(circuit__service=service).select_related("circuit")
    )


def test_a_trip_in_the_application_is_stored(control_plane: ControlPlaneProcess, agent_token):
    service, token = agent_token
    registry = CircuitBreakerRegistry()
    payments = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=3))
    with new_agent(control_plane.url, token, registry) as agent:
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1), agent.stats()
        trip(payments)
        assert wait_for(lambda: stored(service), timeout=10.0), control_plane.output()
        # The row is committed before the answer that acknowledges it reaches the agent.
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
    ((name, seq, from_state, to_state),) = stored(service)
    assert (name, seq, from_state, to_state) == ("payments", 1, "closed", "open")
    transition = Transition.objects.get()
    assert transition.reason in {"failure_threshold", "failure_rate"}
    assert transition.instance.instance_id == agent.instance_id


def test_outage_of_several_seconds_loses_and_duplicates_nothing(
    own_control_plane: ControlPlaneProcess, agent_token
):
    service, token = agent_token
    server = own_control_plane
    registry = CircuitBreakerRegistry()
    breakers = [
        registry.get_or_create(name, CircuitBreakerConfig(failure_threshold=2))
        for name in ("payments", "search", "ledger")
    ]
    with new_agent(server.url, token, registry, coalesce=0.0) as agent:
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        breakers[0].force_open("before the outage")
        breakers[0].release()
        assert wait_for(lambda: len(stored(service)) == 2, timeout=10.0)
        # Acknowledged too, so that exactly the outage's transitions are pending below.
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
        server.stop()
        # While the control plane is down the application keeps tripping and recovering.
        outage_started = time.monotonic()
        for breaker in breakers:
            trip(breaker)
            breaker.force_open("outage drill")
            breaker.release()
        assert agent.pending_transitions == 9
        assert wait_for(lambda: agent.stats()["syncs_failed"] >= 1, timeout=10.0)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - outage_started)))
        server.start()
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
    rows = stored(service)
    assert sorted(seq for _, seq, _, _ in rows) == list(range(1, 12))
    assert [(from_state, to) for name, _, from_state, to in rows if name == "search"] == [
        ("closed", "open"),
        ("open", "forced_open"),
        ("forced_open", "closed"),
    ]
    assert Instance.objects.get().dropped_transitions == 0


class CorruptingProxy:
    """Forwards to the real control plane, then answers 500 or mangled JSON instead."""

    def __init__(self, upstream_port: int) -> None:
        self.mode = "pass"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body, headers)
                upstream = conn.getresponse()
                status, data = upstream.status, upstream.read()
                conn.close()
                if proxy.mode == "500":
                    status, data = 500, b"<h1>Server Error (500)</h1>"
                elif proxy.mode == "garbage" and data:
                    status, data = 200, data[: len(data) // 2] + b"\x00\xff not json"
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def corrupting_proxy(control_plane: ControlPlaneProcess) -> Iterator[CorruptingProxy]:
    proxy = CorruptingProxy(control_plane.port)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("mode", ["500", "garbage"])
def test_erroring_control_plane_leaves_calls_unaffected(corrupting_proxy, agent_token, mode):
    service, token = agent_token
    registry = CircuitBreakerRegistry()
    payments = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=4))
    with new_agent(corrupting_proxy.url, token, registry, coalesce=0.0) as agent:
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        corrupting_proxy.mode = mode
        payments.force_open("drill")
        payments.release()
        assert wait_for(lambda: agent.stats()["syncs_failed"] >= 2, timeout=10.0)
        # Every protected call still runs, on the config it had, and fails over normally.
        started = time.perf_counter()
        results = [payments.call(lambda i=i: i) for i in range(2000)]
        elapsed = time.perf_counter() - started
        assert results == list(range(2000))
        assert elapsed < 1.0  # 2,000 in-memory calls; a network wait would show here
        assert payments.config.failure_threshold == 4
        trip(payments)
        assert payments.call(lambda: "x", fallback=lambda: "fallback") == "fallback"
        assert agent.pending_transitions == 3
        # The link comes back: what was kept arrives.
        corrupting_proxy.mode = "pass"
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
    assert [to for _, _, _, to in stored(service)] == ["forced_open", "closed", "open"]


@pytest.fixture
def operator_token(operator: Any) -> str:
    from controlplane.circuits.auth import create_api_token

    return create_api_token(operator)[1]


def circuit_id(server: ControlPlaneProcess, token: str, name: str) -> int | None:
    status, body = server.request(
        "GET", f"/api/v1/circuits/?service=checkout&q={name}", token=token
    )
    assert status == 200, body
    matches = [c for c in body["results"] if c["name"] == name and c["service"] == "checkout"]
    return matches[0]["id"] if matches else None


def test_operator_force_reaches_the_application_within_a_second(
    control_plane: ControlPlaneProcess, agent_token, operator_token
):
    _, token = agent_token
    registry = CircuitBreakerRegistry()
    payments = registry.get_or_create("payments")
    with new_agent(control_plane.url, token, registry) as agent:
        assert wait_for(lambda: circuit_id(control_plane, operator_token, "payments"))
        cid = circuit_id(control_plane, operator_token, "payments")
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        # The server's hub subscribes to the change feed with its first watcher: a change
        # published before that would wake nobody (the agent would see it at its next sync).
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        for _ in range(2):
            started = time.monotonic()
            status, body = control_plane.request(
                "POST",
                f"/api/v1/circuits/{cid}/override/",
                {"state": "forced_open", "reason": "db failover"},
                token=operator_token,
            )
            assert status == 201, body
            assert wait_for(lambda: payments.state is CircuitState.FORCED_OPEN, timeout=1.0)
            assert time.monotonic() - started < 1.0
            with pytest.raises(Exception) as info:
                payments.call(lambda: "not called")
            assert info.type.__name__ == "CircuitOpenError"
            status, _ = control_plane.request(
                "DELETE",
                f"/api/v1/circuits/{cid}/override/",
                {"reason": "recovered"},
                token=operator_token,
            )
            assert status == 204
            assert wait_for(lambda: payments.state is CircuitState.CLOSED, timeout=1.0)
        # The watch carried them: the periodic sync is far away (see new_agent). A change
        # can also ride on the answer of the sync that reports the previous transition, so
        # not every one of the four needs a watch answer of its own.
        assert agent.stats()["watch_changes"] >= 1


def test_central_threshold_edit_is_applied_and_reported(
    control_plane: ControlPlaneProcess, agent_token, operator_token
):
    _, token = agent_token
    registry = CircuitBreakerRegistry()
    payments = registry.get_or_create(
        "payments", CircuitBreakerConfig(failure_threshold=5, ignore_exceptions=(KeyError,))
    )
    with new_agent(control_plane.url, token, registry) as agent:
        assert wait_for(lambda: circuit_id(control_plane, operator_token, "payments"))
        cid = circuit_id(control_plane, operator_token, "payments")
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        status, detail = control_plane.request(
            "GET", f"/api/v1/circuits/{cid}/", token=operator_token
        )
        current = detail["config_version"]
        status, body = control_plane.request(
            "POST",
            f"/api/v1/circuits/{cid}/config/",
            {
                "expected_version": current,
                "config": {"failure_threshold": 2, "timeout": 7.5},
                "reason": "flaky upstream",
            },
            token=operator_token,
        )
        assert status == 201, body
        version = body["version"]
        assert version == current + 1
        assert wait_for(lambda: payments.config_version == version, timeout=2.0)
        assert payments.config.failure_threshold == 2
        assert payments.config.timeout == 7.5
        assert payments.config.ignore_exceptions == (KeyError,)  # code-only field kept

        def reported() -> bool:
            _, d = control_plane.request("GET", f"/api/v1/circuits/{cid}/", token=operator_token)
            states = d["instance_states"]
            return [(s["instance"], s["config_version"], s["config_drift"]) for s in states] == [
                (agent.instance_id, version, False)
            ]

        assert wait_for(reported, timeout=10.0)
        # The new threshold is the one in force: two failures open it now.
        trip(payments)
        assert payments.get_state()["failures"] == 2


def test_an_agent_with_its_clock_far_off_is_heard_and_its_backlog_moves(
    control_plane: ControlPlaneProcess, agent_token
):
    # The server refuses times before 2000: the agent's start time, its trip and the
    # breaker's state_since. It must drop and count them, not resend them for ever.
    service, token = agent_token
    registry = CircuitBreakerRegistry()
    payments = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=3))
    with time_machine.travel(datetime(1999, 6, 1, tzinfo=UTC), tick=True):
        agent = new_agent(control_plane.url, token, registry).start()
        try:
            trip(payments)
            assert wait_for(lambda: agent.dropped_transitions == 1, timeout=10.0), agent.stats()
            assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1, timeout=10.0)
        except BaseException:
            agent.stop()
            raise
    with agent:
        # The clock is right again: a new breaker's trip is stored.
        db = registry.get_or_create("db", CircuitBreakerConfig(failure_threshold=3))
        trip(db)
        assert wait_for(lambda: stored(service), timeout=10.0), control_plane.output()
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
    assert stored(service) == [("db", 2, "closed", "open")]
    instance = Instance.objects.get(service=service)
    assert instance.dropped_transitions == 1
    assert instance.started_at is None
