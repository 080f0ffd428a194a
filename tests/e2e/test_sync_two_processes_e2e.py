"""Two control plane processes (two hosts behind a balancer) take the syncs of one
instance, over HTTP, through the sync's group commit: nothing lost, nothing stored twice."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import Instance, Service, Snapshot, Transition
from tests.e2e.conftest import ControlPlaneProcess, server_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_hosts(transactional_db: None) -> Iterator[list[ControlPlaneProcess]]:
    servers = [ControlPlaneProcess(server_env()) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


class SimAgent:
    """What the real agent does with transitions: keeps each until acknowledged, sends
    all unacknowledged ones with every sync, forgets up to min(acked, highest sent)."""

    def __init__(self, rng: random.Random, breakers: int = 3) -> None:
        self.rng = rng
        self.states = ["closed"] * breakers
        self.pending: list[dict[str, Any]] = []
        self.next_id = 1

    def happen(self, count: int) -> None:
        for _ in range(count):
            b = self.rng.randrange(len(self.states))
            old = self.states[b]
            new = "open" if old == "closed" else "closed"
            self.states[b] = new
            self.pending.append(
                {
                    "id": self.next_id,
                    "breaker": f"dep_{b}",
                    "from": old,
                    "to": new,
                    "at": "2026-11-28T05:00:00Z",
                    "reason": "failure_rate" if new == "open" else "probes_succeeded",
                }
            )
            self.next_id += 1

    def body(self) -> dict[str, Any]:
        return {
            "protocol": 1,
            "service": "checkout",
            "instance": {"id": "web-1", "started_at": "2026-11-28T04:00:00Z"},
            "breakers": [
                {"name": f"dep_{i}", "state": state, "calls": self.next_id * 10}
                for i, state in enumerate(self.states)
            ],
            "transitions": list(self.pending),
        }

    def answered(self, body: dict[str, Any], answer: dict[str, Any]) -> None:
        sent = max((t["id"] for t in body["transitions"]), default=0)
        done = min(answer["acked_through"], sent)
        self.pending = [t for t in self.pending if t["id"] > done]


def _send(
    server: ControlPlaneProcess, body: dict[str, Any], token: str, into: list[tuple[int, Any]]
) -> None:
    into.append(server.request("POST", "/api/v1/agent/sync", body, token))


def test_two_hosts_take_one_instances_syncs_with_nothing_lost_and_no_duplicate(
    two_hosts: list[ControlPlaneProcess],
) -> None:
    service = Service.objects.create(name="checkout")
    _, token = create_agent_token(service)
    agent = SimAgent(random.Random(7))
    for round_no in range(40):
        agent.happen(agent.rng.choice([0, 0, 1, 1, 3]))
        body = agent.body()
        if round_no % 5 == 4:
            # The answer was lost (a timeout): both hosts get the same batch at once.
            answers: list[tuple[int, Any]] = []

            threads = [
                threading.Thread(target=_send, args=(server, body, token, answers))
                for server in two_hosts
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert [status for status, _ in answers] == [200, 200], answers
            agent.answered(body, max(answers, key=lambda a: int(a[1]["acked_through"]))[1])
        else:
            status, answer = two_hosts[round_no % 2].request(
                "POST", "/api/v1/agent/sync", body, token
            )
            assert status == 200, answer
            agent.answered(body, answer)
    while agent.pending:  # drain the rest, as the agent would
        body = agent.body()
        status, answer = two_hosts[0].request("POST", "/api/v1/agent/sync", body, token)
        assert status == 200, answer
        agent.answered(body, answer)

    sent = agent.next_id - 1
    assert sent > 10
    seqs = sorted(Transition.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, sent + 1))  # every transition, once
    assert Instance.objects.get().acked_through == sent
    # A state change without a transition in its sync is written by the next flush,
    # after the answer: wait for it, with a deadline.
    expected = {f"dep_{i}": s for i, s in enumerate(agent.states)}
    deadline = time.monotonic() + 10
    while dict(Snapshot.objects.values_list("circuit__name", "state")) != expected:
        assert time.monotonic() < deadline, "the last states were not written"
        time.sleep(0.05)
