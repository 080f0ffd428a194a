"""The e2e fixture's server process: a start-up that fails leaves nothing running."""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import ControlPlaneProcess, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the group (its id is the leader's pid)
    except ProcessLookupError:
        return True
    return False


def test_a_start_that_times_out_kills_the_server_and_its_group() -> None:
    # Up, but never healthy: every request's Host is refused (400), so start() times out.
    server = ControlPlaneProcess(server_env(ALLOWED_HOSTS="nowhere.invalid"))
    with pytest.raises(RuntimeError, match="did not come up"):
        server.start(timeout=3.0)
    (pid,) = server.pids
    assert server.proc is None
    assert _gone(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_exits_at_start_is_reported_and_reaped() -> None:
    server = ControlPlaneProcess(server_env(), app=["no_such_module:application"])
    with pytest.raises(RuntimeError, match="exited at start"):
        server.start(timeout=30.0)
    (pid,) = server.pids
    assert server.proc is None and _gone(pid)
