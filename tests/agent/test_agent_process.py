"""The agent across fork and interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from breakers import CircuitBreakerRegistry
from tests.agent.conftest import TOKEN
from tests.agent.test_agent_sync import make_agent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_its_own_thread_with_a_new_instance_id(plane):
    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("payments")
    agent = make_agent(plane, registry, watch=False, coalesce=0.0)
    with agent:
        assert plane.wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
        breaker.force_open()
        breaker.release()
        assert plane.wait_for(lambda: agent.pending_transitions == 0)
        parent_id = agent.instance_id
        pid = os.fork()
        if pid == 0:  # the child: make one transition and give the agent time to send it
            code = 1
            try:
                breaker.force_open()
                if plane.wait_for(lambda: agent.pending_transitions == 0, timeout=10.0):
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    child_syncs = [r for r in plane.syncs() if r.json["instance"]["pid"] == pid]
    assert child_syncs, "the child never synced"
    child_id = child_syncs[0].json["instance"]["id"]
    assert child_id != parent_id
    assert {
        r.json["instance"]["id"] for r in plane.syncs() if r.json["instance"]["pid"] != pid
    } == {parent_id}
    # The child numbers its own transitions from 1 and did not resend the parent's.
    sent = [t for r in child_syncs for t in r.json["transitions"]]
    assert [(t["id"], t["to"]) for t in sent] == [(1, "forced_open")]
    # The parent's agent is still alive and still reporting.
    breaker.release()


def test_interpreter_exit_flushes_pending_transitions(plane):
    script = textwrap.dedent(
        f"""
        from breakers import CircuitBreakerRegistry
        from breakers.agent import Agent

        registry = CircuitBreakerRegistry()
        breaker = registry.get_or_create("payments")
        agent = Agent({plane.url!r}, {TOKEN!r}, "checkout", registry=registry,
                      interval=60.0, coalesce=10.0, watch=False, exit_flush_timeout=2.0)
        agent.start()
        breaker.force_open("shutting down")
        # No stop(): the atexit hook must send the transition.
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=20, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    sent = [t for r in plane.syncs() for t in r.json["transitions"]]
    assert [(t["id"], t["to"]) for t in sent] == [(1, "forced_open")]
