"""PostgreSQL and Redis made unreachable for the control plane alone, during steady
agent traffic, through the TCP proxy of ``tests/faults.py``: the test process and every
other database on the server keep their direct connections.

- PostgreSQL gone (connections cut, new ones refused) and hung (nothing answers):
  syncs fail while it lasts; afterwards every agent syncs again and every transition
  it was acknowledged is stored once.
- Redis hung and gone: live events degrade, the durable writes do not: agents keep
  being acknowledged during the fault, no sync waits out the agent's timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.e2e.conftest import database_url
from tests.faults import TcpProxy
from tests.reliability.drill import assert_nothing_lost, run_drill
from tests.reliability.processes import port_of, through

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

HELD = 6.0
SYNC_TIMEOUT = 5.0  # the fleet's request_timeout: the agent's default


@pytest.fixture
def pg_proxy(transactional_db: None) -> Iterator[TcpProxy]:
    with TcpProxy(port_of(database_url(), 5432)) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL)")
    with TcpProxy(port_of(settings.REDIS_URL, 6379)) as proxy:
        yield proxy


@pytest.mark.parametrize("mode", ["gone", "hung"])
def test_postgres_unreachable_loses_and_duplicates_nothing(
    start_control_plane, agent_service, pg_proxy, mode
):
    _, token = agent_service
    server = start_control_plane(DATABASE_URL=through(database_url(), pg_proxy.port))
    inject = pg_proxy.cut if mode == "gone" else pg_proxy.hang

    def during(fleet, started):
        assert fleet.failed_exchanges(since=started) >= 1  # it was a fault for them
        assert any(a.pending_transitions for a in fleet.agents)

    result = run_drill(
        f"PostgreSQL {mode} for {HELD:g} s",
        server.url,
        token,
        inject=inject,
        restore=pg_proxy.restore,
        seconds=HELD,
        during=during,
        request_timeout=SYNC_TIMEOUT,
    )
    assert_nothing_lost(result)


@pytest.mark.parametrize("mode", ["hung", "gone"])
def test_redis_unreachable_keeps_durable_writes_going(
    start_control_plane, agent_service, redis_proxy, mode
):
    _, token = agent_service
    server = start_control_plane(REDIS_URL=through(settings.REDIS_URL, redis_proxy.port))
    inject = redis_proxy.hang if mode == "hung" else redis_proxy.cut
    result = run_drill(
        f"Redis {mode} for {HELD:g} s",
        server.url,
        token,
        inject=inject,
        restore=redis_proxy.restore,
        seconds=HELD,
        request_timeout=SYNC_TIMEOUT,
    )
    assert_nothing_lost(result)
    # The writes that must be durable went on while Redis was away.
    assert result.acked_during > 0, result
    assert result.slowest_sync < SYNC_TIMEOUT, result
    assert result.errors_5xx == 0, result
