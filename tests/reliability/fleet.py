"""Real agents with real breakers tripping, and the bookkeeping the fault tests check.

``CountingAgent`` is the library's :class:`~breakers.agent.Agent` unchanged on the wire;
it only records, as the agent itself decides it, which transitions the control plane
acknowledged (the ones the agent forgets) and how every exchange went. ``Fleet`` runs
agents, each with its own registry of breakers whose dependencies fail in phases, so
breakers open, half-open, close and trip again all the time.

Standard library and ``breakers`` only: ``python -m tests.reliability.fleet`` runs a
fleet in a process of its own (the soak's agent processes), with no Django.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, wire
from breakers.agent import Agent

SERVICE = "reliability"


class Boom(Exception):
    """The failure of a dependency in the load."""


@dataclass
class Exchange:
    """One sync exchange: when it started and ended (monotonic), and how it went."""

    at: float
    end: float
    ok: bool
    status: int | None  # HTTP status when there was an answer


class CountingAgent(Agent):
    """The agent, plus a record of what it was acknowledged and of every exchange."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acked: dict[int, Any] = {}  # transition id -> TransitionEvent
        self.exchanges: list[Exchange] = []
        self.statuses: Counter[int] = Counter()
        self._record_lock = threading.Lock()
        self._last = threading.local()  # the status of this thread's last answer

    # The agent forgets exactly what the control plane acknowledged (and it sent).
    def _forget_through(self, acked: int) -> None:
        with self._lock:
            while self._pending and self._pending[0].id <= acked:
                pending = self._pending.popleft()
                self.acked[pending.id] = pending.event

    def _decode(
        self, status: int, data: bytes, what: str, retry_after: float | None = None
    ) -> wire.SyncAnswer:
        self._last.status = status
        with self._record_lock:
            self.statuses[status] += 1
        return super()._decode(status, data, what, retry_after)

    def _sync_exchange(self, http_: Any, timeout: float) -> bool:
        started = time.monotonic()
        self._last.status = None
        ok = False
        try:
            more = super()._sync_exchange(http_, timeout)
            ok = True
        finally:
            status = getattr(self._last, "status", None)
            exchange = Exchange(started, time.monotonic(), ok, status)
            with self._record_lock:
                self.exchanges.append(exchange)
        return more

    @property
    def produced(self) -> int:
        """Transitions the breakers produced (the agent's ids run 1..produced)."""
        return self._next_transition_id


@dataclass
class Phase:
    """A dependency's failure probability, which flips every ``period`` seconds."""

    period: float
    high: float = 0.9
    low: float = 0.05
    offset: float = 0.0

    def failure_probability(self, now: float) -> float:
        return self.high if int((now + self.offset) / self.period) % 2 == 0 else self.low


@dataclass
class FleetAgent:
    agent: CountingAgent
    registry: CircuitBreakerRegistry
    phases: dict[str, Phase] = field(default_factory=dict)


