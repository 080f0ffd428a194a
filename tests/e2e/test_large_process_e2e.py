"""End to end: a process with 5,000 breakers, its agent here, the control plane in
uvicorn. Every breaker is on the server within three sync intervals, each sync within
the server's limits, and a transition is stored once."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from breakers import CircuitBreakerRegistry, clock
from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Service, Snapshot, Transition
from tests.e2e.conftest import ControlPlaneProcess, server_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BREAKERS = 5000
POLL_INTERVAL = 2  # seconds, the server's (agents follow it)


@pytest.fixture
def large_control_plane(transactional_db: None) -> Iterator[ControlPlaneProcess]:
    """A control plane that lets one service have 5,000 circuits."""
    server = ControlPlaneProcess(
        server_env(
            SWITCHYARD_MAX_CIRCUITS_PER_SERVICE="10000",
            SWITCHYARD_POLL_INTERVAL=str(POLL_INTERVAL),
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def snapshots(service: Service) -> int:
    return Snapshot.objects.filter(circuit__service=service).count()


def test_5000_breakers_are_on_the_server_within_three_intervals(
    large_control_plane: ControlPlaneProcess,
) -> None:
    service = Service.objects.create(name="bulk")
    token = create_agent_token(service)[1]
    registry = CircuitBreakerRegistry()
    for i in range(BREAKERS):
        registry.get_or_create(f"dep-{i:05d}")
    agent = Agent(
        large_control_plane.url,
        token,
        "bulk",
        registry=registry,
        interval=float(POLL_INTERVAL),
        request_timeout=10.0,
        backoff_initial=0.1,
        backoff_max=0.5,
        watch=False,
    )
    with agent:
        assert wait_for(
            lambda: snapshots(service) == BREAKERS, timeout=3 * POLL_INTERVAL, interval=0.1
        ), (snapshots(service), agent.stats(), large_control_plane.output())
        assert agent.stats()["too_large"] == 0
        registry.get("dep-04321").force_open("drill")
        assert wait_for(lambda: agent.pending_transitions == 0, timeout=10.0), agent.stats()
        now = clock.seconds()
    ((name, seq, to_state),) = Transition.objects.filter(circuit__service=service).values_list(
        "circuit__name", "seq", "to_state"
    )
    assert (name, seq, to_state) == ("dep-04321", 1, "forced_open")
    # Every row carries the clock its counters were read at, in this process's terms.
    clocks = list(Snapshot.objects.filter(circuit__service=service).values_list("clock", flat=True))
    assert all(c is not None and 0.0 <= c <= now for c in clocks)


@pytest.fixture
def small_limits_control_plane(transactional_db: None) -> Iterator[ControlPlaneProcess]:
    """A control plane that takes at most 50 breakers per sync."""
    server = ControlPlaneProcess(
        server_env(SWITCHYARD_SYNC_MAX_BREAKERS="50", SWITCHYARD_POLL_INTERVAL="2")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_agent_reads_the_servers_413_and_sends_smaller_syncs(
    small_limits_control_plane: ControlPlaneProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # The agent starts out assuming 500 breakers per sync: its first sync of 200 is
    # refused with a 413 naming `breakers`, which it reads and halves until it fits.
    service = Service.objects.create(name="bulk")
    token = create_agent_token(service)[1]
    registry = CircuitBreakerRegistry()
    for i in range(200):
        registry.get_or_create(f"dep-{i:03d}")
    agent = Agent(
        small_limits_control_plane.url,
        token,
        "bulk",
        registry=registry,
        interval=2.0,
        request_timeout=10.0,
        backoff_initial=0.1,
        backoff_max=0.5,
        watch=False,
    )
    with caplog.at_level(logging.INFO, logger="breakers.agent"), agent:
        assert wait_for(lambda: snapshots(service) == 200, timeout=10.0, interval=0.1), (
            snapshots(service),
            agent.stats(),
            small_limits_control_plane.output(),
        )
    assert agent.stats()["too_large"] == 0  # nothing left out: every chunk fitted
    refusals = [r.getMessage() for r in caplog.records if "HTTP 413" in r.getMessage()]
    assert refusals and "at most 50 items per sync, got 200" in refusals[0], refusals
