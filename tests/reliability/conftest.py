"""Fixtures of the fault tests: a control plane of the test's own (uvicorn, killable),
the service the fleet reports as with its agent token, and the cost of each fault,
printed as it is measured and again in pytest's terminal summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Service
from tests.e2e.conftest import ControlPlaneProcess, server_env
from tests.reliability.costs import COSTS
from tests.reliability.fleet import SERVICE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COSTS:
        terminalreporter.section("reliability: what each fault cost")
        for line in COSTS:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _quiet_breakers() -> Iterator[None]:
    """Thousands of transitions a minute: the library's per-transition log stays out."""
    log = logging.getLogger("breakers")
    level = log.level
    log.setLevel(logging.WARNING)
    yield
    log.setLevel(level)


@pytest.fixture
def agent_service(transactional_db: None) -> tuple[Service, str]:
    service = Service.objects.create(name=SERVICE)
    return service, create_agent_token(service)[1]


@pytest.fixture
def start_control_plane(
    transactional_db: None,
) -> Iterator[Callable[..., ControlPlaneProcess]]:
    """start_control_plane(**env): a control plane of this test (stopped at the end)."""
    started: list[ControlPlaneProcess] = []

    def start(**env: str) -> ControlPlaneProcess:
        server = ControlPlaneProcess(server_env(**env))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