class Fleet:
    """``agents`` agents, ``breakers`` breakers each, a load thread calling them all.

    Breakers open after 3 consecutive failures and stay open ``open_timeout`` seconds,
    so with dependencies that fail 90 % of the time for a while and 5 % after, each
    breaker produces a few transitions a second.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        service: str = SERVICE,
        agents: int = 3,
        breakers: int = 4,
        tick: float = 0.02,
        open_timeout: float = 0.3,
        seed: int = 11,
        name: str = "agent",
        **agent_kwargs: Any,
    ) -> None:
        self.rng = random.Random(seed)
        self.tick = tick
        agent_kwargs.setdefault("interval", 2.0)
        agent_kwargs.setdefault("coalesce", 0.05)
        agent_kwargs.setdefault("request_timeout", 3.0)
        agent_kwargs.setdefault("backoff_initial", 0.1)
        agent_kwargs.setdefault("backoff_max", 1.0)
        config = CircuitBreakerConfig(
            failure_threshold=3,
            success_threshold=1,
            half_open_max_calls=1,
            timeout=open_timeout,
            minimum_calls=1000,  # the consecutive count trips, not the window
            sliding_window_size=1000,
        )
        self.members: list[FleetAgent] = []
        for i in range(agents):
            registry = CircuitBreakerRegistry()
            phases = {}
            for b in range(breakers):
                dep = f"dep_{b}"
                registry.get_or_create(dep, config)
                phases[dep] = Phase(period=1.0 + b * 0.7, offset=self.rng.uniform(0, 3))
            agent = CountingAgent(
                url,
                token,
                service,
                registry=registry,
                instance_id=f"{name}-{os.getpid()}-{i}",
                **agent_kwargs,
            )
            self.members.append(FleetAgent(agent, registry, phases))
        self._stop_load = threading.Event()
        self._load: threading.Thread | None = None
        self.calls = 0

    @property
    def agents(self) -> list[CountingAgent]:
        return [m.agent for m in self.members]

    def start(self) -> Fleet:
        for member in self.members:
            member.agent.start()
        self._load = threading.Thread(target=self._run_load, name="fleet-load", daemon=True)
        self._load.start()
        return self

    def _run_load(self) -> None:
        rng = random.Random(self.rng.random())
        while not self._stop_load.wait(self.tick):
            now = time.monotonic()
            for member in self.members:
                for breaker in member.registry:
                    p = member.phases[breaker.name].failure_probability(now)
                    fails = rng.random() < p
                    with contextlib.suppress(Exception):  # Boom, or rejected while open
                        breaker.call(_outcome, fails)
                    self.calls += 1

    def stop_load(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            self._load.join(5)

    def drain(self, timeout: float) -> bool:
        """Wait until every agent has been acknowledged everything; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(a.pending_transitions == 0 for a in self.agents):
                return True
            for agent in self.agents:
                if agent.pending_transitions:
                    agent.request_sync()
            time.sleep(0.05)
        return all(a.pending_transitions == 0 for a in self.agents)

    def stop(self) -> None:
        self.stop_load()
        for agent in self.agents:
            agent.stop(timeout=1.0)

    def produced(self) -> int:
        return sum(a.produced for a in self.agents)

    def acked(self) -> int:
        return sum(len(a.acked) for a in self.agents)

    def failed_exchanges(self, since: float = 0.0) -> int:
        return sum(1 for a in self.agents for e in list(a.exchanges) if e.at >= since and not e.ok)

    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for agent in self.agents:
            total.update(agent.statuses)
        return total

    def record(self) -> dict[str, Any]:
        """Everything the checks need, as JSON (the soak's agent processes write it)."""
        return {
            "pid": os.getpid(),
            "calls": self.calls,
            "agents": [agent_record(a) for a in self.agents],
        }


def _outcome(fails: bool) -> None:
    if fails:
        raise Boom


def agent_record(agent: CountingAgent) -> dict[str, Any]:
    stats = agent.stats()
    return {
        "instance": agent.instance_id,
        "produced": agent.produced,
        "pending": stats["pending_transitions"],
        "dropped": stats["dropped_transitions"],
        "syncs_ok": stats["syncs_ok"],
        "syncs_failed": stats["syncs_failed"],
        "watch_failed": stats["watch_failed"],
        "statuses": {str(k): v for k, v in agent.statuses.items()},
        "acked": {str(i): transition_key(e) for i, e in sorted(agent.acked.items())},
        "exchanges": [[e.at, e.end, e.ok, e.status] for e in agent.exchanges],
    }


def transition_key(event: Any) -> list[str]:
    """What identifies a transition's content: circuit, from, to, at (microseconds)."""
    return [
        event.breaker,
        str(getattr(event.from_state, "value", event.from_state)),
        str(getattr(event.to_state, "value", event.to_state)),
        wire.format_timestamp(event.at),
    ]


def outage(agents: list[CountingAgent], since: float) -> float:
    """The longest time an agent went without a successful sync because of a fault that
    began at ``since``: from its last success (or ``since``) to the end of its first
    success after a failure; 0 when no sync failed."""
    worst = 0.0
    for agent in agents:
        exchanges = sorted(list(agent.exchanges), key=_at)
        last_ok = since
        failing_since: float | None = None
        for e in exchanges:
            if e.ok:
                if failing_since is not None:
                    worst = max(worst, e.end - failing_since)
                    failing_since = None
                last_ok = max(last_ok, e.end)
            elif e.at >= since and failing_since is None:
                failing_since = last_ok
        if failing_since is not None:
            worst = max(worst, time.monotonic() - failing_since)
    return worst


def _at(e: Exchange) -> float:
    return e.at


# -- a fleet in a process of its own (the soak) -------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--service", default=SERVICE)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--breakers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--name", default="agent")
    parser.add_argument("--out", required=True, help="where to write the record as JSON")
    parser.add_argument("--drain", type=float, default=60.0)
    args = parser.parse_args(argv)
    token = os.environ["SWITCHYARD_TOKEN"]
    fleet = Fleet(
        args.url,
        token,
        service=args.service,
        agents=args.agents,
        breakers=args.breakers,
        seed=args.seed,
        name=args.name,
        interval=5.0,
        request_timeout=5.0,
        backoff_initial=0.5,
        backoff_max=5.0,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet.start()
    print(f"fleet {args.name} started: pid {os.getpid()}", flush=True)
    stop.wait()
    fleet.stop_load()
    drained = fleet.drain(args.drain)
    for agent in fleet.agents:
        agent.stop(timeout=1.0)
    record = fleet.record()
    record["drained"] = drained
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
