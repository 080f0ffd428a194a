"""A stand-in application: breakers plus the agent in their own process, driven over
stdin by the browser test and the dashboard benchmark, one command per line.

    python tests/dashboard/app_process.py URL TOKEN SERVICE NAME [NAME ...]

Commands: ``trip NAME`` (failing calls until open), ``reset NAME``, ``state NAME``,
``stats``. Each answers one line on stdout: ``ok <state>`` or JSON for ``stats``.
"""

from __future__ import annotations

import contextlib
import json
import sys

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent


class Boom(Exception):
    """The failure the application's dependency raises."""


def fail() -> None:
    raise Boom


def main(argv: list[str]) -> int:
    url, token, service, *names = argv
    registry = CircuitBreakerRegistry()
    config = CircuitBreakerConfig(failure_threshold=3, timeout=120)
    breakers = {name: registry.get_or_create(name, config) for name in names}
    agent = Agent(
        url,
        token,
        service,
        registry=registry,
        interval=30.0,
        coalesce=0.0,
        backoff_initial=0.1,
        backoff_max=0.5,
        request_timeout=5.0,
        # Report what the control plane pushed within half a second (the dashboard shows it).
        report_delay_max=0.5,
    )
    with agent:
        print("ready", flush=True)
        for line in sys.stdin:
            command, _, name = line.strip().partition(" ")
            if command == "stats":
                print(json.dumps(agent.stats()), flush=True)
                continue
            breaker = breakers[name]
            if command == "trip":
                for _ in range(100):
                    if breaker.state is CircuitState.OPEN:
                        break
                    with contextlib.suppress(Exception):
                        breaker.call(fail)
            elif command == "reset":
                breaker.reset()
            print(f"ok {breaker.state.value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
