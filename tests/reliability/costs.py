"""The cost of each fault, printed as it is measured (visible with ``pytest -s``) and
kept for pytest's terminal summary; and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

COSTS: list[str] = []


def report_cost(fault: str, **figures: Any) -> str:
    """Print one fault's cost (visible with ``-s``) and keep it for the summary."""
    parts = ", ".join(_figure(k, v) for k, v in figures.items())
    line = f"FAULT {fault}: {parts}"
    print(f"\n{line}", flush=True)
    COSTS.append(line)
    return line


def _figure(key: str, value: Any) -> str:
    if key.endswith("_s") and isinstance(value, float):
        return f"{key[:-2].replace('_', ' ')} {value:.1f} s"
    if key == "count":
        return str(value)
    return f"{key.replace('_', ' ')} {value}"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval=0.05) -> float:
    """Poll ``predicate`` until it is true; the seconds it took. AssertionError on time-out."""
    started = time.monotonic()
    deadline = started + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started
