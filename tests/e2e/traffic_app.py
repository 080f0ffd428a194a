"""An application process for the traffic accuracy test: real breakers and the real
agent against a control plane, calls of known latencies, then the truth as JSON.

    python -m tests.e2e.traffic_app URL TOKEN SEED CALLS OUT
"""

from __future__ import annotations

import json
import random
import sys
import time

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.agent import Agent


class Failed(Exception):
    pass


def main(url: str, token: str, seed: int, calls: int, out: str) -> None:
    rng = random.Random(seed)
    registry = CircuitBreakerRegistry()
    # Thresholds no test traffic reaches: every call runs (none rejected).
    db = registry.get_or_create(
        "db", CircuitBreakerConfig(failure_threshold=10_000, minimum_calls=10_000)
    )
    durations: list[float] = []
    failures = 0

    def work(seconds: float, fail: bool) -> None:
        started = time.perf_counter()
        time.sleep(seconds)
        durations.append(time.perf_counter() - started)
        if fail:
            raise Failed

    agent = Agent(url, token, "shop", registry=registry, interval=1.0, request_timeout=5.0)
    agent.start()
    try:
        for n in range(calls):
            fail = n % 10 == 3
            try:
                db.call(work, None, rng.lognormvariate(-4.6, 0.5), fail)  # median 10 ms
            except Failed:
                failures += 1
    finally:
        # Up to 10 s (the default is 2 s) for the last reports to reach the control plane:
        # what this process measured is the truth the test compares with.
        agent.stop(timeout=10.0)
    stats = agent.stats()
    with open(out, "w") as f:
        json.dump(
            {
                "durations": durations,
                "failures": failures,
                "pending": stats.get("pending_reports", 0),
                "dropped": stats.get("dropped_reports", 0),
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
