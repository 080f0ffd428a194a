"""An application process for the canary rollout test: one real breaker under the real
agent. It waits for a go file, then makes calls of known latencies and failures, then
fails calls until its breaker trips (which only the canary config lets it do) and
writes what it did, per the config version it ran, as JSON.

    python -m tests.e2e.rollout_app URL TOKEN INSTANCE_ID SEED CALLS GO OUT
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.agent import Agent

TRIP_ATTEMPTS = 20  # failing calls at most; the baseline config never trips on them


class Failed(Exception):
    pass


def main(url: str, token: str, instance_id: str, seed: int, calls: int, go: str, out: str) -> None:
    rng = random.Random(seed)
    registry = CircuitBreakerRegistry()
    # The code's config (version 1 once registered) never trips on this traffic.
    db = registry.get_or_create(
        "db",
        CircuitBreakerConfig(
            failure_threshold=10_000, minimum_calls=1000, sliding_window_size=1000
        ),
    )
    # What the control plane pushes is reported within 0.2 s, so the test sees when it
    # was applied.
    agent = Agent(
        url, token, "shop", registry=registry, instance_id=instance_id, report_delay_max=0.2
    )
    agent.start()
    durations: list[float] = []
    failures = 0

    def work(seconds: float, fail: bool) -> None:
        started = time.perf_counter()
        time.sleep(seconds)
        durations.append(time.perf_counter() - started)
        if fail:
            raise Failed

    try:
        while not os.path.exists(go):
            time.sleep(0.02)
        version = db.config_version
        trips = db.get_state()["trip_count"]
        for n in range(calls):
            try:
                db.call(work, None, rng.lognormvariate(-4.6 + seed * 0.3, 0.4), n % 10 == 3)
            except Failed:
                failures += 1
        for _ in range(TRIP_ATTEMPTS):
            if db.state is CircuitState.OPEN:
                break
            try:
                db.call(work, None, 0.0, True)
            except Failed:
                failures += 1
        trips = db.get_state()["trip_count"] - trips
        assert db.config_version == version, "the version changed during the calls"
    finally:
        agent.stop(timeout=10.0)
    stats = agent.stats()
    with open(out, "w") as f:
        json.dump(
            {
                "instance": instance_id,
                "version": version,
                "durations": durations,
                "failures": failures,
                "trips": trips,
                "dropped": stats.get("dropped_reports", 0),
            },
            f,
        )


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5], a[6])
