"""A process that runs one breaker under the real agent until its central config is
applied, then prints what it runs as JSON (the canary restart test).

    python -m tests.agent.canary_app URL TOKEN [INSTANCE_ID]
"""

from __future__ import annotations

import json
import sys
import time

from breakers import CircuitBreakerRegistry
from breakers.agent import Agent

DEADLINE_SECONDS = 15.0


def main(url: str, token: str, instance_id: str | None) -> None:
    registry = CircuitBreakerRegistry()
    breaker = registry.get_or_create("payments")
    agent = Agent(url, token, "checkout", registry=registry, instance_id=instance_id, watch=False)
    agent.start()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while breaker.config_version == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        agent.stop()
    out = {
        "instance_id": agent.instance_id,
        "identity": agent.identity,
        "config_version": breaker.config_version,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
