"""Agent request rates: token buckets per agent token (sync, watch) and per instance (the
watch); over the limit, 429 with Retry-After in the API's error shape."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from controlplane.circuits import ratelimit
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Service
from controlplane.circuits.ratelimit import RateLimiter
from tests.conftest import SyncBody
from tests.e2e.conftest import ControlPlaneProcess, server_env


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_buckets() -> Iterator[None]:
    ratelimit.forget()
    yield
    ratelimit.forget()


# -- the bucket --------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 5, clock=clock)
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    assert limiter.take("a") == pytest.approx(0.5)  # one request back in 1/2 s
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # refused requests take nothing
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    # Another key has its own bucket.
    assert limiter.take("b") == 0.0
    # An idle bucket fills up to the burst, no further.
    clock.now += 3600
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 5 + [pytest.approx(0.5)]


def test_a_steady_client_under_the_rate_is_never_refused() -> None:
    clock = FakeClock()
    limiter = RateLimiter(400, 400, clock=clock)  # 2,000 instances syncing every 5 s
    for _ in range(10_000):
        clock.now += 1 / 400
        assert limiter.take("fleet") == 0.0


def test_rate_zero_is_no_limit_and_the_table_is_bounded() -> None:
    clock = FakeClock()
    assert all(RateLimiter(0, 1, clock=clock).take("a") == 0.0 for _ in range(1000))
    limiter = RateLimiter(1, 1, clock=clock, max_keys=3)
    for key in range(10):
        limiter.take(key)
        assert len(limiter) <= 3


@pytest.mark.parametrize(("rate", "burst", "field"), [(-1, 1, "rate"), (1, 0, "burst")])
def test_bad_limits_name_the_parameter(rate: float, burst: int, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must"):
        RateLimiter(rate, burst)


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [ratelimit.retry_after(w) for w in (0.001, 0.5, 1.0, 1.2, 30)] == [
        "1",
        "1",
        "1",
        "2",
        "30",
    ]


# -- the Django view of the sync (test client) -----------------------------------------------


@pytest.mark.django_db
@override_settings(SWITCHYARD_AGENT_RATE_PER_SECOND=1, SWITCHYARD_AGENT_RATE_BURST=3)
def test_the_sync_view_refuses_a_token_past_its_budget(
    agent_token: str, other_agent_token: str, sync_body: SyncBody
) -> None:
    client = Client()

    def sync(token: str) -> Any:
        return client.post(
            "/api/v1/agent/sync",
            json.dumps(sync_body()),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )

    assert [sync(agent_token).status_code for _ in range(3)] == [200, 200, 200]
    refused = sync(agent_token)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    reason = "too many requests with this agent token; retry after 1 s"
    assert refused.json() == {
        "detail": reason,
        "field": "detail",
        "reason": reason,
        "errors": {"detail": reason},
    }
    # Another token (another service, or another fleet) has its own budget.
    assert sync(other_agent_token).status_code == 200


# -- over real HTTP ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[ControlPlaneProcess]:
    with django_db_blocker.unblock():
        env = server_env(
            SWITCHYARD_AGENT_RATE_PER_SECOND="1",
            SWITCHYARD_AGENT_RATE_BURST="10",
            SWITCHYARD_AGENT_WATCH_RATE_PER_SECOND="1",
            SWITCHYARD_AGENT_WATCH_RATE_BURST="5",
        )
    process = ControlPlaneProcess(env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.django_db(transaction=True)
def test_a_spinning_agent_gets_429_and_a_calm_one_does_not(
    limited_server: ControlPlaneProcess, sync_body: SyncBody
) -> None:
    service = Service.objects.create(name="checkout", desired_version=3)
    token = create_agent_token(service)[1]
    calm_token = create_agent_token(Service.objects.create(name="search", desired_version=3))[1]

    def watch(instance: str, tok: str = token) -> int:
        # since=0 is behind the service's version: answered at once, like a spinning agent.
        return limited_server.request(
            "GET", f"/api/v1/agent/watch?since=0&instance={instance}", token=tok
        )[0]

    # One instance asking again and again: its burst (5), then refused.
    spinning = [watch("spinner") for _ in range(30)]
    assert spinning[:5] == [200] * 5
    assert spinning.count(429) >= 10  # all but about one a second
    # Another instance of the same service and token is not held back by it.
    assert watch("calm") == 200
    # The 429's shape and Retry-After.
    conn = http.client.HTTPConnection("127.0.0.1", limited_server.port, timeout=10)
    try:
        conn.request(
            "GET",
            "/api/v1/agent/watch?since=0&instance=spinner",
            headers={"Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 429
    assert response.getheader("Retry-After") == "1"
    assert body["field"] == "detail"
    assert body["reason"] == "too many requests from instance 'spinner'; retry after 1 s"

    # The sync: per token, burst 10 at 1/s. A client syncing in a tight loop is refused ...
    def sync(tok: str, instance: str) -> int:
        return limited_server.request(
            "POST", "/api/v1/agent/sync", sync_body(instance={"id": instance}), token=tok
        )[0]

    statuses = [sync(token, "spinner") for _ in range(40)]
    assert statuses[:10] == [200] * 10
    assert 429 in statuses
    # ... while an agent of another token, syncing as agents do, is not.
    assert [sync(calm_token, "calm") for _ in range(3)] == [200] * 3
