"""What the demo fleet simulates: services, their dependencies, and each dependency's
failure rate over time (a repeating schedule of phases).

Every duration is divided by the speed (SWITCHYARD_DEMO_SPEED, default 1), so the
end-to-end test can run the same story several times faster.
"""

import os
from dataclasses import dataclass

from breakers import CircuitBreakerConfig

SPEED_VARIABLE = "SWITCHYARD_DEMO_SPEED"
# The speeds the demo accepts (settings.SWITCHYARD_DEMO_SPEED reads the same bounds).
MIN_SPEED = 0.1
MAX_SPEED = 100.0


@dataclass(frozen=True, slots=True)
class Dependency:
    """A downstream call of a service; ``phases`` are (seconds, failure rate) pairs,
    ``latency`` the median seconds a call takes (a failed one takes twice as long, as a
    struggling dependency does)."""

    name: str
    phases: tuple[tuple[float, float], ...]
    latency: float = 0.01

    @property
    def period(self) -> float:
        """Seconds (at speed 1) after which the schedule repeats."""
        return sum(seconds for seconds, _ in self.phases)

    def failure_rate(self, elapsed: float, speed: float = 1.0) -> float:
        """The failure rate ``elapsed`` wall-clock seconds after the service started."""
        t = (elapsed * speed) % self.period
        for seconds, rate in self.phases:
            if t < seconds:
                return rate
            t -= seconds
        return self.phases[-1][1]


# One story, three minutes long at speed 1: checkout's payment provider goes down
# 20 s in and stays down a minute (the breaker trips within a second, half-opens every
# 10 s and is rejected again, and "open too long" fires); the card network degrades at
# 45 s; search's index fails hard at two minutes; recommendations flap all along.
SERVICES: dict[str, tuple[Dependency, ...]] = {
    "checkout": (
        Dependency("payments", ((20, 0.02), (60, 0.95), (100, 0.02)), latency=0.03),
        Dependency("inventory", ((90, 0.01), (25, 0.6), (65, 0.01)), latency=0.008),
    ),
    "payments": (
        Dependency("card_network", ((45, 0.02), (40, 0.8), (95, 0.02)), latency=0.02),
        Dependency("fraud_check", ((180, 0.03),), latency=0.01),
    ),
    "search": (
        Dependency("index", ((120, 0.01), (30, 1.0), (30, 0.01)), latency=0.004),
        Dependency("recommendations", ((60, 0.1), (40, 0.45), (80, 0.1)), latency=0.015),
    ),
}

# Calls each simulated service makes to each dependency per second.
CALLS_PER_SECOND = 10.0


def speed_from_env(environ: dict[str, str] | None = None) -> float:
    """SWITCHYARD_DEMO_SPEED as a number from MIN_SPEED to MAX_SPEED (ValueError naming it
    otherwise); for the fleet's own processes, which run without Django's settings."""
    raw = (os.environ if environ is None else environ).get(SPEED_VARIABLE, "").strip()
    if not raw:
        return 1.0
    try:
        speed = float(raw)
    except ValueError:
        raise ValueError(f"{SPEED_VARIABLE} must be a number, got {raw!r}") from None
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(
            f"{SPEED_VARIABLE} must be between {MIN_SPEED:g} and {MAX_SPEED:g}, got {raw!r}"
        )
    return speed


def breaker_config(speed: float) -> CircuitBreakerConfig:
    """The breakers' config: trip after 5 straight failures or half of the last 10
    calls; stay open 10 s (divided by the speed); close after 3 good probes."""
    return CircuitBreakerConfig(
        failure_threshold=5,
        success_threshold=3,
        timeout=max(0.5, 10.0 / speed),
        failure_rate_threshold=0.5,
        sliding_window_size=10,
        minimum_calls=10,
    )


def alert_durations(speed: float) -> dict[str, int]:
    """Seconds in the demo alert rules, shortened by the speed (rules take whole seconds)."""
    return {
        "open_too_long": max(1, round(30 / speed)),
        "failure_rate_for": max(0, round(20 / speed)),
        "agent_silent": max(5, round(30 / speed)),
    }
