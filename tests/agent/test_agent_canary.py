"""The agent runs a breaker's canary config exactly when breakers.canary selects its
stable identity, keeps it across restarts, and leaves it when the canary goes away."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.agent import Agent
from breakers.canary import selected
from tests.agent.conftest import TOKEN, LoopbackControlPlane

ROOT = Path(__file__).resolve().parents[2]
BASE = CircuitBreakerConfig(failure_threshold=5).to_dict()
CANARY = dict(BASE, failure_threshold=2)


def entry(select: dict[str, Any] | None) -> dict[str, Any]:
    """The desired state of "payments": v6 for every instance, v7 for the canary."""
    out: dict[str, Any] = {"config_version": 6, "config": BASE, "override": None}
    if select is not None:
        out["canary"] = {"rollout": 1, "config_version": 7, "config": CANARY, "select": select}
    return out


@contextlib.contextmanager
def fleet(plane: LoopbackControlPlane, ids: list[str]) -> Iterator[dict[str, Any]]:
    """One agent per id (each with its own registry and breaker), watching."""
    breakers: dict[str, Any] = {}
    agents = []
    try:
        for instance_id in ids:
            registry = CircuitBreakerRegistry()
            breakers[instance_id] = registry.get_or_create("payments")
            agent = Agent(
                plane.url,
                TOKEN,
                "checkout",
                registry=registry,
                instance_id=instance_id,
                interval=60.0,
                request_timeout=2.0,
            )
            agents.append(agent.start())
        yield breakers
    finally:
        for agent in agents:
            agent.stop(timeout=1.0)


def test_exactly_the_selected_instances_run_the_canary_until_it_is_withdrawn(
    plane: LoopbackControlPlane,
) -> None:
    ids = [f"web-{n}" for n in range(20)]
    select = {"percent": 40, "salt": "3f2a"}
    chosen = {i for i in ids if selected(select, i)}
    assert 2 <= len(chosen) <= 18  # both groups exist for this salt
    plane.breakers = {"payments": entry(select)}
    with fleet(plane, ids) as breakers:
        assert plane.wait_for(lambda: all(b.config_version for b in breakers.values()))
        running = {i: b.config_version for i, b in breakers.items()}
        assert {i for i, v in running.items() if v == 7} == chosen
        assert {i for i, v in running.items() if v == 6} == set(ids) - chosen
        assert all(breakers[i].config.failure_threshold == 2 for i in chosen)
        # Rolled back: the canary key is gone, every instance runs v6 (the watch wakes them).
        plane.publish({"payments": entry(None)})
        assert plane.wait_for(lambda: all(b.config_version == 6 for b in breakers.values()))
        assert all(b.config.failure_threshold == 5 for b in breakers.values())


def test_named_instances_run_the_canary_and_a_malformed_canary_is_ignored(
    plane: LoopbackControlPlane,
) -> None:
    plane.breakers = {"payments": entry({"instances": ["web-1"]})}
    with fleet(plane, ["web-0", "web-1"]) as breakers:
        assert plane.wait_for(lambda: all(b.config_version for b in breakers.values()))
        assert (breakers["web-0"].config_version, breakers["web-1"].config_version) == (6, 7)
        plane.publish({"payments": entry({"percent": 250, "salt": "x"})})
        assert plane.wait_for(lambda: breakers["web-1"].config_version == 6)
        assert breakers["web-0"].config_version == 6


def run_process(plane: LoopbackControlPlane, instance_id: str | None = None) -> dict[str, Any]:
    """One run of tests/agent/canary_app.py: a new process, a new instance id."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "tests.agent.canary_app", plane.url, TOKEN]
    result = subprocess.run(
        [*args, *([instance_id] if instance_id else [])],
        env=env,
        cwd=ROOT,
        timeout=30,
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def salt_for(identity: str, *, picked: bool) -> str:
    """A salt whose 50 % selector picks (or leaves) ``identity``."""
    for n in range(1000):
        if selected({"percent": 50, "salt": f"s{n}"}, identity) is picked:
            return f"s{n}"
    raise AssertionError("no salt found")


@pytest.mark.parametrize("picked", [True, False])
def test_a_restarted_process_with_a_default_id_stays_in_its_group(
    plane: LoopbackControlPlane, picked: bool
) -> None:
    hostname = socket.gethostname()
    plane.breakers = {"payments": entry({"percent": 50, "salt": salt_for(hostname, picked=picked)})}
    first, second = run_process(plane), run_process(plane)
    assert first["instance_id"] != second["instance_id"]  # another process each time
    assert first["identity"] == second["identity"] == hostname
    assert first["config_version"] == second["config_version"] == (7 if picked else 6)


def test_a_restarted_process_with_a_fixed_id_stays_named(plane: LoopbackControlPlane) -> None:
    plane.breakers = {"payments": entry({"instances": ["checkout-blue"]})}
    runs = [run_process(plane, "checkout-blue") for _ in range(2)]
    others = [run_process(plane, "checkout-green") for _ in range(2)]
    assert [r["config_version"] for r in runs] == [7, 7]
    assert [r["config_version"] for r in others] == [6, 6]
