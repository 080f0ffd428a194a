"""One simulated service of the demo fleet, as its own process.

``python -m controlplane.demo.service checkout`` (with SWITCHYARD_URL, SWITCHYARD_TOKEN
and SWITCHYARD_SERVICE set) protects each of the service's dependencies with a
breaker from the process-wide registry, starts the agent, and calls every dependency
CALLS_PER_SECOND times a second. A dependency fails at the rate its schedule gives for
that moment. Transitions are printed as they happen. SIGTERM or SIGINT stops it.
"""

import argparse
import random
import signal
import sys
import threading
import time
from types import FrameType

from breakers import CircuitBreaker, TransitionEvent, default_registry
from breakers.agent import start_from_env
from controlplane.demo.scenario import (
    CALLS_PER_SECOND,
    SERVICES,
    Dependency,
    breaker_config,
    speed_from_env,
)


class DependencyDown(Exception):
    """A simulated dependency failed this call."""


class FlakyDependency:
    """An in-process stand-in for a remote call that fails on a schedule."""

    def __init__(self, spec: Dependency, speed: float, started: float, rng: random.Random):
        self.spec = spec
        self.speed = speed
        self.started = started
        self.rng = rng

    def __call__(self) -> str:
        rate = self.spec.failure_rate(time.monotonic() - self.started, self.speed)
        failed = self.rng.random() < rate
        # A lognormal latency around the dependency's median (about 0.6x to 1.6x of it
        # for two calls in three), twice as long for a failure.
        time.sleep(self.spec.latency * (2.0 if failed else 1.0) * self.rng.lognormvariate(0, 0.5))
        if failed:
            raise DependencyDown(f"{self.spec.name} failed")
        return "ok"


def fallback() -> str:
    """What the service serves when a dependency fails or its circuit is open."""
    return "fallback"


def main(argv: list[str] | None = None) -> int:
    """Run the service until signalled; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=sorted(SERVICES))
    args = parser.parse_args(argv)
    speed = speed_from_env()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def show(event: TransitionEvent) -> None:
        print(
            f"demo {args.service}: {event.breaker} {event.from_state.value} -> "
            f"{event.to_state.value} ({event.reason})",
            flush=True,
        )

    default_registry.add_transition_listener(show)
    started = time.monotonic()
    rng = random.Random()
    calls: list[tuple[CircuitBreaker, FlakyDependency]] = [
        (
            default_registry.get_or_create(spec.name, breaker_config(speed)),
            FlakyDependency(spec, speed, started, rng),
        )
        for spec in SERVICES[args.service]
    ]
    # A fixed instance id: a restarted demo is the same instance, not a silent one.
    agent = start_from_env(instance_id=f"{args.service}-demo-1")
    assert agent is not None  # required=True: a missing variable raised already
    print(f"demo {args.service}: calling {', '.join(s.name for s in SERVICES[args.service])}",
          flush=True)  # fmt: skip
    tick = 1.0 / CALLS_PER_SECOND
    due = time.monotonic()
    try:
        # On a fixed schedule, so the calls' own latency does not slow the rate.
        while not stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + tick, time.monotonic() - tick)
            for breaker, dependency in calls:
                breaker.call(dependency, fallback)
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
