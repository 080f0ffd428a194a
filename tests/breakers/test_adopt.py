"""Adopting pybreaker and circuitbreaker breakers: their twins in our registry follow
their state and count their calls (transition events, counters, latency), and an
operator's force or release on the twin steers them."""

from __future__ import annotations

import contextlib
from typing import Any

import circuitbreaker
import pybreaker
import pytest

from breakers import CircuitBreakerRegistry, CircuitState
from breakers.integrations.adopt import (
    adopt_circuitbreaker,
    adopt_circuitbreakers,
    adopt_pybreaker,
)


class Down(Exception):
    pass


def fail() -> None:
    raise Down


def events(twin: Any) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    twin.add_transition_listener(
        lambda e: seen.append((e.from_state.value, e.to_state.value, e.reason))
    )
    return seen


# -- pybreaker -------------------------------------------------------------------------------


def test_a_pybreaker_breaker_is_followed_and_counted() -> None:
    registry = CircuitBreakerRegistry()
    db = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="db")
    twin = adopt_pybreaker(db, registry=registry)
    assert registry.get("db") is twin and adopt_pybreaker(db, registry=registry) is twin
    seen = events(twin)
    assert db.call(lambda: 1) == 1
    guarded = db(lambda: 2)  # the decorator goes through the adopted call too
    assert guarded() == 2
    for _ in range(2):
        with contextlib.suppress(Down, pybreaker.CircuitBreakerError):
            db.call(fail)
    assert db.current_state == "open" and twin.state is CircuitState.OPEN
    with pytest.raises(pybreaker.CircuitBreakerError):
        db.call(lambda: 3)  # pybreaker refuses: a rejection
    assert seen == [("closed", "open", "pybreaker")]
    traffic = twin.traffic()
    assert (traffic["successes"], traffic["failures"], traffic["rejected"]) == (2, 2, 1)
    assert sum(traffic["latency"].values()) == 4


def test_an_operator_forces_and_releases_an_adopted_pybreaker() -> None:
    registry = CircuitBreakerRegistry()
    db = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="db")
    twin = adopt_pybreaker(db, registry=registry)
    ran: list[int] = []
    twin.force_open("failover drill")
    with pytest.raises(pybreaker.CircuitBreakerError, match="forced open"):
        db.call(lambda: ran.append(1))
    assert ran == [] and twin.traffic()["rejected"] == 1
    twin.force_closed("known flaky, keep calling")
    for _ in range(3):  # pybreaker would open after 2: forced closed, every call runs
        with contextlib.suppress(Down):
            db.call(fail)
    assert db.call(lambda: ran.append(2)) is None and ran == [2]
    assert twin.state is CircuitState.FORCED_CLOSED
    twin.release()  # pybreaker back to closed, and followed again
    assert db.current_state == "closed" and twin.state is CircuitState.CLOSED
    for _ in range(2):
        with contextlib.suppress(Down, pybreaker.CircuitBreakerError):
            db.call(fail)
    assert twin.state is CircuitState.OPEN


def test_a_pybreaker_without_a_name_needs_one() -> None:
    with pytest.raises(ValueError, match="name: the adopted breaker has no name"):
        adopt_pybreaker(pybreaker.CircuitBreaker(), registry=CircuitBreakerRegistry())
    with pytest.raises(ValueError, match=r"breaker must be a pybreaker\.CircuitBreaker"):
        adopt_pybreaker(object(), registry=CircuitBreakerRegistry())
    with pytest.raises(ValueError, match=r"breaker must be a circuitbreaker\.CircuitBreaker"):
        adopt_circuitbreaker(object(), registry=CircuitBreakerRegistry())


# -- circuitbreaker --------------------------------------------------------------------------


def test_a_circuit_decorator_is_followed_counted_and_steered() -> None:
    registry = CircuitBreakerRegistry()
    calls: list[bool] = []

    @circuitbreaker.circuit(failure_threshold=2, recovery_timeout=60, name="adopt-payments")
    def charge(ok: bool) -> str:
        calls.append(ok)
        if not ok:
            raise Down
        return "charged"

    [twin] = [t for t in adopt_circuitbreakers(registry) if t.name == "adopt-payments"]
    seen = events(twin)
    assert charge(True) == "charged"
    for _ in range(2):
        with contextlib.suppress(Down):
            charge(False)
    assert twin.state is CircuitState.OPEN
    assert seen == [("closed", "open", "circuitbreaker")]
    with pytest.raises(circuitbreaker.CircuitBreakerError):
        charge(True)  # refused by circuitbreaker itself
    assert calls == [True, False, False]
    traffic = twin.traffic()
    assert (traffic["successes"], traffic["failures"]) == (1, 2)

    twin.force_closed("payments provider says it is fine")
    assert charge(True) == "charged"  # runs although circuitbreaker counts it open
    twin.release()  # circuitbreaker reset to closed
    breaker = circuitbreaker.CircuitBreakerMonitor.get("adopt-payments")
    assert breaker.state == "closed" and twin.state is CircuitState.CLOSED
    twin.force_open("drill")
    with pytest.raises(circuitbreaker.CircuitBreakerError):
        charge(True)
    assert calls == [True, False, False, True]
    assert type(breaker).__name__ == "CircuitBreaker"  # still reads as its own type
    twin.release()
