"""Faults of the dependencies (Redis hung or gone, PostgreSQL cut, hung or killed),
against a real uvicorn: durable writes answer promptly and are committed, live events
degrade, health says what is down, database errors are JSON 503s, and the first request
after the database is back succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Override, Service, Transition
from tests.e2e.conftest import ControlPlaneProcess, database_url, server_env
from tests.faults import HungServer, TcpProxy, closed_port

pytestmark = pytest.mark.django_db(transaction=True)

# What "promptly" means here: well inside the agent's 5 s sync timeout.
PROMPT = 2.0


def _sync_body(transitions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    state = "open" if transitions else "closed"
    return {
        "protocol": 1,
        "instance": {
            "id": "web-1",
            "hostname": "web",
            "pid": 4242,
            "started_at": "2026-11-28T05:00:00Z",
            "library_version": "0.1.0",
        },
        "breakers": [
            {
                "name": "payments",
                "state": state,
                "config_version": 0,
                "calls": 0,
                "successes": 0,
                "failures": 0,
                "slow_calls": 0,
                "rejected": 0,
                "failure_rate": 0.0,
                "trip_count": 0,
                "state_since": "2026-11-28T05:00:00Z",
                "retry_after": None,
            }
        ],
        "transitions": transitions or [],
        "dropped_transitions": 0,
    }


def _transition(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "breaker": "payments",
        "from": "closed" if n % 2 else "open",
        "to": "open" if n % 2 else "closed",
        "at": "2026-11-28T05:00:01Z",
        "reason": "failure_threshold" if n % 2 else "probes_succeeded",
    }


class Fleet:
    """A service with an agent token, and an operator's API token."""

    def __init__(self) -> None:
        self.service = Service.objects.create(name="checkout")
        self.agent = create_agent_token(self.service)[1]
        user = User.objects.create_user("otto", password="otto-pw-123!")
        user.groups.add(Group.objects.get(name="operator"))
        self.api = create_api_token(user)[1]
        self.user = user

    def session_cookie(self) -> str:
        """A signed-in dashboard session of the operator."""
        from django.conf import settings
        from django.contrib.sessions.backends.db import SessionStore

        session = SessionStore()
        session["_auth_user_id"] = str(self.user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = self.user.get_session_auth_hash()
        session.create()
        return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = call(*args, **kwargs)
    return time.monotonic() - started, result


@pytest.fixture
def fleet(transactional_db: None) -> Fleet:
    return Fleet()


@pytest.fixture(params=["hung", "gone"])
def broken_redis(request: Any) -> Iterator[str]:
    """A Redis URL that accepts connections and never answers, or where nothing listens."""
    if request.param == "gone":
        yield f"redis://127.0.0.1:{closed_port()}/0"
        return
    with HungServer() as server:
        yield server.url


def test_writes_answer_promptly_and_commit_when_redis_hangs_or_is_gone(
    fleet: Fleet, broken_redis: str
) -> None:
    server = ControlPlaneProcess(server_env(REDIS_URL=broken_redis))
    server.start()
    try:
        # First sight of the instance (the one-sync transaction), then transitions
        # (the group-committed intake), each publishing live events after its commit.
        elapsed, (status, _) = timed(
            server.request, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent
        )
        assert status == 200 and elapsed < PROMPT, (status, elapsed)
        circuit = Circuit.objects.get(service=fleet.service)
        for n in range(1, 6):
            elapsed, (status, body) = timed(
                server.request,
                "POST",
                "/api/v1/agent/sync",
                _sync_body([_transition(n)]),
                token=fleet.agent,
            )
            assert status == 200 and elapsed < PROMPT, (status, elapsed)
            assert body["acked_through"] == n
        # Operator forces and releases (more than the delivery pause needs to engage).
        for round_ in range(4):
            elapsed, (status, body) = timed(
                server.request,
                "POST",
                f"/api/v1/circuits/{circuit.pk}/override/",
                {"state": "forced_open", "reason": f"drill {round_}"},
                token=fleet.api,
            )
            assert status == 201 and elapsed < PROMPT, (status, elapsed, body)
            elapsed, (status, _) = timed(
                server.request,
                "DELETE",
                f"/api/v1/circuits/{circuit.pk}/override/",
                token=fleet.api,
            )
            assert status == 204 and elapsed < PROMPT, (status, elapsed)
        elapsed, (status, body) = timed(
            server.request,
            "POST",
            f"/api/v1/circuits/{circuit.pk}/override/",
            {"state": "forced_open", "reason": "final"},
            token=fleet.api,
        )
        assert status == 201 and elapsed < PROMPT, (status, elapsed, body)
        print(f"\nforce with Redis at {broken_redis}: 201 in {elapsed:.3f} s")
        # The next sync carries the new desired state at once.
        elapsed, (status, body) = timed(
            server.request, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent
        )
        assert status == 200 and elapsed < PROMPT, (status, elapsed)
        assert body["breakers"]["payments"]["override"]["state"] == "forced_open"
        assert body["desired_version"] == 9
    finally:
        server.stop()
    # Everything acknowledged is committed.
    assert Transition.objects.filter(circuit=circuit).count() == 5
    overrides = Override.objects.filter(circuit=circuit)
    assert overrides.count() == 5
    assert overrides.filter(ended_at__isnull=True).get().reason == "final"
    assert Service.objects.get(pk=fleet.service.pk).desired_version == 9


# -- the database cut, hung, or killed mid-transaction ------------------------------------


@pytest.fixture
def db_proxy(transactional_db: None) -> Iterator[TcpProxy]:
    """A proxy between a control plane and PostgreSQL (only that server's connections
    go through it: the test process and other databases are untouched)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the database faults are PostgreSQL's")
    with TcpProxy(int(connection.settings_dict.get("PORT") or 5432)) as proxy:
        yield proxy


@pytest.fixture
def db_server(db_proxy: TcpProxy, fleet: Fleet) -> Iterator[ControlPlaneProcess]:
    url = database_url().rsplit("@", 1)
    host_db = url[1].split("/", 1)
    proxied = f"{url[0]}@127.0.0.1:{db_proxy.port}/{host_db[1]}"
    server = ControlPlaneProcess(server_env(DATABASE_URL=proxied))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _assert_unavailable(status: int, body: Any, headers: dict[str, str]) -> None:
    assert status == 503, (status, body)
    assert isinstance(body, dict), body  # JSON, not an HTML page
    assert body["field"] == "detail" and "database" in body["reason"]
    assert set(body) >= {"detail", "field", "reason", "errors"}
    assert int(headers["retry-after"]) > 0


def _request(
    server: ControlPlaneProcess,
    method: str,
    path: str,
    body: Any = None,
    token: str = "",
    cookie: str = "",
) -> tuple[float, int, Any, dict[str, str]]:
    """(seconds, status, JSON or text body, lower-cased headers)."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    started = time.monotonic()
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    answer: Any
    try:
        answer = json.loads(data) if data else None
    except ValueError:
        answer = data.decode(errors="replace")
    return elapsed, response.status, answer, {k.lower(): v for k, v in response.getheaders()}


def test_health_answers_within_a_second_and_says_what_is_down(
    db_server: ControlPlaneProcess, db_proxy: TcpProxy
) -> None:
    from django.conf import settings

    redis_state = "ok" if settings.REDIS_URL else "off"
    elapsed, status, body, _ = _request(db_server, "GET", "/healthz")
    assert status == 200 and body == {"status": "ok", "database": "ok", "redis": redis_state}
    for fault, state in ((db_proxy.cut, "unreachable"), (db_proxy.hang, "timeout")):
        fault()
        for _ in range(3):  # each time, not only the first (no pile-up of checks)
            elapsed, status, body, _ = _request(db_server, "GET", "/healthz")
            assert elapsed < 1.0, (fault, elapsed)
            print(f"healthz, database {db_proxy.mode}: {status} in {elapsed:.3f} s")
            assert status == 503
            assert body == {"status": "error", "database": state, "redis": redis_state}
        db_proxy.restore()
    elapsed, status, body, _ = _request(db_server, "GET", "/healthz")
    assert status == 200 and elapsed < 1.0, (status, elapsed, body)


def test_health_says_redis_is_down_without_failing_the_process(fleet: Fleet) -> None:
    with HungServer() as hung:
        server = ControlPlaneProcess(server_env(REDIS_URL=hung.url))
        server.start()  # answers 200: a process without Redis still serves writes
        try:
            for _ in range(3):
                elapsed, status, body, _ = _request(server, "GET", "/healthz")
                assert elapsed < 1.0 and status == 200, (elapsed, status)
                assert body == {"status": "degraded", "database": "ok", "redis": "timeout"}
        finally:
            server.stop()


def test_database_cut_answers_json_503s_and_the_first_request_after_it_succeeds(
    db_server: ControlPlaneProcess, db_proxy: TcpProxy, fleet: Fleet
) -> None:
    from django.conf import settings

    elapsed, status, _, _ = _request(
        db_server, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent
    )
    assert status == 200
    circuit = Circuit.objects.get(service=fleet.service)
    bound = settings.DATABASES["default"]["OPTIONS"]["pool"]["timeout"] + 1.5
    cookie = fleet.session_cookie()
    assert _request(db_server, "GET", "/", cookie=cookie)[1] == 200

    db_proxy.cut()
    # The operator API (Django's stack) and the agent sync (the fast path, a sync whose
    # transition must be stored): JSON 503s in the error shape, within the pool's bound.
    elapsed, status, body, headers = _request(
        db_server,
        "POST",
        f"/api/v1/circuits/{circuit.pk}/override/",
        {"state": "forced_open", "reason": "during the cut"},
        token=fleet.api,
    )
    _assert_unavailable(status, body, headers)
    assert elapsed < bound, elapsed
    print(f"\nforce with the database cut: {status} in {elapsed:.2f} s")
    elapsed, status, body, headers = _request(
        db_server, "GET", f"/api/v1/circuits/{circuit.pk}/", token=fleet.api
    )
    _assert_unavailable(status, body, headers)
    # The dashboard: a plain 503 page, not Django's 500.
    elapsed, status, body, headers = _request(db_server, "GET", "/", cookie=cookie)
    assert status == 503 and "database" in body and "retry-after" in headers, (status, body)
    elapsed, status, body, headers = _request(
        db_server, "POST", "/api/v1/agent/sync", _sync_body([_transition(1)]), token=fleet.agent
    )
    assert status == 503 and isinstance(body, dict) and "retry-after" in headers, (status, body)
    assert elapsed < bound, elapsed
    print(f"sync with a transition, the database cut: {status} in {elapsed:.2f} s")
    # A token the process has not seen yet is looked up: the fast path's 503 too.
    other = Service.objects.create(name="search")
    elapsed, status, body, headers = _request(
        db_server,
        "GET",
        "/api/v1/agent/watch?since=0",
        token=create_agent_token(other)[1],
    )
    _assert_unavailable(status, body, headers)

    db_proxy.restore()
    restored = time.monotonic()
    elapsed, status, body, _ = _request(
        db_server, "POST", "/api/v1/agent/sync", _sync_body([_transition(1)]), token=fleet.agent
    )
    assert status == 200 and body["acked_through"] == 1, (status, body)
    elapsed, status, body, _ = _request(
        db_server,
        "POST",
        f"/api/v1/circuits/{circuit.pk}/override/",
        {"state": "forced_open", "reason": "after the cut"},
        token=fleet.api,
    )
    assert status == 201, (status, body)
    recovered = time.monotonic() - restored
    assert recovered < PROMPT + 1.0, recovered
    print(f"first sync and force after the database is back: both done in {recovered:.2f} s")
    assert Transition.objects.filter(circuit=circuit).count() == 1
    assert Override.objects.get(circuit=circuit).reason == "after the cut"


def test_a_connection_killed_mid_transaction_is_a_json_503(
    db_server: ControlPlaneProcess, db_proxy: TcpProxy, fleet: Fleet
) -> None:
    import threading

    import psycopg
    from django.db import connection

    assert _request(db_server, "POST", "/api/v1/agent/sync", _sync_body(), token=fleet.agent)[1]
    circuit = Circuit.objects.get(service=fleet.service)
    params = connection.get_connection_params()
    answers: list[tuple[float, int, Any, dict[str, str]]] = []
    # Hold the circuit's row lock: the force's transaction waits for it, mid-way.
    with psycopg.connect(**params) as holder:
        holder.execute(
            f"SELECT 1 FROM {Circuit._meta.db_table} WHERE id = %s FOR UPDATE", [circuit.pk]
        )
        force = threading.Thread(
            target=lambda: answers.append(
                _request(
                    db_server,
                    "POST",
                    f"/api/v1/circuits/{circuit.pk}/override/",
                    {"state": "forced_open", "reason": "cut mid-way"},
                    token=fleet.api,
                )
            )
        )
        force.start()
        deadline = time.monotonic() + 10
        with psycopg.connect(**params, autocommit=True) as watcher:
            while True:
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                assert time.monotonic() < deadline, "the force never waited for the lock"
                time.sleep(0.02)
        db_proxy.cut()  # the server's connection dies inside its transaction
        force.join(15)
        holder.rollback()
    assert answers
    _, status, body, headers = answers[0]
    _assert_unavailable(status, body, headers)
    db_proxy.restore()
    assert not Override.objects.filter(circuit=circuit).exists()  # nothing half-written
