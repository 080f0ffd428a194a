"""An application process for the shadow evaluation test: a real breaker that never
opens on this traffic, the real agent, a candidate from the control plane's desired
state, and a known call sequence that trips the candidate; then what the breaker
recorded of its candidate as JSON (the truth the page is checked against).

    python -m tests.e2e.shadow_app URL TOKEN OUT
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.agent import Agent


class Failed(Exception):
    pass


def ok() -> int:
    return 1


def fail() -> None:
    raise Failed


def main(url: str, token: str, out: str) -> None:
    registry = CircuitBreakerRegistry()
    db = registry.get_or_create(
        "db",
        CircuitBreakerConfig(
            failure_threshold=10_000, minimum_calls=10_000, sliding_window_size=10_000
        ),
    )
    agent = Agent(url, token, "shop", registry=registry, interval=1.0, request_timeout=5.0)
    agent.start()
    try:
        deadline = time.monotonic() + 60
        while db.shadow_breaker is None:  # the operator starts the evaluation
            if time.monotonic() > deadline:
                raise SystemExit("no shadow candidate arrived")
            time.sleep(0.05)
        sequence = [ok] * 10 + [fail] * 5 + [ok] * 30  # opens on the 3rd failure
        for fn in sequence:
            with contextlib.suppress(Failed):
                db.call(fn)
        time.sleep(1.3)  # past the candidate's open timeout (1 s)
        for fn in [ok] * 5 + [fail] * 3 + [ok] * 10:  # a probe closes it; it opens again
            with contextlib.suppress(Failed):
                db.call(fn)
        report = db.shadow_report()
        assert report is not None
        truth = {
            k: report[k] for k in ("rejected", "unobserved", "opened", "half_opened", "closed")
        }
        truth["live_rejected"] = db.traffic()["rejected"]
        truth["transitions"] = [
            [e.from_state.value, e.to_state.value, e.reason] for e in report["transitions"]
        ]
    finally:
        agent.stop(timeout=10.0)
    stats = agent.stats()
    truth["pending"] = stats.get("pending_reports", 0)
    with open(out, "w") as f:
        json.dump(truth, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
