"""The agent honours Retry-After (a rate-limited 429, a 503): it waits at least that
long, up to its backoff_max, before the next sync or watch; the watch names its instance
(the key of the server's per-instance rate limit)."""

from __future__ import annotations

import pytest

from breakers import CircuitBreakerRegistry
from breakers.agent import MAX_RETRY_AFTER, Agent, _retry_after
from tests.agent.conftest import TOKEN, LoopbackControlPlane, Recorded

SLOW_DOWN = b'{"detail": "too many requests", "field": "detail"}'


def _agent(plane: LoopbackControlPlane, **kwargs: object) -> Agent:
    return Agent(
        plane.url,
        TOKEN,
        "checkout",
        registry=CircuitBreakerRegistry(),
        instance_id="web-1",
        interval=60.0,
        backoff_initial=0.05,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("status", "retry_after"), [(429, "30"), (503, "30")])
def test_a_refused_sync_waits_as_long_as_the_server_asks(
    plane: LoopbackControlPlane, status: int, retry_after: str
) -> None:
    def refuse(req: Recorded) -> tuple[int, bytes, dict[str, str]] | None:
        if req.path.endswith("/sync"):
            return status, SLOW_DOWN, {"Retry-After": retry_after}
        return None

    plane.sync_behaviour = refuse
    agent = _agent(plane, watch=False, backoff_max=60.0)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] == 1)
        # Its own backoff after one failure is at most 0.05 s; the server asked for 30.
        with agent._lock:
            wait = agent._next_sync_at - agent._mono()
        assert 25.0 < wait <= 45.0  # 30 s, plus up to half again of jitter
        assert len(plane.syncs()) == 1
        plane.sync_behaviour = None


def test_retry_after_is_bounded_by_backoff_max(plane: LoopbackControlPlane) -> None:
    plane.sync_behaviour = lambda req: (429, SLOW_DOWN, {"Retry-After": "3600"})
    agent = _agent(plane, watch=False, backoff_max=2.0)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_failed"] >= 1)
        with agent._lock:
            wait = agent._next_sync_at - agent._mono()
        assert wait <= 2.0
        plane.sync_behaviour = None


def test_a_refused_watch_waits_as_long_as_the_server_asks(plane: LoopbackControlPlane) -> None:
    def refuse_watch(req: Recorded) -> tuple[int, bytes, dict[str, str]] | None:
        if req.path.endswith("/watch"):
            return 429, SLOW_DOWN, {"Retry-After": "20"}
        return None

    plane.sync_behaviour = refuse_watch
    agent = _agent(plane, backoff_max=60.0)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["watch_failed"] == 1)
        assert plane.wait_for(lambda: agent._watch_resume_at > 0)
        assert agent._watch_resume_at - agent._mono() > 15.0
        assert len(plane.watches()) == 1
        assert plane.watches()[0].query["instance"] == "web-1"
        plane.sync_behaviour = None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("1e12", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_header_values(header: str | None, seconds: float | None) -> None:
    assert _retry_after(header) == seconds
