"""The web server killed with SIGKILL during steady agent traffic, and started again on
the same port: no acknowledged transition lost or stored twice, every agent back."""

from __future__ import annotations

import pytest

from tests.reliability.drill import assert_nothing_lost, run_drill

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def test_web_server_sigkill_and_restart_loses_and_duplicates_nothing(
    start_control_plane, agent_service
):
    _, token = agent_service
    server = start_control_plane()

    def during(fleet, started):
        # Nothing answers while it is down; the breakers keep tripping meanwhile.
        assert fleet.failed_exchanges(since=started) >= len(fleet.agents)
        assert any(a.pending_transitions for a in fleet.agents)

    result = run_drill(
        "web server SIGKILL, restarted after 6 s",
        server.url,
        token,
        inject=server.kill,
        restore=server.start,
        seconds=6.0,
        during=during,
    )
    assert_nothing_lost(result)
    assert result.retried >= 3
    assert result.outage >= 6.0
